r"""Low-rank-plus-diagonal Gaussian :math:`\mathcal N(\mu, FF^\top + \mathrm{diag}(d))`.

With :math:`F\in\mathbb R^{K\times r}` and :math:`d > 0`, everything goes through the
:math:`r\times r` *capacitance* matrix :math:`C = I_r + F^\top D^{-1}F` and its Cholesky
factor :math:`L_C` (:math:`D = \mathrm{diag}(d)`), in :math:`O(Kr^2)`; no :math:`K\times K`
matrix is formed or factorized (except by :meth:`covariance`, on request):

- Woodbury: :math:`\Sigma^{-1} = D^{-1} - D^{-1}F C^{-1}F^\top D^{-1}`, so
  :math:`v^\top\Sigma^{-1}v = \sum_i v_i^2/d_i - \lVert L_C^{-1}F^\top D^{-1}v\rVert^2`;
- matrix determinant lemma: :math:`\log|\Sigma| = \log|C| + \sum_i\log d_i`,
  :math:`\log|C| = 2\sum_j\log (L_C)_{jj}`;
- sampling: :math:`x = \mu + F\epsilon_r + \sqrt d\odot\epsilon_K`.

The KL divergences against :class:`~jelbo.Normal`, :class:`~jelbo.MultivariateNormalTriL` and
itself (both directions) are registered in :mod:`jelbo.kl`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jelbo import _checks, _random
from jelbo import bijectors as _bij
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.distributions import Distribution

__all__ = ["LowRankMultivariateNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class LowRankMultivariateNormal(Distribution):
    r"""Gaussian with covariance :math:`\Sigma = FF^\top + \mathrm{diag}(d)`.

    :math:`\log p(x) = -\tfrac12 (x-\mu)^\top\Sigma^{-1}(x-\mu) - \tfrac12\log|\Sigma|
    - \tfrac K2\log 2\pi`, evaluated in :math:`O(Kr^2)` through the capacitance matrix
    (module docstring). ``from_unconstrained(loc, cov_factor, raw_diag)`` maps
    ``cov_diag = softplus(raw_diag)``.

    Attributes:
        loc: mean :math:`\mu`, shape ``(*batch, K)``.
        cov_factor: :math:`F`, shape ``(*batch, K, r)``.
        cov_diag: :math:`d > 0`, shape ``(*batch, K)`` (broadcastable).
    """

    loc: ArrayLike
    cov_factor: ArrayLike
    cov_diag: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    unconstrained_bijectors: ClassVar[dict[str, _bij.Bijector]] = {"cov_diag": _bij.Softplus()}

    def _validate(self) -> None:
        self._shapes()

    def _shapes(self) -> Shape:
        loc, factor, diag = (jnp.shape(v) for v in (self.loc, self.cov_factor, self.cov_diag))
        if len(loc) < 1 or len(factor) < 2 or factor[-2] != loc[-1] or len(diag) < 1:
            raise ValueError(
                "LowRankMultivariateNormal needs `loc` (*batch, K), `cov_factor` "
                f"(*batch, K, r) and `cov_diag` (*batch, K); got `loc` {loc}, `cov_factor` "
                f"{factor}, `cov_diag` {diag}."
            )
        if diag[-1] not in (1, loc[-1]):
            raise ValueError(
                f"LowRankMultivariateNormal: `cov_diag` {diag} must end in K = {loc[-1]} "
                f"(the size of `loc` {loc})."
            )
        return _checks.broadcast_shapes(
            ("loc[..., :-1]", loc[:-1]),
            ("cov_factor[..., :-2]", factor[:-2]),
            ("cov_diag[..., :-1]", diag[:-1]),
        )

    @property
    def batch_shape(self) -> Shape:
        return self._shapes()

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self.loc)[-1:])

    @property
    def rank(self) -> int:
        """:math:`r`, the number of columns of ``cov_factor``."""
        return jnp.shape(self.cov_factor)[-1]

    def factors(self) -> tuple[Array, Array, Array]:
        r"""``(F, d, L_C)``: ``cov_factor`` and ``cov_diag`` broadcast to the batch, and the
        Cholesky factor of the capacitance matrix :math:`C = I_r + F^\top D^{-1} F`."""
        dtype = self.dtype
        k, r = self.event_shape[0], self.rank
        factor = jnp.broadcast_to(jnp.asarray(self.cov_factor, dtype), self.batch_shape + (k, r))
        diag = jnp.broadcast_to(jnp.asarray(self.cov_diag, dtype), self.batch_shape + (k,))
        scaled = factor / jnp.sqrt(diag)[..., None]
        capacitance = jnp.eye(r, dtype=dtype) + jnp.swapaxes(scaled, -1, -2) @ scaled
        return factor, diag, jnp.linalg.cholesky(capacitance)

    def log_det_covariance(self) -> Array:
        r""":math:`\log|\Sigma| = 2\sum_j\log(L_C)_{jj} + \sum_i\log d_i`, shape ``batch``."""
        _, diag, chol = self.factors()
        return _log_det(diag, chol)

    def inverse_quadratic(self, v: ArrayLike) -> Array:
        r""":math:`v^\top\Sigma^{-1}v` by Woodbury, for ``v`` of shape ``(*extra, *batch, K)``."""
        factor, diag, chol = self.factors()
        return _inverse_quadratic(factor, diag, chol, jnp.asarray(v, self.dtype))

    def _log_prob(self, x: Array) -> Array:
        k = self.event_shape[0]
        factor, diag, chol = self.factors()
        maha = _inverse_quadratic(factor, diag, chol, x - self.loc)
        return -0.5 * (maha + _log_det(diag, chol)) - k * _HALF_LOG_2PI

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        k, r = self.event_shape[0], self.rank
        shape = sample_shape + self.batch_shape
        eps = _random.normal(key, (math.prod(shape) * (k + r),), self.dtype)
        eps = eps.reshape(shape + (k + r,))
        factor = jnp.asarray(self.cov_factor, self.dtype)
        low_rank = jnp.einsum("...kr,...r->...k", factor, eps[..., k:])
        return low_rank + self.loc + jnp.sqrt(self.cov_diag) * eps[..., :k]

    def _entropy(self) -> Array:
        k = self.event_shape[0]
        return 0.5 * self.log_det_covariance() + k * (0.5 + _HALF_LOG_2PI)

    def _mean(self) -> Array:
        return jnp.broadcast_to(
            jnp.asarray(self.loc, self.dtype), self.batch_shape + self.event_shape
        )

    def _mode(self) -> Array:
        return self._mean()

    def _variance(self) -> Array:
        factor, diag, _ = self.factors()
        return jnp.sum(jnp.square(factor), axis=-1) + diag

    def _covariance(self) -> Array:
        factor, diag, _ = self.factors()
        return factor @ jnp.swapaxes(factor, -1, -2) + diag[..., None] * jnp.eye(
            diag.shape[-1], dtype=diag.dtype
        )


def _log_det(diag: Array, chol: Array) -> Array:
    log_diag_chol = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))
    return 2.0 * jnp.sum(log_diag_chol, axis=-1) + jnp.sum(jnp.log(diag), axis=-1)


def _inverse_quadratic(factor: Array, diag: Array, chol: Array, v: Array) -> Array:
    """``v^T Σ^-1 v`` for ``v`` (..., K) broadcasting against the batch (see
    :func:`_woodbury_terms`)."""
    batch = jnp.broadcast_shapes(v.shape[:-1], diag.shape[:-1])
    v = jnp.broadcast_to(v, batch + v.shape[-1:])
    return _woodbury_terms(factor, diag, chol, v[..., None])


def _woodbury_terms(factor: Array, diag: Array, chol: Array, columns: Array) -> Array:
    r""":math:`\sum_c v_c^\top\Sigma^{-1}v_c` over the columns of ``columns`` (..., K, m), as
    :math:`\sum_c \lVert\tilde v_c - \tilde F u_c\rVert^2 + \lVert u_c\rVert^2` with
    :math:`\tilde v = D^{-1/2}v`, :math:`\tilde F = D^{-1/2}F`, :math:`u = C^{-1}\tilde
    F^\top\tilde v`: two non-negative terms (:math:`e = \tilde v - \tilde F u =
    (I + \tilde F\tilde F^\top)^{-1}\tilde v`, and :math:`\tilde F^\top e = u`). The textbook
    Woodbury difference :math:`\lVert\tilde v\rVert^2 - \lVert L_C^{-1}\tilde F^\top
    \tilde v\rVert^2` subtracts two terms of size :math:`\lVert v\rVert^2/d` where ``diag`` is
    small next to :math:`FF^\top`, and lost every digit (a log-density of 1.8e14 for -48.9)."""
    batch = jnp.broadcast_shapes(columns.shape[:-2], diag.shape[:-1])
    columns = jnp.broadcast_to(columns, batch + columns.shape[-2:])
    root_d = jnp.sqrt(jnp.broadcast_to(diag, batch + diag.shape[-1:]))[..., None]
    scaled_v = columns / root_d
    scaled_f = jnp.broadcast_to(factor, batch + factor.shape[-2:]) / root_d
    r = chol.shape[-1]
    chol = jnp.broadcast_to(chol, batch + (r, r))
    w = jnp.swapaxes(scaled_f, -1, -2) @ scaled_v  # (r, m)
    half = solve_triangular(chol, w, lower=True)
    u = solve_triangular(jnp.swapaxes(chol, -1, -2), half, lower=False)
    e = scaled_v - scaled_f @ u
    return jnp.sum(e * e, axis=(-2, -1)) + jnp.sum(u * u, axis=(-2, -1))


def trace_inverse_product(p: LowRankMultivariateNormal, root: Array) -> Array:
    r""":math:`\mathrm{tr}(\Sigma_p^{-1} S S^\top) = \lVert\Sigma_p^{-1/2}S\rVert_F^2` for
    ``root`` :math:`S` of shape ``(*batch, K, m)`` by Woodbury, in :math:`O(Kmr + mr^2)`.

    Used by the KL divergences in :mod:`jelbo.kl`.
    """
    factor, diag, chol = p.factors()
    return _woodbury_terms(factor, diag, chol, root)
