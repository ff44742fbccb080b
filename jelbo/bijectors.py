r"""Bijectors: invertible, differentiable maps with tractable log-det-Jacobians.

A bijector is a small immutable pytree (a frozen dataclass whose fields are its parameters,
e.g. :class:`Sigmoid`'s ``low``/``high``), so it passes through ``jax.jit``, ``jax.vmap``,
``jax.grad`` and optax like a distribution. It acts on the **last axis as the event**
(jelbo's convention) and broadcasts over leading batch axes; log-det-Jacobians are summed
over the event and have the batch shape. Free functions :func:`forward`, :func:`inverse`,
:func:`forward_log_det_jacobian`, :func:`inverse_log_det_jacobian` and
:func:`forward_and_log_det` (and the same as methods) are the public surface.

Elementwise maps (:class:`Identity`, :class:`Exp`, :class:`Softplus`, :class:`Sigmoid`,
:class:`Affine`) keep the event shape. :class:`StickBreaking` maps :math:`\mathbb R^{K-1}`
to the open :math:`K`-simplex, :class:`Ordered`/:class:`PositiveOrdered` map
:math:`\mathbb R^K` to increasing vectors, and :class:`FillScaleTriL`/:class:`CorrCholesky`
map a vector to a :math:`K\times K` matrix (the output has one more axis). For the maps onto
a manifold (the simplex, Cholesky factors) the log-det-Jacobian is that of the map onto the
free coordinates, as in Stan: the first :math:`K-1` simplex coordinates, the strictly lower
triangle of a correlation Cholesky factor, the lower triangle of a scale factor.

Every formula is evaluated in a stable form (log-sigmoids instead of logs of sigmoids,
stick-breaking in log space, remaining stick lengths by reverse cumulative sums), so the
values and their gradients stay finite wherever the math is.

References: Stan Reference Manual, "Constraint transforms"; Carpenter et al. (2017), Stan;
Lewandowski, Kurowicka and Joe (2009) for the correlation transform.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jelbo._typing import Array, ArrayLike, Shape
from jelbo.module import Module

__all__ = [
    "Affine",
    "Bijector",
    "Chain",
    "CorrCholesky",
    "Exp",
    "FillScaleTriL",
    "Identity",
    "Ordered",
    "PositiveOrdered",
    "Sigmoid",
    "Softplus",
    "StickBreaking",
    "forward",
    "forward_and_log_det",
    "forward_log_det_jacobian",
    "inverse",
    "inverse_log_det_jacobian",
    "same_bijector",
]

_LOG2 = math.log(2.0)


class Bijector(Module, abc.ABC):
    r"""Base class of bijectors: subclass it and declare the parameters as annotated fields.

    A bijector is a :class:`jelbo.Module`: every field is a pytree child (an array, a Python
    number or another pytree such as a bijector) unless marked with
    :func:`jelbo.static_field`. Subclasses implement ``_forward(x)``, ``_inverse(y)`` and
    ``_forward_log_det_jacobian(x)`` (summed over the event, batch shape), and optionally
    ``_inverse_log_det_jacobian(y)`` (default: minus the forward one at ``inverse(y)``).
    A bijector that changes the event's shape sets ``event_ndims_in``/``event_ndims_out``
    and implements ``forward_shape``/``inverse_shape`` (the event shapes, static).
    """

    event_ndims_in: ClassVar[int] = 1
    event_ndims_out: ClassVar[int] = 1
    #: Elementwise maps also take scalars in forward/inverse (the log-dets need the event).
    elementwise: ClassVar[bool] = False

    # --- hooks ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _forward(self, x: Array) -> Array: ...

    @abc.abstractmethod
    def _inverse(self, y: Array) -> Array: ...

    @abc.abstractmethod
    def _forward_log_det_jacobian(self, x: Array) -> Array: ...

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return -self._forward_log_det_jacobian(self._inverse(y))

    def _forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """``(forward(x), forward_log_det_jacobian(x))`` in one pass; override it to share
        work between the two (default: the two hooks)."""
        return self._forward(x), self._forward_log_det_jacobian(x)

    def _inverse_given(self, y: Array, x: Array) -> Array:
        r"""Optional hook: :math:`f^{-1}(y)` where its value ``x`` is already known.

        Called with ``y = forward(x)`` (``x`` a draw of a :class:`~jelbo.Transformed`'s base)
        under a stop-gradient on the bijector's parameters, to evaluate :math:`\log q(y)`
        with :math:`q`'s parameters stopped (the STL and DReG estimators, see
        :func:`jelbo.distributions.sample_and_stopped_log_prob`). It must return ``x``'s
        value and the derivative of :math:`f^{-1}` at ``y``, i.e. tangents
        :math:`J_f(x)^{-1}\dot y`. The default recomputes the inverse, ``_inverse(y)``; a
        bijector whose inverse is costly (an autoregressive flow) can return ``x`` with a
        custom JVP (a triangular solve) instead.
        """
        del x
        return self._inverse(y)

    def forward_shape(self, shape: Shape) -> Shape:
        """The output event shape for an input event shape (static)."""
        return tuple(shape)

    def inverse_shape(self, shape: Shape) -> Shape:
        """The input event shape for an output event shape (static)."""
        return tuple(shape)

    # --- methods ----------------------------------------------------------------------------

    def forward(self, x: ArrayLike) -> Array:
        """:math:`y = f(x)`; the same as :func:`jelbo.bijectors.forward`."""
        return forward(self, x)

    def inverse(self, y: ArrayLike) -> Array:
        r""":math:`x = f^{-1}(y)`; the same as :func:`jelbo.bijectors.inverse`."""
        return inverse(self, y)

    def forward_and_log_det(self, x: ArrayLike) -> tuple[Array, Array]:
        r"""``(forward(x), forward_log_det_jacobian(x))``; as
        :func:`jelbo.bijectors.forward_and_log_det`."""
        return forward_and_log_det(self, x)

    def forward_log_det_jacobian(self, x: ArrayLike) -> Array:
        r""":math:`\log|\det \partial f/\partial x|`, batch shape."""
        return forward_log_det_jacobian(self, x)

    def inverse_log_det_jacobian(self, y: ArrayLike) -> Array:
        r""":math:`\log|\det \partial f^{-1}/\partial y|`, batch shape."""
        return inverse_log_det_jacobian(self, y)


# --- free functions -------------------------------------------------------------------------


def _apply(b: Any, v: ArrayLike, fn: str) -> Array:
    """Checks ``b`` and the event axes of ``v`` (at trace time), then calls ``b._<fn>(v)``."""
    v = _checked(b, v, fn)  # first: it checks that b is a bijector
    return getattr(b, "_" + fn)(v)


def _checked(b: Any, v: ArrayLike, fn: str) -> Array:
    """``v`` as a floating array, after checking ``b`` and ``v``'s event axes for ``fn``."""
    if not isinstance(b, Bijector):
        raise TypeError(f"{fn}: `b` must be a jelbo bijector; got {type(b).__name__}.")
    forward_direction = fn.startswith("forward")
    name = "x" if forward_direction else "y"
    ndims = b.event_ndims_in if forward_direction else b.event_ndims_out
    if b.elementwise and fn in ("forward", "inverse"):
        ndims = 0
    v = jnp.asarray(v)
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.result_type(float))
    if v.ndim < ndims:
        raise ValueError(
            f"{fn}: `{name}` needs at least {ndims} axis(es) for the event of "
            f"{type(b).__name__} (the last axis is the event); got shape {v.shape}."
        )
    event_ndims = b.event_ndims_in if forward_direction else b.event_ndims_out
    event = v.shape[max(v.ndim - event_ndims, 0) :]
    (b.forward_shape if forward_direction else b.inverse_shape)(event)
    return v


