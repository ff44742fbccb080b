"""Helpers shared by the family modules of :mod:`jelbo.distributions` and by :mod:`jelbo.kl`.

Private to jelbo (the module is imported by design from those modules, nowhere else): the
constant :math:`\\tfrac12\\log 2\\pi`, the common floating dtype of several parameters, the
parameter-value checks of ``_parameter_checks`` and the masked log-softmax of the two
categorical families.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from jelbo import _special
from jelbo._typing import Array, ArrayLike

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# One ``(name, ok, requirement)`` entry of ``Distribution._parameter_checks``.
Check = tuple[str, Any, str]


def common_float(*values: Any) -> list[Array]:
    """The values as arrays of their common floating dtype, broadcast against each other."""
    dtype = jnp.result_type(float, *values)
    return jnp.broadcast_arrays(*(jnp.asarray(v, dtype) for v in values))


def finite_checks(dist: Any, *names: str) -> list[Check]:
    """``name`` must be finite, for each of ``names`` (fields of ``dist``)."""
    return [(n, jnp.isfinite(jnp.asarray(getattr(dist, n))), "finite") for n in names]


def positive_checks(dist: Any, *names: str) -> list[Check]:
    """``name`` must be ``> 0`` and finite, for each of ``names`` (fields of ``dist``)."""

    def ok(value: Any) -> Array:
        value = jnp.asarray(value)
        return (value > 0) & jnp.isfinite(value)

    return [(n, ok(getattr(dist, n)), "> 0 and finite") for n in names]


def not_nan_or_plus_inf(value: ArrayLike) -> Array:
    """True where ``value`` is neither NaN nor ``+inf`` (``-inf`` allowed)."""
    value = jnp.asarray(value)
    return ~jnp.isnan(value) & (value < jnp.inf)


def masked_log_softmax(logits: ArrayLike) -> tuple[Array, Array]:
    """``(log_softmax(logits), mask)`` where ``mask`` marks the zero-probability categories.

    The masked entries of the first output are set to 0, so that ``p * log p`` and
    ``p * (log p - log q)`` terms can be dropped with ``where`` without NaN gradients.
    """
    log_p = _special.log_softmax(logits, axis=-1)
    mask = jnp.isneginf(log_p)
    return jnp.where(mask, 0.0, log_p), mask


def log_scale(scale: ArrayLike, log_scale: ArrayLike | None, dtype: Any) -> Array:
    """:math:`\\log\\sigma` from an optional exact ``log_scale`` (used where ``scale``
    underflows, see :meth:`jelbo.Normal.from_log_var`), else ``log(scale)``."""
    if log_scale is not None:
        return jnp.asarray(log_scale, dtype)
    return jnp.log(jnp.asarray(scale, dtype))
