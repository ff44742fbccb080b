r"""Discrete families: binary (:class:`Bernoulli`), categorical (:class:`Categorical`,
:class:`OneHotCategorical`) and counts (:class:`Poisson`, :class:`NegativeBinomial`).

Samples are returned as floats in the parameters' dtype (except :class:`Categorical`'s
integer indices), so they can feed a decoder directly. No discrete family is
reparameterized; use the score-function estimators (``jelbo.ELBO(grad_estimator="score")``,
``jelbo.IWAE(grad_estimator="vimco")``) or a relaxed family (:mod:`jelbo.distributions.relaxed`)
for discrete latents.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jelbo import _checks, _random, _special
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.distributions._util import (
    HALF_LOG_2PI,
    Check,
    masked_log_softmax,
    not_nan_or_plus_inf,
)
from jelbo.distributions.base import Distribution, Factorized

__all__ = ["Bernoulli", "Categorical", "NegativeBinomial", "OneHotCategorical", "Poisson"]


class _CategoricalLogits(Distribution):
    """What :class:`Categorical` and :class:`OneHotCategorical` share: ``logits`` whose last
    axis holds the categories (shape check, normalized log-probabilities, entropy, checks)."""

    logits: ArrayLike

    def _validate(self) -> None:
        if jnp.ndim(self.logits) < 1:
            raise ValueError(
                f"{type(self).__name__} `logits` need a last axis over the categories; got "
                f"shape {jnp.shape(self.logits)}."
            )

    @property
    def batch_shape(self) -> Shape:
        return tuple(jnp.shape(self.logits)[:-1])

    @property
    def num_categories(self) -> int:
        """The number of categories :math:`C` (the last axis of ``logits``)."""
        return jnp.shape(self.logits)[-1]

    def log_probs(self) -> Array:
        """Normalized log-probabilities of every category, shape ``(*batch, C)`` (``-inf`` for
        masked categories)."""
        return _special.log_softmax(jnp.asarray(self.logits, self.dtype), axis=-1)

    def _probs(self) -> Array:
        return jax.nn.softmax(jnp.asarray(self.logits, self.dtype), axis=-1)

    def _entropy(self) -> Array:
        # 0 log 0 = 0 for masked (-inf) logits, with zero gradients there.
        log_p, mask = masked_log_softmax(jnp.asarray(self.logits, self.dtype))
        return -jnp.sum(jnp.where(mask, 0.0, jnp.exp(log_p) * log_p), axis=-1)

    def _parameter_checks(self) -> list[Check]:
        logits = jnp.asarray(self.logits)
        return [
            ("logits", not_nan_or_plus_inf(logits), "< +inf and not NaN (-inf masks)"),
            ("logits", jnp.any(logits > -jnp.inf, axis=-1), "finite for at least one category"),
        ]


class OneHotCategorical(_CategoricalLogits):
    r"""Categorical distribution over one-hot vectors :math:`x \in \{e_1, \dots, e_C\}`.

    :math:`\log p(x) = \sum_k x_k \log\mathrm{softmax}(a)_k`, with :math:`0 \cdot \log 0 = 0`
    so that ``-inf`` logits (masked categories) are allowed; a one-hot ``x`` on a masked
    category has log-mass ``-inf``. ``log_prob`` does not check that ``x`` is one-hot.
    Samples are one-hot vectors in the parameters' floating dtype, event shape ``(C,)``.

    Attributes:
        logits: unnormalized log-probabilities :math:`a`, shape ``(*batch, C)``.
    """

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self.logits)[-1:])

    def _log_prob(self, x: Array) -> Array:
        log_p = self.log_probs()
        chosen = x != 0
        safe = jnp.where(chosen, log_p, 0.0)
        return jnp.sum(jnp.where(chosen, x * safe, 0.0), axis=-1) + jnp.where(
            jnp.any(chosen & jnp.isneginf(log_p), axis=-1), -jnp.inf, 0.0
        )

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        index = jax.random.categorical(
            key, self.logits, axis=-1, shape=sample_shape + self.batch_shape
        )
        return jax.nn.one_hot(index, self.event_shape[0], dtype=self.dtype)

    def _mean(self) -> Array:
        return self._probs()

    def _variance(self) -> Array:
        p = self._probs()
        return p * (1.0 - p)

    def _covariance(self) -> Array:
        p = self._probs()
        return p[..., :, None] * (jnp.eye(p.shape[-1], dtype=p.dtype) - p[..., None, :])

    def _mode(self) -> Array:
        return jax.nn.one_hot(
            jnp.argmax(self.logits, axis=-1), self.event_shape[0], dtype=self.dtype
        )


class NegativeBinomial(Factorized):
    r"""Factorized negative binomial: the number of successes before the ``total_count``-th
    failure, with success probability :math:`p = \sigma(a)` (torch's and NumPyro's convention).

    .. math:: \log p(k) = \log\binom{k+r-1}{k} + k\log\sigma(a) + r\log\sigma(-a)
              = -\log B(k+1, r) - \log(k+r) + k\log\sigma(a) + r\log\sigma(-a),

    for integers :math:`k \ge 0` (``-inf`` elsewhere), with ``log_sigmoid`` and an accurate
    :math:`\log B` (no cancelling large log-gammas), so it stays accurate for large counts
    and saturated logits. Mean :math:`r e^{a}`, variance :math:`r e^{a}(1 + e^{a})`.
    Samples are drawn as a gamma–Poisson mixture,
    :math:`k \sim \mathrm{Poisson}(\lambda)`, :math:`\lambda \sim \mathrm{Gamma}(r)\,e^{a}`,
    and returned as floats in the parameters' dtype. In scipy's convention this is
    ``scipy.stats.nbinom(n=r, p=sigmoid(-a))``.

    Attributes:
        total_count: :math:`r > 0` (real-valued allowed), broadcastable to ``logits``.
        logits: :math:`a`, log-odds of a success, shape ``(*batch, K)``.
    """

    total_count: ArrayLike
    logits: ArrayLike

    def _log_prob_elementwise(self, x: Array) -> Array:
        r = jnp.asarray(self.total_count, self.dtype)
        a = jnp.asarray(self.logits, self.dtype)
        inside = (x >= 0) & (x == jnp.floor(x))
        k = jnp.where(inside, x, 0.0)
        log_p = (
            -_special.betaln(k + 1.0, r)
            - jnp.log(k + r)
            + k * jax.nn.log_sigmoid(a)
            + r * jax.nn.log_sigmoid(-a)
        )
        return jnp.where(inside, log_p, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        key_gamma, key_poisson = jax.random.split(key)
        shape = sample_shape + self.param_shape
        r = jnp.broadcast_to(jnp.asarray(self.total_count, self.dtype), shape)
        log_rate = jax.random.loggamma(key_gamma, r, shape, self.dtype) + self.logits
        rate = jax.lax.stop_gradient(jnp.exp(log_rate))
        return jax.random.poisson(key_poisson, rate, shape).astype(self.dtype)

    def _mean(self) -> Array:
        return self._full(self.total_count * jnp.exp(self.logits))

    def _variance(self) -> Array:
        odds = jnp.exp(jnp.asarray(self.logits, self.dtype))
        return self._full(self.total_count * odds * (1.0 + odds))

    def _mode(self) -> Array:
        # floor((r - 1) p / (1 - p)) for r > 1, else 0.
        r = jnp.asarray(self.total_count, self.dtype)
        odds = jnp.exp(jnp.asarray(self.logits, self.dtype))
        return self._full(jnp.where(r > 1, jnp.floor((r - 1.0) * odds), 0.0))


# --- the jelbo 0.1 discrete families ------------------------------------------------------


class Bernoulli(Factorized):
    r"""Factorized Bernoulli parameterized by logits :math:`a` (:math:`p = \sigma(a)`).

    :math:`\log p(x) = \sum_i x_i \log\sigma(a_i) + (1-x_i)\log\sigma(-a_i)`, computed with
    ``log_sigmoid`` so that it is finite for any finite logit. ``x`` may be fractional
    (e.g. grey-level pixels), as is common for VAE decoders.

    Values outside :math:`[0, 1]` (and NaN) have log-probability :math:`-\infty`. Logits
    :math:`\pm\infty` (deterministic coordinates) are allowed: :math:`0\log 0 = 0`.

    Parameter values are not checked: NaN logits give NaN or meaningless results rather than an
    error (shapes are checked at construction). :func:`jelbo.check_parameters` checks them on
    demand, also under ``jit``.

    Attributes:
        logits: shape ``(*batch, K)``.
    """

    logits: ArrayLike

    def _log_prob_elementwise(self, x: Array) -> Array:
        a = jnp.asarray(self.logits, self.dtype)
        x = jnp.asarray(x, jnp.result_type(x, a))
        # x log sigma(a) + (1 - x) log sigma(-a), each product 0 where its weight is 0 (so a
        # saturated or infinite logit gives 0 log 0 = 0, with zero gradients).
        ones = x * jnp.where(x == 0, 0.0, jax.nn.log_sigmoid(a))
        zeros = (1.0 - x) * jnp.where(x == 1, 0.0, jax.nn.log_sigmoid(-a))
        return jnp.where((x >= 0) & (x <= 1), ones + zeros, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        u = _random.draw(_random.uniform, key, shape, self.dtype, self.logits)
        # u < sigmoid(a)  <=>  logit(u) < a, compared in log space to stay exact at saturation.
        return (jnp.log(u) - jnp.log1p(-u) < self.logits).astype(self.dtype)

    def _entropy_elementwise(self) -> Array:
        a = jnp.asarray(self.logits, self.dtype)
        finite = jnp.isfinite(a)
        a = jnp.where(finite, a, 0.0)
        h = jax.nn.sigmoid(a) * jax.nn.softplus(-a) + jax.nn.sigmoid(-a) * jax.nn.softplus(a)
        return jnp.where(finite, h, 0.0)

    def _mean(self) -> Array:
        return self._full(jax.nn.sigmoid(self.logits))

    def _variance(self) -> Array:
        return self._full(jax.nn.sigmoid(self.logits) * jax.nn.sigmoid(-jnp.asarray(self.logits)))

    def _parameter_checks(self) -> list[Check]:
        return [("logits", ~jnp.isnan(jnp.asarray(self.logits)), "not NaN (+-inf allowed)")]

    def _mode(self) -> Array:
        # 1 where p > 1/2; ties (logit 0) go to 0, as in NumPyro.
        return self._full(jnp.asarray(self.logits) > 0)


class Poisson(Factorized):
    r"""Factorized Poisson parameterized by the log-rate :math:`\eta = \log\lambda`.

    :math:`\log p(x) = \sum_i x_i\eta_i - e^{\eta_i} - \log\Gamma(x_i+1)`, evaluated for
    :math:`x \ge 1` as :math:`-x\,\phi(\log x - \eta) - \tfrac12\log 2\pi x - \delta(x)`
    with :math:`\phi(t) = e^{-t} - 1 + t` and Stirling's correction :math:`\delta`, which
    keeps full relative precision for large counts. Values that are not non-negative
    integers have log-probability :math:`-\infty` (as in scipy). Samples are counts returned
    in the parameters' floating dtype (rates above :math:`2^{30}` in 32-bit mode are drawn
    from the normal approximation, whose error is far below float32 resolution there).

    Parameter values are not checked: a NaN or ``+inf`` log-rate gives NaN or meaningless results
    rather than an error (shapes are checked at construction). :func:`jelbo.check_parameters`
    checks them on demand, also under ``jit``.

    Attributes:
        log_rate: shape ``(*batch, K)``.
    """

    log_rate: ArrayLike

    def _log_prob_elementwise(self, x: Array) -> Array:
        eta = jnp.asarray(self.log_rate, self.dtype)
        x = jnp.asarray(x, jnp.result_type(x, eta))
        valid = (x >= 0) & (x == jnp.floor(x)) & jnp.isfinite(x)
        positive = valid & (x >= 1)
        xs = jnp.where(positive, x, 1.0)
        log_xs = jnp.log(xs)
        counts = (
            -xs * _special.expm1_plus(log_xs - eta)
            - 0.5 * (log_xs + 2.0 * HALF_LOG_2PI)
            - _special.lgamma_correction(xs)
        )
        log_p = jnp.where(positive, counts, -jnp.exp(eta))
        return jnp.where(valid, log_p, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        rate = jnp.broadcast_to(jnp.exp(jnp.asarray(self.log_rate, self.dtype)), shape)
        if jnp.iinfo(jax.dtypes.canonicalize_dtype(int)).bits > 32:
            return jax.random.poisson(key, rate, shape).astype(self.dtype)
        # int32 counts saturate at 2**31 - 1: above 2**30 use N(rate, rate), rounded.
        big = rate > 2.0**30
        counts = jax.random.poisson(key, jnp.where(big, 1.0, rate), shape).astype(self.dtype)
        noise = jax.random.normal(jax.random.fold_in(key, 1), shape, self.dtype)
        approx = jnp.round(rate + jnp.sqrt(jnp.where(big, rate, 1.0)) * noise)
        return jnp.where(big, approx, counts)

    def _mean(self) -> Array:
        return self._full(jnp.exp(self.log_rate))

    def _variance(self) -> Array:
        return self._full(jnp.exp(self.log_rate))

    def _parameter_checks(self) -> list[Check]:
        ok = not_nan_or_plus_inf(self.log_rate)
        return [("log_rate", ok, "< +inf and not NaN (-inf, a zero rate, allowed)")]

    def _mode(self) -> Array:
        # floor(rate); for an integer rate both rate - 1 and rate are modes.
        return self._full(jnp.floor(jnp.exp(self.log_rate)))


class Categorical(_CategoricalLogits):
    r"""Categorical over the last axis of ``logits``; values are integer indices.

    :math:`\log p(x) = \mathrm{log\_softmax}(a)_x`. The event is a scalar: ``logits`` of shape
    ``(*batch, C)`` give ``batch_shape == (*batch,)`` and ``event_shape == ()``.

    Parameter values are not checked: NaN or ``+inf`` logits, or a row of ``-inf`` logits only,
    give NaN or meaningless results rather than an error (shapes are checked at construction).
    :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        logits: unnormalized log-probabilities, shape ``(*batch, C)``.
    """

    @property
    def event_shape(self) -> Shape:
        return ()

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
        return jnp.argmax(self.logits, axis=-1)