def forward(b: Bijector, x: ArrayLike) -> Array:
    r""":math:`y = f(x)` over the event (last) axis, broadcasting over batch axes.

    Args:
        b: a bijector.
        x: input of shape ``(*batch, *event_in)``.

    Returns:
        ``y`` of shape ``(*batch, *b.forward_shape(event_in))``.
    """
    return _apply(b, x, "forward")


def forward_and_log_det(b: Bijector, x: ArrayLike) -> tuple[Array, Array]:
    r""":math:`y = f(x)` and :math:`\log|\det J_f(x)|` together, in one pass.

    The same numbers as ``(forward(b, x), forward_log_det_jacobian(b, x))``; a bijector may
    share work between the two (hook ``_forward_and_log_det``), and :class:`Chain` composes
    them in one pass over its bijectors. :class:`jelbo.Transformed` uses it to give the
    log-density of its own draws without an inverse.

    Returns:
        ``(y, log_det)`` with shapes ``(*batch, *b.forward_shape(event_in))`` and ``batch``.
    """
    x = _checked(b, x, "forward_and_log_det")  # first: it checks that b is a bijector
    return b._forward_and_log_det(x)


def inverse(b: Bijector, y: ArrayLike) -> Array:
    r""":math:`x = f^{-1}(y)`, the inverse of :func:`forward` (same shape conventions)."""
    return _apply(b, y, "inverse")


