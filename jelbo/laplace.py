r"""A way out for ill-conditioned posteriors: a Laplace start and a preconditioned Gaussian.

A plain Adam fit of a full-rank Gaussian ``q`` from a standard start (``loc = 0``,
``scale_tril = I``) converges slowly or not at all when the posterior is strongly correlated
or its scales differ by orders of magnitude (a regression intercept and slope with
uncentred covariates, many correlated coefficients): Adam's per-coordinate steps are the
wrong metric, and the distance to travel is large. Two pieces fix it:

1. :func:`laplace_approximation` finds the mode :math:`\hat z` of the log joint by L-BFGS
   (``optax.lbfgs`` with its zoom line search, run in a ``lax.while_loop``, so the whole fit
   compiles) and takes the covariance :math:`\Sigma_0 = (-\nabla^2\log p(x,\hat z))^{-1}`
   from the Hessian in the unconstrained space. When the negative Hessian is not positive
   definite (a saddle, a flat direction, an L-BFGS stop short of the mode) its eigenvalues are
   replaced by their absolute values, floored at ``min_eigenvalue_ratio`` times the largest,
   and the result says so (``hessian_ok = False``).
2. :func:`preconditioned_q` parameterizes ``q`` *relative* to that start,

   .. math:: q = \mathcal N\big(m_0 + L_0 a,\ (L_0 B)(L_0 B)^\top\big),

   with trainable :math:`a` (initially 0) and lower-triangular :math:`B` (initially
   :math:`I`, its diagonal through :math:`\exp`), where :math:`(m_0, L_0)` is the Laplace
   approximation. In the whitened coordinates the posterior is close to
   :math:`\mathcal N(0, I)`, so the same optimizer with the same learning rate converges; the
   start is already the Laplace approximation, and the fit corrects it towards the
   variational optimum (skewness, heavier tails the ELBO can see).

Example::

    lap = jax.jit(lambda z0: jelbo.laplace_approximation(log_joint, z0))(jnp.zeros(dim))
    params = jelbo.preconditioned_init(lap)                 # (a = 0, B = I)

    def loss(params, key):
        q = jelbo.preconditioned_q(params, lap)
        return -jelbo.ELBO(num_samples=8, kl="mc", grad_estimator="stl")(key, q, log_joint).value

References: Laplace's method for the start as in Stan's ``laplace`` and many VI codes;
Zhang, Carpenter, Gelman & Vehtari, "Pathfinder: parallel quasi-Newton variational
inference", JMLR 23(306), 2022, for quasi-Newton starts of VI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu
from jax.scipy.linalg import solve_triangular

from jelbo._typing import Array, ArrayLike
from jelbo.distributions import MultivariateNormalTriL

__all__ = [
    "LaplaceApproximation",
    "PreconditionedParams",
    "laplace_approximation",
    "multistart_laplace",
    "preconditioned_init",
    "preconditioned_q",
]


class LaplaceApproximation(NamedTuple):
    r"""A Gaussian :math:`\mathcal N(\hat z, \Sigma_0)` at the mode of a log joint.

    Attributes:
        loc: the mode :math:`\hat z` found by L-BFGS, shape ``(D,)``.
        scale_tril: lower-triangular :math:`L_0` with :math:`L_0L_0^\top = \Sigma_0 =
            (-\nabla^2\log p(x,\hat z))^{-1}` (regularized when ``hessian_ok`` is false),
            ``(D, D)``.
        log_joint: :math:`\log p(x, \hat z)`.
        grad_norm: :math:`\lVert\nabla\log p(x,\hat z)\rVert_2` at the returned point.
        num_steps: L-BFGS iterations taken.
        hessian_ok: whether :math:`-\nabla^2\log p` was positive definite there (no
            regularization needed).
    """

    loc: Array
    scale_tril: Array
    log_joint: Array
    grad_norm: Array
    num_steps: Array
    hessian_ok: Array

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


class PreconditionedParams(NamedTuple):
    r"""Trainable parameters of :func:`preconditioned_q`.

    Attributes:
        shift: :math:`a` in whitened coordinates, ``(D,)``; the mean is :math:`m_0 + L_0a`.
        raw_scale: ``(D, D)``; :math:`B` = its strict lower triangle plus
            :math:`\mathrm{diag}(\exp(\text{diagonal}))`. Its upper triangle is ignored.
    """

    shift: Array
    raw_scale: Array


def laplace_approximation(
    log_joint: Callable[[Array], Array],
    init: ArrayLike,
    *,
    max_steps: int = 1000,
    tol: float = 1e-6,
    memory_size: int = 10,
    min_eigenvalue_ratio: float = 1e-8,
) -> LaplaceApproximation:
    r"""The Laplace approximation of :math:`p(z\mid x)` in the unconstrained space.

    Maximizes ``log_joint`` by L-BFGS (``optax.lbfgs``, zoom line search) from ``init`` until
    the gradient norm falls below ``tol``, an iteration no longer decreases
    :math:`-\log p` (the line search failed, e.g. at float32's resolution), or after
    ``max_steps`` iterations; then it takes
    :math:`\Sigma_0 = P^{-1}` with the precision :math:`P = -\nabla^2\log p(x, \hat z)`
    (``jax.hessian``). Its lower-triangular factor comes from the Cholesky factor of the
    *precision* (no inverse of an ill-conditioned matrix): with :math:`J` the reversal
    permutation and :math:`JPJ = L'L'^\top`, :math:`L_0 = J L'^{-\top} J`. When :math:`P` is
    not positive definite, its eigenvalues :math:`\lambda_i` are replaced by
    :math:`\max(|\lambda_i|, r\max_j|\lambda_j|)` with :math:`r` = ``min_eigenvalue_ratio``
    and ``hessian_ok`` is ``False``. Pure; ``jit`` and ``vmap`` it (e.g. over starting points).

    Args:
        log_joint: :math:`\log p(x, z)` up to a constant, a scalar function of ONE
            unconstrained vector ``z`` of shape ``(D,)``; twice differentiable.
        init: the starting point, shape ``(D,)``, floating.
        max_steps: the most L-BFGS iterations (static).
        tol: stop when :math:`\lVert\nabla\log p\rVert_2 <` ``tol``.
        memory_size: L-BFGS history length.
        min_eigenvalue_ratio: the eigenvalue floor of the fallback, relative to the largest.

    Returns:
        A :class:`LaplaceApproximation`; ``.q`` is the ``MultivariateNormalTriL``.

    Raises:
        ValueError: if ``init`` is not a vector or ``log_joint`` does not return a scalar.
    """
    z0 = _start_vector(init, "laplace_approximation", " vmap over starting points instead.")
    out = jax.eval_shape(log_joint, jax.ShapeDtypeStruct(z0.shape, z0.dtype))
    if getattr(out, "shape", None) != ():
        raise ValueError(
            "laplace_approximation: `log_joint` must return a scalar for one latent of shape "
            f"{z0.shape}; it returned {getattr(out, 'shape', type(out).__name__)}."
        )

    def loss(z: Array) -> Array:
        return -log_joint(z).astype(z0.dtype)

    opt = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry: tuple[Array, optax.OptState, Array]) -> tuple[Array, optax.OptState, Array]:
        z, state, _ = carry
        value, grad = value_and_grad(z, state=state)
        updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=loss)
        new_z = jnp.asarray(optax.apply_updates(z, updates))
        # The line search stores the value at the new point; no decrease means it failed
        # (typically at the float32 noise floor): keep the better point and stop.
        progressed = otu.tree_get(state, "value") < value
        return jnp.where(progressed, new_z, z), state, ~progressed

    def keep_going(carry: tuple[Array, optax.OptState, Array]) -> Array:
        _, state, stalled = carry
        count = otu.tree_get(state, "count")
        grad_norm = otu.tree_norm(otu.tree_get(state, "grad"))
        return (count == 0) | ((count < max_steps) & (grad_norm >= tol) & ~stalled)

    init_carry = (z0, opt.init(z0), jnp.asarray(False))
    mode, state, _ = jax.lax.while_loop(keep_going, step, init_carry)
    value, grad = jax.value_and_grad(loss)(mode)
    precision = -jax.hessian(log_joint)(mode).astype(z0.dtype)
    precision = 0.5 * (precision + precision.T)
    scale_tril, ok = _scale_tril_from_precision(precision, min_eigenvalue_ratio)
    return LaplaceApproximation(
        loc=mode,
        scale_tril=scale_tril,
        log_joint=-value,
        grad_norm=jnp.linalg.norm(grad),
        num_steps=otu.tree_get(state, "count"),
        hessian_ok=ok,
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
    cover the posterior.

    Args:
        key: a PRNG key for the starts.
        log_joint: :math:`\log p(x, z)` of one unconstrained vector ``z`` ``(D,)``.
        init: the centre of the starts, shape ``(D,)``.
        num_starts: how many starts (static).
        radius: half-width of the uniform box around ``init``.
        max_steps, tol, memory_size, min_eigenvalue_ratio: as in
            :func:`laplace_approximation`, for every start.

    Returns:
        ``(best, all)``: the chosen :class:`LaplaceApproximation`, and every start's (leading
        axis ``num_starts``).

    Raises:
        ValueError: if ``init`` is not a vector or ``num_starts`` is not a positive integer.
    """
    centre = _start_vector(init, "multistart_laplace")
    if not isinstance(num_starts, int) or num_starts < 1:
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


def _start_vector(init: ArrayLike, caller: str, hint: str = "") -> Array:
    """``init`` as a floating vector ``(D,)``, or a ValueError naming ``caller``."""
    z0 = jnp.asarray(init)
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        z0 = z0.astype(jnp.result_type(float))
    if z0.ndim != 1:
        raise ValueError(
            f"{caller}: `init` must be one unconstrained vector (D,); got shape {z0.shape}.{hint}"
        )
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


def preconditioned_init(
    base: LaplaceApproximation | MultivariateNormalTriL,
) -> PreconditionedParams:
    r"""The parameters :math:`a = 0,\ B = I` of :func:`preconditioned_q`, for which ``q`` is
    the base (the Laplace approximation) itself."""
    loc = jnp.asarray(base.loc)
    return PreconditionedParams(
        shift=jnp.zeros_like(loc), raw_scale=jnp.zeros(loc.shape + loc.shape[-1:], loc.dtype)
    )


def preconditioned_q(
    params: PreconditionedParams, base: LaplaceApproximation | MultivariateNormalTriL
) -> MultivariateNormalTriL:
    r"""The full-rank Gaussian :math:`\mathcal N(m_0 + L_0a,\ (L_0B)(L_0B)^\top)`.

    :math:`(m_0, L_0)` are ``base``'s ``loc`` and ``scale_tril`` (a
    :class:`LaplaceApproximation` or any ``MultivariateNormalTriL``); no gradient flows into
    them (``stop_gradient``), so an optimizer of ``params`` treats them as constants.
    :math:`B = \mathrm{tril}(R, -1) + \mathrm{diag}(e^{\mathrm{diag} R})` with ``R =
    params.raw_scale``; :math:`L_0B` is lower triangular with a positive diagonal, a valid
    ``scale_tril``.

    Args:
        params: :class:`PreconditionedParams` (``shift`` ``(D,)``, ``raw_scale`` ``(D, D)``);
            batch axes in front are allowed and broadcast against ``base``.
        base: the preconditioner.

    Returns:
        A ``MultivariateNormalTriL``.

    Raises:
        ValueError: if the shapes of ``params`` and ``base`` do not agree.
    """
    loc0 = jax.lax.stop_gradient(jnp.asarray(base.loc))
    tril0 = jax.lax.stop_gradient(jnp.tril(jnp.asarray(base.scale_tril)))
    shift, raw = jnp.asarray(params.shift), jnp.asarray(params.raw_scale)
    dim = loc0.shape[-1]
    if shift.shape[-1:] != (dim,) or raw.shape[-2:] != (dim, dim):
        raise ValueError(
            f"preconditioned_q: `params.shift` {shift.shape} and `params.raw_scale` "
            f"{raw.shape} must end in ({dim},) and ({dim}, {dim}) to match `base.loc` "
            f"{loc0.shape}."
        )
    b = jnp.tril(raw, -1) + jnp.exp(jnp.diagonal(raw, axis1=-2, axis2=-1))[..., None] * jnp.eye(
        dim, dtype=raw.dtype
    )
    loc = loc0 + jnp.einsum("...ij,...j->...i", tril0, shift)
    return MultivariateNormalTriL(loc, tril0 @ b)
