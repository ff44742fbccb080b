r"""A way out for ill-conditioned posteriors: a Laplace start and a preconditioned Gaussian.

A plain Adam fit of a full-rank Gaussian ``q`` from a standard start (``loc = 0``,
``scale_tril = I``) converges slowly or not at all when the posterior is strongly correlated
or its scales differ by orders of magnitude (a regression intercept and slope with
uncentred covariates, many correlated coefficients): Adam's per-coordinate steps are the
wrong metric, and the distance to travel is large. Two pieces fix it:

1. :func:`laplace_approximation` (implemented in :mod:`jelbo.fit`, re-exported here) finds
   the mode :math:`\hat z` of the log joint by L-BFGS and then Newton steps with the exact
   Hessian (in ``lax.while_loop`` s, so the whole fit compiles), says whether it converged
   (a scale-aware rule: the Newton decrement, the distance to the mode in posterior sds),
   and takes the covariance :math:`\Sigma_0 = (-\nabla^2\log p(x,\hat z))^{-1}`
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

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jelbo._typing import Array
from jelbo.distributions import MultivariateNormalTriL
from jelbo.fit._laplace import LaplaceApproximation, laplace_approximation, multistart_laplace

__all__ = [
    "LaplaceApproximation",
    "PreconditionedParams",
    "laplace_approximation",
    "multistart_laplace",
    "preconditioned_init",
    "preconditioned_q",
]


class PreconditionedParams(NamedTuple):
    r"""Trainable parameters of :func:`preconditioned_q`.

    Attributes:
        shift: :math:`a` in whitened coordinates, ``(D,)``; the mean is :math:`m_0 + L_0a`.
        raw_scale: ``(D, D)``; :math:`B` = its strict lower triangle plus
            :math:`\mathrm{diag}(\exp(\text{diagonal}))`. Its upper triangle is ignored.
    """

    shift: Array
    raw_scale: Array


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
