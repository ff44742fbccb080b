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
from jelbo import constraints as _c
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import Constraint
from jelbo.distributions._util import BinaryProbsLogits, CategoricalProbsLogits
from jelbo.distributions.base import Distribution, Factorized, keyword_parameter
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


class RelaxedBernoulli(BinaryProbsLogits, Factorized):
    r"""Factorized binary Concrete (relaxed Bernoulli) on :math:`(0, 1)^K`, with a temperature
    and ``probs=`` :math:`p` or ``logits=`` :math:`a = \log(p/(1-p))` (exactly one; the names of
    NumPyro and torch).

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
    :math:`\lambda \to 0`. Everything is computed from the logits (``probs`` are converted
    by an accurate logit). ``RelaxedBernoulli(temperature, x)`` positionally is ``logits``
    (jelbo 0.2; deprecated).

    Attributes:
        temperature: :math:`\lambda > 0`, a scalar or broadcastable to the others.
        probs: :math:`p`, shape ``(*batch, K)`` or ``()``; a property when ``logits`` was given.
        logits: :math:`a`, likewise; a property when ``probs`` was given.
    """

    temperature: ArrayLike
    _probs: ArrayLike | None = keyword_parameter("probs")
    _logits: ArrayLike | None = keyword_parameter("logits")
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "temperature": _c.positive,
        "probs": _c.unit_interval,
        "logits": _c.extended_real,
    }
    support: ClassVar[Constraint] = _c.unit_interval
    _legacy_positional: ClassVar[tuple[str, ...]] = ("temperature", "logits")
    _legacy_meaning: ClassVar[str] = "logits"

    def _bounds(self) -> tuple[float, float]:
        finfo = jnp.finfo(self.dtype)
        return float(finfo.tiny), 1.0 - float(finfo.epsneg)

    def _log_prob_elementwise(self, x: Array) -> Array:
        low, high = self._bounds()
        inside = (x >= 0) & (x <= 1)
        xc = jnp.clip(jnp.where(inside, x, 0.5), low, high)
        y = jnp.log(xc) - jnp.log1p(-xc)
        temperature = jnp.asarray(self.temperature, self.dtype)
        t = self.logits - temperature * y
        log_p = jnp.log(temperature) + _log_logistic_density(t) - _log_logistic_density(y)
        return jnp.where(inside, log_p, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        u = _uniform(key, shape, self.dtype)
        y = (self.logits + jnp.log(u) - jnp.log1p(-u)) / self.temperature
        low, high = self._bounds()
        return jnp.clip(jax.nn.sigmoid(y), low, high)


class RelaxedOneHotCategorical(CategoricalProbsLogits, Distribution):
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
    either way, which is not a density of the one-hot samples: so a straight-through ``q``
    refuses everything that evaluates :math:`\log q` at its own samples
    (:func:`jelbo.sample_and_log_prob`, ``jelbo.ELBO(kl="mc")``, STL, the score estimators,
    ``IWAE``, ``Renyi``, :func:`jelbo.mc_kl`; in one trial that average was -1.2 where the
    categorical KL was 0.16). Its one-hot samples are exactly
    ``OneHotCategorical(logits=logits)`` draws, so its KL to a ``OneHotCategorical`` (or to
    another straight-through prior) is registered as that categorical KL:
    ``jelbo.ELBO(kl="analytic")`` with such a prior is the discrete model's ELBO, trained with
    the straight-through gradient.

    ``probs=`` are converted to logits ``log(probs)`` (a probability 0 is a ``-inf`` logit,
    which is not supported). ``RelaxedOneHotCategorical(temperature, x)`` positionally is
    ``logits`` (jelbo 0.2; deprecated).

    Attributes:
        temperature: :math:`\lambda > 0`, a scalar or an array broadcasting against the batch
            shape ``(*batch,)``.
        probs: :math:`\mathrm{softmax}(a)`, shape ``(*batch, C)``; a property when
            ``logits`` was given.
        logits: :math:`a`, shape ``(*batch, C)``; a property (``log(probs)``) when ``probs``
            was given.
        straight_through: static flag (pytree aux data, not a leaf).
    """

    temperature: ArrayLike
    _probs: ArrayLike | None = keyword_parameter("probs")
    _logits: ArrayLike | None = keyword_parameter("logits")
    straight_through: bool = static_field(default=False, kw_only=True)
    is_reparameterized: ClassVar[bool] = True
    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "temperature": _c.positive,
        "probs": _c.simplex,
        "logits": _c.real,
    }
    support: ClassVar[Constraint] = _c.simplex
    _legacy_positional: ClassVar[tuple[str, ...]] = ("temperature", "logits", "straight_through")
    _legacy_meaning: ClassVar[str] = "logits"

    def _validate(self) -> None:
        if jnp.ndim(self._given()) < 1:
            raise ValueError(
                "RelaxedOneHotCategorical `logits` need a last axis over the categories; got "
                f"shape {jnp.shape(self._given())}."
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
            ("logits[..., :-1]", jnp.shape(self._given())[:-1]),
        )

    @property
    def batch_shape(self) -> Shape:
        return self._shapes()

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self._given())[-1:])

    def _sample_density_issue(self) -> str | None:
        if not self.straight_through:
            return None
        return (
            "q is a straight-through RelaxedOneHotCategorical: its samples are one-hot "
            "vectors, where log_prob (the relaxed density) is not their density, so a Monte "
            "Carlo KL, importance weight or score function from them estimates nothing. Use "
            "kl='analytic' with a OneHotCategorical prior (the KL of the one-hot samples' law, "
            "OneHotCategorical(logits=q.logits): the categorical KL), or straight_through=False "
            "to train the relaxed model with kl='mc'."
        )

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
