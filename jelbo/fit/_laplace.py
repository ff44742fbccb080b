r"""The Laplace approximation at the mode: L-BFGS, then Newton steps with the exact Hessian.

:func:`laplace_approximation` and :func:`multistart_laplace` (re-exported as
``jelbo.laplace_approximation``, ``jelbo.multistart_laplace`` and from :mod:`jelbo.fit`).
See :mod:`jelbo.laplace` for the preconditioned ``q`` built on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jelbo import _checks
from jelbo._typing import Array, ArrayLike
from jelbo.distributions import MultivariateNormalTriL
from jelbo.fit import _common, _lbfgs

__all__ = ["LaplaceApproximation", "laplace_approximation", "multistart_laplace"]

_NEWTON_C1 = 1e-4
_MAX_HALVINGS = 30
# The objective's resolution: 10 units in the last place of |log p|, at least of 1.
_RESOLUTION_ULPS = 10.0


class LaplaceApproximation(NamedTuple):
    r"""A Gaussian :math:`\mathcal N(\hat z, \Sigma_0)` at the mode of a log joint.

    The first six fields are those of jelbo 0.2 (in that order); the last four are new and
    default to ``None`` for a hand-built value.

    Attributes:
        loc: the mode :math:`\hat z`, shape ``(D,)``.
        scale_tril: lower-triangular :math:`L_0` with :math:`L_0L_0^\top = \Sigma_0 =
            (-\nabla^2\log p(x,\hat z))^{-1}` (regularized when ``hessian_ok`` is false),
            ``(D, D)``.
        log_joint: :math:`\log p(x, \hat z)`.
        grad_norm: :math:`\lVert\nabla\log p(x,\hat z)\rVert_2` at the returned point.
        num_steps: L-BFGS iterations taken.
        hessian_ok: whether :math:`-\nabla^2\log p` was positive definite there (no
            regularization needed).
        converged: whether a stopping rule of :func:`laplace_approximation` was met (not
            an iteration cap or a failed line search away from the mode).
        decrement: the Newton decrement :math:`\lambda = \sqrt{\nabla\log p^\top\Sigma_0
            \nabla\log p}` at ``loc``: the distance to the mode of the local quadratic
            model in units of its standard deviations (scale-free).
        num_evals: evaluations of ``log_joint`` made (value and gradient together count
            once; a Hessian counts ``D``).
        num_newton_steps: Newton steps taken after the L-BFGS.
    """

    loc: Array
    scale_tril: Array
    log_joint: Array
    grad_norm: Array
    num_steps: Array
    hessian_ok: Array
    converged: Array | None = None
    decrement: Array | None = None
    num_evals: Array | None = None
    num_newton_steps: Array | None = None

    @property
    def q(self) -> MultivariateNormalTriL:
        """The Laplace approximation as a jelbo distribution."""
        return MultivariateNormalTriL(self.loc, self.scale_tril)

    @property
    def log_evidence(self) -> Array:
        r"""Laplace's estimate of the mode's probability mass,
        :math:`\log p(x,\hat z) + \tfrac D2\log 2\pi + \log\lvert L_0\rvert`: the log of
        :math:`\int p(x, z)\,dz` over the basin of :math:`\hat z` when the posterior is
        Gaussian there (leading axes of a vmapped approximation are kept)."""
        dim = self.loc.shape[-1]
        log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), -1)
        return self.log_joint + 0.5 * dim * jnp.log(2 * jnp.pi) + log_det


class _Newton(NamedTuple):
    z: Array
    f: Array  # -log p
    g: Array  # its gradient
    scale_tril: Array  # of the (repaired) inverse of the Hessian of f
    ok: Array  # Hessian positive definite
    decrement2: Array  # gᵀ Σ g
    steps: Array
    evals: Array
    stalled: Array  # the last line search found no acceptable step


def laplace_approximation(
    log_joint: Callable[[Array], Array],
    init: ArrayLike,
    *,
    max_steps: int = 1000,
    tol: float = 1e-6,
    memory_size: int = 10,
    min_eigenvalue_ratio: float = 1e-8,
    decrement_tol: float | None = None,
    max_newton_steps: int = 20,
) -> LaplaceApproximation:
    r"""The Laplace approximation of :math:`p(z\mid x)` in the unconstrained space.

    **Mode.** L-BFGS (:mod:`jelbo.fit._lbfgs`: weak-Wolfe line search, stopped when its
    quasi-Newton decrement is below 0.01 sd, when :math:`-\log p` no longer decreases at
    its resolution, or after ``max_steps`` iterations) gets close to the mode; then Newton
    steps with the exact Hessian :math:`P = -\nabla^2\log p` (``jax.hessian``; an
    indefinite :math:`P` repaired as below), each with a backtracking line search, until

    - :math:`\lVert\nabla\log p\rVert_2 <` ``tol`` (jelbo 0.2's rule), or
    - the Newton decrement :math:`\lambda = \sqrt{\nabla\log p^\top P^{-1}\nabla\log p}
      \le` ``decrement_tol`` (scale-aware: :math:`\lambda` is the distance to the mode of
      the quadratic model in posterior standard deviations, whatever the units of
      :math:`z`; by default :math:`\sqrt\epsilon` of the dtype, 1.5e-8 in float64 and
      3.5e-4 in float32), or
    - no step decreases :math:`-\log p` any more while the decrease the model predicts,
      :math:`\lambda^2/2`, is below the resolution of :math:`\log p`
      (:math:`10\,\epsilon\max(1, |\log p|)`): the mode is found to the dtype's precision;

    each of these is ``converged = True``. Near the resolution a full Newton step is also
    accepted when it shrinks the gradient (measured in the old :math:`P^{-1}` norm) to
    less than half, since :math:`\log p` itself can no longer tell. ``max_newton_steps``
    Newton steps, or a line search that fails away from the resolution, stop with
    ``converged = False``.

    **Covariance.** :math:`\Sigma_0 = P^{-1}` at the mode. Its lower-triangular factor
    comes from the Cholesky factor of the *precision* (no inverse of an ill-conditioned
    matrix): with :math:`J` the reversal permutation and :math:`JPJ = L'L'^\top`,
    :math:`L_0 = J L'^{-\top} J`. When :math:`P` is not positive definite, its eigenvalues
    :math:`\lambda_i` are replaced by :math:`\max(|\lambda_i|, r\max_j|\lambda_j|)` with
    :math:`r` = ``min_eigenvalue_ratio`` and ``hessian_ok`` is ``False``. Pure; ``jit`` and
    ``vmap`` it (e.g. over starting points).

    Evaluations (``num_evals``): one per L-BFGS or Newton line-search trial (value and
    gradient), and ``D`` per Hessian (one per column).

    Args:
        log_joint: :math:`\log p(x, z)` up to a constant, a scalar function of ONE
            unconstrained vector ``z`` of shape ``(D,)``; twice differentiable.
        init: the starting point, shape ``(D,)`` (integers are promoted to floats).
        max_steps: the most L-BFGS iterations (static).
        tol: stop when :math:`\lVert\nabla\log p\rVert_2 <` ``tol``.
        memory_size: L-BFGS history length.
        min_eigenvalue_ratio: the eigenvalue floor of the fallback, relative to the largest.
        decrement_tol: stop when the Newton decrement :math:`\lambda \le` this;
            ``None``: :math:`\sqrt\epsilon` of the dtype.
        max_newton_steps: the most Newton steps after the L-BFGS (static; 0: none).

    Returns:
        A :class:`LaplaceApproximation`; ``.q`` is the ``MultivariateNormalTriL``.

    Raises:
        ValueError: at trace time, if ``init`` is not a vector ``(D,)`` with ``D >= 1`` or
            ``log_joint`` does not return a scalar.
        TypeError: if ``log_joint`` is not callable or returns a non-floating value.
    """
    z0 = _common.check_log_joint("laplace_approximation", log_joint, _float_vector(init))
    dtype = z0.dtype
    dim = z0.shape[0]
    eps = float(jnp.finfo(dtype).eps)
    lam_tol = math.sqrt(eps) if decrement_tol is None else float(decrement_tol)

    def log_p(z: Array) -> Array:
        value = jnp.asarray(log_joint(z)).astype(dtype)
        return jnp.where(jnp.isnan(value), -jnp.inf, value)

    def objective(z: Array) -> tuple[Array, Array]:
        return jax.value_and_grad(lambda u: -log_p(u))(z)

    options = _lbfgs.Options(max_iters=max_steps, history=memory_size, gtol=1e-2, max_linesearch=30)
    run = _lbfgs.minimize(objective, z0, options)

    def factor(z: Array) -> tuple[Array, Array]:
        precision = -jax.hessian(log_p)(z)
        precision = 0.5 * (precision + precision.T)
        return _scale_tril_from_precision(precision, min_eigenvalue_ratio)

    def decrement2(scale_tril: Array, g: Array) -> Array:
        w = scale_tril.T @ g
        return jnp.sum(w * w)

    def resolution(f: Array) -> Array:
        return _RESOLUTION_ULPS * eps * jnp.maximum(jnp.abs(f), 1.0)

    def done(st: _Newton) -> Array:
        return (
            (jnp.linalg.norm(st.g) < tol)
            | (st.decrement2 <= lam_tol**2)
            | (st.stalled & (0.5 * st.decrement2 <= resolution(st.f)))
        )

    def keep_going(st: _Newton) -> Array:
        return ~done(st) & ~st.stalled & (st.steps < max_newton_steps) & jnp.isfinite(st.f)

    def newton_step(st: _Newton) -> _Newton:
        direction = -st.scale_tril @ (st.scale_tril.T @ st.g)
        slope = jnp.sum(st.g * direction)  # = -decrement2
        at_resolution = 0.5 * st.decrement2 <= resolution(st.f)

        def trial(carry: tuple[Array, Array, Array, Array, Array]):
            t, _, _, _, evals = carry
            f_t, g_t = objective(st.z + t * direction)
            armijo = jnp.isfinite(f_t) & (f_t <= st.f + _NEWTON_C1 * t * slope)
            shrinks = (
                at_resolution & (t == 1) & (decrement2(st.scale_tril, g_t) < 0.25 * st.decrement2)
            )
            ok = armijo | (shrinks & jnp.all(jnp.isfinite(g_t)))
            return jnp.where(ok, t, 0.5 * t), f_t, g_t, ok, evals + 1

        def searching(carry: tuple[Array, Array, Array, Array, Array]) -> Array:
            _, _, _, accepted, evals = carry
            return ~accepted & (evals < _MAX_HALVINGS)

        one = jnp.ones((), dtype)
        t, f_t, g_t, accepted, evals = jax.lax.while_loop(
            searching, trial, (one, st.f, st.g, jnp.asarray(False), jnp.zeros((), jnp.int32))
        )
        z_new = st.z + t * direction
        tril_new, ok_new = factor(z_new)
        moved = _Newton(
            z=z_new,
            f=f_t,
            g=g_t,
            scale_tril=tril_new,
            ok=ok_new,
            decrement2=decrement2(tril_new, g_t),
            steps=st.steps + 1,
            evals=st.evals + evals + dim,
            stalled=jnp.asarray(False),
        )
        stuck = st._replace(evals=st.evals + evals, stalled=jnp.asarray(True))
        return jax.tree.map(lambda a, b: jnp.where(accepted, a, b), moved, stuck)

    tril0, ok0 = factor(run.x)
    start = _Newton(
        z=run.x,
        f=run.value,
        g=run.grad,
        scale_tril=tril0,
        ok=ok0,
        decrement2=decrement2(tril0, run.grad),
        steps=jnp.zeros((), jnp.int32),
        evals=run.num_evals + dim,
        stalled=jnp.asarray(False),
    )
    final = jax.lax.while_loop(keep_going, newton_step, start)
    return LaplaceApproximation(
        loc=final.z,
        scale_tril=final.scale_tril,
        log_joint=-final.f,
        grad_norm=jnp.linalg.norm(final.g),
        num_steps=run.num_iters,
        hessian_ok=final.ok,
        converged=done(final) & jnp.isfinite(final.f),
        decrement=jnp.sqrt(jnp.maximum(final.decrement2, 0.0)),
        num_evals=final.evals,
        num_newton_steps=final.steps,
    )


def multistart_laplace(
    key: Array,
    log_joint: Callable[[Array], Array],
    init: ArrayLike,
    *,
    num_starts: int = 8,
    radius: float = 2.0,
    max_steps: int = 1000,
    tol: float = 1e-6,
    memory_size: int = 10,
    min_eigenvalue_ratio: float = 1e-8,
    decrement_tol: float | None = None,
    max_newton_steps: int = 20,
) -> tuple[LaplaceApproximation, LaplaceApproximation]:
    r"""Laplace approximations from several starts; the one at the most probable mode first.

    A posterior with several modes traps L-BFGS (and any VI fit started there) in whichever
    basin the start lies in: on posteriordb's HMM (``hmm_drive_0``) a start at 0 finds a mode
    where the second hidden state is unused, 63 nats below the mode the reference draws sit
    in. As Stan does for its chains, this draws ``num_starts`` starts uniformly in
    :math:`[-r, r]^D` around ``init`` (:math:`r` = ``radius``, Stan's default 2), runs
    :func:`laplace_approximation` from each (``vmap``: one compiled program) and picks the
    start whose mode has the largest :attr:`LaplaceApproximation.log_evidence` (the Laplace
    estimate of the mode's mass, not its height) among those with a positive definite
    Hessian and a finite log joint; if there is none, the largest finite log joint.
    Modes that disagree across starts are themselves a warning that one Gaussian ``q`` cannot
    cover the posterior. Each start's ``converged`` and ``num_evals`` are its own (under
    ``vmap`` the batch also computes, and discards, steps of starts that have stopped).

    Args:
        key: a PRNG key for the starts.
        log_joint: :math:`\log p(x, z)` of one unconstrained vector ``z`` ``(D,)``.
        init: the centre of the starts, shape ``(D,)``.
        num_starts: how many starts (static).
        radius: half-width of the uniform box around ``init``.
        max_steps, tol, memory_size, min_eigenvalue_ratio, decrement_tol, max_newton_steps:
            as in :func:`laplace_approximation`, for every start.

    Returns:
        ``(best, all)``: the chosen :class:`LaplaceApproximation`, and every start's (leading
        axis ``num_starts``).

    Raises:
        ValueError: at trace time, if ``init`` is not a vector ``(D,)`` with ``D >= 1``,
            ``log_joint`` does not return a scalar, or ``num_starts`` is not a positive int.
        TypeError: for a ``key`` that is not one PRNG key, or a ``log_joint`` that is not
            callable or returns a non-floating value.
    """
    try:
        _checks.check_key(key)
    except TypeError as err:
        raise TypeError(f"multistart_laplace: {err}") from None
    centre = _common.check_log_joint("multistart_laplace", log_joint, _float_vector(init))
    if isinstance(num_starts, bool) or not isinstance(num_starts, int) or num_starts < 1:
        raise ValueError(
            f"multistart_laplace: `num_starts` must be a positive int; got {num_starts!r}."
        )
    offsets = jax.random.uniform(
        key, (num_starts, *centre.shape), centre.dtype, minval=-radius, maxval=radius
    )
    starts = centre + offsets
    every = jax.vmap(
        lambda z: laplace_approximation(
            log_joint,
            z,
            max_steps=max_steps,
            tol=tol,
            memory_size=memory_size,
            min_eigenvalue_ratio=min_eigenvalue_ratio,
            decrement_tol=decrement_tol,
            max_newton_steps=max_newton_steps,
        )
    )(starts)
    evidence = every.log_evidence
    usable = every.hessian_ok & jnp.isfinite(evidence)
    finite_height = jnp.where(jnp.isfinite(every.log_joint), every.log_joint, -jnp.inf)
    best = jnp.where(
        jnp.any(usable),
        jnp.argmax(jnp.where(usable, evidence, -jnp.inf)),
        jnp.argmax(finite_height),
    )
    chosen = jax.tree.map(lambda leaf: leaf[best], every)
    return chosen, every


def _float_vector(init: ArrayLike) -> Array:
    """``init`` as an array, integers promoted to the default float (as in jelbo 0.2)."""
    z0 = jnp.asarray(init)
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        z0 = z0.astype(jnp.result_type(float))
    return z0


def _scale_tril_from_precision(precision: Array, min_ratio: float) -> tuple[Array, Array]:
    """Lower-triangular ``L`` with ``L L^T = precision^{-1}``, and whether ``precision`` was
    positive definite (else its eigenvalues are made positive first)."""
    dim = precision.shape[-1]
    eye = jnp.eye(dim, dtype=precision.dtype)

    def factor(p: Array) -> Array:
        chol = jnp.linalg.cholesky(p[::-1, ::-1])  # J P J = L' L'^T
        inv = solve_triangular(chol, eye, lower=True)  # L'^{-1}
        return inv.T[::-1, ::-1]  # J L'^{-T} J, lower triangular

    direct = factor(precision)
    ok = jnp.all(jnp.isfinite(direct)) & jnp.all(jnp.diagonal(direct) > 0)
    eigenvalues, vectors = jnp.linalg.eigh(precision)
    magnitude = jnp.abs(eigenvalues)
    floor = min_ratio * jnp.max(magnitude)
    fixed = jnp.maximum(magnitude, jnp.where(floor > 0, floor, 1.0))
    repaired = factor((vectors * fixed) @ vectors.T)
    return jnp.where(ok, direct, repaired), ok