def forward_log_det_jacobian(b: Bijector, x: ArrayLike) -> Array:
    r""":math:`\log|\det J_f(x)|` summed over the event; shape ``batch``.

    For maps onto a manifold (simplex, Cholesky factors) this is the Jacobian of the map onto
    the free coordinates (see the module docstring).
    """
    return _apply(b, x, "forward_log_det_jacobian")


def inverse_log_det_jacobian(b: Bijector, y: ArrayLike) -> Array:
    r""":math:`\log|\det J_{f^{-1}}(y)| = -\log|\det J_f(f^{-1}(y))|`; shape ``batch``."""
    return _apply(b, y, "inverse_log_det_jacobian")


def same_bijector(a: Bijector, b: Bijector) -> bool:
    """Whether two bijectors are provably the same map, decided at trace time.

    They are when they have the same pytree structure (types, nesting) and every pair of
    parameter leaves is the same object or two concrete arrays with equal values (same
    shape). Traced parameters that are different tracers cannot be compared while tracing
    and count as different (pass the same bijector object to both sides).
    """
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    if tree_a != tree_b:
        return False
    for u, v in zip(leaves_a, leaves_b, strict=True):
        if u is v:
            continue
        try:
            u, v = np.asarray(u), np.asarray(v)
        except jax.errors.TracerArrayConversionError:
            return False
        if u.shape != v.shape or not np.array_equal(u, v):
            return False
    return True


# --- elementwise bijectors ------------------------------------------------------------------


def _sum_event(values: Array, batch_of: Array) -> Array:
    """Sums ``values`` over the last axis after broadcasting against ``batch_of``."""
    shape = jnp.broadcast_shapes(values.shape, batch_of.shape)
    return jnp.sum(jnp.broadcast_to(values, shape), axis=-1)


class Identity(Bijector):
    r""":math:`y = x`, log-det-Jacobian 0."""

    elementwise: ClassVar[bool] = True

    def _forward(self, x: Array) -> Array:
        return x

    def _inverse(self, y: Array) -> Array:
        return y

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return jnp.zeros(x.shape[:-1], x.dtype)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return jnp.zeros(y.shape[:-1], y.dtype)


class Exp(Bijector):
    r""":math:`y = e^x` onto :math:`(0, \infty)`; :math:`\log|J| = \sum_i x_i`."""

    elementwise: ClassVar[bool] = True

    def _forward(self, x: Array) -> Array:
        return jnp.exp(x)

    def _inverse(self, y: Array) -> Array:
        return jnp.log(y)

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return jnp.sum(x, axis=-1)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return -jnp.sum(jnp.log(y), axis=-1)


class Softplus(Bijector):
    r""":math:`y = \log(1 + e^x)` onto :math:`(0, \infty)`.

    :math:`\log|J| = \sum_i \log\sigma(x_i)` (``log_sigmoid``); the inverse is
    :math:`x = y + \log(-\mathrm{expm1}(-y))` and :math:`\log|J^{-1}| =
    -\sum_i\log(-\mathrm{expm1}(-y_i))`, both accurate for tiny and huge ``y``.
    """

    elementwise: ClassVar[bool] = True

    def _forward(self, x: Array) -> Array:
        return jax.nn.softplus(x)

    def _inverse(self, y: Array) -> Array:
        return y + jnp.log(-jnp.expm1(-y))

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return jnp.sum(jax.nn.log_sigmoid(x), axis=-1)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return -jnp.sum(jnp.log(-jnp.expm1(-y)), axis=-1)


