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


def _xlog1py(x: ArrayLike, y: ArrayLike) -> Array:
    """``x log1p(y)``, 0 (with zero gradients) where ``x == 0`` whatever ``y``."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    zero = x == 0
    return jnp.where(zero, 0.0, x * jnp.log1p(jnp.where(zero, 0.0, y)))


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
    - \log\Gamma(\alpha_i)` for :math:`x > 0`. Samples are reparameterized by implicit
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
        a, rate = self.concentration, self.rate
        return (
            _special.xlogy(a, rate)
            + _special.xlogy(a - 1.0, x)
            - rate * x
            - gammaln(jnp.asarray(a, self.dtype))
        )

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        draw = jnp.exp(_log_gamma_draw(key, self.concentration, shape, self.dtype)) / self.rate
        return _clamp_unit(draw, upper=False)

    def _entropy_elementwise(self) -> Array:
        a = jnp.asarray(self.concentration, self.dtype)
        return a - jnp.log(self.rate) + gammaln(a) + (1.0 - a) * digamma(a)

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
        a, b = self.concentration1, self.concentration0
        return (
            _special.xlogy(a - 1.0, x)
            + _xlog1py(b - 1.0, -x)
            - _special.betaln(jnp.asarray(a, self.dtype), jnp.asarray(b, self.dtype))
        )

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        a, b = self._full(self.concentration1), self._full(self.concentration0)
        shape = (*sample_shape, 2, *self.param_shape)  # one draw for both Gamma variates
        log_g = _log_gamma_draw(key, jnp.stack([a, b]), shape, self.dtype)
        axis = len(sample_shape)
        log_ga = lax.index_in_dim(log_g, 0, axis, keepdims=False)
        log_gb = lax.index_in_dim(log_g, 1, axis, keepdims=False)
        return _clamp_unit(jax.nn.sigmoid(log_ga - log_gb))

    def _entropy_elementwise(self) -> Array:
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        # log B(a,b) - (a-1)[psi(a) - psi(a+b)] - (b-1)[psi(b) - psi(a+b)]
        return (
            _special.betaln(a, b)
            - (a - 1.0) * _special.digamma_difference(b, a)
            - (b - 1.0) * _special.digamma_difference(a, b)
        )

    def _mean(self) -> Array:
        a, b = self.concentration1, self.concentration0
        return self._full(a / (a + jnp.asarray(b, self.dtype)))

    def _variance(self) -> Array:
        a, b = self.concentration1, self.concentration0
        s = a + jnp.asarray(b, self.dtype)
        return self._full(a * b / (s * s * (s + 1.0)))

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
        # log B(alpha) + sum_i (alpha_i - 1) [psi(alpha0) - psi(alpha_i)]
        alpha = self._alpha()
        total = jnp.sum(alpha, axis=-1, keepdims=True)
        psi_gap = _special.digamma_difference(total - alpha, alpha)  # psi(a_i) - psi(a0)
        return _special.lbeta(alpha) - jnp.sum((alpha - 1.0) * psi_gap, axis=-1)

    def _mean(self) -> Array:
        alpha = self._alpha()
        return alpha / jnp.sum(alpha, axis=-1, keepdims=True)

    def _variance(self) -> Array:
        alpha = self._alpha()
        total = jnp.sum(alpha, axis=-1, keepdims=True)
        return alpha * (total - alpha) / (total * total * (total + 1.0))

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
        a, b = self.concentration1, self.concentration0
        log_x = jnp.log(x)
        return (
            jnp.log(a)
            + jnp.log(b)
            + _special.xlogy(a - 1.0, x)
            + _special.xlogy(b - 1.0, -jnp.expm1(a * log_x))
        )

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

    def _moment(self, n: float) -> Array:
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        return jnp.exp(jnp.log(b) + _special.betaln(1.0 + n / a, b))

    def _mean(self) -> Array:
        return self._full(self._moment(1.0))

    def _variance(self) -> Array:
        return self._full(self._moment(2.0) - jnp.square(self._moment(1.0)))

    def _mode(self) -> Array:
        # ((a-1)/(ab-1))^(1/a) for a >= 1, b >= 1, not both 1; NaN otherwise.
        a = jnp.asarray(self.concentration1, self.dtype)
        b = jnp.asarray(self.concentration0, self.dtype)
        ok = (a >= 1) & (b >= 1) & ((a > 1) | (b > 1))
        ratio = jnp.where(ok, (a - 1.0) / jnp.where(ok, a * b - 1.0, 1.0), 1.0)
        return self._full(jnp.where(ok, ratio ** (1.0 / a), jnp.nan))


# --- ContinuousBernoulli -------------------------------------------------------------------

# Taylor coefficients, from the Bernoulli numbers: log(sinh y / y) = sum_n c_n y^(2n) with
# c_n = 4^n B_2n / (2n (2n)!); the Langevin function coth y - 1/y = sum_n 4^n B_2n y^(2n-1)
# / (2n)!; its derivative sum_n 4^n B_2n (2n-1) y^(2n-2) / (2n)!. Used for |y| < 1/2, where
# 10 terms leave < 1e-18 relative (the terms shrink by ~(y/pi)^2 each); above, the closed
# forms lose at most ~12 ulps to cancellation.
_CB_TAYLOR = 0.5
_LOG_SINHC = (
    1 / 6, -1 / 180, 1 / 2835, -1 / 37800, 1 / 467775, -1.803670234005331e-07,
    1.5661391322766983e-08, -1.3884130493737299e-09, 1.2504359176004997e-10,
    -1.1402575602296091e-11,
)  # fmt: skip
_LANGEVIN = (
    1 / 3, -1 / 45, 2 / 945, -1 / 4725, 2 / 93555, -2.1644042808063972e-06,
    2.1925947851873778e-07, -2.2214608789979678e-08, 2.2507846516808994e-09,
    -2.2805151204592183e-10,
)  # fmt: skip
_LANGEVIN_PRIME = (
    1 / 3, -1 / 15, 2 / 189, -1 / 675, 2 / 10395, -2.380844708887037e-05,
    2.8503732207435913e-06, -3.332191318496952e-07, 3.8263339078575285e-08,
    -4.332978728872515e-09,
)  # fmt: skip


def _even_series(coeffs: tuple[float, ...], y2: Array) -> Array:
    """sum_n coeffs[n] y2^n (Horner)."""
    acc = jnp.zeros_like(y2)
    for c in reversed(coeffs):
        acc = acc * y2 + c
    return acc


def _log_sinhc(y: Array) -> Array:
    r""":math:`\log(\sinh(y)/y)`, even, accurate for all real :math:`y`: its Taylor series
    for :math:`|y| < 1/2`, else :math:`|y| + \mathrm{log1p}(-e^{-2|y|}) - \log(2|y|)` (no
    overflow)."""
    y = jnp.abs(y)
    small = y < _CB_TAYLOR
    ys = jnp.where(small, y, 0.0)
    yl = jnp.where(small, 1.0, y)
    direct = yl + jnp.log1p(-jnp.exp(-2.0 * yl)) - jnp.log(2.0 * yl)
    return jnp.where(small, ys * ys * _even_series(_LOG_SINHC, ys * ys), direct)


def _langevin(y: Array) -> Array:
    r"""The Langevin function :math:`L(y) = \coth y - 1/y`, odd, accurate for all :math:`y`
    (Taylor series for :math:`|y| < 1/2`)."""
    small = jnp.abs(y) < _CB_TAYLOR
    ys = jnp.where(small, y, 0.0)
    yl = jnp.where(small, 1.0, y)
    return jnp.where(small, ys * _even_series(_LANGEVIN, ys * ys), 1.0 / jnp.tanh(yl) - 1.0 / yl)


def _langevin_prime(y: Array) -> Array:
    r""":math:`L'(y) = 1/y^2 - 1/\sinh^2 y` (Taylor series for :math:`|y| < 1/2`)."""
    small = jnp.abs(y) < _CB_TAYLOR
    ys = jnp.where(small, y, 0.0)
    yl = jnp.where(small, 1.0, y)
    direct = 1.0 / (yl * yl) - 1.0 / jnp.square(jnp.sinh(yl))
    return jnp.where(small, _even_series(_LANGEVIN_PRIME, ys * ys), direct)


def _cb_log_normalizer(logits: Array) -> Array:
    r""":math:`A(\lambda) = \log\int_0^1 e^{\lambda x}dx = \log(\mathrm{expm1}(\lambda)/\lambda)
    = \lambda/2 + \log(\sinh(\lambda/2)/(\lambda/2))`."""
    return 0.5 * logits + _log_sinhc(0.5 * logits)


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
        lam = jnp.asarray(self.logits, self.dtype)
        return _cb_log_normalizer(lam) - lam * self._mean_of(lam)

    @staticmethod
    def _mean_of(lam: Array) -> Array:
        return 0.5 + 0.5 * _langevin(0.5 * lam)

    def _mean(self) -> Array:
        return self._full(self._mean_of(jnp.asarray(self.logits, self.dtype)))

    def _variance(self) -> Array:
        # A''(lambda) = L'(lambda/2)/4.
        return self._full(0.25 * _langevin_prime(0.5 * jnp.asarray(self.logits, self.dtype)))

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
        z = _special.standardize(x, loc, scale)
        return -0.5 * z * z - self._log_scale() - HALF_LOG_2PI

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
