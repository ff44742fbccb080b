r"""Continuous families: on the real line (:class:`Normal`, :class:`Laplace`,
:class:`StudentT`), the positive line, the unit interval and the simplex.

:class:`Normal`, :class:`Laplace` and :class:`StudentT` are location-scale families,
reparameterized as :math:`x = \mu + \sigma\epsilon`.

:class:`Gamma`, :class:`Beta` and :class:`Dirichlet` are reparameterized by *implicit*
differentiation of the sampler (Figurnov, Mohamed & Mnih 2018, "Implicit reparameterization
gradients"): for :math:`z = F^{-1}(u; \alpha)`, :math:`\partial z/\partial\alpha =
-(\partial F(z;\alpha)/\partial\alpha)/p(z;\alpha)`, which needs no inverse CDF. Beta and
Dirichlet draws are normalized Gamma draws, generated in log space (so that tiny
concentrations neither underflow nor lose their gradient). :class:`Kumaraswamy` and
:class:`ContinuousBernoulli` are reparameterized by their closed-form inverse CDFs.

The scalar-valued families (all but Dirichlet) are :class:`~jelbo.distributions.Factorized`:
the parameters broadcast to ``batch_shape + (K,)``, the last axis is the event and
``log_prob``/``entropy``/KL sum over it. :class:`Dirichlet`'s event is the last axis of
``concentration`` (a point of the simplex).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import digamma, gammaln

from jelbo import _gamma, _random, _special
from jelbo import constraints as _c
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import Constraint
from jelbo.distributions._util import HALF_LOG_2PI, BinaryProbsLogits, common_float, log_scale
from jelbo.distributions.base import Distribution, Factorized, keyword_parameter

__all__ = [
    "Beta",
    "ContinuousBernoulli",
    "Dirichlet",
    "Gamma",
    "Kumaraswamy",
    "Laplace",
    "Normal",
    "StudentT",
]

_EULER_GAMMA = 0.5772156649015329


# --- implicitly reparameterized Gamma draws ------------------------------------------------


@jax.custom_jvp
def _implicit_log_gamma(concentration: Array, log_z: Array) -> Array:
    """Identity on ``log_z`` (a draw of ``log Gamma(concentration, 1)``) whose derivative in
    ``concentration`` is the implicit one, ``d log z / d alpha``."""
    return log_z


@_implicit_log_gamma.defjvp
def _implicit_log_gamma_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]):
    alpha, log_z = primals
    d_alpha, d_log_z = tangents
    return log_z, _d_log_gamma_d_alpha(alpha, log_z) * d_alpha + d_log_z


def _d_log_gamma_d_alpha(alpha: Array, log_z: Array) -> Array:
    r""":math:`\partial\log z/\partial\alpha` at fixed CDF value, for :math:`z \sim
    \mathrm{Gamma}(\alpha, 1)`.

    ``lax.random_gamma_grad(alpha, z) / z`` (the implicit gradient :math:`-\partial_\alpha
    P(\alpha, z)/(z\,p(z))`) where :math:`z` is representable; where :math:`z` underflows
    or is tiny (small :math:`\alpha`) the left-tail form :math:`P(\alpha, z) \approx
    z^\alpha/\Gamma(\alpha+1)` gives :math:`(\psi(\alpha+1) - \log z)/\alpha`, exact up to
    a relative :math:`O(z)`. Elementwise and vectorized (``jax.random.gamma``'s own rule
    loops over the elements on CPU).
    """
    tiny = log_z < math.log(jnp.finfo(log_z.dtype).eps)
    z = jnp.exp(jnp.where(tiny, 0.0, log_z))
    bulk = lax.random_gamma_grad(alpha, z) / z  # pyright: ignore[reportCallIssue]
    safe_alpha = jnp.where(tiny, alpha, 1.0)
    tail = (digamma(safe_alpha + 1.0) - jnp.where(tiny, log_z, 0.0)) / safe_alpha
    return jnp.where(tiny, tail, bulk)


def _log_gamma_draw(key: Array, concentration: ArrayLike, shape: Shape, dtype) -> Array:
    """``log z`` with ``z ~ Gamma(concentration, 1)`` of ``shape``, implicitly
    reparameterized in ``concentration`` (which broadcasts against ``shape``); drawn by
    :func:`jelbo._gamma.loggamma` (vectorized rejection, no per-element loop)."""
    concentration = jnp.asarray(concentration, dtype)
    log_z = _gamma.loggamma(key, lax.stop_gradient(concentration), shape, dtype)
    alpha = jnp.broadcast_to(concentration, shape)
    return _implicit_log_gamma(alpha, lax.stop_gradient(log_z))


# --- helpers -------------------------------------------------------------------------------


def _log1mexp(t: Array) -> Array:
    r""":math:`\log(1 - e^{t})` for :math:`t \le 0`, accurate on both sides of
    :math:`-\log 2` (Mächler 2012)."""
    near = t > -math.log(2.0)
    t_near = jnp.where(near, t, -1.0)
    t_far = jnp.where(near, -1.0, t)
    return jnp.where(near, jnp.log(-jnp.expm1(t_near)), jnp.log1p(-jnp.exp(t_far)))


def _log_product(x: Array, y: Array) -> Array:
    """log(x y) for x, y > 0: one rounding where the product is a normal number, the sum of
    the logarithms where it would overflow or underflow."""
    product = x * y
    normal = (product >= jnp.finfo(product.dtype).tiny) & (product < jnp.inf)
    safe = jnp.where(normal, product, 1.0)
    return jnp.where(normal, jnp.log(safe), jnp.log(x) + jnp.log(y))


def _clamp_unit(x: Array, upper: bool = True) -> Array:
    """Draws kept inside the open support: at least ``tiny`` (and at most ``1 - epsneg``, the
    largest float below 1), so that a coordinate rounded to 0 or 1 (small concentrations)
    keeps a finite log-density. The change is below the float resolution of the draw."""
    info = jnp.finfo(x.dtype)
    return jnp.clip(x, info.tiny, 1.0 - info.epsneg if upper else None)


def _harmonic(b: Array) -> Array:
    r"""The harmonic number :math:`H_b = \psi(b+1) + \gamma` (for real :math:`b \ge 0`)."""
    return digamma(b + 1.0) + _EULER_GAMMA


# --- Gamma ---------------------------------------------------------------------------------


class Gamma(Factorized):
    r"""Factorized Gamma with shape :math:`\alpha` (``concentration``) and rate :math:`\beta`.

    :math:`\log p(x) = \sum_i \alpha_i\log\beta_i + (\alpha_i-1)\log x_i - \beta_i x_i
    - \log\Gamma(\alpha_i)` for :math:`x > 0`, evaluated (with Stirling's
    :math:`\log\Gamma(\alpha) = (\alpha-\tfrac12)\log\alpha - \alpha + \tfrac12\log 2\pi +
    \delta(\alpha)`) as :math:`-\alpha\,\phi(u) + \tfrac12\log\alpha - \tfrac12\log 2\pi -
    \delta(\alpha) - \log x` with :math:`u = \beta x/\alpha`, :math:`\phi(u) = u - 1 - \log u
    \ge 0`, so that no terms of size :math:`\alpha\log\alpha` cancel (the textbook sum lost
    3 digits in float64 at :math:`\alpha = 10^{12}` and everything in float32 from
    :math:`10^6`). Samples are reparameterized by implicit
    differentiation (Figurnov et al. 2018): :math:`z = g/\beta` with
    :math:`g \sim \mathrm{Gamma}(\alpha, 1)` drawn in log space.

    Attributes:
        concentration: :math:`\alpha > 0`, shape ``(*batch, K)`` (or broadcastable).
        rate: :math:`\beta > 0`, broadcastable against ``concentration``.
    """

    concentration: ArrayLike
    rate: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "concentration": _c.positive,
        "rate": _c.positive,
    }
    support: ClassVar[Constraint] = _c.positive

    def _log_prob_elementwise(self, x: Array) -> Array:
        a = jnp.asarray(self.concentration, self.dtype)
        rate = jnp.asarray(self.rate, self.dtype)
        a, rate, x = jnp.broadcast_arrays(a, rate, jnp.asarray(x, jnp.result_type(x, a)))
        positive = x > 0
        xs = jnp.where(positive, x, 1.0)
        log_u = _log_product(xs, rate / a)
        interior = (
            -a * _special.expm1_plus(-log_u)  # phi(u) = e^log_u - 1 - log_u
            + 0.5 * jnp.log(a)
            - HALF_LOG_2PI
            - _special.lgamma_correction(a)
            - jnp.log(xs)
        )
        # x = 0 (and outside the support): the textbook sum, 0 log 0 = 0 at a = 1.
        boundary = _special.xlogy(a, rate) + _special.xlogy(a - 1.0, x) - rate * x - gammaln(a)
        return jnp.where(positive, interior, boundary)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        draw = jnp.exp(_log_gamma_draw(key, self.concentration, shape, self.dtype)) / self.rate
        return _clamp_unit(draw, upper=False)

    def _entropy_elementwise(self) -> Array:
        # a + lgamma(a) + (1 - a) psi(a) - log(rate), without its a log a terms cancelling.
        a = jnp.asarray(self.concentration, self.dtype)
        return _special.gamma_entropy(a) - jnp.log(self.rate)

    def _mean(self) -> Array:
        return self._full(self.concentration / jnp.asarray(self.rate, self.dtype))

    def _variance(self) -> Array:
        return self._full(self.concentration / jnp.square(jnp.asarray(self.rate, self.dtype)))

    def _mode(self) -> Array:
        # (alpha - 1)/rate for alpha >= 1; the density is largest at 0 for alpha < 1.
        a = jnp.asarray(self.concentration, self.dtype)
        return self._full(jnp.maximum(a - 1.0, 0.0) / self.rate)


# --- Beta ----------------------------------------------------------------------------------


class Beta(Factorized):
    r"""Factorized Beta with concentrations :math:`a` (``concentration1``, of :math:`x`) and
    :math:`b` (``concentration0``, of :math:`1-x`).

    :math:`\log p(x) = \sum_i (a_i-1)\log x_i + (b_i-1)\log(1-x_i) - \log B(a_i, b_i)`, with
    an accurate :math:`\log B` (jelbo's ``_special.betaln``, not ``jax.scipy``'s, which is off
    by ~1e-7 relative for arguments >= 8). Samples :math:`x = \sigma(\log g_a - \log g_b)`
    with :math:`g_a\sim\mathrm{Gamma}(a,1)`, :math:`g_b\sim\mathrm{Gamma}(b,1)` drawn in log
    space, implicitly reparameterized (Figurnov et al. 2018).

    Attributes:
        concentration1: :math:`a > 0`, shape ``(*batch, K)`` (or broadcastable).
        concentration0: :math:`b > 0`, broadcastable against ``concentration1``.
    """

    concentration1: ArrayLike
    concentration0: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "concentration1": _c.positive,
        "concentration0": _c.positive,
    }
    support: ClassVar[Constraint] = _c.unit_interval

    def _log_prob_elementwise(self, x: Array) -> Array:
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        a, b, x = jnp.broadcast_arrays(a, b, jnp.asarray(x, jnp.result_type(x, a)))
        s = a + b
        # log B(a, b) = (a - 1/2) log(a/s) + (b - 1/2) log(b/s) - log(s/2pi)/2 + delta(a)
        # + delta(b) - delta(s) (Stirling with its exact correction, for every a, b > 0).
        # Inside (0, 1) the a log x + b log(1 - x) and -a log(a/s) - b log(b/s) terms are
        # paired into -a phi(x s/a) - b phi((1 - x) s/b), phi(u) = u - 1 - log u >= 0 (their
        # linear parts cancel exactly), so no terms of size a log a cancel: the textbook sum
        # lost 4 digits in float32 at a = b = 1e6.
        delta_a, delta_b, delta_s = _special.stacked(_special.lgamma_correction, a, b, s)
        corrections = delta_a + delta_b - delta_s
        inside = (x > 0) & (x < 1)
        xi = jnp.where(inside, x, 0.5)
        log1m_xi = jnp.log1p(-xi)
        interior = (
            -a * _special.expm1_plus(-_log_product(xi, s / a))
            - b * _special.expm1_plus(-_log_product(1.0 - xi, s / b))
            - jnp.log(xi)
            - log1m_xi
            + 0.5 * (jnp.log(a) + jnp.log(b) - jnp.log(s))
            - HALF_LOG_2PI
            - corrections
        )
        # 0 and 1 (and outside): the textbook sum with 0 log 0 = 0 at a or b = 1, log B(a, b)
        # from the same Stirling form (its log(a/s), log(b/s) need only absolute precision
        # here) rather than a second, separately compiled betaln.
        log_beta = (
            (a - 0.5) * jnp.log(a / s)
            + (b - 0.5) * jnp.log(b / s)
            - 0.5 * jnp.log(s)
            + HALF_LOG_2PI
            + corrections
        )
        boundary = _special.xlogy(a - 1.0, x) + _special.xlog1py(b - 1.0, -x) - log_beta
        return jnp.where(inside, interior, boundary)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        a, b = self._full(self.concentration1), self._full(self.concentration0)
        shape = (*sample_shape, 2, *self.param_shape)  # one draw for both Gamma variates
        log_g = _log_gamma_draw(key, jnp.stack([a, b]), shape, self.dtype)
        axis = len(sample_shape)
        log_ga = lax.index_in_dim(log_g, 0, axis, keepdims=False)
        log_gb = lax.index_in_dim(log_g, 1, axis, keepdims=False)
        return _clamp_unit(jax.nn.sigmoid(log_ga - log_gb))

    def _entropy_elementwise(self) -> Array:
        # log B(a,b) - (a-1) psi(a) - (b-1) psi(b) + (a+b-2) psi(a+b) = g(a) + g(b) - g(a+b)
        # - psi(a+b) with g the Gamma(c, 1) entropy: no terms of size a log a cancel.
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        s = a + b
        g_a, g_b, g_s = _special.stacked(_special.gamma_entropy, a, b, s)
        return g_a + g_b - g_s - digamma(s)

    def _mean(self) -> Array:
        a, b = self.concentration1, self.concentration0
        return self._full(a / (a + jnp.asarray(b, self.dtype)))

    def _variance(self) -> Array:
        # m (1 - m) / (s + 1) with m = a/s, 1 - m = b/s (no s^3, whose square overflows in
        # float32 gradients from s ~ 1e6).
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        s = a + b
        return self._full((a / s) * (b / s) / (s + 1.0))

    def _mode(self) -> Array:
        # (a-1)/(a+b-2) for a, b > 1; a boundary (0 or 1) where one concentration is <= 1
        # and the density is unbounded or largest there; NaN for a, b < 1 (bimodal) and
        # a = b = 1 (uniform), as in scipy/NumPyro's conventions for the undefined cases.
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        interior = (a > 1) & (b > 1)
        s = jnp.where(interior, a + b - 2.0, 1.0)
        mode = jnp.where(
            interior,
            (a - 1.0) / s,
            jnp.where((a <= 1) & (b > 1), 0.0, jnp.where((a > 1) & (b <= 1), 1.0, jnp.nan)),
        )
        return self._full(mode)


# --- Dirichlet -----------------------------------------------------------------------------


class Dirichlet(Distribution):
    r"""Dirichlet on the simplex :math:`\{x_i > 0, \sum_i x_i = 1\}` of the last axis.

    :math:`\log p(x) = \sum_i(\alpha_i-1)\log x_i - \log B(\alpha)`, :math:`\log B(\alpha) =
    \sum_i\log\Gamma(\alpha_i) - \log\Gamma(\sum_i\alpha_i)` (accurate, jelbo's
    ``_special.lbeta``). Samples are :math:`\mathrm{softmax}(\log g)` of independent
    :math:`g_i\sim\mathrm{Gamma}(\alpha_i, 1)` drawn in log space, implicitly
    reparameterized (Figurnov et al. 2018).

    Attributes:
        concentration: :math:`\alpha > 0`, shape ``(*batch, K)``; batch ``(*batch,)``,
            event ``(K,)``.
    """

    concentration: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {"concentration": _c.positive}
    support: ClassVar[Constraint] = _c.simplex

    def _validate(self) -> None:
        if jnp.ndim(self.concentration) < 1:
            raise ValueError(
                "Dirichlet `concentration` needs a last axis over the K categories; got "
                f"shape {jnp.shape(self.concentration)}."
            )

    @property
    def batch_shape(self) -> Shape:
        return tuple(jnp.shape(self.concentration)[:-1])

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self.concentration)[-1:])

    def _alpha(self) -> Array:
        return jnp.asarray(self.concentration, self.dtype)

    def _log_prob(self, x: Array) -> Array:
        alpha = self._alpha()
        return jnp.sum(_special.xlogy(alpha - 1.0, x), axis=-1) - _special.lbeta(alpha)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.batch_shape + self.event_shape
        log_g = _log_gamma_draw(key, self._alpha(), shape, self.dtype)
        return _clamp_unit(jax.nn.softmax(log_g, axis=-1), upper=False)

    def _entropy(self) -> Array:
        # log B(alpha) + (alpha0 - K) psi(alpha0) - sum_i (alpha_i - 1) psi(alpha_i)
        #   = sum_i g(alpha_i) - g(alpha0) - (K - 1) psi(alpha0),
        # g the Gamma(c, 1) entropy (_special.gamma_entropy): no terms of size a log a cancel.
        alpha = self._alpha()
        k = alpha.shape[-1]
        total = jnp.sum(alpha, axis=-1)
        g = _special.gamma_entropy(jnp.concatenate([alpha, total[..., None]], axis=-1))
        return jnp.sum(g[..., :-1], axis=-1) - g[..., -1] - (k - 1) * digamma(total)

    def _mean(self) -> Array:
        alpha = self._alpha()
        return alpha / jnp.sum(alpha, axis=-1, keepdims=True)

    def _rest(self) -> Array:
        """sum_{j != i} alpha_j for each i, summed (no alpha0 - alpha_i cancelling when one
        concentration dominates)."""
        alpha = self._alpha()
        zero = jnp.zeros_like(alpha[..., :1])
        before = jnp.cumsum(jnp.concatenate([zero, alpha[..., :-1]], axis=-1), axis=-1)
        after = jnp.flip(
            jnp.cumsum(jnp.flip(jnp.concatenate([alpha[..., 1:], zero], axis=-1), -1), -1), -1
        )
        return before + after

    def _variance(self) -> Array:
        # m_i (1 - m_i) / (alpha0 + 1), 1 - m_i = (sum_{j != i} alpha_j) / alpha0.
        alpha = self._alpha()
        total = jnp.sum(alpha, axis=-1, keepdims=True)
        return (alpha / total) * (self._rest() / total) / (total + 1.0)

    def _covariance(self) -> Array:
        alpha = self._alpha()
        total = jnp.sum(alpha, axis=-1, keepdims=True)
        mean = alpha / total
        outer = mean[..., :, None] * mean[..., None, :]
        diag = mean[..., :, None] * jnp.eye(alpha.shape[-1], dtype=alpha.dtype)
        return (diag - outer) / (total[..., None] + 1.0)

    def _mode(self) -> Array:
        # (alpha_i - 1)/(alpha0 - K) where every alpha_i > 1; NaN otherwise (the mode is on
        # the boundary or not unique).
        alpha = self._alpha()
        k = alpha.shape[-1]
        interior = jnp.all(alpha > 1, axis=-1, keepdims=True)
        denom = jnp.where(interior, jnp.sum(alpha, axis=-1, keepdims=True) - k, 1.0)
        return jnp.where(interior, (alpha - 1.0) / denom, jnp.nan)


# --- Kumaraswamy ---------------------------------------------------------------------------


class Kumaraswamy(Factorized):
    r"""Factorized Kumaraswamy with concentrations :math:`a` (``concentration1``) and
    :math:`b` (``concentration0``), a Beta-like law with a closed-form CDF.

    :math:`p(x) = a b x^{a-1}(1-x^a)^{b-1}` on :math:`(0, 1)`, :math:`F(x) = 1-(1-x^a)^b`.
    :math:`\log(1-x^a)` is computed as ``log1mexp(a log x)``. Samples use the inverse CDF
    :math:`x = (1-u^{1/b})^{1/a}` (with :math:`u` and :math:`1-u` equal in law),
    :math:`\log x = \mathrm{log1mexp}(\log(u)/b)/a`, so they are reparameterized and stay
    accurate for :math:`x` near 0 and 1.

    Moments: :math:`\mathbb E[x^n] = b\,B(1+n/a, b)`; entropy
    :math:`(1-1/b) + (1-1/a)H_b - \log(ab)` with :math:`H_b = \psi(b+1)+\gamma`.

    Attributes:
        concentration1: :math:`a > 0`, shape ``(*batch, K)`` (or broadcastable).
        concentration0: :math:`b > 0`, broadcastable against ``concentration1``.
    """

    concentration1: ArrayLike
    concentration0: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "concentration1": _c.positive,
        "concentration0": _c.positive,
    }
    support: ClassVar[Constraint] = _c.unit_interval

    def _log_prob_elementwise(self, x: Array) -> Array:
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        x = jnp.asarray(x, jnp.result_type(x, a))
        # log(1 - x^a) = log1mexp(a log x); at x = 0 it is 0 with the partials of -x^a
        # (d/dx = -a x^(a-1): -1 at a = 1, not 0 * inf = NaN), at x = 1 a constant -inf (so
        # that b = 1's 0 * log 0 = 0 has zero, not NaN, gradients).
        zero, one = x == 0, x == 1
        log_x = jnp.log(jnp.where(zero | one, 0.5, x))
        log1m = jnp.where(zero, -jnp.power(x, a), jnp.where(one, -jnp.inf, _log1mexp(a * log_x)))
        return jnp.log(a) + jnp.log(b) + _special.xlogy(a - 1.0, x) + _special.xlog(b - 1.0, log1m)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        tiny = jnp.finfo(self.dtype).tiny
        u = jax.random.uniform(key, shape, self.dtype, minval=tiny)
        log_x = _log1mexp(jnp.log(u) / self.concentration0) / self.concentration1
        return _clamp_unit(jnp.exp(log_x))

    def _entropy_elementwise(self) -> Array:
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        return (1.0 - 1.0 / b) + (1.0 - 1.0 / a) * _harmonic(b) - jnp.log(a * b)

    def _moments(self) -> tuple[Array, Array]:
        """E[x] and E[x^2] = b B(1 + n/a, b), n = 1, 2, from one (stacked) betaln."""
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        a, b = jnp.broadcast_arrays(a, b)
        first = jnp.stack([1.0 + 1.0 / a, 1.0 + 2.0 / a])
        moments = jnp.exp(jnp.log(b) + _special.betaln(first, jnp.stack([b, b])))
        return moments[0], moments[1]

    def _mean(self) -> Array:
        return self._full(self._moments()[0])

    def _variance(self) -> Array:
        m1, m2 = self._moments()
        return self._full(m2 - jnp.square(m1))

    def _mode(self) -> Array:
        # ((a-1)/(ab-1))^(1/a) for a >= 1, b >= 1, not both 1; NaN otherwise.
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        ok = (a >= 1) & (b >= 1) & ((a > 1) | (b > 1))
        ratio = jnp.where(ok, (a - 1.0) / jnp.where(ok, a * b - 1.0, 1.0), 1.0)
        return self._full(jnp.where(ok, ratio ** (1.0 / a), jnp.nan))


# --- ContinuousBernoulli -------------------------------------------------------------------


def _cb_log_normalizer(logits: Array) -> Array:
    r""":math:`A(\lambda) = \log\int_0^1 e^{\lambda x}dx = \log(\mathrm{expm1}(\lambda)/\lambda)
    = \lambda/2 + \log(\sinh(\lambda/2)/(\lambda/2))`."""
    return 0.5 * logits + _special.log_sinhc(0.5 * logits)


class ContinuousBernoulli(BinaryProbsLogits, Factorized):
    r"""Factorized continuous Bernoulli on :math:`[0, 1]` (Loaiza-Ganem & Cunningham 2019),
    the properly normalized Bernoulli likelihood for grey-level pixels, given by
    ``logits=`` :math:`\lambda` or ``probs=`` :math:`p = \sigma(\lambda)` (exactly one; as
    torch's ``ContinuousBernoulli(probs=, logits=)``).

    :math:`p(x) \propto \sigma(\lambda)^x\sigma(-\lambda)^{1-x} \propto e^{\lambda x}`, so
    :math:`\log p(x) = \sum_i \lambda_i x_i - A(\lambda_i)` with the log-normalizer
    :math:`A(\lambda) = \log\frac{e^\lambda-1}{\lambda} = \frac\lambda2 +
    \log\frac{\sinh(\lambda/2)}{\lambda/2}`, computed by a Taylor series near
    :math:`\lambda = 0` (where the closed form is 0/0) and without overflow for saturated
    logits. Mean :math:`\tfrac12 + \tfrac12 L(\lambda/2)` and variance
    :math:`\tfrac14 L'(\lambda/2)` (:math:`L` the Langevin function). Samples use the
    inverse CDF :math:`x = \mathrm{log1p}(u\,\mathrm{expm1}(\lambda))/\lambda` (for
    :math:`\lambda > 0` through the reflection :math:`x \mapsto 1-x`, :math:`\lambda\mapsto
    -\lambda`), so they are reparameterized. Everything is computed from :math:`\lambda`
    (``probs`` are converted by an accurate logit). ``ContinuousBernoulli(x)`` positionally
    is ``logits`` (jelbo 0.2's meaning; deprecated).

    Attributes:
        logits: :math:`\lambda`, shape ``(*batch, K)`` or ``()``; a property when ``probs``
            was given.
        probs: :math:`\sigma(\lambda) \in (0, 1)`, likewise.
    """

    _probs: ArrayLike | None = keyword_parameter("probs")
    _logits: ArrayLike | None = keyword_parameter("logits")
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "probs": _c.interval(0.0, 1.0),
        "logits": _c.real,
    }
    support: ClassVar[Constraint] = _c.unit_interval
    _legacy_positional: ClassVar[tuple[str, ...]] = ("logits",)
    _legacy_meaning: ClassVar[str] = "logits"

    def log_normalizer(self) -> Array:
        r"""Elementwise :math:`A(\lambda) = \log\int_0^1 e^{\lambda x}dx`, shape
        ``batch_shape + event_shape`` (so :math:`\log p(x) = \sum_i\lambda_i x_i - A_i`)."""
        return self._full(_cb_log_normalizer(jnp.asarray(self.logits, self.dtype)))

    def _log_prob_elementwise(self, x: Array) -> Array:
        logits = jnp.asarray(self.logits, self.dtype)
        return logits * x - _cb_log_normalizer(logits)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        u = jax.random.uniform(key, shape, self.dtype)
        lam = jnp.broadcast_to(jnp.asarray(self.logits, self.dtype), shape)
        # The draw for lambda <= 0 at u, reflected for lambda > 0: x(l, u) = 1 - x(-l, 1-u).
        neg = -jnp.abs(lam)
        v = jnp.where(lam > 0, 1.0 - u, u)
        small = neg > -1e-4
        safe = jnp.where(small, -1.0, neg)
        direct = jnp.log1p(v * jnp.expm1(safe)) / safe
        # u + l u(1-u)/2 + l^2 u(1-u)(1-2u)/6 + O(l^3): relative error < 1e-13 here.
        ns = jnp.where(small, neg, 0.0)
        series = v + ns * v * (1.0 - v) * (0.5 + ns * (1.0 - 2.0 * v) / 6.0)
        x = jnp.where(small, series, direct)
        return jnp.where(lam > 0, 1.0 - x, x)

    def _entropy_elementwise(self) -> Array:
        # A(lambda) - lambda E[x] = log(sinh(y)/y) - y L(y), y = lambda/2: the lambda/2 of
        # both terms cancel analytically (the direct difference lost everything in float32
        # near lambda = 0, where the entropy is -lambda^2/24).
        y = 0.5 * jnp.asarray(self.logits, self.dtype)
        return _special.log_sinhc(y) - y * _special.langevin(y)

    @staticmethod
    def _mean_of(lam: Array) -> Array:
        return 0.5 + 0.5 * _special.langevin(0.5 * lam)

    def _mean(self) -> Array:
        return self._full(self._mean_of(jnp.asarray(self.logits, self.dtype)))

    def _variance(self) -> Array:
        # A''(lambda) = L'(lambda/2)/4.
        return self._full(
            0.25 * _special.langevin_prime(0.5 * jnp.asarray(self.logits, self.dtype))
        )

    def _mode(self) -> Array:
        # The density e^{lambda x} is largest at 1 for lambda > 0 and at 0 for lambda < 0;
        # at lambda = 0 (uniform) this returns 0.
        return self._full((jnp.asarray(self.logits) > 0).astype(self.dtype))


# --- location-scale families on the real line (jelbo 0.1) ------------------------------


class Normal(Factorized):
    r"""Diagonal Gaussian :math:`\mathcal N(x; \mu, \mathrm{diag}(\sigma^2))`.

    :math:`\log p(x) = \sum_i -\tfrac12 ((x_i-\mu_i)/\sigma_i)^2 - \log\sigma_i
    - \tfrac12\log 2\pi`.

    Attributes:
        loc: mean :math:`\mu`, shape ``(*batch, K)``.
        scale: standard deviation :math:`\sigma > 0`, broadcastable to ``loc``.
        log_scale: optional (keyword-only) :math:`\log\sigma`, which then replaces
            ``log(scale)`` wherever the log-scale appears (log-density, entropy, KL), so a
            scale that underflows (``from_log_var(0, -180)``: :math:`\sigma = e^{-90}`, 0 in
            float32) keeps exact entropies and KLs. Set by :meth:`from_log_var`; when given
            it must equal ``log(scale)`` up to rounding.

    Parameter values are not checked: a non-positive, infinite or NaN scale or a non-finite loc
    gives NaN or meaningless results rather than an error (shapes are checked at construction).
    :func:`jelbo.check_parameters` checks them on demand, also under ``jit``."""

    loc: ArrayLike
    scale: ArrayLike
    log_scale: ArrayLike | None = dataclasses.field(default=None, kw_only=True)
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "loc": _c.real,
        "scale": _c.positive,
        "log_scale": _c.real,
    }
    support: ClassVar[Constraint] = _c.real

    @classmethod
    def from_log_var(cls, loc: ArrayLike, log_var: ArrayLike) -> Normal:
        r"""Builds :math:`\mathcal N(\mu, \mathrm{diag}(e^{v}))` from the log-variance :math:`v`.

        ``scale = exp(log_var / 2)``, and ``log_scale = log_var / 2`` is kept so that
        entropies, KLs and log-densities stay exact where the scale underflows.
        """
        log_scale = 0.5 * jnp.asarray(log_var)
        return cls(loc, jnp.exp(log_scale), log_scale=log_scale)

    def _log_scale(self) -> Array:
        return log_scale(self.scale, self.log_scale, self.dtype)

    def _log_prob_elementwise(self, x: Array) -> Array:
        x, loc, scale = common_float(x, self.loc, self.scale)
        # z² with a zero derivative at x == loc also when the scale underflowed (log_scale).
        return -0.5 * _special.squared_standardize(x, loc, scale) - self._log_scale() - HALF_LOG_2PI

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        eps = _random.draw(_random.normal, key, shape, self.dtype, self.loc, self.scale)
        return eps * self.scale + self.loc

    def _entropy_elementwise(self) -> Array:
        return 0.5 + HALF_LOG_2PI + self._log_scale()

    def _mean(self) -> Array:
        return self._full(self.loc)

    def _variance(self) -> Array:
        return self._full(jnp.square(self.scale))

    def _mode(self) -> Array:
        return self._full(self.loc)


class Laplace(Factorized):
    r"""Factorized Laplace, :math:`\log p(x) = \sum_i -\log(2b_i) - |x_i-\mu_i|/b_i`.

    Parameter values are not checked: a non-positive, infinite or NaN scale or a non-finite loc
    give NaN or meaningless results rather than an error (shapes are checked at construction).
    :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        loc: location :math:`\mu`, shape ``(*batch, K)``.
        scale: scale :math:`b > 0`, broadcastable to ``loc``.
    """

    loc: ArrayLike
    scale: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {"loc": _c.real, "scale": _c.positive}
    support: ClassVar[Constraint] = _c.real

    def _log_prob_elementwise(self, x: Array) -> Array:
        x, loc, scale = common_float(x, self.loc, self.scale)
        return -math.log(2.0) - jnp.log(scale) - jnp.abs(_special.standardize(x, loc, scale))

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        eps = _random.draw(_random.laplace, key, shape, self.dtype, self.loc, self.scale)
        return eps * self.scale + self.loc

    def _entropy_elementwise(self) -> Array:
        return 1.0 + math.log(2.0) + jnp.log(self.scale)

    def _mean(self) -> Array:
        return self._full(self.loc)

    def _variance(self) -> Array:
        return self._full(2.0 * jnp.square(self.scale))

    def _mode(self) -> Array:
        return self._full(self.loc)


class StudentT(Factorized):
    r"""Factorized Student-t with ``df`` :math:`\nu`, location :math:`\mu`, scale :math:`\sigma`.

    :math:`\log p(x) = \sum_i \log\Gamma(\tfrac{\nu+1}2) - \log\Gamma(\tfrac\nu2)
    - \tfrac12\log(\nu\pi) - \log\sigma - \tfrac{\nu+1}2\log(1 + t_i^2/\nu)`,
    :math:`t_i = (x_i-\mu_i)/\sigma_i`.

    Parameter values are not checked: ``df <= 0``, a non-positive or NaN scale or a non-finite
    loc give NaN or meaningless results rather than an error (shapes are checked at
    construction). :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        df: degrees of freedom :math:`\nu > 0`, broadcastable to ``loc``.
        loc: location, shape ``(*batch, K)``.
        scale: scale :math:`\sigma > 0`, broadcastable to ``loc``.
    """

    df: ArrayLike
    loc: ArrayLike
    scale: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "df": _c.extended_positive,
        "loc": _c.real,
        "scale": _c.positive,
    }
    support: ClassVar[Constraint] = _c.real

    def _log_prob_elementwise(self, x: Array) -> Array:
        # log Gamma((v+1)/2) - log Gamma(v/2) - log(v pi)/2 = R(v/2) - log(2 pi)/2 with
        # R(h) = log Gamma(h + 1/2) - log Gamma(h) - log(h)/2 -> 0 (jelbo._special): no two
        # large log-gammas are subtracted, so the density stays exact from df 0.1 to 1e10.
        x, df, loc, scale = common_float(x, self.df, self.loc, self.scale)
        t = _special.standardize(x, loc, scale)
        # -(v+1)/2 log1p(w), w = t^2/v: for w < 1 as -t^2/2 (1 + 1/v) + (v+1)/2 (w - log1p(w)),
        # whose df-derivative does not cancel at large df; else without overflowing t^2.
        small = t * t < df
        t_small = jnp.where(small, t, 0.0)
        w = t_small * t_small / df
        near = -0.5 * t_small * t_small * (1.0 + 1.0 / df) + 0.5 * (
            df + 1.0
        ) * _special.x_minus_log1p(w)
        far = -0.5 * (df + 1.0) * _special.log1p_square(jnp.where(small, 1.0, t) / jnp.sqrt(df))
        return (
            _special.log_gamma_ratio_excess(0.5, 0.5 * df)
            - HALF_LOG_2PI
            - jnp.log(scale)
            + jnp.where(small, near, far)
        )

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        df = jnp.broadcast_to(jnp.asarray(self.df, self.dtype), shape)
        return jax.random.t(key, df, shape, self.dtype) * self.scale + self.loc

    def _entropy_elementwise(self) -> Array:
        # (h + 1/2)(psi(h + 1/2) - psi(h)) + log(v)/2 + log B(h, 1/2) + log(scale), h = v/2,
        # with log(v)/2 + log B(h, 1/2) = log(2 pi)/2 - R(h) and the digamma difference from
        # jelbo._special (both exact where they nearly cancel, at large df).
        half_df = 0.5 * jnp.asarray(self.df, self.dtype)
        return (
            -(half_df + 0.5) * _special.digamma_difference(0.5, half_df)
            + HALF_LOG_2PI
            - _special.log_gamma_ratio_excess(0.5, half_df)
            + jnp.log(self.scale)
        )

    def _mean(self) -> Array:
        # Defined for df > 1; NaN otherwise (as NumPyro and TFP; scipy returns inf).
        return self._full(jnp.where(jnp.asarray(self.df) > 1, self.loc, jnp.nan))

    def _variance(self) -> Array:
        # scale² df/(df-2) for df > 2, +inf for 1 < df <= 2, NaN for df <= 1 (as in scipy).
        df = jnp.asarray(self.df, self.dtype)
        safe = jnp.where(df > 2, df, 3.0)
        finite = jnp.square(self.scale) * safe / (safe - 2.0)
        return self._full(jnp.where(df > 2, finite, jnp.where(df > 1, jnp.inf, jnp.nan)))

    def _mode(self) -> Array:
        return self._full(self.loc)
