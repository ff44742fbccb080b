r"""Discrete families beyond the 0.1 ones: one-hot categoricals and negative-binomial counts.

Samples are returned as floats in the parameters' dtype (as :class:`jelbo.Poisson`'s are),
so they can feed a decoder directly. Neither family is reparameterized; use the
score-function estimators (``jelbo.elbo(..., grad_estimator="score")``) or a relaxed family
(:mod:`jelbo.relaxed`) for discrete latents.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jelbo import _special
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.distributions import Distribution, Factorized

__all__ = ["NegativeBinomial", "OneHotCategorical"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def masked_log_softmax(logits: ArrayLike) -> tuple[Array, Array]:
    """``(log_softmax(logits), mask)`` where ``mask`` marks the zero-probability categories.

    The masked entries of the first output are set to 0, so that ``p * log p`` and
    ``p * (log p - log q)`` terms can be dropped with ``where`` without NaN gradients.
    """
    log_p = _special.log_softmax(logits, axis=-1)
    mask = jnp.isneginf(log_p)
    return jnp.where(mask, 0.0, log_p), mask


def _deltas(*args: Array) -> list[Array]:
    """Stirling's corrections of the arguments, from one (stacked) lgamma_correction."""
    return _special.stacked(_special.lgamma_correction, *args)


class OneHotCategorical(Distribution):
    r"""Categorical distribution over one-hot vectors :math:`x \in \{e_1, \dots, e_C\}`.

    :math:`\log p(x) = \sum_k x_k \log\mathrm{softmax}(a)_k`, with :math:`0 \cdot \log 0 = 0`
    so that ``-inf`` logits (masked categories) are allowed; a one-hot ``x`` on a masked
    category has log-mass ``-inf``. ``log_prob`` does not check that ``x`` is one-hot.
    Samples are one-hot vectors in the parameters' floating dtype, event shape ``(C,)``.

    Attributes:
        logits: unnormalized log-probabilities :math:`a`, shape ``(*batch, C)``.
    """

    logits: ArrayLike

    def _validate(self) -> None:
        if jnp.ndim(self.logits) < 1:
            raise ValueError(
                "OneHotCategorical `logits` need a last axis over the categories; got shape "
                f"{jnp.shape(self.logits)}."
            )

    @property
    def batch_shape(self) -> Shape:
        return tuple(jnp.shape(self.logits)[:-1])

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self.logits)[-1:])

    def _log_prob(self, x: Array) -> Array:
        # sum_k x_k log p_k with 0 log 0 = 0 (a one-hot x on a masked category gives -inf);
        # the x-derivative log p_k is kept where x_k = 0 (relaxed/straight-through inputs).
        log_p = _special.log_softmax(jnp.asarray(self.logits, self.dtype), axis=-1)
        return jnp.sum(_special.xlog(x, log_p), axis=-1)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        index = jax.random.categorical(
            key, self.logits, axis=-1, shape=sample_shape + self.batch_shape
        )
        return jax.nn.one_hot(index, self.event_shape[0], dtype=self.dtype)

    def _log_probs(self) -> Array:
        return _special.log_softmax(jnp.asarray(self.logits, self.dtype), axis=-1)

    def _probs(self) -> Array:
        # exp(log_softmax): relative precision for small p_k and for its derivative.
        return jnp.exp(self._log_probs())

    def _entropy(self) -> Array:
        log_p, mask = masked_log_softmax(jnp.asarray(self.logits, self.dtype))
        return -jnp.sum(jnp.where(mask, 0.0, jnp.exp(log_p) * log_p), axis=-1)

    def _mean(self) -> Array:
        return self._probs()

    def _variance(self) -> Array:
        # p (1 - p) with 1 - p = -expm1(log p): 1 - p rounded to 0 for p ~ 1 - 1e-13.
        log_p = self._log_probs()
        return jnp.exp(log_p) * -jnp.expm1(log_p)

    def _covariance(self) -> Array:
        p = self._probs()
        eye = jnp.eye(p.shape[-1], dtype=bool)
        outer = -p[..., :, None] * p[..., None, :]
        return jnp.where(eye, self._variance()[..., None, :], outer)

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
        r, a, k = jnp.broadcast_arrays(r, a, k)
        log_p, log_q = jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)
        # k >= 1: log C(k + r - 1, k) = -log k - log B(k, r) with Stirling's log B (exact
        # corrections delta), paired with k log p + r log(1 - p) into
        #   -k phi(p s/k) - r phi((1 - p) s/r) + log(r/(k s))/2 - log(2 pi)/2
        #   - delta(k) - delta(r) + delta(s),  s = k + r,  phi(u) = u - 1 - log u >= 0
        # (the linear parts cancel exactly), so no terms of size k log k cancel (the direct
        # sum lost 2 digits in float32 at k = r = 1e6). k = 0: r log(1 - p), exactly.
        positive = k >= 1
        kp = jnp.where(positive, k, 1.0)
        s = kp + r
        counts = (
            -kp * _special.expm1_plus(-(log_p + jnp.log(s / kp)))
            - r * _special.expm1_plus(-(log_q + jnp.log(s / r)))
            + 0.5 * (jnp.log(r) - jnp.log(kp) - jnp.log(s))
            - _HALF_LOG_2PI
            - sum(sign * d for sign, d in zip((1, 1, -1), _deltas(kp, r, s), strict=True))
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
        return self._full(self.total_count * jnp.exp(self.logits))

    def _variance(self) -> Array:
        odds = jnp.exp(jnp.asarray(self.logits, self.dtype))
        return self._full(self.total_count * odds * (1.0 + odds))

    def _mode(self) -> Array:
        # floor((r - 1) p / (1 - p)) for r > 1, else 0.
        r = jnp.asarray(self.total_count, self.dtype)
        odds = jnp.exp(jnp.asarray(self.logits, self.dtype))
        return self._full(jnp.where(r > 1, jnp.floor((r - 1.0) * odds), 0.0))
