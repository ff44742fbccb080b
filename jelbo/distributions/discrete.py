r"""Discrete families: binary (:class:`Bernoulli`), categorical (:class:`Categorical`,
:class:`OneHotCategorical`) and counts (:class:`Poisson`, :class:`NegativeBinomial`).

Every family here takes its parameterization by keyword, as NumPyro, TFP and torch name it:
``Bernoulli(probs= | logits=)``, ``Categorical(probs= | logits=)``,
``OneHotCategorical(probs= | logits=)``, ``Poisson(rate= | log_rate=)``,
``NegativeBinomial(total_count, probs= | logits=)``, exactly one of the alternatives. The one
given is stored as it is and the family computes in it (``Bernoulli(probs=0.9).mean()`` is
exactly ``0.9``; gradients are those of the given parameter's own formula); the other is a
property. The positional forms of jelbo 0.2 (``Bernoulli(x)`` meaning logits, ``Poisson(x)``
a log-rate) keep their meaning for one release, with a ``DeprecationWarning``.

Samples are returned as floats in the parameters' dtype (except :class:`Categorical`'s
integer indices), so they can feed a decoder directly. No discrete family is
reparameterized; use the score-function estimators (``jelbo.ELBO(grad_estimator="score")``,
``jelbo.IWAE(grad_estimator="vimco")``) or a relaxed family (:mod:`jelbo.distributions.relaxed`)
for discrete latents.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from jelbo import _checks, _random, _special
from jelbo import constraints as _c
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import Constraint
from jelbo.distributions._util import (
    HALF_LOG_2PI,
    BinaryProbsLogits,
    CategoricalProbsLogits,
    Check,
)
from jelbo.distributions.base import Distribution, Factorized, keyword_parameter

__all__ = ["Bernoulli", "Categorical", "NegativeBinomial", "OneHotCategorical", "Poisson"]


class _CategoricalLogits(CategoricalProbsLogits, Distribution):
    """What :class:`Categorical` and :class:`OneHotCategorical` share: ``probs=`` or
    ``logits=`` whose last axis holds the categories (shape check, normalized
    log-probabilities, entropy, checks)."""

    _probs: ArrayLike | None = keyword_parameter("probs")
    _logits: ArrayLike | None = keyword_parameter("logits")
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "probs": _c.simplex,
        "logits": _c.real_or_neg_inf,
    }
    _legacy_positional: ClassVar[tuple[str, ...]] = ("logits",)
    _legacy_meaning: ClassVar[str] = "logits"

    def _validate(self) -> None:
        if jnp.ndim(self._given()) < 1:
            given = "logits" if self._logits is not None else "probs"
            raise ValueError(
                f"{type(self).__name__} `{given}` need a last axis over the categories; got "
                f"shape {jnp.shape(self._given())}."
            )

    @property
    def batch_shape(self) -> Shape:
        return tuple(jnp.shape(self._given())[:-1])

    def log_probs(self) -> Array:
        """Normalized log-probabilities of every category, shape ``(*batch, C)`` (``-inf`` for
        masked categories): ``log_softmax(logits)``, or ``log(probs)``."""
        if self._logits is None:
            return self.logits
        return _special.log_softmax(self.logits, axis=-1)

    def _entropy(self) -> Array:
        # 0 log 0 = 0 for masked categories, with zero gradients there.
        prob, log_p, mask = self._masked_log_probs()
        return -jnp.sum(jnp.where(mask, 0.0, prob * log_p), axis=-1)

    def _parameter_checks(self) -> list[Check]:
        checks = super()._parameter_checks()
        if self._logits is not None:
            finite = jnp.any(jnp.asarray(self._logits) > -jnp.inf, axis=-1)
            checks.append(("logits", finite, "finite for at least one category"))
        return checks


class OneHotCategorical(_CategoricalLogits):
    r"""Categorical distribution over one-hot vectors :math:`x \in \{e_1, \dots, e_C\}`,
    given by ``probs=`` or ``logits=`` (exactly one).

    :math:`\log p(x) = \sum_k x_k \log\pi_k` with :math:`\log\pi = \mathrm{log\_softmax}(a)`
    (or ``log(probs)``) and :math:`0 \cdot \log 0 = 0`, so that ``-inf`` logits (masked
    categories, or probabilities 0) are allowed; a one-hot ``x`` on a masked category has
    log-mass ``-inf``. ``log_prob`` does not check that ``x`` is one-hot. Samples are one-hot
    vectors in the parameters' floating dtype, event shape ``(C,)``. ``probs`` are used as
    given (they must sum to 1, which :func:`jelbo.check_parameters` checks; they are not
    renormalized). ``OneHotCategorical(x)`` positionally is ``logits`` (jelbo 0.2;
    deprecated).

    Attributes:
        probs: :math:`\pi`, shape ``(*batch, C)``, on the simplex; a property when
            ``logits`` was given.
        logits: unnormalized log-probabilities :math:`a`, shape ``(*batch, C)``; a property
            (``log(probs)``) when ``probs`` was given.
    """

    support: ClassVar[Constraint] = _c.one_hot

    @property
    def event_shape(self) -> Shape:
        return (self.num_categories,)

    def _log_prob(self, x: Array) -> Array:
        # sum_k x_k log p_k with 0 log 0 = 0 (a one-hot x on a masked category gives -inf);
        # the x-derivative log p_k is kept where x_k = 0 (relaxed/straight-through inputs).
        return jnp.sum(_special.xlog(x, self.log_probs()), axis=-1)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        index = jax.random.categorical(
            key, self.logits, axis=-1, shape=sample_shape + self.batch_shape
        )
        return jax.nn.one_hot(index, self.event_shape[0], dtype=self.dtype)

    def _mean(self) -> Array:
        return self.probs

    def _variance(self) -> Array:
        if self._probs is not None:
            p = self.probs
            return p * (1.0 - p)
        # p (1 - p) with 1 - p = -expm1(log p): 1 - p rounded to 0 for p ~ 1 - 1e-13.
        log_p = self.log_probs()
        return jnp.exp(log_p) * -jnp.expm1(log_p)

    def _covariance(self) -> Array:
        p = self.probs
        eye = jnp.eye(p.shape[-1], dtype=bool)
        outer = -p[..., :, None] * p[..., None, :]
        return jnp.where(eye, self._variance()[..., None, :], outer)

    def _mode(self) -> Array:
        return jax.nn.one_hot(
            jnp.argmax(self._given(), axis=-1), self.event_shape[0], dtype=self.dtype
        )


class NegativeBinomial(BinaryProbsLogits, Factorized):
    r"""Factorized negative binomial: the number of successes before the ``total_count``-th
    failure, with success probability ``probs=`` :math:`p` or ``logits=`` :math:`a`,
    :math:`p = \sigma(a)` (exactly one; torch's and NumPyro's convention and names).

    .. math:: \log p(k) = \log\binom{k+r-1}{k} + k\log p + r\log(1-p)
              = -\log B(k+1, r) - \log(k+r) + k\log p + r\log(1-p),

    for integers :math:`k \ge 0` (``-inf`` elsewhere), with :math:`\log p = \log\sigma(a)`,
    :math:`\log(1-p) = \log\sigma(-a)` for logits and ``log``/``log1p`` of ``probs`` as
    given, and, for :math:`k \ge 1`, Stirling's :math:`\log B(k, r)` paired with the
    binomial terms into :math:`-k\phi(ps/k) - r\phi((1-p)s/r) + \ldots` (:math:`s = k + r`,
    :math:`\phi(u) = u - 1 - \log u`), so that no terms of size :math:`k\log k` cancel: it
    stays accurate for large counts and saturated probabilities, and :math:`\log p(0) =
    r\log(1-p)` exactly. Mean :math:`r p/(1-p)`, variance :math:`r p/(1-p)^2`. Samples are
    drawn as a gamma–Poisson mixture, :math:`k \sim \mathrm{Poisson}(\lambda)`,
    :math:`\lambda \sim \mathrm{Gamma}(r)\,p/(1-p)`, and returned as floats in the
    parameters' dtype. In scipy's convention this is ``scipy.stats.nbinom(n=r, p=1-p)``.
    ``NegativeBinomial(r, x)`` positionally is ``logits`` (jelbo 0.2; deprecated).

    Attributes:
        total_count: :math:`r > 0` (real-valued allowed), broadcastable to the others.
        probs: :math:`p \in [0, 1)`, shape ``(*batch, K)`` or ``()``; a property when
            ``logits`` was given.
        logits: :math:`a`, log-odds of a success; a property when ``probs`` was given.
    """

    total_count: ArrayLike
    _probs: ArrayLike | None = keyword_parameter("probs")
    _logits: ArrayLike | None = keyword_parameter("logits")
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "total_count": _c.positive,
        "probs": _c.unit_interval,
        "logits": _c.real_or_neg_inf,
    }
    support: ClassVar[Constraint] = _c.nonnegative_integer
    _legacy_positional: ClassVar[tuple[str, ...]] = ("total_count", "logits")
    _legacy_meaning: ClassVar[str] = "logits"

    def _odds(self) -> Array:
        """:math:`p/(1-p)`."""
        if self._probs is not None:
            p = self.probs
            return p / (1.0 - p)
        return jnp.exp(self.logits)

    def _log_prob_elementwise(self, x: Array) -> Array:
        r = jnp.asarray(self.total_count, self.dtype)
        inside = (x >= 0) & (x == jnp.floor(x))
        k = jnp.where(inside, x, 0.0)
        positive = k >= 1
        if self._probs is not None:
            p = jnp.asarray(self._probs, self.dtype)
            # log p only where it is used (k >= 1): p = 0 is allowed.
            log_p, log_q = jnp.log(jnp.where(positive, p, 1.0)), jnp.log1p(-p)
        else:
            a = jnp.asarray(self._logits, self.dtype)
            log_p, log_q = jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)
        r, log_p, log_q, k, positive = jnp.broadcast_arrays(r, log_p, log_q, k, positive)
        # k >= 1: log C(k + r - 1, k) = -log k - log B(k, r) with Stirling's log B (exact
        # corrections delta), paired with k log p + r log(1 - p) into
        #   -k phi(p s/k) - r phi((1 - p) s/r) + log(r/(k s))/2 - log(2 pi)/2
        #   - delta(k) - delta(r) + delta(s),  s = k + r,  phi(u) = u - 1 - log u >= 0
        # (the linear parts cancel exactly), so no terms of size k log k cancel (the direct
        # sum lost 2 digits in float32 at k = r = 1e6). k = 0: r log(1 - p), exactly (as
        # -log B(1, r) - log r it was 1e-16 in float64, 5e-7 in float32, not 0).
        kp = jnp.where(positive, k, 1.0)
        s = kp + r
        delta_k, delta_r, delta_s = _special.stacked(_special.lgamma_correction, kp, r, s)
        counts = (
            -kp * _special.expm1_plus(-(log_p + jnp.log(s / kp)))
            - r * _special.expm1_plus(-(log_q + jnp.log(s / r)))
            + 0.5 * (jnp.log(r) - jnp.log(kp) - jnp.log(s))
            - HALF_LOG_2PI
            - delta_k
            - delta_r
            + delta_s
        )
        log_p = jnp.where(positive, counts, r * log_q)
        return jnp.where(inside, log_p, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        key_gamma, key_poisson = jax.random.split(key)
        shape = sample_shape + self.param_shape
        r = jnp.broadcast_to(jnp.asarray(self.total_count, self.dtype), shape)
        log_rate = jax.random.loggamma(key_gamma, r, shape, self.dtype) + self.logits
        rate = jax.lax.stop_gradient(jnp.exp(log_rate))
        return jax.random.poisson(key_poisson, rate, shape).astype(self.dtype)

    def _mean(self) -> Array:
        return self._full(self.total_count * self._odds())

    def _variance(self) -> Array:
        odds = self._odds()
        return self._full(self.total_count * odds * (1.0 + odds))

    def _mode(self) -> Array:
        # floor((r - 1) p / (1 - p)) for r > 1, else 0.
        r = jnp.asarray(self.total_count, self.dtype)
        return self._full(jnp.where(r > 1, jnp.floor((r - 1.0) * self._odds()), 0.0))


# --- the jelbo 0.1 discrete families ------------------------------------------------------


class Bernoulli(BinaryProbsLogits, Factorized):
    r"""Factorized Bernoulli given by ``probs=`` :math:`p` or ``logits=`` :math:`a`,
    :math:`p = \sigma(a)` (exactly one, as in NumPyro, TFP and torch).

    :math:`\log p(x) = \sum_i x_i \log p_i + (1-x_i)\log(1-p_i)`: for logits
    :math:`x\log\sigma(a) + (1-x)\log\sigma(-a)` with ``log_sigmoid`` (finite for any finite
    logit), for probabilities ``log(p)`` and ``log1p(-p)`` as given (exact near 0 and 1).
    ``x`` may be fractional (e.g. grey-level pixels), as is common for VAE decoders.

    Values outside :math:`[0, 1]` (and NaN) have log-probability :math:`-\infty`. Logits
    :math:`\pm\infty` and probabilities 0 and 1 (deterministic coordinates) are allowed:
    :math:`0\log 0 = 0`. ``Bernoulli(x)`` positionally is ``logits``, jelbo 0.2's meaning
    (NumPyro and torch read it as ``probs``): it keeps working with a
    ``DeprecationWarning`` until 0.4.

    Parameter values are not checked: NaN logits or probabilities outside [0, 1] give NaN or
    meaningless results rather than an error (shapes are checked at construction).
    :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        probs: :math:`p \in [0, 1]`, shape ``(*batch, K)`` or ``()``; a property
            (:math:`\sigma(a)`) when ``logits`` was given.
        logits: :math:`a`, same shapes; a property (the logit of ``probs``) when ``probs``
            was given.
    """

    _probs: ArrayLike | None = keyword_parameter("probs")
    _logits: ArrayLike | None = keyword_parameter("logits")
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "probs": _c.unit_interval,
        "logits": _c.extended_real,
    }
    support: ClassVar[Constraint] = _c.boolean
    _legacy_positional: ClassVar[tuple[str, ...]] = ("logits",)
    _legacy_meaning: ClassVar[str] = "logits"

    def _log_prob_elementwise(self, x: Array) -> Array:
        dtype = jnp.result_type(x, self.dtype)
        x = jnp.asarray(x, dtype)
        if self._probs is not None:
            p = jnp.asarray(self._probs, dtype)
            # log p and log(1 - p) as given; a zero probability's log is replaced where its
            # weight is 0 (0 log 0 = 0 without an infinite derivative of log at 0).
            log_one = jnp.log(jnp.where((x == 0) & (p == 0), 1.0, p))
            log_zero = jnp.log1p(-jnp.where((x == 1) & (p == 1), 0.0, p))
        else:
            a = jnp.asarray(self._logits, dtype)
            log_one, log_zero = jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)
        # x log p + (1 - x) log(1 - p) with 0 log 0 = 0 (infinite logits, probabilities 0 and
        # 1); the x-derivative is log p - log(1 - p) also at x = 0 and 1 (a `where` on x
        # zeroed one of its terms there).
        ones = _special.xlog(x, log_one)
        zeros = _special.xlog(1.0 - x, log_zero)
        return jnp.where((x >= 0) & (x <= 1), ones + zeros, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        if self._probs is not None:
            p = self.probs
            u = _random.draw(_random.uniform, key, shape, self.dtype, p)
            return (u < p).astype(self.dtype)
        a = self.logits
        u = _random.draw(_random.uniform, key, shape, self.dtype, a)
        # u < sigmoid(a)  <=>  logit(u) < a, compared in log space to stay exact at saturation.
        return (jnp.log(u) - jnp.log1p(-u) < a).astype(self.dtype)

    def _entropy_elementwise(self) -> Array:
        if self._probs is not None:
            p = self.probs
            # (1 - p) log1p(-p), not log(1 - p): 1 - p rounds to 1 for p < 1e-16, dropping the
            # entropy's p term (1.4% at p = 1e-29).
            return -(_special.xlogy(p, p) + _special.xlog1py(1.0 - p, -p))
        a = self.logits
        finite = jnp.isfinite(a)
        a = jnp.where(finite, a, 0.0)
        h = jax.nn.sigmoid(a) * jax.nn.softplus(-a) + jax.nn.sigmoid(-a) * jax.nn.softplus(a)
        return jnp.where(finite, h, 0.0)

    def _mean(self) -> Array:
        return self._full(self.probs)

    def _variance(self) -> Array:
        if self._probs is not None:
            p = self.probs
            return self._full(p * (1.0 - p))
        # sigma(a) sigma(-a) through log_sigmoid: relative precision in value and derivative
        # where one factor is tiny.
        a = self.logits
        return self._full(jnp.exp(jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(-a)))

    def _mode(self) -> Array:
        # 1 where p > 1/2; ties (p = 1/2, logit 0) go to 0, as in NumPyro.
        if self._probs is not None:
            return self._full(jnp.asarray(self._probs) > 0.5)
        return self._full(jnp.asarray(self._logits) > 0)


class Poisson(Factorized):
    r"""Factorized Poisson given by ``rate=`` :math:`\lambda` or ``log_rate=``
    :math:`\eta = \log\lambda` (exactly one; NumPyro and torch take ``rate``).

    :math:`\log p(x) = \sum_i x_i\eta_i - \lambda_i - \log\Gamma(x_i+1)`, evaluated for
    :math:`x \ge 1` as :math:`-x\,\phi(\log x - \eta) - \tfrac12\log 2\pi x - \delta(x)`
    with :math:`\phi(t) = e^{-t} - 1 + t` and Stirling's correction :math:`\delta`, which
    keeps full relative precision for large counts (and :math:`-\lambda` at :math:`x = 0`, the
    given rate itself). Values that are not non-negative integers have log-probability
    :math:`-\infty` (as in scipy). Samples are counts returned in the parameters' floating
    dtype (rates above :math:`2^{30}` in 32-bit mode are drawn from the normal
    approximation, whose error is far below float32 resolution there). ``Poisson(x)``
    positionally is a log-rate, jelbo 0.2's meaning: it keeps working with a
    ``DeprecationWarning`` until 0.4.

    Parameter values are not checked: a negative or NaN rate (a NaN or ``+inf`` log-rate)
    gives NaN or meaningless results rather than an error (shapes are checked at
    construction). :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        rate: :math:`\lambda \ge 0`, shape ``(*batch, K)`` or ``()``; a property
            (:math:`e^\eta`) when ``log_rate`` was given.
        log_rate: :math:`\eta`, same shapes (``-inf`` is a zero rate); a property when
            ``rate`` was given.
    """

    _rate: ArrayLike | None = keyword_parameter("rate")
    _log_rate: ArrayLike | None = keyword_parameter("log_rate")
    parameterizations: ClassVar[tuple[tuple[str, ...], ...]] = (("rate", "log_rate"),)
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "rate": _c.nonnegative,
        "log_rate": _c.real_or_neg_inf,
    }
    support: ClassVar[Constraint] = _c.nonnegative_integer
    _legacy_positional: ClassVar[tuple[str, ...]] = ("log_rate",)
    _legacy_meaning: ClassVar[str] = "a log-rate"

    @property
    def rate(self) -> Array:
        r""":math:`\lambda`: as given, or :math:`e^\eta`."""
        if self._rate is not None:
            return jnp.asarray(self._rate, self.dtype)
        return jnp.exp(jnp.asarray(self._log_rate, self.dtype))

    @property
    def log_rate(self) -> Array:
        r""":math:`\eta = \log\lambda`: as given, or the log of the rate."""
        if self._log_rate is not None:
            return jnp.asarray(self._log_rate, self.dtype)
        return jnp.log(jnp.asarray(self._rate, self.dtype))

    def _log_prob_elementwise(self, x: Array) -> Array:
        x = jnp.asarray(x, jnp.result_type(x, self.dtype))
        valid = (x >= 0) & (x == jnp.floor(x)) & jnp.isfinite(x)
        positive = valid & (x >= 1)
        xs = jnp.where(positive, x, 1.0)
        log_xs = jnp.log(xs)
        if self._rate is not None:
            # From the rate as given. Its log only where x >= 1 (x = 0 is -rate: no log 0,
            # whose infinite derivative would turn the unused branch's zero cotangent into
            # NaN at rate 0). Near the count, t = log(x/rate) as log1p((x - rate)/rate), whose
            # rounding is relative to t itself (log x - log rate leaves an absolute 1e-16
            # |log rate|, times the x - rate of the deviance's derivative: 2e-11 at x = 2.5e8
            # + 1e4); the quotient only there (its derivative overflows at rate 1e-300).
            rate = jnp.asarray(self._rate, x.dtype)
            eta = jnp.log(jnp.where(positive, rate, 1.0))
            near = (xs > 0.5 * rate) & (xs < 1.5 * rate)
            rate_near = jnp.where(near, rate, xs)
            t = jnp.where(near, jnp.log1p((xs - rate_near) / rate_near), log_xs - eta)
            zero_count = -rate
        else:
            eta = jnp.asarray(self._log_rate, x.dtype)
            t = log_xs - eta  # log(x / rate)
            zero_count = -jnp.exp(eta)
        counts = (
            -xs * _special.expm1_plus(t)
            - 0.5 * (log_xs + 2.0 * HALF_LOG_2PI)
            - _special.lgamma_correction(xs)
        )
        log_p = jnp.where(positive, counts, zero_count)
        return jnp.where(valid, log_p, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        rate = jnp.broadcast_to(self.rate, shape)
        if jnp.iinfo(jax.dtypes.canonicalize_dtype(int)).bits > 32:
            return jax.random.poisson(key, rate, shape).astype(self.dtype)
        # int32 counts saturate at 2**31 - 1: above 2**30 use N(rate, rate), rounded.
        big = rate > 2.0**30
        counts = jax.random.poisson(key, jnp.where(big, 1.0, rate), shape).astype(self.dtype)
        noise = jax.random.normal(jax.random.fold_in(key, 1), shape, self.dtype)
        approx = jnp.round(rate + jnp.sqrt(jnp.where(big, rate, 1.0)) * noise)
        return jnp.where(big, approx, counts)

    def _mean(self) -> Array:
        return self._full(self.rate)

    def _variance(self) -> Array:
        return self._full(self.rate)

    def _mode(self) -> Array:
        # floor(rate); for an integer rate both rate - 1 and rate are modes.
        return self._full(jnp.floor(self.rate))


class Categorical(_CategoricalLogits):
    r"""Categorical over the last axis of ``probs=`` or ``logits=`` (exactly one); values are
    integer indices.

    :math:`\log p(x) = \log\pi_x` with :math:`\log\pi = \mathrm{log\_softmax}(a)` or
    ``log(probs)`` as given (``probs`` must sum to 1 and are not renormalized). The event is
    a scalar: parameters of shape ``(*batch, C)`` give ``batch_shape == (*batch,)`` and
    ``event_shape == ()``. ``Categorical(x)`` positionally is ``logits`` (jelbo 0.2;
    deprecated; NumPyro and torch read it as ``probs``).

    Parameter values are not checked: NaN or ``+inf`` logits, a row of ``-inf`` logits only,
    or probabilities off the simplex give NaN or meaningless results rather than an error
    (shapes are checked at construction). :func:`jelbo.check_parameters` checks them on
    demand, also under ``jit``.

    Attributes:
        probs: :math:`\pi`, shape ``(*batch, C)``; a property when ``logits`` was given.
        logits: unnormalized log-probabilities, shape ``(*batch, C)``; a property
            (``log(probs)``) when ``probs`` was given.
    """

    @property
    def event_shape(self) -> Shape:
        return ()

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        """The integers ``0, ..., C - 1``."""
        return _c.integer_interval(0, self.num_categories - 1)

    def _log_prob(self, x: Array) -> Array:
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(
                f"Categorical values must be integer indices; got {_checks.describe(x)}."
            )
        log_p = self.log_probs()
        shape = jnp.broadcast_shapes(x.shape, self.batch_shape)
        log_p = jnp.broadcast_to(log_p, shape + (self.num_categories,))
        x = jnp.broadcast_to(x, shape)
        valid = (x >= 0) & (x < self.num_categories)  # no wrapped index (-1 is not C - 1)
        idx = jnp.where(valid, x, 0)[..., None]
        return jnp.where(valid, jnp.take_along_axis(log_p, idx, axis=-1)[..., 0], -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        return jax.random.categorical(
            key, self.logits, axis=-1, shape=sample_shape + self.batch_shape
        )

    def _mode(self) -> Array:
        return jnp.argmax(self._given(), axis=-1)
