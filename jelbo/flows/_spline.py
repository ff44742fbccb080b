r"""The monotone rational-quadratic spline of Durkan et al. (2019) as pure functions.

Shared by :class:`jelbo.flows.RationalQuadraticSpline` and the spline transformers of the
masked flows. Notation (Durkan, Bekasov, Murray & Papamakarios, NeurIPS 2019, section 3.1):
knots :math:`(x^{(k)}, y^{(k)})`, :math:`k = 0..K`, with :math:`x^{(0)} = y^{(0)} = -B` and
:math:`x^{(K)} = y^{(K)} = B`; derivatives :math:`\delta^{(k)} > 0` at the knots, with
:math:`\delta^{(0)} = \delta^{(K)} = 1` so that the identity tails outside
:math:`[-B, B]` join with a continuous derivative. In bin :math:`k`, with
:math:`w = x^{(k+1)} - x^{(k)}`, :math:`h = y^{(k+1)} - y^{(k)}`, :math:`s = h/w`,
:math:`\xi = (x - x^{(k)})/w` and :math:`\Delta = \delta^{(k+1)} + \delta^{(k)} - 2s`:

.. math::
    y = y^{(k)} + \frac{h\,(s\xi^2 + \delta^{(k)}\xi(1-\xi))}{s + \Delta\,\xi(1-\xi)},\qquad
    \frac{dy}{dx} = \frac{s^2(\delta^{(k+1)}\xi^2 + 2s\xi(1-\xi) + \delta^{(k)}(1-\xi)^2)}
                         {(s + \Delta\,\xi(1-\xi))^2}.

The inverse solves :math:`a\xi^2 + b\xi + c = 0` with :math:`\eta = y - y^{(k)}`,
:math:`a = h(s - \delta^{(k)}) + \eta\Delta`, :math:`b = h\delta^{(k)} - \eta\Delta`,
:math:`c = -s\eta \le 0`. The root in :math:`[0, 1]` is taken without cancellation whatever
the sign of :math:`b` (Numerical Recipes' form): :math:`\xi = 2c/(-b - \sqrt{b^2 - 4ac})`
for :math:`b \ge 0` (the form of Durkan et al., also exact when :math:`a = 0`) and
:math:`\xi = (-b + \sqrt{b^2 - 4ac})/(2a)` for :math:`b < 0` (then :math:`a \ge |b| > 0`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jelbo import _checks
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.bijectors import Bijector
from jelbo.module import static_field

__all__ = ["RationalQuadraticSpline"]


class Knots:
    """Knot positions ``(…, K+1)`` and derivatives ``(…, K+1)`` of a batch of splines."""

    __slots__ = ("d", "x", "y")

    def __init__(self, x: Array, y: Array, d: Array) -> None:
        self.x, self.y, self.d = x, y, d


def derivative_offset(min_derivative: float) -> float:
    r"""The :math:`c` with :math:`m + \mathrm{softplus}(c) = 1`: raw derivative 0 means slope 1."""
    return math.log(math.expm1(1.0 - min_derivative))


def _positions(unnormalized: Array, interval: float, min_size: float) -> Array:
    r"""Knot positions :math:`-B = p_0 < \dots < p_K = B` from unnormalized bin sizes.

    The sizes are :math:`m + (1 - Km)\,\mathrm{softmax}(u)` times :math:`2B`, so every bin
    is at least :math:`2Bm` wide; the end knots are set to :math:`\pm B` exactly.
    """
    k = unnormalized.shape[-1]
    dtype = unnormalized.dtype
    sizes = min_size + (1.0 - k * min_size) * jax.nn.softmax(unnormalized, axis=-1)
    inner = jnp.cumsum(sizes[..., :-1], axis=-1)
    bound = jnp.asarray(interval, dtype)
    inner = -bound + 2.0 * bound * inner
    low = jnp.full(inner.shape[:-1] + (1,), -bound, dtype)
    high = jnp.full(inner.shape[:-1] + (1,), bound, dtype)
    return jnp.concatenate([low, inner, high], axis=-1)


def knots(
    unnormalized_widths: Array,
    unnormalized_heights: Array,
    unnormalized_derivatives: Array,
    *,
    interval: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> Knots:
    r"""The knots of splines given unnormalized parameters ``(…, K)``, ``(…, K)``, ``(…, K-1)``.

    Inner derivatives are :math:`m_\delta + \mathrm{softplus}(u + c)` with :math:`c` from
    :func:`derivative_offset`, so all-zero parameters give the identity (equal bins, unit
    slopes); the end derivatives are 1 (linear tails).
    """
    x = _positions(unnormalized_widths, interval, min_bin_width)
    y = _positions(unnormalized_heights, interval, min_bin_height)
    dtype = unnormalized_derivatives.dtype
    offset = jnp.asarray(derivative_offset(min_derivative), dtype)
    inner = min_derivative + jax.nn.softplus(unnormalized_derivatives + offset)
    one = jnp.ones(inner.shape[:-1] + (1,), dtype)
    return Knots(x, y, jnp.concatenate([one, inner, one], axis=-1))


def _gather(table: Array, index: Array) -> Array:
    """``table[..., index]`` per element: ``table`` ``(…, K+1)`` broadcast against ``index``."""
    shape = jnp.broadcast_shapes(table.shape[:-1], index.shape)
    table = jnp.broadcast_to(table, shape + table.shape[-1:])
    index = jnp.broadcast_to(index, shape)
    return jnp.take_along_axis(table, index[..., None], axis=-1)[..., 0]


def _bin(positions: Array, v: Array) -> Array:
    """The bin ``k`` (0..K-1) with ``positions[k] <= v``, counting the inner knots below ``v``."""
    inner = positions[..., 1:-1]
    return jnp.sum(v[..., None] >= inner, axis=-1, dtype=jnp.int32)


class _Bin:
    """The quantities of the bin each element falls in."""

    __slots__ = ("d0", "d1", "h", "s", "w", "x0", "y0")

    def __init__(self, k: Knots, index: Array) -> None:
        self.x0 = _gather(k.x, index)
        self.y0 = _gather(k.y, index)
        self.w = _gather(k.x, index + 1) - self.x0
        self.h = _gather(k.y, index + 1) - self.y0
        self.d0 = _gather(k.d, index)
        self.d1 = _gather(k.d, index + 1)
        self.s = self.h / self.w


def _clamp(v: Array, low: Array | float, high: Array | float) -> Array:
    """``clip`` whose gradient is 1 at the bounds themselves (``jnp.clip`` halves it there)."""
    return jnp.where(v < low, low, jnp.where(v > high, high, v))


def _log_slope(b: _Bin, xi: Array) -> Array:
    r""":math:`\log dy/dx` at :math:`\xi` in bin ``b``."""
    t = xi * (1.0 - xi)
    numerator = b.d1 * jnp.square(xi) + 2.0 * b.s * t + b.d0 * jnp.square(1.0 - xi)
    denominator = b.s + (b.d1 + b.d0 - 2.0 * b.s) * t
    return 2.0 * jnp.log(b.s) + jnp.log(numerator) - 2.0 * jnp.log(denominator)


def forward(k: Knots, x: Array, interval: float) -> tuple[Array, Array]:
    r"""``(y, log dy/dx)`` elementwise; the identity (log-slope 0) outside :math:`[-B, B]`."""
    bound = jnp.asarray(interval, x.dtype)
    inside = jnp.abs(x) <= bound
    xc = _clamp(x, -bound, bound)
    b = _Bin(k, _bin(k.x, xc))
    xi = _clamp((xc - b.x0) / b.w, 0.0, 1.0)
    t = xi * (1.0 - xi)
    denominator = b.s + (b.d1 + b.d0 - 2.0 * b.s) * t
    y = b.y0 + b.h * (b.s * jnp.square(xi) + b.d0 * t) / denominator
    y = jnp.where(inside, _clamp(y, -bound, bound), x)
    return y, jnp.where(inside, _log_slope(b, xi), jnp.zeros((), x.dtype))


def inverse(k: Knots, y: Array, interval: float) -> tuple[Array, Array]:
    r"""``(x, log dx/dy)`` elementwise: the exact inverse of :func:`forward`."""
    bound = jnp.asarray(interval, y.dtype)
    inside = jnp.abs(y) <= bound
    yc = _clamp(y, -bound, bound)
    b = _Bin(k, _bin(k.y, yc))
    eta = yc - b.y0
    delta = b.d1 + b.d0 - 2.0 * b.s
    a = b.h * (b.s - b.d0) + eta * delta
    bb = b.h * b.d0 - eta * delta
    c = -b.s * eta
    root = jnp.sqrt(jnp.maximum(jnp.square(bb) - 4.0 * a * c, 0.0))
    positive = bb >= 0
    # b >= 0: 2c / (-b - root), the denominator <= -b < 0 unless b = c = 0 (then eta = 0).
    # b < 0: (-b + root) / (2a) with a >= |b| > 0.
    den_pos = jnp.where(positive, -bb - root, -1.0)
    den_neg = jnp.where(positive, 1.0, 2.0 * a)
    xi = jnp.where(positive, 2.0 * c / den_pos, (root - bb) / den_neg)
    xi = _clamp(xi, 0.0, 1.0)
    x = jnp.where(inside, _clamp(b.x0 + xi * b.w, -bound, bound), y)
    return x, jnp.where(inside, -_log_slope(b, xi), jnp.zeros((), y.dtype))


# --- the bijector ---------------------------------------------------------------------------


def check_spline_options(
    num_bins: Any,
    interval: Any,
    min_bin_width: Any,
    min_bin_height: Any,
    min_derivative: Any,
    where: str,
) -> None:
    """Checks the static spline options, naming the offending one."""
    _checks.check_positive_int(num_bins, "num_bins")
    for name, value in (
        ("interval", interval),
        ("min_bin_width", min_bin_width),
        ("min_bin_height", min_bin_height),
        ("min_derivative", min_derivative),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise TypeError(
                f"{where}: `{name}` must be a Python float (it is static); got "
                f"{type(value).__name__}."
            )
    if not (math.isfinite(interval) and interval > 0):
        raise ValueError(f"{where}: `interval` must be finite and > 0; got {interval}.")
    for name, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
        if not (0 <= value and value * num_bins < 1):
            raise ValueError(
                f"{where}: `{name}` must be >= 0 and below 1/num_bins = {1 / num_bins:.3g} "
                f"(the bins must fit in the interval); got {value}."
            )
    if not (0 <= min_derivative < 1):
        raise ValueError(f"{where}: `min_derivative` must be in [0, 1); got {min_derivative}.")


class RationalQuadraticSpline(Bijector):
    r"""Elementwise monotone rational-quadratic spline (Durkan et al. 2019), identity tails.

    Each coordinate :math:`j` of the event is mapped by its own spline with ``num_bins``
    bins on :math:`[-B, B]` (``B = interval``) and by the identity outside, with slope 1 at
    :math:`\pm B` so that the map and its derivative are continuous. In bin :math:`k`
    (notation of the paper: :math:`s = h/w`, :math:`\xi = (x - x^{(k)})/w`),

    .. math::
        y = y^{(k)} + \frac{h\,(s\xi^2 + \delta^{(k)}\xi(1-\xi))}
                          {s + (\delta^{(k+1)} + \delta^{(k)} - 2s)\,\xi(1-\xi)},

    and :math:`\log|J| = \sum_j \log(dy_j/dx_j)` with
    :math:`dy/dx = s^2(\delta^{(k+1)}\xi^2 + 2s\xi(1-\xi) + \delta^{(k)}(1-\xi)^2)
    /(s + (\delta^{(k+1)} + \delta^{(k)} - 2s)\xi(1-\xi))^2`. The inverse is the root
    of a quadratic in :math:`\xi`, taken in a form without cancellation (see
    ``docs/flows.md``); it is exact, not iterative.

    Parameters are unnormalized: bin widths are
    :math:`2B(m_w + (1 - K m_w)\,\mathrm{softmax}(u^w))` (heights alike) and the inner
    knots' derivatives :math:`m_\delta + \mathrm{softplus}(u^\delta + c)` with
    :math:`c = \log(e^{1 - m_\delta} - 1)`, so all-zero parameters are the identity
    (:meth:`identity`). The end derivatives are fixed at 1 (linear tails).

    Attributes:
        unnormalized_widths: ``(*batch, D, K)``.
        unnormalized_heights: ``(*batch, D, K)``.
        unnormalized_derivatives: ``(*batch, D, K-1)``, the inner knots' derivatives.
        interval: :math:`B > 0` (static).
        min_bin_width: :math:`m_w`, bin widths are at least :math:`2Bm_w` (static).
        min_bin_height: :math:`m_h` (static).
        min_derivative: :math:`m_\delta` (static).

    Reference: Durkan, Bekasov, Murray & Papamakarios (2019), "Neural Spline Flows",
    NeurIPS.
    """

    unnormalized_widths: ArrayLike
    unnormalized_heights: ArrayLike
    unnormalized_derivatives: ArrayLike
    interval: float = static_field(default=4.0)
    min_bin_width: float = static_field(default=1e-3)
    min_bin_height: float = static_field(default=1e-3)
    min_derivative: float = static_field(default=1e-3)

    def __post_init__(self) -> None:
        names = ("unnormalized_widths", "unnormalized_heights", "unnormalized_derivatives")
        values = []
        for name in names:
            value = jnp.asarray(getattr(self, name))
            if not jnp.issubdtype(value.dtype, jnp.inexact):
                value = value.astype(jnp.result_type(float))
            object.__setattr__(self, name, value)
            values.append(value)
        widths, heights, derivatives = values
        shapes = ", ".join(f"`{n}` {v.shape}" for n, v in zip(names, values, strict=True))
        if min(v.ndim for v in values) < 2:
            raise ValueError(
                "RationalQuadraticSpline: the parameters need shape (*batch, D, K) for widths "
                f"and heights and (*batch, D, K-1) for derivatives; got {shapes}."
            )
        k = widths.shape[-1]
        if heights.shape[-1] != k or derivatives.shape[-1] != k - 1 or k < 1:
            raise ValueError(
                "RationalQuadraticSpline: widths and heights need K bins on the last axis and "
                f"derivatives K-1 (the inner knots); got {shapes}."
            )
        _checks.broadcast_shapes(*((n, v.shape[:-1]) for n, v in zip(names, values, strict=True)))
        check_spline_options(
            k,
            self.interval,
            self.min_bin_width,
            self.min_bin_height,
            self.min_derivative,
            "RationalQuadraticSpline",
        )

    @classmethod
    def identity(
        cls,
        dim: int,
        num_bins: int = 8,
        *,
        interval: float = 4.0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
        dtype: Any = None,
    ) -> RationalQuadraticSpline:
        """The spline with all-zero parameters (the identity map) on events of size ``dim``."""
        dim = _checks.check_positive_int(dim, "dim")
        num_bins = _checks.check_positive_int(num_bins, "num_bins")
        dtype = jnp.result_type(float) if dtype is None else dtype
        return cls(
            jnp.zeros((dim, num_bins), dtype),
            jnp.zeros((dim, num_bins), dtype),
            jnp.zeros((dim, num_bins - 1), dtype),
            interval=interval,
            min_bin_width=min_bin_width,
            min_bin_height=min_bin_height,
            min_derivative=min_derivative,
        )

    @property
    def num_bins(self) -> int:
        """:math:`K`, the number of bins."""
        return jnp.shape(self.unnormalized_widths)[-1]

    @property
    def dim(self) -> int:
        """:math:`D`, the event size the parameters are for."""
        return jnp.shape(self.unnormalized_widths)[-2]

    @property
    def batch_shape(self) -> Shape:
        """The broadcast of the parameters' leading axes."""
        return tuple(
            np.broadcast_shapes(
                jnp.shape(self.unnormalized_widths)[:-2],
                jnp.shape(self.unnormalized_heights)[:-2],
                jnp.shape(self.unnormalized_derivatives)[:-2],
            )
        )

    def forward_shape(self, shape: Shape) -> Shape:
        if tuple(shape[-1:]) != (self.dim,):
            raise ValueError(
                f"RationalQuadraticSpline: has parameters for events of size D={self.dim} "
                f"(the last axis); got event shape {tuple(shape)}."
            )
        return tuple(shape)

    inverse_shape = forward_shape

    def _knots(self, dtype: Any) -> Knots:
        return knots(
            jnp.asarray(self.unnormalized_widths, dtype),
            jnp.asarray(self.unnormalized_heights, dtype),
            jnp.asarray(self.unnormalized_derivatives, dtype),
            interval=self.interval,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
        )

    def _dtype(self, v: Array) -> Any:
        return jnp.result_type(v, self.unnormalized_widths)

    def _forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        dtype = self._dtype(x)
        y, log_slope = forward(self._knots(dtype), x.astype(dtype), self.interval)
        return y, jnp.sum(log_slope, axis=-1)

    def _inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        dtype = self._dtype(y)
        x, log_slope = inverse(self._knots(dtype), y.astype(dtype), self.interval)
        return x, jnp.sum(log_slope, axis=-1)

    def _forward(self, x: Array) -> Array:
        return self._forward_and_log_det(x)[0]

    def _inverse(self, y: Array) -> Array:
        return self._inverse_and_log_det(y)[0]

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return self._forward_and_log_det(x)[1]

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return self._inverse_and_log_det(y)[1]
