r"""Relaxed (continuous) versions of discrete latents: the Concrete / Gumbel-softmax family.

A Concrete sample is a deterministic, differentiable function of the logits and of
parameter-free noise, so these families are reparameterized, and their exact log-densities
make ``jelbo.elbo(..., kl="mc")`` against a relaxed prior well defined (Maddison, Mnih & Teh,
"The Concrete Distribution", ICLR 2017; Jang, Gu & Poole, "Categorical Reparameterization
with Gumbel-Softmax", ICLR 2017). As the temperature goes to 0 the samples become one-hot
(Bernoulli) draws with the probabilities of the logits.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, logsumexp

from jelbo import _checks, _random
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.distributions.base import Distribution, Factorized
from jelbo.module import static_field

__all__ = ["RelaxedBernoulli", "RelaxedOneHotCategorical"]


def _uniform(key: Array, shape: Shape, dtype: jnp.dtype) -> Array:
    """Uniform draws in ``[tiny, 1)`` (so that their logs are finite), generated flat."""
    tiny = float(jnp.finfo(dtype).tiny)
    flat = _random.uniform(key, (math.prod(shape),), dtype, minval=tiny, maxval=1.0)
    return flat.reshape(shape)


def _log_logistic_density(t: Array) -> Array:
    """``log σ(t) σ(-t) = t - 2 softplus(t)``, written so that it is finite for any finite t."""
    a = jnp.abs(t)
    return -a - 2.0 * jnp.log1p(jnp.exp(-a))


class RelaxedBernoulli(Factorized):
    r"""Factorized binary Concrete (relaxed Bernoulli) on :math:`(0, 1)^K`.

    With temperature :math:`\lambda > 0` and logits :math:`a`, a draw is
    :math:`x = \sigma\big((a + \log u - \log(1-u))/\lambda\big)`, :math:`u \sim U(0,1)`, and

    .. math:: p(x) = \frac{\lambda\, e^{a}\, x^{-\lambda-1}(1-x)^{-\lambda-1}}
              {\big(e^{a} x^{-\lambda} + (1-x)^{-\lambda}\big)^2}
              \qquad\text{(Maddison et al. 2017, eq. 21)}.

    ``log_prob`` evaluates it in logit space: with :math:`y = \log x - \log(1-x)` and
    :math:`t = a - \lambda y`,
    :math:`\log p(x) = \log\lambda + t - 2\,\mathrm{softplus}(t) + 2\,\mathrm{softplus}(y) - y`
    (a logistic log-density minus the log-Jacobian :math:`\log x(1-x)`), finite for any
    finite logits and temperature. ``x`` is clamped to ``[tiny, 1 - epsneg]`` of its dtype
    (the range samples are clamped to, where low temperatures would round them to 0 or 1);
    values outside ``[0, 1]`` have log-density ``-inf``. :math:`P(x > 1/2) = \sigma(a)` at
    every temperature, and the samples tend to Bernoulli(:math:`\sigma(a)`) draws as
    :math:`\lambda \to 0`.

    Attributes:
        temperature: :math:`\lambda > 0`, a scalar or broadcastable to ``logits``.
        logits: :math:`a`, shape ``(*batch, K)``.
    """

    temperature: ArrayLike
    logits: ArrayLike
    is_reparameterized: ClassVar[bool] = True

    def _bounds(self) -> tuple[float, float]:
        finfo = jnp.finfo(self.dtype)
        return float(finfo.tiny), 1.0 - float(finfo.epsneg)

    def _log_prob_elementwise(self, x: Array) -> Array:
        low, high = self._bounds()
        inside = (x >= 0) & (x <= 1)
        xc = jnp.clip(jnp.where(inside, x, 0.5), low, high)
        y = jnp.log(xc) - jnp.log1p(-xc)
        temperature = jnp.asarray(self.temperature, self.dtype)
        t = jnp.asarray(self.logits, self.dtype) - temperature * y
        log_p = jnp.log(temperature) + _log_logistic_density(t) - _log_logistic_density(y)
        return jnp.where(inside, log_p, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        u = _uniform(key, shape, self.dtype)
        y = (self.logits + jnp.log(u) - jnp.log1p(-u)) / self.temperature
        low, high = self._bounds()
        return jnp.clip(jax.nn.sigmoid(y), low, high)


class RelaxedOneHotCategorical(Distribution):
    r"""Concrete / Gumbel-softmax distribution on the probability simplex.

    With temperature :math:`\lambda > 0` and logits :math:`a \in \mathbb R^C`, a draw is
    :math:`x = \mathrm{softmax}((a + g)/\lambda)` with i.i.d. Gumbel noise :math:`g`; its
    density with respect to Lebesgue measure on the first :math:`C-1` coordinates is

    .. math:: p(x) = (C-1)!\,\lambda^{C-1} \prod_{k=1}^{C}
              \frac{e^{a_k} x_k^{-\lambda-1}}{\sum_{j} e^{a_j} x_j^{-\lambda}}
              \qquad\text{(Maddison et al. 2017, eq. 3)},

    evaluated as :math:`\log\Gamma(C) + (C-1)\log\lambda + \sum_k (a_k - (\lambda+1)\log x_k)
    - C\,\mathrm{logsumexp}_k(a_k - \lambda\log x_k)` (``x`` is clamped below at ``tiny``
    of its dtype, where low temperatures round coordinates to 0). Entries of ``logits``
    equal to ``-inf`` are not supported (drop the category instead). As
    :math:`\lambda \to 0` the samples tend to one-hot draws with probabilities
    :math:`\mathrm{softmax}(a)`; :math:`\arg\max x` has exactly those probabilities at every
    temperature.

    With ``straight_through=True`` (Jang et al. 2017, "Straight-Through Gumbel-Softmax") a
    sample is exactly ``one_hot(argmax(relaxed))`` for the relaxed sample drawn with the same
    key, and its gradient is the relaxed sample's. ``log_prob`` is the relaxed density
    either way (it is not a density of the hard samples).

    Attributes:
        temperature: :math:`\lambda > 0`, a scalar or an array broadcasting against the batch
            shape ``logits.shape[:-1]``.
        logits: :math:`a`, shape ``(*batch, C)``.
        straight_through: static flag (pytree aux data, not a leaf).
    """

    temperature: ArrayLike
    logits: ArrayLike
    straight_through: bool = static_field(default=False)
    is_reparameterized: ClassVar[bool] = True

    def _validate(self) -> None:
        if jnp.ndim(self.logits) < 1:
            raise ValueError(
                "RelaxedOneHotCategorical `logits` need a last axis over the categories; got "
                f"shape {jnp.shape(self.logits)}."
            )
        if not isinstance(self.straight_through, bool):
            raise TypeError(
                "RelaxedOneHotCategorical `straight_through` must be a Python bool (it is "
                f"static); got {self.straight_through!r}."
            )
        self._shapes()

    def _shapes(self) -> Shape:
        return _checks.broadcast_shapes(
            ("temperature", jnp.shape(self.temperature)),
            ("logits[..., :-1]", jnp.shape(self.logits)[:-1]),
        )

    @property
    def batch_shape(self) -> Shape:
        return self._shapes()

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self.logits)[-1:])

    def _temperature(self) -> Array:
        """The temperature with a trailing axis, to broadcast against ``(..., C)``."""
        return jnp.asarray(self.temperature, self.dtype)[..., None]

    def _log_prob(self, x: Array) -> Array:
        c = self.event_shape[0]
        temperature = self._temperature()
        log_x = jnp.log(jnp.maximum(x, jnp.finfo(self.dtype).tiny))
        log_p = (
            gammaln(jnp.asarray(c, self.dtype))
            + (c - 1) * jnp.log(temperature[..., 0])
            + jnp.sum(self.logits - (temperature + 1.0) * log_x, axis=-1)
            - c * logsumexp(self.logits - temperature * log_x, axis=-1)
        )
        inside = jnp.all(x >= 0, axis=-1)
        return jnp.where(inside, log_p, -jnp.inf)

    def _relaxed(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.batch_shape + self.event_shape
        gumbel = -jnp.log(-jnp.log(_uniform(key, shape, self.dtype)))
        return jax.nn.softmax((self.logits + gumbel) / self._temperature(), axis=-1)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        relaxed = self._relaxed(key, sample_shape)
        if not self.straight_through:
            return relaxed
        hard = jax.nn.one_hot(jnp.argmax(relaxed, axis=-1), relaxed.shape[-1], dtype=relaxed.dtype)
        # Exactly `hard` in value (r - r == 0 for finite r); the relaxed sample's gradient.
        return hard + (relaxed - jax.lax.stop_gradient(relaxed))
