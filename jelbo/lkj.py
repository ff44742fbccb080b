r"""The LKJ distribution over Cholesky factors of correlation matrices.

:class:`LKJCholesky` is the prior that goes with :class:`jelbo.bijectors.CorrCholesky` and
``jelbo.parameters.corr_cholesky`` (Lewandowski, Kurowicka and Joe 2009; Stan's
``lkj_corr_cholesky``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jelbo import _special
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.distributions import Distribution, static_field

__all__ = ["LKJCholesky"]


class LKJCholesky(Distribution):
    r"""LKJ distribution over the Cholesky factor :math:`L` of a :math:`K\times K` correlation
    matrix :math:`R = LL^\top`, with :math:`p(R)\propto\det(R)^{\eta-1}`.

    The density of the strictly lower triangle of :math:`L` (Lebesgue measure on those
    :math:`K(K-1)/2` free coordinates, the coordinates of
    :class:`~jelbo.bijectors.CorrCholesky`'s log-det-Jacobian), normalized, is

    .. math::
        \log p(L) = \sum_{i=2}^{K}\Big[(K - i + 2\eta - 2)\log L_{ii}
        + \log\Gamma\big(\eta + \tfrac{K-1}2\big) - \log\Gamma\big(\eta + \tfrac{K-i}2\big)
        - \tfrac{i-1}2\log\pi\Big],

    as in Stan and NumPyro. It follows from the onion method, which is also how
    :meth:`sample` draws: row :math:`i` is :math:`(\sqrt{y_i}\,u_i, \sqrt{1-y_i})` with
    :math:`u_i` uniform on the sphere :math:`S^{i-2}` and
    :math:`y_i\sim\mathrm{Beta}(\tfrac{i-1}2, \eta + \tfrac{K-i}2)` (drawn as a ratio of
    gammas so that both :math:`y` and :math:`1 - y` keep their relative precision).
    ``log_prob`` reads only the diagonal of :math:`L`; it does not check that ``L`` is a
    correlation Cholesky factor. Samples are not reparameterized.

    Attributes:
        dim: :math:`K \ge 2`, a static Python int; ``event_shape == (dim, dim)``.
        concentration: :math:`\eta > 0` (``1`` is uniform over correlation matrices), any
            batch shape.
    """

    dim: int = static_field()
    concentration: ArrayLike = 1.0

    def _validate(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 2:
            raise ValueError(f"LKJCholesky: `dim` must be a Python int >= 2; got {self.dim!r}.")

    @property
    def batch_shape(self) -> Shape:
        return tuple(jnp.shape(self.concentration))

    @property
    def event_shape(self) -> Shape:
        return (self.dim, self.dim)

    def _log_prob(self, x: Array) -> Array:
        k = self.dim
        eta = jnp.asarray(self.concentration, jnp.result_type(float, x.dtype))[..., None]
        i = jnp.arange(2, k + 1, dtype=eta.dtype)  # rows 2..K (1-based)
        log_diag = jnp.log(jnp.diagonal(x, axis1=-2, axis2=-1)[..., 1:])
        unnormalized = jnp.sum((k - i + 2.0 * eta - 2.0) * log_diag, axis=-1)
        # log Γ(η + (K-1)/2) - log Γ(η + (K-i)/2) = -log_gamma_difference((i-1)/2, η + (K-i)/2)
        log_norm = jnp.sum(
            -_special.log_gamma_difference(0.5 * (i - 1.0), eta + 0.5 * (k - i)), axis=-1
        ) - 0.25 * k * (k - 1) * math.log(math.pi)
        return unnormalized + log_norm

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        k = self.dim
        dtype = self.dtype
        shape = sample_shape + self.batch_shape
        eta = jnp.broadcast_to(jnp.asarray(self.concentration, dtype), shape)[..., None]
        i = jnp.arange(2, k + 1, dtype=dtype)
        key_a, key_b, key_u = jax.random.split(key, 3)
        g_a = jax.random.gamma(
            key_a, jnp.broadcast_to(0.5 * (i - 1.0), shape + (k - 1,)), dtype=dtype
        )
        g_b = jax.random.gamma(key_b, eta + 0.5 * (k - i), shape + (k - 1,), dtype=dtype)
        total = g_a + g_b
        y, one_minus_y = g_a / total, g_b / total  # y ~ Beta((i-1)/2, η + (K-i)/2)
        normal = jax.random.normal(key_u, shape + (k, k), dtype)
        lower = jnp.tril(normal, -1)
        direction = lower / jnp.linalg.norm(lower, axis=-1, keepdims=True).clip(1e-30)
        zero = jnp.zeros(shape + (1,), dtype)
        radius = jnp.sqrt(jnp.concatenate([zero, y], axis=-1))
        diag = jnp.sqrt(jnp.concatenate([zero + 1.0, one_minus_y], axis=-1))
        return radius[..., None] * direction + diag[..., None] * jnp.eye(k, dtype=dtype)