class Sigmoid(Bijector):
    r""":math:`y = l + (h - l)\,\sigma(x)` onto the open interval :math:`(l, h)`.

    :math:`\log|J| = \sum_i \log(h_i - l_i) + \log\sigma(x_i) + \log\sigma(-x_i)`. The forward
    map is evaluated from the nearer end (``h - (h-l)σ(-x)`` for ``x > 0``) and the inverse
    as :math:`\log(y-l) - \log(h-y)`, so values close to either bound round-trip.

    Attributes:
        low: lower bound :math:`l`, broadcasting against the input (may be traced).
        high: upper bound :math:`h > l`.
    """

    elementwise: ClassVar[bool] = True

    low: ArrayLike = 0.0
    high: ArrayLike = 1.0

    def _forward(self, x: Array) -> Array:
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        width = high - low
        return jnp.where(x > 0, high - width * jax.nn.sigmoid(-x), low + width * jax.nn.sigmoid(x))

    def _inverse(self, y: Array) -> Array:
        return jnp.log(y - self.low) - jnp.log(self.high - y)

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        width = jnp.asarray(self.high) - jnp.asarray(self.low)
        elementwise = jnp.log(width) + jax.nn.log_sigmoid(x) + jax.nn.log_sigmoid(-x)
        return _sum_event(elementwise, x)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        width = jnp.asarray(self.high) - jnp.asarray(self.low)
        elementwise = jnp.log(width) - jnp.log(y - self.low) - jnp.log(self.high - y)
        return _sum_event(elementwise, y)


class Affine(Bijector):
    r""":math:`y = \text{shift} + \text{scale}\odot x`,
    :math:`\log|J| = \sum_i\log|\text{scale}_i|`.

    Attributes:
        shift: broadcasting against the input.
        scale: nonzero, broadcasting against the input.
    """

    elementwise: ClassVar[bool] = True

    shift: ArrayLike = 0.0
    scale: ArrayLike = 1.0

    def _forward(self, x: Array) -> Array:
        return jnp.asarray(self.shift) + jnp.asarray(self.scale) * x

    def _inverse(self, y: Array) -> Array:
        return (y - jnp.asarray(self.shift)) / jnp.asarray(self.scale)

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        shape = jnp.broadcast_shapes(x.shape, jnp.shape(self.shift), jnp.shape(self.scale))
        log_scale = jnp.log(jnp.abs(jnp.asarray(self.scale, x.dtype)))
        return jnp.sum(jnp.broadcast_to(log_scale, shape), axis=-1)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return -self._forward_log_det_jacobian(y)


class Chain(Bijector):
    r"""Composition applied in list order: ``Chain([f, g]).forward(x) == g(f(x))``.

    :math:`\log|J| = \sum_j \log|J_{f_j}|` at the intermediate values. The event axes are
    those of the first bijector's input and the last one's output.

    Attributes:
        bijectors: a sequence of bijectors (stored as a tuple), first applied first.
    """

    bijectors: Sequence[Bijector] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "bijectors", tuple(self.bijectors))
        for i, b in enumerate(self.bijectors):
            if not isinstance(b, Bijector):
                raise TypeError(
                    f"Chain: `bijectors[{i}]` must be a jelbo bijector; got {type(b).__name__}."
                )

    @property
    def event_ndims_in(self) -> int:  # type: ignore[override]
        return self.bijectors[0].event_ndims_in if self.bijectors else 1

    @property
    def event_ndims_out(self) -> int:  # type: ignore[override]
        return self.bijectors[-1].event_ndims_out if self.bijectors else 1

    def forward_shape(self, shape: Shape) -> Shape:
        for b in self.bijectors:
            shape = b.forward_shape(shape)
        return tuple(shape)

    def inverse_shape(self, shape: Shape) -> Shape:
        for b in reversed(self.bijectors):
            shape = b.inverse_shape(shape)
        return tuple(shape)

    def _forward(self, x: Array) -> Array:
        for b in self.bijectors:
            x = b._forward(x)
        return x

    def _inverse(self, y: Array) -> Array:
        for b in reversed(self.bijectors):
            y = b._inverse(y)
        return y

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        total = jnp.zeros((), x.dtype)
        for b in self.bijectors:
            total = total + b._forward_log_det_jacobian(x)
            x = b._forward(x)
        if not self.bijectors:
            total = jnp.zeros(x.shape[:-1], x.dtype)
        return total

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        total = jnp.zeros((), y.dtype)
        for b in reversed(self.bijectors):
            total = total + b._inverse_log_det_jacobian(y)
            y = b._inverse(y)
        if not self.bijectors:
            total = jnp.zeros(y.shape[:-1], y.dtype)
        return total

    def _forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        total = jnp.zeros(x.shape[:-1], x.dtype) if not self.bijectors else jnp.zeros((), x.dtype)
        for b in self.bijectors:
            x, log_det = b._forward_and_log_det(x)
            total = total + log_det
        return x, total

    def _inverse_given(self, y: Array, x: Array) -> Array:
        # The known inputs of every link, by forward passes (cheap, and dead code for links
        # that ignore them), then each link's hook in reverse order.
        if not self.bijectors:
            return y
        inputs = [x]
        for b in self.bijectors[:-1]:
            inputs.append(b._forward(inputs[-1]))
        for b, known in zip(reversed(self.bijectors), reversed(inputs), strict=True):
            y = b._inverse_given(y, known)
        return y


