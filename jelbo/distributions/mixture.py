r"""Finite mixtures of one family: GMM priors, VampPriors, mixture likelihoods.

A mixture's samples are not a differentiable function of its weights, so it is not
reparameterized; as a prior it only needs ``log_prob``, which is exact, so it works with
``jelbo.elbo(..., kl="mc")`` (and with the importance-weighted bounds) unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from jelbo import _checks
from jelbo import constraints as _c
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import Constraint
from jelbo.distributions.base import Distribution, log_prob, sample

__all__ = ["MixtureSameFamily"]


class MixtureSameFamily(Distribution):
    r"""A mixture of :math:`K` distributions of one family with weights
    :math:`w = \mathrm{softmax}(a)`.

    .. math:: \log p(x) = \mathrm{logsumexp}_k\big(\log w_k + \log p_k(x)\big).

    The components are one distribution whose **last batch axis** indexes them: e.g. a
    Gaussian-mixture prior with :math:`K` components in :math:`D` dimensions is
    ``MixtureSameFamily(jnp.zeros(K), jelbo.Normal(loc, scale))`` with ``loc`` and ``scale``
    of shape ``(K, D)``; a VampPrior (Tomczak & Welling 2018) is the same with ``loc`` and
    ``scale`` the encoder's outputs for :math:`K` pseudo-inputs. The event shape is the
    components'; the batch shape is ``broadcast(mixture_logits.shape[:-1],
    components.batch_shape[:-1])``.

    ``sample`` draws every component and picks one per draw by a categorical draw of the
    weights (cost :math:`K` times a component draw). It is **not reparameterized**
    (``is_reparameterized = False``, so ``jelbo.elbo(..., grad_estimator="reparam")``
    refuses it as ``q``) and its samples carry no gradient. Mean and variance follow the
    laws of total expectation and variance:
    :math:`\mathbb E[x] = \sum_k w_k\mu_k`,
    :math:`\mathrm{Var}[x] = \sum_k w_k(\sigma_k^2 + \mu_k^2) - \mathbb E[x]^2`.

    Attributes:
        mixture_logits: :math:`a`, unnormalized log-weights, shape ``(*batch, K)``
            (``-inf`` drops a component).
        components: a jelbo distribution with batch shape ``(*batch, K)``.
    """

    mixture_logits: ArrayLike
    components: Distribution
    is_reparameterized: ClassVar[bool] = False
    arg_constraints: ClassVar[dict[str, Constraint]] = {"mixture_logits": _c.real_or_neg_inf}

    @property
    def support(self) -> Constraint | None:  # type: ignore[override]
        """The components' support."""
        return self.components.support

    def _validate(self) -> None:
        _checks.check_instance(self.components, Distribution, "components")
        logits = jnp.shape(self.mixture_logits)
        batch = self.components.batch_shape
        if len(logits) < 1 or len(batch) < 1 or batch[-1] != logits[-1]:
            raise ValueError(
                "MixtureSameFamily needs `mixture_logits` of shape (*batch, K) and `components` "
                f"with batch shape (*batch, K); got `mixture_logits` {logits} and "
                f"`components` ({type(self.components).__name__}) with batch shape {batch}."
            )
        self._shapes()

    def _shapes(self) -> Shape:
        return _checks.broadcast_shapes(
            ("mixture_logits[..., :-1]", jnp.shape(self.mixture_logits)[:-1]),
            ("components.batch_shape[:-1]", self.components.batch_shape[:-1]),
        )

    @property
    def batch_shape(self) -> Shape:
        return self._shapes()

    @property
    def event_shape(self) -> Shape:
        return self.components.event_shape

    @property
    def num_components(self) -> int:
        """:math:`K`."""
        return jnp.shape(self.mixture_logits)[-1]

    def _sample_density_issue(self) -> str | None:
        return self.components._sample_density_issue()

    def _log_weights(self) -> Array:
        return jax.nn.log_softmax(jnp.asarray(self.mixture_logits, self.dtype), axis=-1)

    def _expand(self, x: Array) -> Array:
        """``x`` with a component axis inserted before the event axes."""
        return jnp.expand_dims(x, x.ndim - len(self.event_shape))

    def _log_prob(self, x: Array) -> Array:
        per_component = log_prob(self.components, self._expand(x))
        return logsumexp(self._log_weights() + per_component, axis=-1)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        key_components, key_pick = jax.random.split(key)
        event = self.event_shape
        full_batch = self.batch_shape + (self.num_components,)
        draws = sample(key_components, self.components, sample_shape)
        draws = jnp.broadcast_to(draws, sample_shape + full_batch + event)
        logits = jnp.broadcast_to(self._log_weights(), full_batch)
        pick = jax.random.categorical(
            key_pick, logits, axis=-1, shape=sample_shape + self.batch_shape
        )
        index = jnp.reshape(pick, pick.shape + (1,) * (len(event) + 1))
        chosen = jnp.take_along_axis(draws, index, axis=len(sample_shape) + len(self.batch_shape))
        return jax.lax.stop_gradient(jnp.squeeze(chosen, len(sample_shape) + len(self.batch_shape)))

    def _weights(self) -> Array:
        weights = jnp.exp(self._log_weights())
        return jnp.reshape(weights, weights.shape + (1,) * len(self.event_shape))

    def _mean(self) -> Array:
        axis = -1 - len(self.event_shape)
        return jnp.sum(self._weights() * self.components.mean(), axis=axis)

    def _variance(self) -> Array:
        axis = -1 - len(self.event_shape)
        means = self.components.mean()
        second = self.components.variance() + jnp.square(means)
        mean = jnp.sum(self._weights() * means, axis=axis)
        return jnp.sum(self._weights() * second, axis=axis) - jnp.square(mean)

    def __repr__(self) -> str:
        return (
            f"MixtureSameFamily(mixture_logits={_checks.describe(self.mixture_logits)}, "
            f"components={self.components!r})"
        )
