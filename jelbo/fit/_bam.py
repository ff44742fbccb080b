r"""Batch-and-match (Cai, Modi, Pillaud-Vivien, Margossian, Gower, Blei & Saul, ICML 2024).

BaM fits a full-covariance Gaussian :math:`q_t = \mathcal N(\mu_t, \Sigma_t)` by minimizing
the score-based divergence :math:`\mathbb E_q\lVert\nabla\log q - \nabla\log p\rVert^2_{\Sigma}`
with proximal steps that have a closed form. Iteration :math:`t`:

1. **batch**: draw :math:`z_1..z_B \sim q_t`, evaluate the scores
   :math:`g_b = \nabla\log p(x, z_b)`, and form :math:`\bar z, \bar g` and the covariances
   :math:`C = \frac1B\sum_b(z_b-\bar z)(z_b-\bar z)^\top`,
   :math:`\Gamma = \frac1B\sum_b(g_b-\bar g)(g_b-\bar g)^\top`;
2. **match**: with the learning rate :math:`\lambda_t` and
   :math:`U = \lambda_t\Gamma + \frac{\lambda_t}{1+\lambda_t}\bar g\bar g^\top`,
   :math:`V = \Sigma_t + \lambda_t C
   + \frac{\lambda_t}{1+\lambda_t}(\mu_t-\bar z)(\mu_t-\bar z)^\top`,
   :math:`\Sigma_{t+1}` is the positive definite solution of the quadratic matrix equation
   :math:`\Sigma U\Sigma + \Sigma = V` and
   :math:`\mu_{t+1} = \frac{1}{1+\lambda_t}\mu_t + \frac{\lambda_t}{1+\lambda_t}(\Sigma_{t+1}\bar g
   + \bar z)`.

The paper writes the solution :math:`\Sigma = 2V\big(I + (I + 4UV)^{1/2}\big)^{-1}` with the
square root of a non-symmetric matrix. Here it is computed from symmetric factorizations
only: with :math:`V = RR^\top` (Cholesky) and :math:`R^\top UR = Q\,\mathrm{diag}(m)\,Q^\top`,
:math:`\Sigma = RQ\,\mathrm{diag}(s)\,Q^\top R^\top` with
:math:`s_i = 2/(\epsilon + \sqrt{\epsilon^2 + 4m_i})`, after dividing the equation by
:math:`\lambda` (:math:`\epsilon = 1/\lambda`: :math:`\Sigma U'\Sigma + \epsilon\Sigma = V'`,
:math:`U' = \Gamma + a\bar g\bar g^\top`, :math:`V' = \epsilon\Sigma_t + C + a(\mu_t - \bar z)
(\mu_t-\bar z)^\top`, :math:`a = 1/(1+\lambda)`), which also covers the limit
:math:`\lambda\to\infty` (:math:`\epsilon = 0`: :math:`\Sigma\Gamma\Sigma = C`,
:math:`\mu = \bar z + \Sigma\bar g`, the score-matching fit of the batch alone, cf. Gaussian
score matching, Modi et al., NeurIPS 2023; it needs ``batch_size > D``). The factor
:math:`RQ\,\mathrm{diag}(\sqrt s)` is kept as :math:`\Sigma`'s square root for the next draws.

**Learning rate.** The paper's :math:`\lambda_t = BD/(t+1)`: at first close to the
score-matching fit of one batch, then an average over more and more batches (about
:math:`t/D` draws at iteration :math:`t`), so that the iterates' Monte Carlo noise shrinks.

**Stopping rule (this implementation's).** The iterate's Monte Carlo variance is tracked:
each mean update is :math:`\mu_{t+1} = a\mu_t + (1-a)\bar c` with per-draw targets
:math:`c_b = z_b + \Sigma_{t+1}g_b`, so :math:`v_{t+1} = a^2 v_t + (1-a)^2\,\mathrm{se}^2(\bar c)`
per coordinate (:math:`\mathrm{se}^2` the batch's squared standard error; zero on a Gaussian
target, where every :math:`c_b` is the exact mean). Every ``window`` iterations the window's
average iterate is compared with the previous window's: BaM has **converged** when, for every
coordinate :math:`i`, (a) the change of the mean and of :math:`\log\sigma_i` between the two
windows is within twice its Monte Carlo noise :math:`\sqrt{2v_i}` (in units of
:math:`\sigma_i`) plus ``tol/10``: no drift the noise cannot explain; and (b) the noise
itself is small, :math:`\sqrt{v_i} \le` ``tol`` :math:`\sigma_i`. ``max_iters`` stops it
otherwise (``converged = False``).

**Start.** ``start="laplace"`` (default) starts at the Laplace approximation (the mode by
L-BFGS and the inverse Hessian there, ``D`` Hessian-vector products); ``start="init"`` at
:math:`\mathcal N(\text{init}, I)` as in the paper. From :math:`\mathcal N(0, I)` the first
large-:math:`\lambda` steps on posteriordb's ill-conditioned posteriors landed far from the
posterior, and the decaying :math:`\lambda_t` never brought them back within 2,000
evaluations (``docs/fit.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jelbo import _checks
from jelbo._typing import Array, ArrayLike
from jelbo.distributions import MultivariateNormalTriL
from jelbo.fit._common import (
    DIAGNOSTIC_DRAWS,
    CountedLogJoint,
    check_draws,
    check_positive,
    check_problem,
    diagnose,
    finish,
    zero_count,
)
from jelbo.fit._result import Fit
from jelbo.fit._start import laplace_start

__all__ = ["batch_and_match"]

LearningRate = float | Callable[[Array], Array] | None


class _State(NamedTuple):
    loc: Array
    cov: Array
    root: Array  # any square root of cov: cov = root @ root.T
    key: Array
    t: Array
    evals: Array
    noise: Array  # (D,) Monte Carlo variance of loc, absolute units
    win_loc: Array  # running sum of the iterates in the current window
    win_logsd: Array
    prev_loc: Array  # the previous window's averages
    prev_logsd: Array
    have_prev: Array
    converged: Array
    num_skipped: Array


def batch_and_match(
    key: Array,
    log_joint: Callable[[Array], Array],
    init: ArrayLike,
    *,
    batch_size: int = 4,
    learning_rate: LearningRate = None,
    max_iters: int = 1000,
    tol: float = 0.05,
    window: int = 10,
    start: str = "laplace",
    start_max_iters: int = 1000,
    start_tol: float = 1e-6,
    num_diagnostic_draws: int = DIAGNOSTIC_DRAWS,
) -> Fit:
    r"""Batch-and-match: a full-covariance Gaussian fitted by closed-form score matching.

    See the module docstring for the algorithm, the stopping rule and the start. The whole
    fit is one compiled program (``jax.jit`` it with ``log_joint`` closed over); the same
    inputs give the same ``q`` eager and jitted.

    Args:
        key: PRNG key (the batches and the diagnostic draws).
        log_joint: :math:`\log p(x, z)` of ONE unconstrained ``(D,)`` vector, differentiable
            (twice for ``start="laplace"``). Draws where it or its gradient is not finite
            are left out of their batch (an iteration with fewer than two usable draws
            keeps the iterate).
        init: the starting point, a floating ``(D,)`` array (its dtype is the fit's).
        batch_size: ``B`` draws (score evaluations) per iteration (static, >= 2).
        learning_rate: :math:`\lambda_t`: ``None`` for the paper's :math:`BD/(t+1)`, a
            positive float for a constant, ``float("inf")`` for the score-matching limit
            (needs ``batch_size > D``), or a function of the iteration :math:`t = 0, 1,
            \dots` (an int array) returning :math:`\lambda_t > 0`.
        max_iters: the most iterations (static); ``converged = False`` when it stops the fit.
        tol: the precision asked of the mean, in posterior standard deviations (stopping
            rule (b)), > 0. It bounds the *tracked* Monte Carlo error, which leaves out the
            noise of the covariance updates: on a skewed 2-d target (``tests/test_fit_bam.py``)
            the actual mean errors were 0.2-3 times ``tol`` and the covariance's up to 30 %.
        window: iterations per window of the stopping rule (static, >= 1).
        start: ``"laplace"`` (default) or ``"init"`` (:math:`\mathcal N(\text{init}, I)`).
        start_max_iters, start_tol: the mode search's L-BFGS cap and tolerance (nats).
        num_diagnostic_draws: fresh draws from ``q`` for ``bound`` and ``pareto_k``.

    Returns:
        A :class:`jelbo.fit.Fit` with ``q`` a ``MultivariateNormalTriL``; ``num_evals``
        counts ``B`` per iteration, the start and the diagnostics. ``info``:
        ``mc_stderr`` (the tracked Monte Carlo standard error of the mean, per coordinate,
        in posterior sds), ``num_skipped`` (iterations without two usable draws),
        ``learning_rate`` (the last :math:`\lambda_t`), ``start_converged``,
        ``start_hessian_ok``, ``num_evals_start``, ``num_evals_algorithm``,
        ``num_evals_diagnostics``.

    Raises:
        ValueError, TypeError: at trace time, for a bad argument (naming it).

    References:
        Cai, Modi, Pillaud-Vivien, Margossian, Gower, Blei & Saul, "Batch and match:
        black-box variational inference with a score-based divergence", ICML 2024.
        Modi, Gower, Margossian, Yao, Blei & Saul, "Variational inference with Gaussian
        score matching", NeurIPS 2023.
    """
    z0 = check_problem("batch_and_match", key, log_joint, init)
    dim, dtype = z0.shape[0], z0.dtype
    b = check_draws(batch_size, "batch_size", "batch_and_match")
    max_iters = check_positive(max_iters, "max_iters", "batch_and_match")
    window = check_positive(window, "window", "batch_and_match")
    start_max_iters = check_positive(start_max_iters, "start_max_iters", "batch_and_match")
    _checks.check_choice(start, "start", ("laplace", "init"))
    rate = _learning_rate(learning_rate, b, dim)
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"batch_and_match: `tol` must be a positive number; got {tol!r}.")
    n_diag = check_draws(num_diagnostic_draws, "num_diagnostic_draws", "batch_and_match")

    run_key, diag_key = jax.random.split(key)
    model = CountedLogJoint(log_joint)
    count = zero_count()
    if start == "laplace":
        st, count = laplace_start(model, z0, count, max_iters=start_max_iters, tol=start_tol)
        loc0, root0 = st.loc, st.scale
        start_info = {
            "start_converged": st.converged,
            "start_hessian_ok": st.hessian_ok,
            "num_evals_start": count,
        }
    else:
        loc0, root0 = z0, jnp.eye(dim, dtype=dtype)
        start_info = {"num_evals_start": count}
    tol_arr = jnp.asarray(tol, dtype)

    def step(s: _State) -> _State:
        key, draw_key = jax.random.split(s.key)
        eps = jax.random.normal(draw_key, (b, dim), dtype)
        z = s.loc + eps @ s.root.T
        values, grads, count = model.values_and_grads(z, s.evals)
        usable = jnp.isfinite(values) & jnp.all(jnp.isfinite(grads), axis=-1)
        lam = jnp.asarray(rate(s.t), dtype)
        loc, cov, root, se2, ok = bam_update(z, grads, usable, s.loc, s.cov, lam)
        a = jnp.where(jnp.isinf(lam), 0.0, 1.0 / (1.0 + lam))
        noise = jnp.where(ok, a * a * s.noise + (1.0 - a) ** 2 * se2, s.noise)
        loc = jnp.where(ok, loc, s.loc)
        cov = jnp.where(ok, cov, s.cov)
        root = jnp.where(ok, root, s.root)
        logsd = 0.5 * jnp.log(jnp.diagonal(cov))
        win_loc, win_logsd = s.win_loc + loc, s.win_logsd + logsd
        t = s.t + 1
        end = t % window == 0
        mean_loc, mean_logsd = win_loc / window, win_logsd / window
        sd = jnp.exp(mean_logsd)
        allowed = 2.0 * jnp.sqrt(2.0 * noise) / sd + 0.1 * tol_arr
        steady = (
            s.have_prev
            & jnp.all(jnp.abs(mean_loc - s.prev_loc) / sd <= allowed)
            & jnp.all(jnp.abs(mean_logsd - s.prev_logsd) <= allowed)
        )
        precise = jnp.all(jnp.sqrt(noise) <= tol_arr * jnp.exp(logsd))
        converged = end & steady & precise
        zeros = jnp.zeros_like(s.win_loc)
        return _State(
            loc=loc,
            cov=cov,
            root=root,
            key=key,
            t=t,
            evals=count,
            noise=noise,
            win_loc=jnp.where(end, zeros, win_loc),
            win_logsd=jnp.where(end, zeros, win_logsd),
            prev_loc=jnp.where(end, mean_loc, s.prev_loc),
            prev_logsd=jnp.where(end, mean_logsd, s.prev_logsd),
            have_prev=s.have_prev | end,
            converged=converged,
            num_skipped=s.num_skipped + (~ok).astype(s.num_skipped.dtype),
        )

    def keep_going(s: _State) -> Array:
        return ~s.converged & (s.t < max_iters)

    zeros = jnp.zeros(dim, dtype)
    init_state = _State(
        loc=loc0,
        cov=root0 @ root0.T,
        root=root0,
        key=run_key,
        t=jnp.zeros((), jnp.int32),
        evals=count,
        noise=zeros,
        win_loc=zeros,
        win_logsd=zeros,
        prev_loc=zeros,
        prev_logsd=zeros,
        have_prev=jnp.asarray(False),
        converged=jnp.asarray(False),
        num_skipped=jnp.zeros((), jnp.int32),
    )
    s = jax.lax.while_loop(keep_going, step, init_state)
    tril = jnp.linalg.cholesky(s.cov)
    q = MultivariateNormalTriL(s.loc, tril)
    diagnosis = diagnose(diag_key, q, log_joint, num_draws=n_diag)
    info: dict[str, Any] = {
        **start_info,
        "mc_stderr": jnp.sqrt(s.noise) / jnp.sqrt(jnp.diagonal(s.cov)),
        "num_skipped": s.num_skipped,
        "learning_rate": jnp.asarray(rate(jnp.maximum(s.t - 1, 0)), dtype),
    }
    return finish(
        q,
        converged=s.converged,
        num_evals=s.evals,
        num_iters=s.t,
        diagnosis=diagnosis,
        info=info,
    )


def bam_update(
    z: Array, grads: Array, usable: Array, loc: Array, cov: Array, lam: Array
) -> tuple[Array, Array, Array, Array, Array]:
    r"""One batch-and-match update (module docstring) from the usable draws.

    Args:
        z: the draws ``(B, D)``; grads: the scores there ``(B, D)``; usable: ``(B,)`` bool,
            the draws to use (finite value and gradient); loc, cov: :math:`\mu_t,
            \Sigma_t`; lam: :math:`\lambda_t > 0` (``inf`` for the score-matching limit).

    Returns:
        ``(loc, cov, root, se2, ok)``: :math:`\mu_{t+1}`, :math:`\Sigma_{t+1}`, a square
        root of it, the squared standard errors ``(D,)`` of the batch's mean target
        :math:`\bar c`, and whether the update is usable (two usable draws, finite).
    """
    dtype = z.dtype
    w = usable.astype(dtype)
    n = jnp.sum(w)
    wn = w / jnp.maximum(n, 1.0)
    grads = jnp.where(usable[:, None], grads, 0.0)
    z_bar = wn @ z
    g_bar = wn @ grads
    dz = (z - z_bar) * jnp.sqrt(wn)[:, None]
    dg = (grads - g_bar) * jnp.sqrt(wn)[:, None]
    c = dz.T @ dz
    gamma = dg.T @ dg
    infinite = jnp.isinf(lam)
    inv_lam = jnp.where(infinite, 0.0, 1.0 / jnp.where(infinite, 1.0, lam))
    a = inv_lam / (1.0 + inv_lam)  # 1 / (1 + lam)
    u = gamma + a * jnp.outer(g_bar, g_bar)
    diff = loc - z_bar
    v = inv_lam * cov + c + a * jnp.outer(diff, diff)
    new_cov, root = solve_quadratic(u, v, inv_lam)
    new_loc = a * loc + (1.0 - a) * (new_cov @ g_bar + z_bar)
    targets = z + grads @ new_cov  # c_b = z_b + Sigma g_b (new_cov symmetric)
    spread = jnp.sum(w[:, None] * jnp.square(targets - (wn @ targets)), axis=0)
    se2 = spread / jnp.maximum(n - 1.0, 1.0) / jnp.maximum(n, 1.0)
    ok = (n >= 2) & jnp.all(jnp.isfinite(new_cov)) & jnp.all(jnp.isfinite(new_loc))
    return new_loc, new_cov, root, se2, ok


def solve_quadratic(u: Array, v: Array, epsilon: Array) -> tuple[Array, Array]:
    r"""The positive definite solution :math:`\Sigma` of :math:`\Sigma U\Sigma + \epsilon\Sigma
    = V` (:math:`U \succeq 0`, :math:`V \succ 0`, :math:`\epsilon \ge 0`) and a square root
    :math:`F` of it (:math:`\Sigma = FF^\top`).

    With :math:`V = RR^\top` and :math:`R^\top UR = Q\,\mathrm{diag}(m)\,Q^\top`:
    :math:`\Sigma = RQ\,\mathrm{diag}(s)\,Q^\top R^\top`, :math:`s = 2/(\epsilon +
    \sqrt{\epsilon^2 + 4m})` (the positive root of :math:`ms^2 + \epsilon s = 1`, written
    without cancellation), :math:`F = RQ\,\mathrm{diag}(\sqrt s)`. For :math:`\epsilon = 1`
    this is the paper's :math:`2V(I + (I + 4UV)^{1/2})^{-1}`.
    """
    r = jnp.linalg.cholesky(0.5 * (v + v.T))
    m = r.T @ u @ r
    eigenvalues, q = jnp.linalg.eigh(0.5 * (m + m.T))
    eigenvalues = jnp.maximum(eigenvalues, 0.0)
    s = 2.0 / (epsilon + jnp.sqrt(epsilon * epsilon + 4.0 * eigenvalues))
    root = (r @ q) * jnp.sqrt(s)
    return root @ root.T, root


def _learning_rate(learning_rate: LearningRate, b: int, dim: int) -> Callable[[Array], Array]:
    if learning_rate is None:
        scale = float(b * dim)
        return lambda t: scale / (t + 1.0)
    if callable(learning_rate):
        return learning_rate
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
        raise TypeError(
            "batch_and_match: `learning_rate` must be None (the paper's BD/(t+1)), a positive "
            f"float, float('inf') or a function of t; got {type(learning_rate).__name__}."
        )
    value = float(learning_rate)
    if not value > 0:
        raise ValueError(f"batch_and_match: `learning_rate` must be > 0; got {value}.")
    if value == float("inf") and b <= dim:
        raise ValueError(
            "batch_and_match: learning_rate=inf (the score-matching limit) solves "
            "Sigma Gamma Sigma = C from one batch, which needs batch_size > D; got "
            f"batch_size={b}, D={dim}."
        )
    return lambda t: jnp.full((), value)