# --- vector bijectors -----------------------------------------------------------------------


def _exclusive_cumsum(x: Array) -> Array:
    """Cumulative sum along the last axis, excluding the current entry (starts at 0)."""
    padded = jnp.concatenate([jnp.zeros_like(x[..., :1]), x[..., :-1]], axis=-1)
    return jnp.cumsum(padded, axis=-1)


def _reverse_cumsum(x: Array) -> Array:
    r""":math:`\sum_{j\ge k} x_j` along the last axis."""
    return jax.lax.cumsum(x, axis=x.ndim - 1, reverse=True)


class StickBreaking(Bijector):
    r"""Stan's stick-breaking map :math:`\mathbb R^{K-1}\to` the open :math:`K`-simplex.

    With :math:`t_k = x_k - \log(K-k)` (:math:`k = 1..K-1`, the offset makes :math:`x = 0`
    the centre of the simplex), break off the fraction :math:`\sigma(t_k)` of what is left:

    .. math:: \log y_k = \log\sigma(t_k) + \sum_{j<k}\log\sigma(-t_j),\qquad
              \log y_K = \sum_{j<K}\log\sigma(-t_j),

    all in log space. The log-det-Jacobian of the map onto the first :math:`K-1` coordinates
    telescopes to :math:`\sum_{k=1}^{K}\log y_k`. The inverse uses the remaining stick
    :math:`r_k = \sum_{j\ge k} y_j` by a reverse cumulative sum:
    :math:`x_k = \log y_k - \log r_{k+1} + \log(K-k)`.
    """

    def forward_shape(self, shape: Shape) -> Shape:
        return (*shape[:-1], shape[-1] + 1)

    def inverse_shape(self, shape: Shape) -> Shape:
        if shape[-1] < 2:
            raise ValueError(
                f"StickBreaking: a simplex needs K >= 2 coordinates; got event shape {shape}."
            )
        return (*shape[:-1], shape[-1] - 1)

    def _log_y(self, x: Array) -> Array:
        km1 = x.shape[-1]
        offset = jnp.log(jnp.arange(km1, 0, -1, dtype=x.dtype))
        t = x - offset
        log_rest = jax.nn.log_sigmoid(-t)
        before = _exclusive_cumsum(log_rest)
        last = jnp.sum(log_rest, axis=-1, keepdims=True)
        return jnp.concatenate([jax.nn.log_sigmoid(t) + before, last], axis=-1)

    def _forward(self, x: Array) -> Array:
        return jnp.exp(self._log_y(x))

    def _inverse(self, y: Array) -> Array:
        k = y.shape[-1]
        rest = _reverse_cumsum(y)[..., 1:]  # r_{k+1}, k = 1..K-1
        offset = jnp.log(jnp.arange(k - 1, 0, -1, dtype=y.dtype))
        return jnp.log(y[..., :-1]) - jnp.log(rest) + offset

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return jnp.sum(self._log_y(x), axis=-1)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return -jnp.sum(jnp.log(y), axis=-1)


