r"""Deterministic ADVI (Giordano, Ingram & Broderick, JMLR 25(18), 2024).

ADVI maximizes :math:`\mathrm{ELBO}(\eta) = \mathbb E_{\varepsilon\sim\mathcal N(0,I)}
[\log p(x, z_\eta(\varepsilon))] + H(q_\eta)` with a fresh Monte Carlo estimate at every step,
so it needs a step size and has no convergence test. DADVI fixes ``M`` draws
:math:`\varepsilon_1..\varepsilon_M` once (from ``key``) and maximizes the resulting
*deterministic* function

.. math::
    \widehat{\mathrm{ELBO}}(\eta) = \frac1M\sum_{m=1}^M \log p\big(x, z_\eta(\varepsilon_m)\big)
    + H(q_\eta)

with a second-order optimizer to convergence: here L-BFGS, stopped when the predicted
decrease of the local quadratic model, :math:`\tfrac12 g^\top H g`, is below ``tol`` nats
(``converged``). Families: ``"fullrank"`` (:math:`z = \mu + A\varepsilon`, :math:`H = \log|A|`
+ const) and ``"meanfield"`` (:math:`z = \mu + e^{s}\odot\varepsilon`, the paper's), the
latter with the linear-response covariance (LRVB).

Two choices here go beyond the paper (``docs/fit.md`` has the measurements behind them):

- **Antithetic, moment-matched draws** (``antithetic=True``): :math:`\varepsilon_{M/2+i} =
  -\varepsilon_i`, and when :math:`M/2 \ge D` the first half is whitened,
  :math:`E \leftarrow E\,(E^\top E/(M/2))^{-1/2}`, so that the draws have mean exactly 0 and
  second moment exactly :math:`I`. The fixed-draw objective is then exact for a Gaussian
  posterior (its optimum is the exact answer for any such ``M``) and its error on
  near-Gaussian ones comes from fourth and higher moments only: on posteriordb, DADVI's mean
  error with ``M = 30`` iid draws was 0.12–0.5 posterior sd (its Monte Carlo noise), with
  these draws 0.01–0.06.
- **The Laplace start** (``start="laplace"``): the mode by L-BFGS and the Hessian there
  (``D`` Hessian-vector products), and the optimizer works in coordinates whitened by it
  (:math:`\mu = \hat z + Wa`, :math:`A = WB`): the number of L-BFGS iterations drops from
  hundreds to about ten on ill-conditioned posteriors. For the mean field the objective is
  unchanged (only its coordinates are). For the full rank the square root :math:`A = WB` is
  not the paper's lower-triangular one; :math:`WB = LQ` with a parameter-dependent
  orthogonal :math:`Q` rotates the fixed draws, a different but equally valid fixed-draw
  objective (the same on Gaussian targets and as :math:`M` grows).

**Linear response (LRVB, mean field).** Giordano, Broderick & Jordan (JMLR 19, 2018): the
covariance of the posterior is estimated by the sensitivity of the variational mean to a
linear perturbation of the log density, :math:`\Sigma_{\mathrm{LR}} = [\mathcal H^{-1}]_{\mu\mu}`
with :math:`\mathcal H` the Hessian of :math:`-\widehat{\mathrm{ELBO}}` in :math:`(\mu, s)` at
the optimum. It is exact for Gaussian posteriors (where the mean-field variances are not) and
costs the Hessians of :math:`\log p` at the ``M`` draws (``M·D`` Hessian-vector products).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jelbo import _checks
from jelbo._typing import Array, ArrayLike
from jelbo.distributions import MultivariateNormalTriL
from jelbo.fit import _lbfgs
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
from jelbo.fit._start import (
    Start,
    hessian_by_columns,
    laplace_start,
    lbfgs_options,
    tril_from_square_root,
)

__all__ = ["dadvi"]

_FAMILIES = ("fullrank", "meanfield")
_STARTS = ("laplace", "init")


def dadvi(
    key: Array,
    log_joint: Callable[[Array], Array],
    init: ArrayLike,
    *,
    family: str = "fullrank",
    num_draws: int | None = None,
    antithetic: bool = True,
    lrvb: bool = True,
    start: str = "laplace",
    max_iters: int = 500,
    tol: float = 1e-4,
    start_max_iters: int = 1000,
    start_tol: float = 1e-6,
    num_diagnostic_draws: int = DIAGNOSTIC_DRAWS,
) -> Fit:
    r"""Deterministic ADVI: a Gaussian fitted to ``log_joint`` on ``M`` fixed draws.

    See the module docstring for the algorithm. The whole fit is one compiled program
    (``jax.jit`` it with ``log_joint`` closed over); the same inputs give the same ``q``
    eager and jitted.

    Args:
        key: PRNG key; it fixes the ``M`` draws and the diagnostic draws.
        log_joint: :math:`\log p(x, z)` up to a constant, a scalar function of ONE
            unconstrained vector ``z`` of shape ``(D,)``; differentiable (twice for
            ``start="laplace"`` and for LRVB). Non-finite values count as :math:`-\infty`.
        init: the starting point, a floating ``(D,)`` array (its dtype is the fit's).
        family: ``"fullrank"`` (default; :math:`q = \mathcal N(\mu, AA^\top)`) or
            ``"meanfield"`` (the paper's :math:`q = \mathcal N(\mu, \mathrm{diag}\,e^{2s})`).
        num_draws: ``M``, the fixed draws (static). Default ``max(30, 2D + 2)`` for
            ``"fullrank"`` (the draws must span :math:`\mathbb R^D`: at least ``2D`` with
            antithetic draws, more than ``D`` without, else the objective is unbounded) and
            30 (the paper's) for ``"meanfield"``.
        antithetic: antithetic, moment-matched draws (module docstring); ``num_draws`` must
            then be even (static).
        lrvb: ``"meanfield"`` only: ``q`` takes the linear-response covariance
            :math:`\Sigma_{\mathrm{LR}}` instead of the mean-field one (static). The
            mean-field scales are in ``info["meanfield_scale"]`` either way.
        start: ``"laplace"`` (default; module docstring) or ``"init"``: the paper's start
            :math:`\mu = ` ``init``, :math:`A = I` (:math:`s = 0`) in the original
            coordinates (static).
        max_iters: the most L-BFGS iterations on the DADVI objective (static).
        tol: the stopping rule: predicted decrease :math:`\tfrac12 g^\top Hg` of the
            objective below ``tol`` nats, or a relative decrease below 100 float epsilons
            (:mod:`jelbo.fit._lbfgs` with ``confirm=False``).
        start_max_iters, start_tol: the same for the mode search of ``start="laplace"``.
        num_diagnostic_draws: fresh draws from ``q`` for ``bound`` and ``pareto_k``.

    Returns:
        A :class:`jelbo.fit.Fit`: ``q`` a ``MultivariateNormalTriL`` (also for the mean
        field, whose covariance is then :math:`\Sigma_{\mathrm{LR}}` or diagonal);
        ``converged`` the L-BFGS stopping rule on the DADVI objective; ``num_evals`` every
        evaluation of ``log_joint`` (``M`` per objective evaluation, the start's, ``M·D``
        for LRVB, the diagnostics'). ``info``: ``objective`` (the final
        :math:`-\widehat{\mathrm{ELBO}}`), ``decrement`` (its predicted decrease),
        ``num_draws``, ``start_converged``, ``start_hessian_ok``, ``num_evals_start``,
        ``meanfield_scale`` and ``lrvb_ok`` (mean field), ``num_evals_algorithm``,
        ``num_evals_diagnostics``.

    Raises:
        ValueError, TypeError: at trace time, for a bad ``key``, ``log_joint``, ``init`` or
            option (naming it).

    References:
        Giordano, Ingram & Broderick, "Black box variational inference with a deterministic
        objective: faster, more accurate, and even more accurate than before", JMLR 25(18),
        2024. Giordano, Broderick & Jordan, "Covariances, robustness, and variational
        Bayes", JMLR 19(51), 2018 (LRVB).
    """
    z0 = check_problem("dadvi", key, log_joint, init)
    dim, dtype = z0.shape[0], z0.dtype
    _checks.check_choice(family, "family", _FAMILIES)
    _checks.check_choice(start, "start", _STARTS)
    m = _check_num_draws(num_draws, family, antithetic, dim)
    max_iters = check_positive(max_iters, "max_iters", "dadvi")
    start_max_iters = check_positive(start_max_iters, "start_max_iters", "dadvi")
    n_diag = check_draws(num_diagnostic_draws, "num_diagnostic_draws", "dadvi")

    draw_key, diag_key = jax.random.split(key)
    eps = fixed_draws(draw_key, m, dim, dtype, antithetic=antithetic)
    model = CountedLogJoint(log_joint)
    count = zero_count()
    if start == "laplace":
        st, count = laplace_start(model, z0, count, max_iters=start_max_iters, tol=start_tol)
    else:
        st = _plain_start(z0)
    evals_start = count

    if family == "fullrank":
        unpack = _fullrank_unpack(st, dim)
        n_params = dim + dim * (dim + 1) // 2
    else:
        unpack = _meanfield_unpack(st, dim, from_precision=start == "laplace")
        n_params = 2 * dim

    def objective(theta: Array) -> Array:
        loc, scale_matrix, log_det = unpack(theta)
        if family == "fullrank":
            z = loc + eps @ scale_matrix.T
        else:
            z = loc + scale_matrix * eps
        values = jax.vmap(model._one)(z)
        return -jnp.mean(values) - log_det

    res = _lbfgs.minimize(
        jax.value_and_grad(objective),
        jnp.zeros(n_params, dtype),
        # whitened by the Laplace start (or the paper's unit scales): no confirmation needed
        lbfgs_options(max_iters=max_iters, tol=tol, confirm=False),
    )
    count = count + res.num_evals.astype(count.dtype) * m
    loc, scale_matrix, _ = unpack(res.x)
    info: dict[str, Any] = {
        "objective": res.value,
        "decrement": 0.5 * res.decrement**2,
        "num_draws": jnp.asarray(m),
        "start_converged": st.converged,
        "start_hessian_ok": st.hessian_ok,
        "num_evals_start": evals_start,
    }
    if family == "fullrank":
        q = MultivariateNormalTriL(loc, tril_from_square_root(scale_matrix))
    else:
        info["meanfield_scale"] = scale_matrix
        mf_tril = jnp.diag(scale_matrix)
        if lrvb:
            cov, ok, count = lrvb_covariance(model, loc, scale_matrix, eps, count)
            chol = jnp.linalg.cholesky(cov)
            ok = ok & jnp.all(jnp.isfinite(chol))
            q = MultivariateNormalTriL(loc, jnp.where(ok, chol, mf_tril))
            info["lrvb_ok"] = ok
        else:
            q = MultivariateNormalTriL(loc, mf_tril)
    diagnosis = diagnose(diag_key, q, log_joint, num_draws=n_diag)
    return finish(
        q,
        converged=res.converged,
        num_evals=count,
        num_iters=res.num_iters,
        diagnosis=diagnosis,
        info=info,
    )


# --- pieces (also used by the tests) --------------------------------------------------------


def fixed_draws(key: Array, num: int, dim: int, dtype: Any, *, antithetic: bool) -> Array:
    r"""The ``(num, dim)`` fixed standard-normal draws of DADVI.

    ``antithetic``: the second half is the first negated (``num`` even), and when
    ``num/2 >= dim`` the first half :math:`E` is whitened to :math:`E(E^\top E/(num/2))^{-1/2}`
    (symmetric root), so the draws have mean exactly 0 and second moment exactly :math:`I`;
    with fewer draws each coordinate is scaled to second moment 1 instead.
    """
    if not antithetic:
        return jax.random.normal(key, (num, dim), dtype)
    half = num // 2
    e = jax.random.normal(key, (half, dim), dtype)
    if half >= dim:
        second = e.T @ e / half
        w, v = jnp.linalg.eigh(second)
        e = e @ ((v * jax.lax.rsqrt(w)) @ v.T)
    else:
        e = e * jax.lax.rsqrt(jnp.mean(e * e, axis=0))
    return jnp.concatenate([e, -e], axis=0)


def lrvb_covariance(
    model: CountedLogJoint, loc: Array, scale: Array, eps: Array, count: Array
) -> tuple[Array, Array, Array]:
    r"""The linear-response covariance of the mean-field DADVI optimum ``(loc, scale)``.

    With :math:`z_m = \mu + \sigma\odot\varepsilon_m`, :math:`g_m, H_m` the gradient and
    Hessian of :math:`\log p` at :math:`z_m` (``M·D`` counted Hessian-vector products), the
    Hessian of :math:`F(\mu, s) = -\frac1M\sum_m\log p(z_m) - \sum_i s_i` is

    .. math::
        F_{\mu\mu} = -\overline{H},\quad
        F_{\mu_i s_j} = -\overline{H_{ij}\,\sigma_j\varepsilon_j},\quad
        F_{s_i s_j} = -\overline{\sigma_i\varepsilon_i H_{ij}\sigma_j\varepsilon_j}
        - \delta_{ij}\,\overline{g_i\sigma_i\varepsilon_i}

    (bars: means over the draws) and :math:`\Sigma_{\mathrm{LR}} = (F_{\mu\mu} - F_{\mu s}
    F_{ss}^{-1}F_{s\mu})^{-1}`. Returns ``(cov, ok, count)``; ``ok`` is false when
    :math:`F`'s Hessian is not positive definite there.
    """
    z = loc + scale * eps
    num, dim = eps.shape
    grads, hess, _ = jax.vmap(lambda zm: hessian_by_columns(model, zm, count))(z)
    count = count + num * dim
    u = scale * eps  # (M, D): sigma_j eps_mj
    f_mm = -jnp.mean(hess, axis=0)
    f_ms = -jnp.einsum("mij,mj->ij", hess, u) / num
    f_ss = -jnp.einsum("mi,mij,mj->ij", u, hess, u) / num - jnp.diag(jnp.mean(grads * u, 0))
    full = jnp.block([[f_mm, f_ms], [f_ms.T, f_ss]])
    full = 0.5 * (full + full.T)
    chol = jnp.linalg.cholesky(full)
    ok = jnp.all(jnp.isfinite(chol))
    eye = jnp.eye(2 * dim, dtype=loc.dtype)
    inverse = jax.scipy.linalg.cho_solve((chol, True), eye)
    cov = inverse[:dim, :dim]
    return 0.5 * (cov + cov.T), ok, count


def _plain_start(z0: Array) -> Start:
    dim, dtype = z0.shape[0], z0.dtype
    false = jnp.asarray(False)
    return Start(
        loc=z0,
        scale=jnp.eye(dim, dtype=dtype),
        log_det_scale=jnp.zeros((), dtype),
        precision_diag=jnp.ones(dim, dtype),
        log_joint=jnp.full((), jnp.nan, dtype),
        grad_norm=jnp.full((), jnp.nan, dtype),
        converged=false,
        hessian_ok=false,
        num_iters=jnp.zeros((), jnp.int32),
        num_evals=zero_count(),
    )


def _fullrank_unpack(st: Start, dim: int) -> Callable[[Array], tuple[Array, Array, Array]]:
    rows, cols = jnp.tril_indices(dim)
    diagonal = rows == cols

    def unpack(theta: Array) -> tuple[Array, Array, Array]:
        a, packed = theta[:dim], theta[dim:]
        packed = jnp.where(diagonal, jnp.exp(packed), packed)
        b = jnp.zeros((dim, dim), theta.dtype).at[rows, cols].set(packed)
        log_det = st.log_det_scale + jnp.sum(jnp.where(diagonal, theta[dim:], 0.0))
        return st.loc + st.scale @ a, st.scale @ b, log_det

    return unpack


def _meanfield_unpack(
    st: Start, dim: int, *, from_precision: bool
) -> Callable[[Array], tuple[Array, Array, Array]]:
    # The mean-field optimum on a Gaussian is sigma_i = P_ii^(-1/2): start there.
    s0 = -0.5 * jnp.log(st.precision_diag) if from_precision else jnp.zeros(dim, st.loc.dtype)

    def unpack(theta: Array) -> tuple[Array, Array, Array]:
        s = s0 + theta[dim:]
        return st.loc + st.scale @ theta[:dim], jnp.exp(s), jnp.sum(s)

    return unpack


def _check_num_draws(num_draws: Any, family: str, antithetic: bool, dim: int) -> int:
    if num_draws is None:
        m = max(30, 2 * dim + 2) if family == "fullrank" else 30
        return m + (m % 2 if antithetic else 0)
    m = check_draws(num_draws, "num_draws", "dadvi")
    if antithetic and m % 2:
        raise ValueError(
            f"dadvi: antithetic draws come in pairs: `num_draws` must be even; got {m}."
        )
    if family == "fullrank":
        need = 2 * dim if antithetic else dim + 1
        if m < need:
            raise ValueError(
                f"dadvi: family='fullrank' needs draws that span R^D (D = {dim}): "
                f"`num_draws` >= {need} with antithetic={antithetic}; got {m}. Below that "
                "the objective is unbounded (log|A| grows off the span of the draws)."
            )
    return m
