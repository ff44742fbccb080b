r"""Pathfinder: Gaussians along an L-BFGS path, the best by ELBO (Zhang et al., JMLR 2022)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jelbo._typing import Array, ArrayLike
from jelbo.distributions import Distribution, MixtureSameFamily, MultivariateNormalTriL
from jelbo.fit import _common, _lbfgs
from jelbo.fit._result import Fit
from jelbo.results import Bound

__all__ = ["pathfinder"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_NEGLIGIBLE_WEIGHT = 0.01
_KHAT_MATCH = 1.0


class _Gaussian(NamedTuple):
    """:math:`\\mathcal N(\\mu, H)` with :math:`H = A A^\\top`,
    :math:`A = \\mathrm{diag}(\\sqrt\\alpha)(I + Q(L - I)Q^\\top)` (Pathfinder's Algorithm 5)."""

    mu: Array  # (D,)
    sqrt_alpha: Array  # (D,)
    q: Array  # (D, 2m), orthonormal columns
    chol: Array  # (2m, 2m), L with L Lᵀ = I + R̃ γ R̃ᵀ
    log_det: Array  # log |H|

    def draw(self, u: Array) -> Array:
        """``mu + A u`` for standard normal ``u`` ``(..., D)``."""
        eye = jnp.eye(self.chol.shape[0], dtype=u.dtype)
        inner = (u @ self.q) @ (self.chol - eye).T  # (..., 2m)
        return self.mu + self.sqrt_alpha * (u + inner @ self.q.T)

    def log_prob_of_noise(self, u: Array) -> Array:
        """``log q(mu + A u)`` from ``u`` ``(..., D)``."""
        dim = u.shape[-1]
        return -0.5 * jnp.sum(u * u, axis=-1) - 0.5 * self.log_det - dim * _HALF_LOG_2PI

    def entropy(self) -> Array:
        dim = self.mu.shape[-1]
        return 0.5 * self.log_det + dim * (0.5 + _HALF_LOG_2PI)

    def scale_tril(self) -> Array:
        """The lower-triangular :math:`L_H` with :math:`L_HL_H^\\top = H`, from the QR
        factorization of :math:`A^\\top` (:math:`O(D^3)`, once, for the returned ``q``)."""
        dim = self.mu.shape[-1]
        a = self.draw(jnp.eye(dim, dtype=self.mu.dtype)) - self.mu  # rows: A e_i = column i
        _, r = jnp.linalg.qr(a)  # a = Aᵀ (row i of `a` is A e_i): Aᵀ = Q R, H = RᵀR
        sign = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(r.dtype)
        return (r * sign[:, None]).T


def _gaussian(state: _lbfgs.State) -> _Gaussian:
    """The Gaussian of an L-BFGS iterate: mean :math:`x - H\\nabla f` (the quasi-Newton step,
    ``x + direction``), covariance :math:`H` (Pathfinder's Algorithms 4–5)."""
    alpha, beta, gamma = _lbfgs.inverse_hessian_factors(state)
    sqrt_alpha = jnp.sqrt(alpha)
    q, r = jnp.linalg.qr(beta / sqrt_alpha[:, None])
    eye = jnp.eye(r.shape[0], dtype=r.dtype)
    inner = eye + r @ gamma @ r.T
    chol = jnp.linalg.cholesky(0.5 * (inner + inner.T))
    # Rounding can make I + R̃γR̃ᵀ indefinite (H is positive definite in exact arithmetic,
    # every kept pair having sᵀy > 0): then the diagonal estimate alone, N(x - αg, diag α).
    ok = jnp.all(jnp.isfinite(chol))
    chol = jnp.where(ok, chol, eye)
    mean = jnp.where(ok, state.x + state.direction, state.x - alpha * state.g)
    log_det = jnp.sum(jnp.log(alpha)) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return _Gaussian(mean, sqrt_alpha, q, chol, log_det)


class _Best(NamedTuple):
    """The best iterate of one path so far."""

    elbo: Array
    iteration: Array
    state: _lbfgs.State  # its L-BFGS state (the Gaussian is rebuilt from it)
    log_weights: Array  # (K,) log p - log q of its ELBO draws


class _Paths(NamedTuple):
    lbfgs: _lbfgs.State
    best: _Best
    trace: Array  # (max_iters + 1,) ELBO per iteration (nan where not reached)
    rounds: Array  # outer iterations (scalar, shared by the paths)
    trials: Array  # line-search trials made by the batch (scalar, shared)


def pathfinder(
    key: Array,
    log_joint: Callable[[Array], Array],
    init: ArrayLike,
    *,
    num_paths: int = 4,
    max_iters: int = 1000,
    history: int = 30,
    num_elbo_draws: int = 5,
    num_draws: int = 2000,
    num_diagnostic_draws: int = _common.DIAGNOSTIC_DRAWS,
    init_radius: float = 2.0,
    gtol: float = 1e-3,
    ftol: float | None = None,
    max_linesearch: int = 30,
    moment_match: int = 1,
) -> Fit:
    r"""Pathfinder variational inference (Zhang, Carpenter, Gelman & Vehtari, JMLR 2022).

    **One path.** L-BFGS (:mod:`jelbo.fit._lbfgs`) minimizes :math:`-\log p(x, z)` from a
    start. At every iterate :math:`z_l` its inverse-Hessian estimate
    :math:`H_l = \mathrm{diag}(\alpha_l) + \beta_l\gamma_l\beta_l^\top` (the paper's
    Algorithms 3–4: the last ``history`` position and gradient differences on a diagonal
    estimate) defines the Gaussian

    .. math:: q_l = \mathcal N\big(z_l + H_l\nabla\log p(x, z_l),\ H_l\big)

    (sampled through the paper's Algorithm 5 factorization, :math:`O(D\,\text{history}^2)`),
    whose ELBO :math:`\frac1K\sum_k\log p(x, z_k) + \mathrm H(q_l)` is estimated from
    :math:`K` = ``num_elbo_draws`` draws (the same standard-normal noise at every iterate,
    so that iterates are compared with common random numbers; the entropy in closed form).
    The path's result is the :math:`q_l` with the largest ELBO.

    **Several paths** (``num_paths`` > 1, vmapped, not a Python loop): the first starts at
    ``init``, the others at ``init`` plus uniform noise in :math:`[-r, r]^D`
    (:math:`r` = ``init_radius``, Stan's default 2). They are combined into the mixture
    :math:`q_0 = \sum_k w_k q^{(k)}` with :math:`w_k \propto \hat Z_k =
    \frac1K\sum_j p(x, z_j)/q^{(k)}(z_j)`, the importance-sampling estimate of each path's
    mass from its ELBO draws: the continuous counterpart of the paper's pooled importance
    resampling, in which a path's share of the resampled draws is proportional to its
    summed weights. A path stuck at a minor mode or far from the posterior gets a
    negligible weight. With one path, :math:`q_0` is its Gaussian.

    **Importance sample and moment matching.** ``num_draws`` draws from :math:`q_0` are
    weighted against ``log_joint`` with PSIS (:func:`jelbo.psis`); ``info["draws"]`` holds
    ``num_draws`` of them resampled with the smoothed weights (what the paper's multi-path
    Pathfinder returns; with replacement), ``info["importance_draws"]`` and
    ``info["log_weights"]`` the weighted sample itself. Pathfinder's Gaussians sit at or
    before the mode, and a posterior's mean is often a few tenths of an sd away from its
    mode (posteriordb's ``nes``, ``sblrc``, ``arK``: 0.31, 0.44 and 0.38 sd for the exact
    Laplace approximation); the PSIS moments are not. So (``moment_match`` rounds, default
    1) the Gaussian with the sample's PSIS-weighted mean and covariance (the covariance
    shrunk towards the current one with :math:`D` pseudo-draws,
    :math:`(\mathrm{ESS}\,\hat\Sigma_w + D\Sigma)/(\mathrm{ESS} + D)`) is formed when the
    sample's :math:`\hat k < 1`, and its own draws (``num_draws``, or
    ``num_diagnostic_draws`` in the last round) give its ELBO, :math:`\hat k` and the next
    round's sample. It replaces the current approximation unless its ELBO is lower by more
    than two standard errors of the difference (on a Gaussian target, Pathfinder's own
    Gaussian is exact and the moments of a sample only add noise). This is importance-weighted
    moment matching (adaptive importance sampling), an addition to the paper;
    ``moment_match=0`` gives the paper's algorithm, with ``q`` = :math:`q_0`.
    ``info["moment_matched"]`` says which was returned; ``info["pathfinder_q"]``,
    ``info["pathfinder_bound"]`` and ``info["pathfinder_pareto_k"]`` describe :math:`q_0`.

    **Convergence** (``Fit.converged``): every path with a mixture weight of at least 1 %
    (all of them, in practice, unless one started in a minor mode or failed far from the
    posterior, which the weights then ignore) stopped its L-BFGS by one of its rules (the
    quasi-Newton decrement :math:`\sqrt{\nabla\log p^\top H\nabla\log p} \le`
    ``gtol`` — the distance to the mode in the posterior sds that :math:`H` implies; the
    relative decrease of :math:`-\log p` below ``ftol``; or a line search that failed where
    the quadratic model predicts no decrease the objective could resolve; all once
    :math:`H` holds :math:`\min(D, \text{history})` pairs), not by ``max_iters`` or a failed
    line search. Pathfinder only needs the path to pass near the posterior; ``False`` says
    the optimizer stopped early, and ``pareto_k`` says whether ``q`` is usable anyway.

    **Evaluations** (``Fit.num_evals``): every value-and-gradient of the L-BFGS
    (line-search trials included), :math:`K` values per iterate, ``num_draws`` for the
    importance sample and the draws of each moment-matching round that was tried. The
    paths run as one vmapped batch: while some paths still search or iterate, the stopped
    ones are evaluated and discarded, and those evaluations count too
    (``info["path_num_evals"]`` has what each path itself needed).

    Args:
        key: PRNG key (starts, ELBO draws, importance sample, diagnostics).
        log_joint: :math:`\log p(x, z)` up to a constant, a scalar function of ONE
            unconstrained vector ``z`` of shape ``(D,)``; differentiable. ``NaN`` counts as
            :math:`-\infty`.
        init: the start, ``(D,)`` floating; the fit runs in its dtype.
        num_paths: the number of paths (static).
        max_iters: the most L-BFGS iterations per path (static).
        history: L-BFGS history size (static). The paper and Stan use 5–6, which costs
            :math:`O(D\cdot 36)` per iterate; 30 made L-BFGS 5x faster on posteriordb's
            26-dimensional ``diamonds`` (140 instead of 740 iterations) and its Gaussians'
            sds 0.85–1.1x instead of 0.42–1.3x the reference, for a per-iterate cost that is
            still small next to one evaluation of a model with data.
        num_elbo_draws: :math:`K`, draws per iterate for its ELBO (static, >= 1).
        num_draws: the importance sample's size (static, >= 2; Stan draws 1,000 per path).
        num_diagnostic_draws: draws from the final moment-matched Gaussian for its ELBO and
            :math:`\hat k` (static, >= 2; see :mod:`jelbo.fit._common`).
        init_radius: half-width of the uniform jitter of the starts of paths 2, 3, ...
        gtol: the decrement tolerance (in posterior sds, scale-free).
        ftol: the relative-objective tolerance; ``None``: 100 machine epsilons of the dtype.
        max_linesearch: the most line-search trials per iteration (static).
        moment_match: rounds of moment matching (static, >= 0).

    Returns:
        A :class:`jelbo.fit.Fit`. ``q``: with one path a ``MultivariateNormalTriL``; with
        several a ``MixtureSameFamily`` of ``num_paths + 1`` of them (one static type for
        either outcome): component 0 is the moment-matched Gaussian, with all the weight
        when it was used and none otherwise, the others are the paths' Gaussians with
        their mixture weights (none when the moment-matched one was used). ``bound`` and
        ``pareto_k`` are those of ``q``. ``num_iters``: iterations of the batch (the
        longest path's). ``info``: ``elbo`` ``(P,)`` each path's chosen ELBO estimate,
        ``best_iter`` ``(P,)``, ``elbo_trace`` ``(P, max_iters + 1)`` (the estimate at
        every iterate, ``nan`` where not reached and at the start), ``path_converged``,
        ``path_status`` (:class:`jelbo.fit._lbfgs.Status` codes), ``path_num_iters``,
        ``path_num_evals``, ``grad_norm`` and ``decrement`` at each path's last iterate,
        ``mixture_log_weights`` ``(P,)``, ``pathfinder_q``, ``pathfinder_bound``,
        ``pathfinder_pareto_k``, ``moment_matched``, ``moment_match_bounds`` and
        ``moment_match_pareto_k`` (per round; ``-inf``/``inf`` for rounds not tried),
        ``importance_draws`` ``(num_draws, D)``, ``log_weights`` (their normalized PSIS log
        weights), ``draws`` ``(num_draws, D)`` (resampled), and the evaluation split
        ``num_evals_algorithm`` and ``num_evals_diagnostics``.

    Raises:
        TypeError, ValueError: at trace time, for a bad ``key``, ``log_joint``, ``init``
            (not a floating ``(D,)`` array) or option.
    """
    caller = "pathfinder"
    z0 = _common.check_problem(caller, key, log_joint, init)
    num_paths = _common.check_positive(num_paths, "num_paths", caller)
    max_iters = _common.check_positive(max_iters, "max_iters", caller)
    history = _common.check_positive(history, "history", caller)
    num_elbo_draws = _common.check_positive(num_elbo_draws, "num_elbo_draws", caller)
    max_linesearch = _common.check_positive(max_linesearch, "max_linesearch", caller)
    num_diagnostic_draws = _common.check_draws(num_diagnostic_draws, "num_diagnostic_draws", caller)
    num_draws = _common.check_draws(num_draws, "num_draws", caller)
    for value, name in ((init_radius, "init_radius"), (gtol, "gtol")):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{caller}: `{name}` must be a finite float >= 0; got {value!r}.")
    if isinstance(moment_match, bool) or not isinstance(moment_match, int) or moment_match < 0:
        raise TypeError(
            f"{caller}: `moment_match` must be an int >= 0 (rounds); got {moment_match!r}."
        )
    if ftol is not None and not (isinstance(ftol, (int, float)) and ftol >= 0):
        raise ValueError(f"{caller}: `ftol` must be a float >= 0 or None; got {ftol!r}.")

    dtype, dim = z0.dtype, z0.shape[0]
    options = _lbfgs.Options(
        max_iters=max_iters,
        history=history,
        gtol=float(gtol),
        ftol=ftol,
        max_linesearch=max_linesearch,
    )
    model = _common.CountedLogJoint(log_joint)
    key_starts, key_noise, key_diag, key_match, key_resample = jax.random.split(key, 5)
    jitter = jax.random.uniform(
        key_starts, (num_paths, dim), dtype, minval=-init_radius, maxval=init_radius
    )
    starts = z0 + jitter.at[0].set(0.0)
    noise = jax.random.normal(key_noise, (num_paths, num_elbo_draws, dim), dtype)

    paths = _run_paths(model, starts, noise, options)
    gaussians = jax.vmap(_gaussian)(paths.best.state)
    trils = jax.vmap(_Gaussian.scale_tril)(gaussians)
    # A path that never had a finite point (a non-finite log joint at its start) has no
    # Gaussian: a unit one at its start stands in, with zero weight.
    finite = (
        jnp.all(jnp.isfinite(gaussians.mu), -1)
        & jnp.all(jnp.isfinite(trils), (-2, -1))
        & jnp.all(jnp.diagonal(trils, axis1=-2, axis2=-1) > 0, -1)
    )
    locs = jnp.where(finite[:, None], gaussians.mu, starts)
    trils = jnp.where(finite[:, None, None], trils, jnp.eye(dim, dtype=dtype))
    components = MultivariateNormalTriL(locs, trils)
    log_z = jax.nn.logsumexp(paths.best.log_weights, axis=-1) - math.log(num_elbo_draws)
    mixture_logits = jnp.where(jnp.isnan(log_z) | ~finite, -jnp.inf, log_z)
    # if no path has a finite mass estimate, weigh them equally
    mixture_logits = jnp.where(
        jnp.any(jnp.isfinite(mixture_logits)), mixture_logits, jnp.zeros_like(mixture_logits)
    )
    weights = jax.nn.softmax(mixture_logits)
    if num_paths == 1:
        q0: Distribution = MultivariateNormalTriL(locs[0], trils[0])
        mean0, cov0 = locs[0], trils[0] @ trils[0].T
    else:
        q0 = MixtureSameFamily(mixture_logits, components)
        mean0, cov0 = _mixture_moments(weights, locs, trils)
    # The importance sample: num_draws draws from q0 weighted against log_joint (PSIS).
    diag0 = _common.diagnose(key_diag, q0, log_joint, num_draws=num_draws)
    match = _moment_match(
        jax.random.split(key_match, max(moment_match, 1)),
        log_joint,
        diag0,
        mean0,
        cov0,
        rounds=moment_match,
        num_draws=num_draws,
        num_final_draws=num_diagnostic_draws,
    )
    use = match.use
    diagnosis = diag0._replace(
        bound=jax.tree.map(lambda a, b: jnp.where(use, a, b), match.bound, diag0.bound),
        pareto_k=jnp.where(use, match.pareto_k, diag0.pareto_k),
        num_evals=num_draws + match.num_evals,
    )
    q: Distribution
    if num_paths == 1:
        q = MultivariateNormalTriL(
            jnp.where(use, match.mean, locs[0]), jnp.where(use, match.scale_tril, trils[0])
        )
    else:
        # One static type for either outcome: component 0 is the moment-matched Gaussian,
        # with all the weight when it is used and none otherwise.
        q = MixtureSameFamily(
            jnp.concatenate(
                [
                    jnp.where(use, 0.0, -jnp.inf)[None].astype(dtype),
                    jnp.where(use, -jnp.inf, mixture_logits),
                ]
            ),
            MultivariateNormalTriL(
                jnp.concatenate([match.mean[None], locs]),
                jnp.concatenate([match.scale_tril[None], trils]),
            ),
        )
    pick = jax.random.categorical(key_resample, diag0.smoothed_log_weights, shape=(num_draws,))
    state = paths.lbfgs
    # executed evaluations: the starts, every batched line-search trial, K per batched iterate
    num_evals = num_paths * (1 + paths.trials + num_elbo_draws * paths.rounds)
    info = {
        "elbo": paths.best.elbo,
        "best_iter": paths.best.iteration,
        "elbo_trace": paths.trace,
        "path_converged": _lbfgs.converged(state),
        "path_status": state.status,
        "path_num_iters": state.num_iters,
        "path_num_evals": state.num_evals + num_elbo_draws * state.num_iters,
        "grad_norm": jnp.linalg.norm(state.g, axis=-1),
        "decrement": jnp.sqrt(jnp.maximum(state.decrement, 0.0)),
        "mixture_log_weights": jax.nn.log_softmax(mixture_logits),
        "moment_matched": use,
        "moment_match_bounds": match.bounds,
        "moment_match_pareto_k": match.pareto_ks,
        "pathfinder_q": q0,
        "pathfinder_bound": diag0.bound,
        "pathfinder_pareto_k": diag0.pareto_k,
        "importance_draws": diag0.draws,
        "log_weights": diag0.smoothed_log_weights,
        "draws": diag0.draws[pick],
    }
    # Paths with a negligible share of the mixture (a start in a minor mode, or one whose
    # optimizer failed far from the posterior) do not decide convergence.
    converged = jnp.all(_lbfgs.converged(state) | (weights < _NEGLIGIBLE_WEIGHT))
    return _common.finish(
        q,
        converged=converged,
        num_evals=num_evals,
        num_iters=paths.rounds,
        diagnosis=diagnosis,
        info=info,
    )


class _Match(NamedTuple):
    """The outcome of :func:`_moment_match`."""

    use: Array  # whether a moment-matched Gaussian replaces q0
    mean: Array  # its mean and scale_tril (meaningless when not `use`)
    scale_tril: Array
    bound: Bound  # its ELBO and k̂ (from its own fresh draws)
    pareto_k: Array
    bounds: Bound  # every round's candidate's ELBO (leading axis: rounds)
    pareto_ks: Array
    num_evals: Array


def _moment_match(
    keys: Array,
    log_joint: Callable[[Array], Array],
    diag0: _common.Diagnosis,
    mean0: Array,
    cov0: Array,
    *,
    rounds: int,
    num_draws: int,
    num_final_draws: int,
) -> _Match:
    r"""Rounds of importance-weighted moment matching from q0's importance sample.

    Round :math:`r` takes the PSIS-weighted mean and covariance of the current sample
    (the covariance shrunk towards the current Gaussian's with :math:`D` pseudo-draws:
    :math:`(\mathrm{ESS}\,\hat\Sigma_w + D\Sigma)/(\mathrm{ESS} + D)`) as the next
    Gaussian, tried when the sample's :math:`\hat k < 1`, and draws from it (``num_draws``
    for the next round, ``num_final_draws`` in the last) to estimate its ELBO and
    :math:`\hat k`. Each candidate replaces the best so far unless its ELBO is lower by more
    than two standard errors of the difference (on a Gaussian target q0 is exact and the
    moments of a sample only add noise).
    """
    dim = mean0.shape[-1]
    dtype = mean0.dtype
    eye = jnp.eye(dim, dtype=dtype)
    best = _Match(
        use=jnp.asarray(False),
        mean=mean0,
        scale_tril=eye,
        bound=diag0.bound,
        pareto_k=diag0.pareto_k,
        bounds=diag0.bound,
        pareto_ks=diag0.pareto_k,
        num_evals=jnp.zeros((), jnp.int32),
    )
    sample, mean, cov = diag0, mean0, cov0
    bounds, ks = [], []
    num_evals = jnp.zeros((), jnp.int32)
    for r in range(rounds):
        size = num_final_draws if r == rounds - 1 else num_draws
        w = jnp.exp(sample.smoothed_log_weights)
        ess = 1.0 / jnp.sum(w * w)
        new_mean = w @ sample.draws
        centred = sample.draws - new_mean
        cov_w = (centred * w[:, None]).T @ centred
        new_cov = (ess * cov_w + dim * cov) / (ess + dim)
        tril = jnp.linalg.cholesky(0.5 * (new_cov + new_cov.T))
        tried = (
            (sample.pareto_k < _KHAT_MATCH)
            & jnp.all(jnp.isfinite(tril))
            & jnp.all(jnp.isfinite(new_mean))
        )
        tril = jnp.where(tried, tril, eye)
        new_mean = jnp.where(tried, new_mean, mean)
        q = MultivariateNormalTriL(new_mean, tril)
        draw = functools.partial(_draw, keys[r], q, log_joint, size)
        skip = functools.partial(_no_draw, size, dim, dtype)
        diag = jax.lax.cond(tried, draw, skip)
        num_evals = num_evals + size * tried.astype(jnp.int32)
        bounds.append(diag.bound)
        ks.append(diag.pareto_k)
        margin = 2.0 * jnp.sqrt(best.bound.stderr**2 + diag.bound.stderr**2)
        better = tried & (diag.bound.value > best.bound.value - margin)
        candidate = _Match(
            jnp.asarray(True),
            new_mean,
            tril,
            diag.bound,
            diag.pareto_k,
            best.bounds,
            best.pareto_ks,
            best.num_evals,
        )
        best = jax.tree.map(lambda a, b, m=better: jnp.where(m, a, b), candidate, best)
        sample, mean, cov = diag, new_mean, tril @ tril.T
    stack = (lambda *xs: jnp.stack(xs)) if rounds else (lambda *xs: xs[0])
    return best._replace(
        bounds=jax.tree.map(stack, *bounds) if rounds else diag0.bound,
        pareto_ks=stack(*ks) if rounds else diag0.pareto_k,
        num_evals=num_evals,
    )


def _draw(
    key: Array, q: Distribution, log_joint: Callable[[Array], Array], size: int
) -> _common.Diagnosis:
    return _common.diagnose(key, q, log_joint, num_draws=size)


def _no_draw(size: int, dim: int, dtype: jnp.dtype) -> _common.Diagnosis:
    """What :func:`_draw` returns when there is nothing to draw (same shapes)."""
    nothing = jnp.full((), -jnp.inf, dtype)
    return _common.Diagnosis(
        bound=Bound(nothing, nothing, nothing, jnp.full((), jnp.inf, dtype), None),
        pareto_k=jnp.full((), jnp.inf, dtype),
        num_evals=size,
        draws=jnp.zeros((size, dim), dtype),
        log_weights=jnp.full((size,), -jnp.inf, dtype),
        smoothed_log_weights=jnp.full((size,), -jnp.inf, dtype),
    )


def _mixture_moments(weights: Array, locs: Array, trils: Array) -> tuple[Array, Array]:
    """Mean and covariance of the Gaussian mixture (laws of total expectation/variance)."""
    mean = weights @ locs
    second = jnp.einsum("k,kij->ij", weights, trils @ jnp.swapaxes(trils, -1, -2))
    centred = locs - mean
    return mean, second + (centred * weights[:, None]).T @ centred


def _elbo_at(
    model: _common.CountedLogJoint, state: _lbfgs.State, noise: Array
) -> tuple[Array, Array]:
    """The ELBO estimate of the iterate's Gaussian and the log weights of its draws."""
    gauss = _gaussian(state)
    draws = gauss.draw(noise)
    log_p = jax.vmap(model.uncounted)(draws)  # counted by the caller: K per batched iterate
    log_w = log_p - gauss.log_prob_of_noise(noise)
    elbo = jnp.mean(log_p) + gauss.entropy()
    return jnp.where(jnp.isnan(elbo), -jnp.inf, elbo), log_w


def _run_paths(
    model: _common.CountedLogJoint, starts: Array, noise: Array, options: _lbfgs.Options
) -> _Paths:
    """Every path's L-BFGS with the ELBO at each iterate, vmapped over the paths.

    The loops are outside the vmap (``while`` any path is running: a line search until every
    running path accepted a step or stopped, then the ELBO of the new iterates), so that the
    evaluations the batch computes can be counted: ``trials`` batched trials and ``rounds``
    batched ELBOs.
    """
    dtype = starts.dtype
    num_paths = starts.shape[0]

    def objective(x: Array) -> tuple[Array, Array]:
        return jax.value_and_grad(lambda z: -model.uncounted(z))(x)

    lbfgs = jax.vmap(lambda x: _lbfgs.init(objective, x, history=options.history))(starts)
    best = _Best(
        elbo=jnp.full((num_paths,), -jnp.inf, dtype),
        iteration=jnp.zeros((num_paths,), jnp.int32),
        state=lbfgs,
        log_weights=jnp.full(noise.shape[:2], -jnp.inf, dtype),
    )
    trace = jnp.full((num_paths, options.max_iters + 1), jnp.nan, dtype)
    zero = jnp.zeros((), jnp.int32)
    step = jax.vmap(lambda st: _lbfgs.step(objective, st, options))

    def search(carry: tuple[_lbfgs.State, Array, Array]) -> tuple[_lbfgs.State, Array, Array]:
        state, accepted, trials = carry
        new, now = step(state)
        frozen = accepted | state.done
        state = jax.tree.map(lambda a, b: jnp.where(_expand(frozen, a), a, b), state, new)
        return state, accepted | (now & ~frozen), trials + 1

    def searching(carry: tuple[_lbfgs.State, Array, Array]) -> Array:
        state, accepted, _ = carry
        return jnp.any(~state.done & ~accepted)

    def iterate(paths: _Paths) -> _Paths:
        state, accepted, trials = jax.lax.while_loop(
            searching, search, (paths.lbfgs, jnp.zeros((num_paths,), bool), paths.trials)
        )
        elbo, log_w = jax.vmap(lambda st, u: _elbo_at(model, st, u))(state, noise)
        best = paths.best
        improve = accepted & ((elbo > best.elbo) | ~(best.elbo > -jnp.inf))
        new_best = _Best(elbo, state.num_iters, state, log_w)
        best = jax.tree.map(lambda a, b: jnp.where(_expand(improve, a), a, b), new_best, best)
        rows = jnp.arange(num_paths)
        trace = paths.trace.at[rows, state.num_iters].set(
            jnp.where(accepted, elbo, paths.trace[rows, state.num_iters])
        )
        return _Paths(state, best, trace, paths.rounds + 1, trials)

    def running(paths: _Paths) -> Array:
        return jnp.any(~paths.lbfgs.done)

    return jax.lax.while_loop(running, iterate, _Paths(lbfgs, best, trace, zero, zero))


def _expand(mask: Array, like: Array) -> Array:
    """``mask`` ``(P,)`` with trailing axes to broadcast against ``like`` ``(P, ...)``."""
    return jnp.reshape(mask, mask.shape + (1,) * (like.ndim - mask.ndim))