class Ordered(Bijector):
    r""":math:`\mathbb R^K\to` increasing vectors: :math:`y_1 = x_1`,
    :math:`y_k = y_{k-1} + e^{x_k}`; :math:`\log|J| = \sum_{k\ge2} x_k`."""

    def _forward(self, x: Array) -> Array:
        return jnp.cumsum(jnp.concatenate([x[..., :1], jnp.exp(x[..., 1:])], axis=-1), axis=-1)

    def _inverse(self, y: Array) -> Array:
        return jnp.concatenate([y[..., :1], jnp.log(jnp.diff(y, axis=-1))], axis=-1)

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return jnp.sum(x[..., 1:], axis=-1)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return -jnp.sum(jnp.log(jnp.diff(y, axis=-1)), axis=-1)


class PositiveOrdered(Bijector):
    r""":math:`\mathbb R^K\to` increasing positive vectors: :math:`y_k = \sum_{j\le k} e^{x_j}`;
    :math:`\log|J| = \sum_k x_k`."""

    def _forward(self, x: Array) -> Array:
        return jnp.cumsum(jnp.exp(x), axis=-1)

    def _inverse(self, y: Array) -> Array:
        return jnp.log(jnp.diff(y, axis=-1, prepend=jnp.zeros_like(y[..., :1])))

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return jnp.sum(x, axis=-1)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return -self._forward_log_det_jacobian(self._inverse(y))


# --- matrix bijectors -----------------------------------------------------------------------


def _tri_size(n: int, strict: bool, name: str) -> int:
    """``K`` with ``n == K(K+1)/2`` (or ``K(K-1)/2`` when ``strict``), else a ValueError."""
    k = round((math.sqrt(8 * n + 1) + (1 if strict else -1)) / 2)
    if (k * (k - 1) if strict else k * (k + 1)) // 2 != n:
        kind = "K(K-1)/2" if strict else "K(K+1)/2"
        raise ValueError(f"{name}: the event size must be {kind} for some K; got {n}.")
    return k


def _check_square(shape: Shape, name: str) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name}: expected a (K, K) matrix event; got event shape {shape}.")
    return shape[0]


