r"""Pathfinder: Gaussians along an L-BFGS path, the best by ELBO (Zhang et al., JMLR 2022)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jelbo import _checks
from jelbo._typing import Array, ArrayLike
from jelbo.distributions import Distribution, MultivariateNormalTriL
from jelbo.fit import _common, _lbfgs
from jelbo.fit._result import Fit
from jelbo.mixture import MixtureSameFamily

__all__ = ["pathfinder"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_NEGLIGIBLE_WEIGHT = 0.01
_KHAT_OK = 0.7


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
    history: int = 6,
    num_elbo_draws: int = 5,
    num_draws: int | None = None,
    num_diagnostic_draws: int = _common.DIAGNOSTIC_DRAWS,
    init_radius: float = 2.0,
    gtol: float = 1e-3,
    ftol: float | None = None,
    max_linesearch: int = 30,
    moment_match: bool = True,
) -> Fit:
    r"""Pathfinder variational inference (Zhang, Carpenter, Gelman & Vehtari, JMLR 2022).

    One *path*: L-BFGS (:mod:`jelbo.fit._lbfgs`) minimizes :math:`-\log p(x, z)` from a
    start; at every iterate :math:`z_l` its inverse-Hessian estimate
    :math:`H_l = \mathrm{diag}(\alpha_l) + \beta_l\gamma_l\beta_l^\top` (the paper's
    Algorithms 3–4: the last ``history`` position and gradient differences on a diagonal
    estimate) defines the Gaussian

    .. math:: q_l = \mathcal N\big(z_l + H_l\nabla\log p(x, z_l),\ H_l\big),

    whose ELBO :math:`\frac1K\sum_k\log p(x, z_k) + H(q_l)` is estimated from
    :math:`K` = ``num_elbo_draws`` draws (the same standard-normal noise at every iterate, so
    that iterates are compared with common random numbers; the entropy in closed form). The
    path's result is the :math:`q_l` with the largest ELBO. Cost per iterate: the
    line-search evaluations (usually one) and :math:`K` values; the factors cost
    :math:`O(D\,\text{history}^2)`.

    *Several paths* (``num_paths`` > 1, vmapped): the first starts at ``init``, the others at
    ``init`` plus uniform noise in :math:`[-r, r]^D` (:math:`r` = ``init_radius``, Stan's
    default 2). The returned ``q`` is the mixture :math:`\sum_k w_k q^{(k)}` of the paths'
    Gaussians with :math:`w_k \propto \hat Z_k = \frac1K\sum_j p(x, z_j)/q^{(k)}(z_j)` (the
    importance-sampling estimate of each path's mass from its ELBO draws): the continuous
    counterpart of the paper's pooled importance resampling, in which a path's share of the
    resampled draws is proportional to its summed weights. A path stuck at a minor mode or
    far from the posterior gets a negligible weight. ``num_diagnostic_draws`` draws from
    ``q`` are then importance-weighted against ``log_joint``; their PSIS :math:`\hat k` is
    ``Fit.pareto_k`` and ``Fit.info["draws"]`` holds ``num_draws`` of them resampled with
    the PSIS weights (as the paper's multi-path Pathfinder returns; with replacement, so at
    most ``num_diagnostic_draws`` of them are distinct; no further evaluations). For
    weighted estimates use ``info["diagnostic_draws"]`` with ``info["log_weights"]``.

    Convergence (``Fit.converged``): every path with a mixture weight of at least 1 % (all
    of them, in practice, unless one started in a minor mode or failed far from the
    posterior, which the weights then ignore) stopped its L-BFGS by one of its rules (the
    quasi-Newton decrement :math:`\sqrt{\nabla\log p^\top H\nabla\log p} \le` ``gtol`` —
    the distance to the mode in the posterior sds that :math:`H` implies; the relative
    decrease of :math:`-\log p` below ``ftol``; or a line search that failed where the
    quadratic model predicts no decrease the objective could resolve), not by ``max_iters``
    or a failed line search. The paper's Pathfinder only needs the path to pass near the
    posterior; a ``False`` here says the optimizer stopped early, and ``pareto_k`` says
    whether ``q`` is usable anyway.

    Evaluations (``Fit.num_evals``): every value-and-gradient of the L-BFGS (line-search
    trials included), :math:`K` per iterate, and ``num_diagnostic_draws``. The paths run as
    one vmapped batch: while some paths still search or iterate, the stopped ones are
    evaluated and discarded, and those evaluations count too (``info["path_num_evals"]``
    has what each path itself needed).

    Args:
        key: PRNG key (starts, ELBO draws, diagnostics).
        log_joint: :math:`\log p(x, z)` up to a constant, a scalar function of ONE
            unconstrained vector ``z`` of shape ``(D,)``; differentiable.
        init: the start, ``(D,)`` floating; the fit runs in its dtype.
        num_paths: the number of paths (static); 1 gives single-path Pathfinder with ``q``
            a ``MultivariateNormalTriL``.
        max_iters: the most L-BFGS iterations per path (static).
        history: L-BFGS history size (static): the rank of :math:`H`'s correction is at
            most twice this.
        num_elbo_draws: :math:`K`, draws per iterate for its ELBO (static, >= 1).
        num_draws: how many PSIS-resampled draws to return in ``info["draws"]`` (static;
            ``None``: ``num_diagnostic_draws``).
        num_diagnostic_draws: draws from ``q`` for ``bound``, ``pareto_k`` and the
            resampling (static, >= 2; see :mod:`jelbo.fit._common` for the default).
        init_radius: half-width of the uniform jitter of the starts of paths 2, 3, ...
        gtol: the decrement tolerance (in posterior sds, scale-free).
        ftol: the relative-objective tolerance; ``None``: 100 machine epsilons of the dtype.
        max_linesearch: the most line-search trials per iteration (static).

    Returns:
        A :class:`jelbo.fit.Fit`. ``q``: ``MultivariateNormalTriL`` for one path, else a
        ``MixtureSameFamily`` of ``num_paths`` of them. ``num_iters``: iterations of the
        batch (the longest path's). ``info``: ``elbo`` ``(P,)`` the chosen ELBO estimate
        of each path, ``best_iter`` ``(P,)``, ``elbo_trace`` ``(P, max_iters + 1)`` (the
        ELBO estimate at every iterate, ``nan`` where not reached or at the start),
        ``path_converged``, ``path_status`` (:class:`jelbo.fit._lbfgs.Status` codes),
        ``path_num_iters``, ``path_num_evals``, ``grad_norm`` and ``decrement`` at each
        path's last iterate, ``mixture_log_weights`` ``(P,)``, ``diagnostic_draws``
        ``(S, D)`` with their PSIS ``log_weights`` (normalized), ``draws``
        ``(num_draws, D)``, and the evaluation split ``num_evals_algorithm``,
        ``num_evals_diagnostics``.

    Raises:
        TypeError, ValueError: at trace time, for a bad ``key``, ``log_joint``, ``init``
            (not a floating ``(D,)`` array) or option.
    """
    caller = "pathfinder"
    z0 = _common.check_problem(caller, key, log_joint, init)
    num_paths = _positive(num_paths, "num_paths", caller)
    max_iters = _positive(max_iters, "max_iters", caller)
    history = _positive(history, "history", caller)
    num_elbo_draws = _positive(num_elbo_draws, "num_elbo_draws", caller)
    max_linesearch = _positive(max_linesearch, "max_linesearch", caller)
    num_diagnostic_draws = _common.check_draws(num_diagnostic_draws, "num_diagnostic_draws", caller)
    num_draws = (
        num_diagnostic_draws if num_draws is None else _positive(num_draws, "num_draws", caller)
    )
    for value, name in ((init_radius, "init_radius"), (gtol, "gtol")):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{caller}: `{name}` must be a finite float >= 0; got {value!r}.")
    if not isinstance(moment_match, bool):
        raise TypeError(f"{caller}: `moment_match` must be a bool; got {moment_match!r}.")
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
    diag0 = _common.diagnose(key_diag, q0, log_joint, num_draws=num_diagnostic_draws)

    # Importance-weighted moment matching: the Gaussian with the PSIS moments of q0's draws
    # (the moments of the paper's PSIS-resampled draws), its covariance shrunk towards q0's
    # with D pseudo-draws; used when those moments are reliable (k̂ < 0.7).
    w = jnp.exp(diag0.smoothed_log_weights)
    ess = 1.0 / jnp.sum(w * w)
    mean1 = w @ diag0.draws
    centred = diag0.draws - mean1
    cov_w = (centred * w[:, None]).T @ centred
    cov1 = (ess * cov_w + dim * cov0) / (ess + dim)
    tril1 = jnp.linalg.cholesky(0.5 * (cov1 + cov1.T))
    use = (
        moment_match
        & (diag0.pareto_k < _KHAT_OK)
        & jnp.all(jnp.isfinite(tril1))
        & jnp.all(jnp.isfinite(mean1))
    )
    tril1 = jnp.where(use, tril1, jnp.eye(dim, dtype=dtype))
    mean1 = jnp.where(use, mean1, mean0)
    q1 = MultivariateNormalTriL(mean1, tril1)
    if moment_match:
        diag1 = jax.lax.cond(
            use,
            lambda: _common.diagnose(key_match, q1, log_joint, num_draws=num_diagnostic_draws),
            lambda: diag0,
        )
    else:
        diag1 = diag0
    pick_diag = jax.tree.map(lambda a, b: jnp.where(use, a, b), diag1, diag0)
    diagnosis = pick_diag._replace(num_evals=num_diagnostic_draws * (1 + use.astype(jnp.int32)))
    q: Distribution
    if num_paths == 1:
        q = MultivariateNormalTriL(jnp.where(use, mean1, locs[0]), jnp.where(use, tril1, trils[0]))
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
                jnp.concatenate([mean1[None], locs]), jnp.concatenate([tril1[None], trils])
            ),
        )
    pick = jax.random.categorical(key_resample, diagnosis.smoothed_log_weights, shape=(num_draws,))
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
        "pathfinder_q": q0,
        "pathfinder_bound": diag0.bound,
        "pathfinder_pareto_k": diag0.pareto_k,
        "diagnostic_draws": diagnosis.draws,
        "log_weights": diagnosis.smoothed_log_weights,
        "draws": diagnosis.draws[pick],
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


def _mixture_moments(weights: Array, locs: Array, trils: Array) -> tuple[Array, Array]:
    """Mean and covariance of the Gaussian mixture (laws of total expectation/variance)."""
    mean = weights @ locs
    second = jnp.einsum("k,kij->ij", weights, trils @ jnp.swapaxes(trils, -1, -2))
    centred = locs - mean
    return mean, second + (centred * weights[:, None]).T @ centred


def _positive(value: object, name: str, caller: str) -> int:
    try:
        return _checks.check_positive_int(value, name)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{caller}: {err}") from None


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
