"""Helpers shared by the family modules of :mod:`jelbo.distributions` and by :mod:`jelbo.kl`.

Private to jelbo (the module is imported by design from those modules, nowhere else): the
constant :math:`\\tfrac12\\log 2\\pi`, the common floating dtype of several parameters, the
masked log-softmax of the two categorical families, an accurate logit, and
:class:`BinaryProbsLogits`, the ``probs=``/``logits=`` parameterization of the binary families.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
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


def _dtype(dist: Any) -> Any:
    """A distribution's floating dtype (``Distribution.dtype``, for the mixins below)."""
    return jnp.result_type(float, *jax.tree_util.tree_leaves(dist))


def logit(p: ArrayLike) -> Array:
    r""":math:`\log p - \log(1-p)` to full relative precision: as
    :math:`\mathrm{log1p}((2p-1)/(1-p))` for :math:`p > 1/4` (:math:`2p - 1` and
    :math:`1 - p` are exact there), else :math:`\log p - \mathrm{log1p}(-p)`."""
    p = jnp.asarray(p)
    near = p > 0.25
    p_near = jnp.where(near, p, 0.5)
    p_far = jnp.where(near, 0.125, p)
    return jnp.where(
        near, jnp.log1p((2.0 * p_near - 1.0) / (1.0 - p_near)), jnp.log(p_far) - jnp.log1p(-p_far)
    )


class BinaryProbsLogits:
    r"""Mixin of the families of a success probability given as ``probs=`` :math:`p` or
    ``logits=`` :math:`a = \log(p/(1-p))` (exactly one), the one given stored as it is.

    Storing what was given (as NumPyro does) keeps the family exact in its own
    parameterization: ``Bernoulli(probs=0.9).mean()`` is ``0.9``, ``log_prob`` reads
    :math:`\log p` and :math:`\log(1-p)` directly for ``probs`` (exact near 0 and 1, where a
    round trip through the logits would not be) and ``log_sigmoid`` for ``logits``, and the
    gradient with respect to the given parameter is that of its own formula. The other is a
    property: ``logits`` by :func:`logit`, ``probs`` by the sigmoid. A family using it
    declares the storage fields ``_probs = keyword_parameter("probs")`` and
    ``_logits = keyword_parameter("logits")``.
    """

    _probs: ArrayLike | None
    _logits: ArrayLike | None
    parameterizations: ClassVar[tuple[tuple[str, ...], ...]] = (("probs", "logits"),)

    @property
    def probs(self) -> Array:
        r""":math:`p`: as given, or :math:`\sigma(a)` from the logits (as
        :math:`\exp\log\sigma(a)`, whose derivative :math:`\sigma(a)\sigma(-a)` keeps its
        small factor; the sigmoid's own, :math:`\sigma(a)(1 - \sigma(a))`, is 0 from
        :math:`a \approx 37` in float64)."""
        if self._probs is not None:
            return jnp.asarray(self._probs, _dtype(self))
        return jnp.exp(jax.nn.log_sigmoid(jnp.asarray(self._logits, _dtype(self))))

    @property
    def logits(self) -> Array:
        r""":math:`a = \log(p/(1-p))`: as given, or from the probabilities."""
        if self._logits is not None:
            return jnp.asarray(self._logits, _dtype(self))
        return logit(jnp.asarray(self._probs, _dtype(self)))


class CategoricalProbsLogits:
    r"""Mixin of the families of categorical probabilities along the last axis given as
    ``probs=`` :math:`\pi` or ``logits=`` :math:`a` (exactly one), stored as given; the
    other is a property (``softmax(logits)``, or ``log(probs)``). A family using it declares
    the storage fields as :class:`BinaryProbsLogits` says."""

    _probs: ArrayLike | None
    _logits: ArrayLike | None
    parameterizations: ClassVar[tuple[tuple[str, ...], ...]] = (("probs", "logits"),)

    def _given(self) -> ArrayLike:
        """The stored parameter (``logits`` or ``probs``), for its shape."""
        return self._logits if self._logits is not None else self._probs  # type: ignore[return-value]

    @property
    def num_categories(self) -> int:
        """The number of categories :math:`C` (the last axis of ``probs`` or ``logits``)."""
        return jnp.shape(self._given())[-1]

    @property
    def probs(self) -> Array:
        """The probabilities, shape ``(*batch, C)``: as given, or the softmax of the logits
        (as ``exp(log_softmax)``: relative precision for small probabilities and for the
        derivatives of a dominant one)."""
        if self._probs is not None:
            return jnp.asarray(self._probs, _dtype(self))
        return jnp.exp(_special.log_softmax(jnp.asarray(self._logits, _dtype(self)), axis=-1))

    @property
    def logits(self) -> Array:
        """Unnormalized log-probabilities, shape ``(*batch, C)``: as given, or ``log(probs)``
        (``-inf`` for a probability 0)."""
        if self._logits is not None:
            return jnp.asarray(self._logits, _dtype(self))
        # -inf at a probability 0 with a zero (not infinite) derivative there, so that the
        # zero cotangent of a category not chosen stays 0 (not 0 * inf = NaN).
        p = jnp.asarray(self._probs, _dtype(self))
        positive = p > 0
        return jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), -jnp.inf)

    def _masked_log_probs(self) -> tuple[Array, Array, Array]:
        """``(p, log p, mask)``, normalized, with the zero-probability categories masked
        (and 0 in ``log p``), for ``p log p`` terms without NaN gradients; ``p`` is
        ``probs`` as given, or ``exp(log p)``."""
        if self._logits is not None:
            log_p, mask = masked_log_softmax(jnp.asarray(self._logits, _dtype(self)))
            return jnp.exp(log_p), log_p, mask
        p = jnp.asarray(self._probs, _dtype(self))
        mask = p == 0
        return p, jnp.log(jnp.where(mask, 1.0, p)), mask