class FillScaleTriL(Bijector):
    r""":math:`\mathbb R^{K(K+1)/2}\to` lower-triangular :math:`K\times K` matrices with a
    positive diagonal.

    The vector fills the lower triangle row by row (``jnp.tril_indices`` order, as NumPyro's
    ``vec_to_tril_matrix``); the diagonal is mapped by **softplus** (plus ``diag_shift``) and
    the off-diagonal entries are kept. :math:`\log|J| = \sum_i\log\sigma(x_{ii})` (the
    Jacobian onto the lower triangle). The output has one more axis than the input.

    Attributes:
        diag_shift: added to the softplus diagonal (default 0), e.g. a small jitter.
    """

    diag_shift: ArrayLike = 0.0
    event_ndims_out: ClassVar[int] = 2

    def forward_shape(self, shape: Shape) -> Shape:
        k = _tri_size(shape[-1], strict=False, name="FillScaleTriL")
        return (*shape[:-1], k, k)

    def inverse_shape(self, shape: Shape) -> Shape:
        k = _check_square(tuple(shape[-2:]), "FillScaleTriL")
        return (*shape[:-2], k * (k + 1) // 2)

    def _forward(self, x: Array) -> Array:
        k = _tri_size(x.shape[-1], strict=False, name="FillScaleTriL")
        rows, cols = np.tril_indices(k)
        tril = jnp.zeros((*x.shape[:-1], k, k), x.dtype).at[..., rows, cols].set(x)
        diag = jnp.diagonal(tril, axis1=-2, axis2=-1)
        eye = jnp.eye(k, dtype=bool)
        new_diag = jax.nn.softplus(diag) + self.diag_shift
        return jnp.where(eye, new_diag[..., None, :], tril)

    def _inverse(self, y: Array) -> Array:
        k = y.shape[-1]
        rows, cols = np.tril_indices(k)
        diag = jnp.diagonal(y, axis1=-2, axis2=-1) - self.diag_shift
        raw_diag = diag + jnp.log(-jnp.expm1(-diag))
        y = jnp.where(jnp.eye(k, dtype=bool), raw_diag[..., None, :], y)
        return y[..., rows, cols]

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        k = _tri_size(x.shape[-1], strict=False, name="FillScaleTriL")
        diag_index = np.array([i * (i + 1) // 2 + i for i in range(k)])
        return jnp.sum(jax.nn.log_sigmoid(x[..., diag_index]), axis=-1)

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        diag = jnp.diagonal(y, axis1=-2, axis2=-1) - self.diag_shift
        return -jnp.sum(jnp.log(-jnp.expm1(-diag)), axis=-1)


def _log1m_tanh_sq(x: Array) -> Array:
    r""":math:`\log(1-\tanh^2 x) = 2(\log 2 - |x| - \mathrm{softplus}(-2|x|))`."""
    a = jnp.abs(x)
    return 2.0 * (_LOG2 - a - jax.nn.softplus(-2.0 * a))


class CorrCholesky(Bijector):
    r"""Stan's map :math:`\mathbb R^{K(K-1)/2}\to` Cholesky factors of correlation matrices.

    The vector fills the strictly lower triangle row by row; :math:`z = \tanh(x)` are
    canonical partial correlations, and row :math:`i` of :math:`L` is built by stick
    breaking on the squared norm:

    .. math:: L_{ij} = z_{ij}\prod_{k<j}\sqrt{1-z_{ik}^2}\ (j<i),\qquad
              L_{ii} = \prod_{k<i}\sqrt{1-z_{ik}^2},

    so every row has unit norm and a positive diagonal. The log-det-Jacobian of the map onto
    the strictly lower triangle is :math:`\sum_{i>j}\log(1-z_{ij}^2) +
    \tfrac12\sum_{k<j}\log(1-z_{ik}^2)`, evaluated from ``x`` with
    :math:`\log(1-\tanh^2 x) = 2(\log 2 - |x| - \mathrm{softplus}(-2|x|))`. The inverse uses
    the remaining squared norms :math:`r_{ij} = \sum_{j\le k\le i} L_{ik}^2` (reverse cumulative
    sums) and :math:`\operatorname{artanh} z_{ij} = \operatorname{sign}(L_{ij})
    (\log(\sqrt{r_{ij}} + |L_{ij}|) - \tfrac12\log r_{i,j+1})`.
    """

    event_ndims_out: ClassVar[int] = 2

    def forward_shape(self, shape: Shape) -> Shape:
        k = _tri_size(shape[-1], strict=True, name="CorrCholesky")
        return (*shape[:-1], k, k)

    def inverse_shape(self, shape: Shape) -> Shape:
        k = _check_square(tuple(shape[-2:]), "CorrCholesky")
        return (*shape[:-2], k * (k - 1) // 2)

    def _parts(self, x: Array) -> tuple[Array, Array, Array]:
        """(z, log(1 - z²), exclusive row cumsum of log(1 - z²)) as (K, K) matrices."""
        k = _tri_size(x.shape[-1], strict=True, name="CorrCholesky")
        rows, cols = np.tril_indices(k, -1)
        shape = (*x.shape[:-1], k, k)
        z = jnp.zeros(shape, x.dtype).at[..., rows, cols].set(jnp.tanh(x))
        log1m = jnp.zeros(shape, x.dtype).at[..., rows, cols].set(_log1m_tanh_sq(x))
        return z, log1m, _exclusive_cumsum(log1m)

    def _forward(self, x: Array) -> Array:
        z, _, cum = self._parts(x)
        k = z.shape[-1]
        z = z + jnp.eye(k, dtype=x.dtype)
        return jnp.tril(z * jnp.exp(0.5 * cum))

    def _inverse(self, y: Array) -> Array:
        k = y.shape[-1]
        rows, cols = np.tril_indices(k, -1)
        sq = jnp.square(jnp.tril(y))
        rem = _reverse_cumsum(sq)  # r_ij = sum_{k>=j} L_ik^2
        rem_next = rem[..., 1:]  # r_{i,j+1}
        l_ij = y[..., rows, cols]
        r_ij = rem[..., rows, cols]
        r_next = rem_next[..., rows, cols]
        return jnp.sign(l_ij) * (jnp.log(jnp.sqrt(r_ij) + jnp.abs(l_ij)) - 0.5 * jnp.log(r_next))

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        _, log1m, cum = self._parts(x)
        k = log1m.shape[-1]
        lower = np.tril(np.ones((k, k), dtype=bool), -1)
        return jnp.sum(jnp.where(lower, log1m + 0.5 * cum, 0.0), axis=(-2, -1))
