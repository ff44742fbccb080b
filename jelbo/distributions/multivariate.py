r"""Multivariate families: Gaussians with correlated coordinates and the LKJ distribution.

- :class:`MultivariateNormalTriL`: full-rank :math:`\mathcal N(\mu, LL^\top)`;
- :class:`LowRankMultivariateNormal`: :math:`\mathcal N(\mu, FF^\top + \mathrm{diag}(d))`;
- :class:`LKJCholesky`: Cholesky factors of correlation matrices.

The low-rank-plus-diagonal Gaussian: with :math:`F\in\mathbb R^{K\times r}` and
:math:`d > 0`, everything goes through the :math:`r\times r` *capacitance* matrix
:math:`C = I_r + F^\top D^{-1}F` and its Cholesky factor :math:`L_C`
(:math:`D = \mathrm{diag}(d)`), in :math:`O(Kr^2)`; no :math:`K\times K` matrix is formed
or factorized (except by :meth:`~LowRankMultivariateNormal.covariance`, on request):

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

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jelbo import _checks, _random, _special
from jelbo import constraints as _c
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import Constraint
from jelbo.distributions._util import HALF_LOG_2PI
from jelbo.distributions.base import Distribution
from jelbo.module import static_field

__all__ = ["LKJCholesky", "LowRankMultivariateNormal", "MultivariateNormalTriL"]


class LowRankMultivariateNormal(Distribution):
    r"""Gaussian with covariance :math:`\Sigma = FF^\top + \mathrm{diag}(d)`.

    :math:`\log p(x) = -\tfrac12 (x-\mu)^\top\Sigma^{-1}(x-\mu) - \tfrac12\log|\Sigma|
    - \tfrac K2\log 2\pi`, evaluated in :math:`O(Kr^2)` through the capacitance matrix
    (module docstring). ``from_unconstrained_params(loc=, cov_factor=, cov_diag=u)`` maps
    ``cov_diag = exp(u)`` (its ``arg_constraints``).

    Attributes:
        loc: mean :math:`\mu`, shape ``(*batch, K)``.
        cov_factor: :math:`F`, shape ``(*batch, K, r)``.
        cov_diag: :math:`d > 0`, shape ``(*batch, K)`` (broadcastable).
    """

    loc: ArrayLike
    cov_factor: ArrayLike
    cov_diag: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "loc": _c.real,
        "cov_factor": _c.real,
        "cov_diag": _c.positive,
    }
    support: ClassVar[Constraint] = _c.real

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
        return -0.5 * (maha + _log_det(diag, chol)) - k * HALF_LOG_2PI

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
        return 0.5 * self.log_det_covariance() + k * (0.5 + HALF_LOG_2PI)

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


class MultivariateNormalTriL(Distribution):
    r"""Full-rank Gaussian :math:`\mathcal N(\mu, LL^\top)` with lower-triangular scale :math:`L`.

    :math:`\log p(x) = -\tfrac12\lVert L^{-1}(x-\mu)\rVert^2 - \sum_i\log|L_{ii}|
    - \tfrac K2\log 2\pi`. Only the lower triangle of ``scale_tril`` is read.

    Parameter values are not checked: a singular or non-finite ``scale_tril`` or a non-finite
    loc give NaN or meaningless results rather than an error (shapes are checked at
    construction). :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        loc: mean, shape ``(*batch, K)``.
        scale_tril: Cholesky factor with positive diagonal, shape ``(*batch, K, K)``.
    """

    loc: ArrayLike
    scale_tril: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    # scale_tril maps from K(K+1)/2 unconstrained numbers by FillScaleTriL, whose diagonal is
    # a softplus (unchanged since 0.1); its check accepts any nonzero diagonal (|L_ii| is used).
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "loc": _c.real,
        "scale_tril": _c.softplus_lower_cholesky,
    }
    support: ClassVar[Constraint] = _c.real

    def _validate(self) -> None:
        self._shapes()

    @property
    def batch_shape(self) -> Shape:
        return self._shapes()

    def _shapes(self) -> Shape:
        """The batch shape, after checking ``loc`` (..., K) against ``scale_tril`` (..., K, K)."""
        loc, tril = jnp.shape(self.loc), jnp.shape(self.scale_tril)
        if len(loc) < 1 or len(tril) < 2 or tril[-2:] != (loc[-1], loc[-1]):
            raise ValueError(
                "MultivariateNormalTriL needs `loc` of shape (*batch, K) and `scale_tril` of "
                f"shape (*batch, K, K); got `loc` {loc} and `scale_tril` {tril}."
            )
        return _checks.broadcast_shapes(
            ("loc[..., :-1]", loc[:-1]), ("scale_tril[..., :-2]", tril[:-2])
        )

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self.loc)[-1:])

    def _tril(self) -> Array:
        return jnp.tril(self.scale_tril)

    def _log_prob(self, x: Array) -> Array:
        k = self.event_shape[0]
        diff = x - self.loc
        # The batch may come from `scale_tril` alone (e.g. `loc` (K,), `scale_tril` (B, K, K)).
        diff = jnp.broadcast_to(
            diff, jnp.broadcast_shapes(diff.shape[:-1], self.batch_shape) + (k,)
        )
        tril = jnp.broadcast_to(self._tril(), diff.shape[:-1] + (k, k))
        y = solve_triangular(tril, diff[..., None], lower=True)[..., 0]
        half_log_det = jnp.sum(
            jnp.log(jnp.abs(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1))), -1
        )
        return -0.5 * jnp.sum(y * y, axis=-1) - half_log_det - k * HALF_LOG_2PI

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.batch_shape + self.event_shape
        eps = _random.draw(_random.normal, key, shape, self.dtype, self.loc, (self.scale_tril, 1))
        return jnp.einsum("...ij,...j->...i", self._tril(), eps) + self.loc

    def _entropy(self) -> Array:
        k = self.event_shape[0]
        log_diag = jnp.log(jnp.abs(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)))
        entropy = jnp.sum(log_diag, axis=-1) + k * (0.5 + HALF_LOG_2PI)
        return jnp.broadcast_to(entropy, self.batch_shape)

    def _mean(self) -> Array:
        shape = self.batch_shape + self.event_shape
        return jnp.broadcast_to(jnp.asarray(self.loc, self.dtype), shape)

    def _mode(self) -> Array:
        return self._mean()

    def _covariance(self) -> Array:
        tril = jnp.asarray(self._tril(), self.dtype)
        cov = tril @ jnp.swapaxes(tril, -1, -2)
        return jnp.broadcast_to(cov, self.batch_shape + cov.shape[-2:])

    def _variance(self) -> Array:
        variance = jnp.sum(jnp.square(jnp.asarray(self._tril(), self.dtype)), axis=-1)
        return jnp.broadcast_to(variance, self.batch_shape + self.event_shape)


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
    arg_constraints: ClassVar[dict[str, Constraint]] = {"concentration": _c.positive}
    support: ClassVar[Constraint] = _c.corr_cholesky

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
