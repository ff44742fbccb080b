r"""Reinterpreting batch axes as event axes: :class:`Independent`.

A distribution with batch shape ``(*B, *R)`` describes independent variables, one per batch
entry; ``Independent(base, len(R))`` describes the same variables as *one* variable with
event shape ``(*R, *base.event_shape)``, whose log-density is the sum

.. math:: \log p(x) = \sum_{r \in R} \log p_{\text{base}}(x_r),

(NumPyro's ``Independent``, TFP's ``tfd.Independent``). jelbo's objectives treat a ``q``'s
batch shape as the data batch (one posterior per datapoint), so several latent variables per
datapoint — e.g. ``N`` relaxed categoricals with logits ``(B, N, C)`` — are one ``q`` of batch
shape ``(B,)`` with ``Independent(RelaxedOneHotCategorical(t, logits=logits), 1)``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jelbo import _checks
from jelbo._typing import Array, Shape
from jelbo.constraints import Constraint
from jelbo.distributions.base import (
    Distribution,
    entropy,
    log_prob,
    sample,
    sample_and_log_prob,
    sample_and_stopped_log_prob,
)
from jelbo.module import static_field

__all__ = ["Independent"]


class Independent(Distribution):
    r"""``base`` with its last ``reinterpreted_batch_ndims`` batch axes moved into the event.

    With ``base.batch_shape == (*B, *R)``, ``len(R) == reinterpreted_batch_ndims``:
    ``batch_shape == B``, ``event_shape == (*R, *base.event_shape)``, and ``log_prob``
    (and ``entropy``, and the log-density of :func:`jelbo.sample_and_log_prob`) is the
    base's summed over ``R``. ``sample``, ``mean``, ``variance`` and ``mode`` are the
    base's (same arrays); ``is_reparameterized`` and ``support`` too. The KL between two
    ``Independent`` with the same ``reinterpreted_batch_ndims`` is the sum of the bases'
    KLs over ``R`` (registered in :mod:`jelbo.kl`).

    Example: three latent relaxed categoricals of 10 categories per datapoint::

        q = jelbo.Independent(
            jelbo.RelaxedOneHotCategorical(0.5, logits=logits), 1  # logits (B, 3, 10)
        )                                   # batch (B,), event (3, 10)

    Attributes:
        base: a jelbo distribution.
        reinterpreted_batch_ndims: how many trailing batch axes of ``base`` become event
            axes, a Python int between 0 and ``len(base.batch_shape)`` (static).
    """

    base: Distribution
    reinterpreted_batch_ndims: int = static_field()

    def _validate(self) -> None:
        _checks.check_instance(self.base, Distribution, "base")
        n = self.reinterpreted_batch_ndims
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise TypeError(
                "Independent: `reinterpreted_batch_ndims` must be a Python int >= 0 (it is "
                f"static); got {n!r}."
            )
        batch = self.base.batch_shape
        if n > len(batch):
            raise ValueError(
                f"Independent: `reinterpreted_batch_ndims`={n} exceeds the number of batch axes "
                f"of `base` ({type(self.base).__name__} with batch shape {batch} and event "
                f"shape {self.base.event_shape}); it can move at most {len(batch)} axes into "
                "the event."
            )

    @property
    def _split(self) -> int:
        return len(self.base.batch_shape) - self.reinterpreted_batch_ndims

    @property
    def batch_shape(self) -> Shape:
        return self.base.batch_shape[: self._split]

    @property
    def event_shape(self) -> Shape:
        return self.base.batch_shape[self._split :] + self.base.event_shape

    @property
    def is_reparameterized(self) -> bool:  # type: ignore[override]
        """Whether samples are differentiable in the parameters: the base's."""
        return self.base.is_reparameterized

    @property
    def dtype(self) -> Any:
        return self.base.dtype

    @property
    def support(self) -> Constraint | None:  # type: ignore[override]
        """The base's support (for each coordinate of the event)."""
        return self.base.support

    def _sum(self, values: Array) -> Array:
        """``values`` (the base's batch shape, after any leading axes) summed over R."""
        n = self.reinterpreted_batch_ndims
        return jnp.sum(values, axis=tuple(range(-n, 0))) if n else values

    def _log_prob(self, x: Array) -> Array:
        return self._sum(log_prob(self.base, x))

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        return sample(key, self.base, sample_shape)

    def _sample_and_log_prob(self, key: Array, sample_shape: Shape) -> tuple[Array, Array]:
        x, log_p = sample_and_log_prob(key, self.base, sample_shape)
        return x, self._sum(log_p)

    def _sample_and_stopped_log_prob(self, key: Array, sample_shape: Shape) -> tuple[Array, Array]:
        x, log_p = sample_and_stopped_log_prob(key, self.base, sample_shape)
        return x, self._sum(log_p)

    def _sample_density_issue(self) -> str | None:
        return self.base._sample_density_issue()

    def _entropy(self) -> Array:
        return self._sum(jnp.broadcast_to(entropy(self.base), self.base.batch_shape))

    def _mean(self) -> Array:
        return self.base.mean()

    def _variance(self) -> Array:
        return self.base.variance()

    def _mode(self) -> Array:
        return self.base.mode()

    def _covariance(self) -> Array:
        if self.reinterpreted_batch_ndims == 0:
            return self.base.covariance()
        raise self._missing(
            "covariance", " Its event has the reinterpreted axes too; use variance()."
        )
