r"""Masked flows: MAF, IAF and coupling layers with affine or rational-quadratic transformers.

Every layer :math:`\ell` is a map :math:`v = g_\ell(u)`, :math:`v_j = \tau(u_j;
\theta_j(u, c))`, whose transformer :math:`\tau` (affine or spline, monotone in
:math:`u_j`) has parameters :math:`\theta_j` computed by a masked network (MADE) from the
coordinates of lower *degree* and the context :math:`c`. Its Jacobian is triangular in the
order of the degrees, so :math:`\log|\det J_{g_\ell}| = \sum_j \log\tau'(u_j)`; the coupling
layers keep their conditioning half unchanged. :math:`g_\ell` costs one network pass; its
inverse costs one pass per degree level (:math:`D` for an autoregressive layer, one for a
coupling layer), run as a ``lax.fori_loop``.

- :class:`InverseAutoregressive` (IAF, Kingma et al. 2016): ``forward`` is
  :math:`g_L\circ\dots\circ g_1` (one pass per layer: fast sampling and log-density of its
  own samples), ``inverse`` is sequential.
- :class:`MaskedAutoregressive` (MAF, Papamakarios et al. 2017): the inverse of the same
  structure, ``inverse`` fast (density evaluation), ``forward`` sequential.
- :class:`Coupling` (RealNVP, Dinh et al. 2017; neural spline couplings, Durkan et al.
  2019): both directions one pass per layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jelbo import _checks
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.bijectors import Bijector
from jelbo.flows import _made, _spline
from jelbo.module import static_field

__all__ = [
    "Coupling",
    "InverseAutoregressive",
    "MaskedAutoregressive",
    "coupling",
    "masked_autoregressive",
]

#: ``softplus(_AFFINE_OFFSET) = 1``: a raw scale of 0 is the identity.
_AFFINE_OFFSET = math.log(math.expm1(1.0))
_TRANSFORMERS = ("affine", "spline")
#: Up to this many layers the layer scan is unrolled; deeper flows compile one layer (at
#: three layers compile time was 10% lower rolled, the step time the same).
_UNROLL_LAYERS = 2


class _Layers(NamedTuple):
    """The arrays of the layers (stacked on a leading axis, or one layer's in a scan)."""

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    masks: tuple[Array, ...]
    context: Array | None  # context @ W_c
    keep: Array | None  # coordinates passed through (coupling)
    order: Array  # the coordinates by degree: the Jacobian is lower triangular in this order
    rank: Array  # the inverse permutation of ``order``


def _log_softplus(t: Array) -> Array:
    r""":math:`\log\mathrm{softplus}(t)`, equal to :math:`t` (to 1e-17 relative) below -40,
    where ``softplus`` itself would underflow."""
    small = t < -40.0
    return jnp.where(small, t, jnp.log(jax.nn.softplus(jnp.where(small, 0.0, t))))


class _MaskedFlow(Bijector):
    """Shared machinery of the masked flows (see the module docstring).

    The parameters of the ``L`` layers are stacked on a leading axis; ``degrees[l][j]`` is
    coordinate ``j``'s degree in layer ``l`` and ``keep[l][j]`` whether layer ``l`` passes it
    through unchanged (a coupling layer's conditioning half).
    """

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    context_weights: Array | None
    context: Array | None
    degrees: tuple[tuple[int, ...], ...] = static_field()
    keep: tuple[tuple[bool, ...], ...] = static_field()
    transformer: str = static_field(default="affine")
    num_bins: int = static_field(default=8)
    interval: float = static_field(default=4.0)
    activation: str = static_field(default="tanh")
    context_dim: int | None = static_field(default=None)
    min_bin_width: float = static_field(default=1e-3)
    min_bin_height: float = static_field(default=1e-3)
    min_derivative: float = static_field(default=1e-3)

    #: Which direction is the one-pass map g (True: forward).
    _fast_forward: ClassVar[bool] = True
    #: Whether inverting g takes several passes (autoregressive) or one (coupling).
    _sequential_inverse: ClassVar[bool] = True

    # --- structure --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """:math:`D`, the event size."""
        return len(self.degrees[0])

    @property
    def num_layers(self) -> int:
        """:math:`L`, the number of layers."""
        return len(self.degrees)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """The conditioners' hidden layer sizes."""
        return tuple(int(w.shape[-1]) for w in self.weights[:-1])

    @property
    def num_params(self) -> int:
        """Transformer parameters per coordinate: 2 (affine) or ``3K - 1`` (spline)."""
        return 2 if self.transformer == "affine" else 3 * self.num_bins - 1

    @property
    def batch_shape(self) -> Shape:
        """The context's leading axes (``()`` unconditioned)."""
        return () if self.context is None else tuple(jnp.shape(self.context)[:-1])

    def forward_shape(self, shape: Shape) -> Shape:
        if tuple(shape[-1:]) != (self.dim,):
            raise ValueError(
                f"{type(self).__name__}: built for events of size dim={self.dim} (the last "
                f"axis); got event shape {tuple(shape)}."
            )
        return tuple(shape)

    inverse_shape = forward_shape

    def condition(self, context: ArrayLike) -> Any:
        """This flow with ``context`` (``(*batch, context_dim)``) as its conditioning input.

        The result's batch shape is ``context.shape[:-1]``: one context per datapoint (e.g.
        an encoder's output for an amortized posterior); its inputs broadcast against it.
        """
        name = type(self).__name__
        if self.context_dim is None:
            raise ValueError(
                f"{name}.condition: this flow was built without `context_dim`, so it takes "
                "no context; build it with context_dim=C to condition it."
            )
        context = jnp.asarray(context)
        if not jnp.issubdtype(context.dtype, jnp.inexact):
            context = context.astype(jnp.result_type(float))
        if context.ndim < 1 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"{name}.condition: `context` must have shape (*batch, context_dim="
                f"{self.context_dim}); got shape {context.shape}."
            )
        return dataclasses.replace(self, context=context)

    def _passes(self) -> int:
        """Network passes that invert a layer: its number of transformed degree levels."""
        levels = [
            len({d for d, k in zip(degrees, keep, strict=True) if not k})
            for degrees, keep in zip(self.degrees, self.keep, strict=True)
        ]
        return max(max(levels), 1)

    def _context_terms(self, v: Array) -> Array | None:
        """Each layer's ``context @ W_c`` (``(L, *batch, H1)``), after checking the context."""
        name = type(self).__name__
        if self.context_dim is None:
            return None
        if self.context is None:
            raise ValueError(
                f"{name} is conditional (context_dim={self.context_dim}): call "
                "flow.condition(context) with a context of shape (*batch, "
                f"{self.context_dim}) before using it."
            )
        context = jnp.asarray(self.context)
        try:
            np.broadcast_shapes(v.shape[:-1], context.shape[:-1])
        except ValueError:
            raise ValueError(
                f"{name}: the input's batch axes {v.shape[:-1]} (input shape {v.shape}) do not "
                f"broadcast against the context's {context.shape[:-1]} (context shape "
                f"{context.shape})."
            ) from None
        assert self.context_weights is not None
        return jnp.einsum("...c,lch->l...h", context, self.context_weights)

    def _stacked(self, v: Array) -> tuple[_Layers, Array]:
        """Every layer's arrays stacked on a leading axis, and ``v`` broadcast against the
        context's batch axes (the shape every layer's input and output has)."""
        context = self._context_terms(v)
        if context is not None:
            v = jnp.broadcast_to(
                v, jnp.broadcast_shapes(v.shape, context.shape[1:-1] + (self.dim,))
            )
        keep = np.asarray(self.keep, dtype=bool)
        masks = _made.stacked_masks(self.degrees, self.hidden_sizes, self.num_params)
        order = np.argsort(np.asarray(self.degrees), axis=-1, kind="stable")
        layers = _Layers(
            weights=self.weights,
            biases=self.biases,
            masks=tuple(jnp.asarray(m, v.dtype) for m in masks),
            context=context,
            keep=jnp.asarray(keep) if keep.any() else None,
            order=jnp.asarray(order),
            rank=jnp.asarray(np.argsort(order, axis=-1)),
        )
        return layers, v

    def _scan(self, body: Any, carry: Any, xs: Any, *, reverse: bool = False) -> Any:
        """``lax.scan`` over the layers: unrolled for a few layers (XLA fuses across them),
        rolled beyond (compile time independent of the depth)."""
        unroll = self.num_layers if self.num_layers <= _UNROLL_LAYERS else 1
        return jax.lax.scan(body, carry, xs, reverse=reverse, unroll=unroll)

    def _dtype(self, v: Array) -> Any:
        return jnp.result_type(v, *self.weights)

    # --- one layer ----------------------------------------------------------------------------

    def _params(self, layer: _Layers, u: Array) -> Array:
        return _made.apply(
            layer.weights,
            layer.biases,
            layer.masks,
            layer.context,
            self.activation,
            u,
            self.num_params,
        )

    def _transform(self, params: Array, u: Array, *, inverse: bool) -> tuple[Array, Array]:
        """``tau(u; params)`` (or its inverse) and the elementwise log-slopes."""
        if self.transformer == "affine":
            shift, raw = params[..., 0, :], params[..., 1, :]
            t = raw + _AFFINE_OFFSET
            scale, log_scale = jax.nn.softplus(t), _log_softplus(t)
            if inverse:
                return (u - shift) / scale, -log_scale
            return shift + scale * u, log_scale
        k = self.num_bins
        p = jnp.moveaxis(params, -2, -1)
        knots = _spline.knots(
            p[..., :k],
            p[..., k : 2 * k],
            p[..., 2 * k :],
            interval=self.interval,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
        )
        fn = _spline.inverse if inverse else _spline.forward
        return fn(knots, u, self.interval)

    def _layer(self, layer: _Layers, u: Array) -> tuple[Array, Array]:
        """``v = g_l(u)`` and ``log|det dg_l/du|`` (batch shape): one network pass."""
        v, log_slope = self._transform(self._params(layer, u), u, inverse=False)
        if layer.keep is not None:
            v = jnp.where(layer.keep, u, v)
            log_slope = jnp.where(layer.keep, 0.0, log_slope)
        return v, jnp.sum(log_slope, axis=-1)

    def _layer_inverse(self, layer: _Layers, v: Array) -> tuple[Array, Array]:
        r"""``u = g_l^{-1}(v)`` and ``log|det du/dv|``: one pass per degree level.

        Pass :math:`p` computes the parameters from the previous estimate, whose coordinates of
        the :math:`p-1` lowest levels are already exact, so :math:`p` levels are exact after
        it; the log-slopes of the last pass are those at the solution.
        """

        def step(u: Array) -> tuple[Array, Array]:
            u_new, log_slope = self._transform(self._params(layer, u), v, inverse=True)
            if layer.keep is not None:
                u_new = jnp.where(layer.keep, v, u_new)
                log_slope = jnp.where(layer.keep, 0.0, log_slope)
            return u_new, log_slope

        passes = self._passes()
        if passes == 1:
            u, log_slope = step(v)
        else:
            u, log_slope = jax.lax.fori_loop(
                0, passes, lambda _, carry: step(carry[0]), (v, jnp.zeros_like(v))
            )
        return u, jnp.sum(log_slope, axis=-1)

    # --- the stack ----------------------------------------------------------------------------

    def _fast(self, u: Array) -> tuple[Array, Array]:
        r""":math:`g_L\circ\dots\circ g_1(u)` and its log-det (one pass per layer)."""
        layers, u = self._stacked(u.astype(self._dtype(u)))

        def body(carry: tuple[Array, Array], layer: _Layers) -> tuple[Any, None]:
            v, log_det = self._layer(layer, carry[0])
            return (v, carry[1] + log_det), None

        (u, total), _ = self._scan(body, (u, jnp.zeros(u.shape[:-1], u.dtype)), layers)
        return u, total

    def _slow(self, v: Array) -> tuple[Array, Array]:
        """The inverse of :meth:`_fast` and its log-det."""
        layers, v = self._stacked(v.astype(self._dtype(v)))

        def body(carry: tuple[Array, Array], layer: _Layers) -> tuple[Any, None]:
            u, log_det = self._layer_inverse(layer, carry[0])
            return (u, carry[1] + log_det), None

        zeros = jnp.zeros(v.shape[:-1], v.dtype)
        (v, total), _ = self._scan(body, (v, zeros), layers, reverse=True)
        return v, total

    def _solve_fast_jacobian(self, u: Array, r: Array) -> Array:
        r""":math:`J^{-1} r` for the Jacobian :math:`J` of :meth:`_fast` at ``u`` (``(…, D)``).

        :math:`J = J_L\cdots J_1` with :math:`J_\ell` the Jacobian of layer :math:`\ell` at
        its input; each is triangular in the order of its degrees, so
        :math:`J^{-1}r = J_1^{-1}(\cdots(J_L^{-1}r))` by one triangular solve per layer. The
        :math:`J_\ell` come from :math:`D` Jacobian-vector products evaluated together
        (``vmap`` of ``jvp``), not from :math:`D` sequential passes.
        """
        layers, u = self._stacked(u)
        u = jnp.broadcast_to(u, jnp.broadcast_shapes(u.shape, r.shape))
        w = jnp.broadcast_to(r, u.shape)

        def forward(x: Array, layer: _Layers) -> tuple[Array, Array]:
            return self._layer(layer, x)[0], x

        _, inputs = self._scan(forward, u, layers)  # each layer's input, (L, …, D)
        eye = jnp.eye(self.dim, dtype=w.dtype)

        def solve(w: Array, xs: tuple[_Layers, Array]) -> tuple[Array, None]:
            layer, x_in = xs

            def column(e: Array) -> Array:
                g = lambda v: self._layer(layer, v)[0]
                return jax.jvp(g, (x_in,), (jnp.broadcast_to(e, x_in.shape),))[1]

            jac = jax.vmap(column, out_axes=-1)(eye)  # (…, D_out, D_in)
            order = layer.order
            lower = jnp.take(jnp.take(jac, order, axis=-2), order, axis=-1)
            solved = jax.scipy.linalg.solve_triangular(
                lower, jnp.take(w, order, axis=-1)[..., None], lower=True
            )[..., 0]
            return jnp.take(solved, layer.rank, axis=-1), None

        w, _ = self._scan(solve, w, (layers, inputs), reverse=True)
        return w

    def _forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return self._fast(x) if self._fast_forward else self._slow(x)

    def _inverse_given(self, y: Array, x: Array) -> Array:
        r"""``inverse(y)`` when ``x`` with ``forward(x) == y`` is known (the hook of
        :func:`jelbo.sample_and_stopped_log_prob`, used by the STL and DReG estimators).

        For the flows whose forward is one pass and inverse sequential (IAF) the value is
        ``x`` itself and the derivatives are those of the inverse by implicit
        differentiation: with :math:`y = f_\theta(x)`, :math:`\dot x = J_f(x)^{-1}(\dot y -
        \partial_\theta f_\theta(x)\,\dot\theta)` (:meth:`_solve_fast_jacobian`), so no
        sequential inverse runs, and gradients with respect to ``y`` and the parameters (and
        higher ones) are those of :meth:`inverse`. The others run their inverse (one pass).
        """
        if not (self._fast_forward and self._sequential_inverse):
            return self._inverse(y)
        dtype = self._dtype(y)
        return _implicit_inverse(self, y.astype(dtype), x.astype(dtype))

    def _inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        return self._slow(y) if self._fast_forward else self._fast(y)

    def _forward(self, x: Array) -> Array:
        return self._forward_and_log_det(x)[0]

    def _inverse(self, y: Array) -> Array:
        return self._inverse_and_log_det(y)[0]

    def _forward_log_det_jacobian(self, x: Array) -> Array:
        return self._forward_and_log_det(x)[1]

    def _inverse_log_det_jacobian(self, y: Array) -> Array:
        return self._inverse_and_log_det(y)[1]

    def __repr__(self) -> str:
        context = "" if self.context_dim is None else f", context_dim={self.context_dim}"
        conditioned = "" if self.context is None else f", batch_shape={self.batch_shape}"
        return (
            f"{type(self).__name__}(dim={self.dim}, num_layers={self.num_layers}, "
            f"hidden_sizes={self.hidden_sizes}, transformer={self.transformer!r}"
            + (
                f", num_bins={self.num_bins}, interval={self.interval}"
                if self.transformer == "spline"
                else ""
            )
            + f", activation={self.activation!r}{context}{conditioned})"
        )


@jax.custom_jvp
def _implicit_inverse(flow: _MaskedFlow, y: Array, x: Array) -> Array:
    """``x`` broadcast to ``y``'s shape, differentiated as ``flow``'s inverse at ``y``."""
    return jnp.broadcast_to(x, jnp.broadcast_shapes(x.shape, y.shape))


@_implicit_inverse.defjvp
def _implicit_inverse_jvp(
    primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Array, Array]:
    flow, y, x = primals
    d_flow, d_y, _ = tangents
    # The point itself as the implicit function of (flow, y): higher derivatives then see
    # the dependence of the Jacobian on y and the parameters (this call is the primal one).
    x = _implicit_inverse(flow, y, x)
    _, d_params = jax.jvp(lambda f: f._fast(x)[0], (flow,), (d_flow,))
    return x, flow._solve_fast_jacobian(x, d_y - d_params)


class InverseAutoregressive(_MaskedFlow):
    r"""Inverse autoregressive flow (Kingma et al. 2016): one network pass per layer forward.

    Layer :math:`\ell` maps :math:`v_j = \tau(u_j;\theta_j(u_{<j}, c))` in its order, so
    sampling :math:`y = f(x)` and :math:`\log q(y) = \log p(x) - \log|\det J_f(x)|` at the
    sample cost one pass per layer; ``inverse`` (the log-density of other points) costs
    :math:`D` passes per layer. Build it with :func:`masked_autoregressive` (``inverse=True``).
    """


class MaskedAutoregressive(_MaskedFlow):
    r"""Masked autoregressive flow (Papamakarios et al. 2017): the inverse of the IAF structure.

    ``inverse`` (density evaluation, :math:`x_j = \tau(y_j;\theta_j(y_{<j}, c))` layer by
    layer) costs one network pass per layer, ``forward`` (sampling) :math:`D`. Build it with
    :func:`masked_autoregressive`.
    """

    _fast_forward: ClassVar[bool] = False


class Coupling(_MaskedFlow):
    r"""Coupling flow (RealNVP, Dinh et al. 2017; neural spline coupling, Durkan et al. 2019).

    Layer :math:`\ell` keeps a subset :math:`A_\ell` (alternating parities of the index) and
    maps the rest by :math:`v_B = \tau(u_B;\theta(u_A, c))`; both directions cost one network
    pass per layer. Build it with :func:`coupling`.
    """

    _sequential_inverse: ClassVar[bool] = False


# --- builders ---------------------------------------------------------------------------------


def _check_common(
    key: Any,
    dim: Any,
    num_layers: Any,
    hidden_sizes: Any,
    transformer: Any,
    context_dim: Any,
    activation: Any,
    spline_options: tuple[Any, ...],
    where: str,
) -> tuple[int, int, tuple[int, ...], int | None]:
    _checks.check_key(key)
    dim = _checks.check_positive_int(dim, "dim")
    num_layers = _checks.check_positive_int(num_layers, "num_layers")
    if hidden_sizes is None:
        hidden_sizes = (max(2 * dim, 32),) * 2
    if isinstance(hidden_sizes, (int, np.integer)):
        hidden_sizes = (hidden_sizes,)
    hidden_sizes = tuple(hidden_sizes)
    if not hidden_sizes:
        raise ValueError(f"{where}: `hidden_sizes` needs at least one hidden layer; got ().")
    hidden_sizes = tuple(
        _checks.check_positive_int(h, f"hidden_sizes[{i}]") for i, h in enumerate(hidden_sizes)
    )
    _checks.check_choice(transformer, "transformer", _TRANSFORMERS)
    _checks.check_choice(activation, "activation", tuple(_made.ACTIVATIONS))
    if context_dim is not None:
        context_dim = _checks.check_positive_int(context_dim, "context_dim")
    num_bins, interval, min_w, min_h, min_d = spline_options
    _spline.check_spline_options(num_bins, interval, min_w, min_h, min_d, where)
    return dim, num_layers, hidden_sizes, context_dim


def _build(
    cls: type[_MaskedFlow],
    key: Array,
    degrees: list[tuple[int, ...]],
    keep: list[tuple[bool, ...]],
    hidden_sizes: tuple[int, ...],
    transformer: str,
    num_bins: int,
    interval: float,
    context_dim: int | None,
    activation: str,
    spline_options: tuple[float, float, float],
    dtype: Any,
) -> Any:
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`dtype` must be a floating dtype; got {dtype}.")
    num_params = 2 if transformer == "affine" else 3 * num_bins - 1
    keys = jax.random.split(key, len(degrees))
    layers = [
        _made.init_layer(k, d, hidden_sizes, num_params, context_dim, dtype)
        for k, d in zip(keys, degrees, strict=True)
    ]
    weights = tuple(jnp.stack(ws) for ws in zip(*(layer[0] for layer in layers), strict=True))
    biases = tuple(jnp.stack(bs) for bs in zip(*(layer[1] for layer in layers), strict=True))
    context_weights = None
    if context_dim is not None:
        context_weights = jnp.stack([layer[2] for layer in layers])  # type: ignore[misc]
    min_w, min_h, min_d = spline_options
    return cls(
        weights=weights,
        biases=biases,
        context_weights=context_weights,
        context=None,
        degrees=tuple(degrees),
        keep=tuple(keep),
        transformer=transformer,
        num_bins=num_bins,
        interval=float(interval),
        activation=activation,
        context_dim=context_dim,
        min_bin_width=min_w,
        min_bin_height=min_h,
        min_derivative=min_d,
    )


def masked_autoregressive(
    key: Array,
    dim: int,
    *,
    num_layers: int = 4,
    hidden_sizes: Sequence[int] | None = None,
    transformer: str = "affine",
    num_bins: int = 8,
    interval: float = 4.0,
    context_dim: int | None = None,
    inverse: bool = False,
    permutation: str = "reverse",
    activation: str = "tanh",
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
    dtype: Any = None,
) -> MaskedAutoregressive | InverseAutoregressive:
    r"""A masked autoregressive flow (MAF) or, with ``inverse=True``, an inverse one (IAF).

    Each of the ``num_layers`` layers transforms coordinate :math:`j` (in the layer's order)
    by :math:`\tau(\cdot;\theta_j)` whose parameters a MADE network (Germain et al. 2015)
    computes from the earlier coordinates and the context; the order is reversed (or
    randomly permuted, fixed) from one layer to the next. A fresh flow is the identity (the
    networks' output layers are zero).

    Args:
        key: PRNG key for the hidden weights (and the permutations with ``"random"``).
        dim: :math:`D`, the event size.
        num_layers: number of layers.
        hidden_sizes: the conditioner's hidden layer sizes; default two layers of
            ``max(2D, 32)`` units.
        transformer: ``"affine"`` (:math:`\tau(u) = \mu + \sigma u`,
            :math:`\sigma = \mathrm{softplus}(r + \log(e - 1))`) or ``"spline"``
            (:class:`~jelbo.flows.RationalQuadraticSpline` with ``num_bins`` bins on
            ``[-interval, interval]``, identity outside).
        num_bins, interval, min_bin_width, min_bin_height, min_derivative: the spline's
            options (static; see :class:`~jelbo.flows.RationalQuadraticSpline`).
        context_dim: size of the conditioning input, or ``None`` (unconditional); a
            conditional flow must be conditioned with ``flow.condition(context)``.
        inverse: ``False``: MAF (fast ``inverse``: density evaluation, e.g. maximum
            likelihood); ``True``: IAF (fast ``forward``: sampling and the log-density of
            its own samples, the variational family).
        permutation: ``"reverse"`` or ``"random"`` (a fixed random order per layer drawn
            from ``key``, which must then be concrete).
        activation: the conditioner's nonlinearity: ``"tanh"`` (default: bounded, so a
            layer's shift and log-scale stay within bounds set by its output weights however
            far out its input is: a base draw in the far tail cannot push the next layers
            into overflow), ``"gelu"``, ``"relu"``, ``"elu"`` or ``"silu"`` (unbounded: the
            parameters can grow with the inputs, e.g. a banana's quadratic mean, which
            bounded conditioners approximate more slowly).
        dtype: floating dtype of the parameters (default: JAX's default float).

    Returns:
        A :class:`MaskedAutoregressive` or :class:`InverseAutoregressive` bijector.
    """
    options = (num_bins, interval, min_bin_width, min_bin_height, min_derivative)
    dim, num_layers, hidden_sizes, context_dim = _check_common(
        key,
        dim,
        num_layers,
        hidden_sizes,
        transformer,
        context_dim,
        activation,
        options,
        "masked_autoregressive",
    )
    _checks.check_choice(permutation, "permutation", ("reverse", "random"))
    if not isinstance(inverse, bool):
        raise TypeError(f"`inverse` must be a bool; got {type(inverse).__name__}.")
    key, perm_key = jax.random.split(key)
    degrees = []
    for layer in range(num_layers):
        if permutation == "reverse":
            order = np.arange(dim) if layer % 2 == 0 else np.arange(dim)[::-1]
        else:
            try:
                perm = jax.random.permutation(jax.random.fold_in(perm_key, layer), dim)
                order = np.asarray(perm)
            except jax.errors.TracerArrayConversionError:
                raise ValueError(
                    "masked_autoregressive: permutation='random' draws the (static) orders from "
                    "`key`, which must then be concrete, not traced; build the flow outside jit "
                    "or use permutation='reverse'."
                ) from None
        rank = np.empty(dim, dtype=np.int64)
        rank[order] = np.arange(dim)
        degrees.append(tuple(int(r) + 1 for r in rank))
    keep = [(False,) * dim] * num_layers
    cls = InverseAutoregressive if inverse else MaskedAutoregressive
    return _build(
        cls,
        key,
        degrees,
        keep,
        hidden_sizes,
        transformer,
        num_bins,
        interval,
        context_dim,
        activation,
        (min_bin_width, min_bin_height, min_derivative),
        dtype,
    )


def coupling(
    key: Array,
    dim: int,
    *,
    num_layers: int = 8,
    hidden_sizes: Sequence[int] | None = None,
    transformer: str = "affine",
    num_bins: int = 8,
    interval: float = 4.0,
    context_dim: int | None = None,
    activation: str = "tanh",
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
    dtype: Any = None,
) -> Coupling:
    r"""A coupling flow (RealNVP, Dinh et al. 2017; neural spline coupling, Durkan et al. 2019).

    Layer :math:`\ell` keeps the coordinates whose index has the parity of :math:`\ell` and
    transforms the others by :math:`\tau(\cdot;\theta(u_{\text{kept}}, c))`; with ``dim=1``
    every layer transforms the one coordinate with parameters from the context alone (an
    elementwise map, learned but not input dependent without a context). Arguments as in
    :func:`masked_autoregressive`; a fresh flow is the identity.

    Returns:
        A :class:`Coupling` bijector, both directions one network pass per layer.
    """
    options = (num_bins, interval, min_bin_width, min_bin_height, min_derivative)
    dim, num_layers, hidden_sizes, context_dim = _check_common(
        key,
        dim,
        num_layers,
        hidden_sizes,
        transformer,
        context_dim,
        activation,
        options,
        "coupling",
    )
    degrees, keep = [], []
    for layer in range(num_layers):
        kept = tuple(dim > 1 and j % 2 == layer % 2 for j in range(dim))
        keep.append(kept)
        degrees.append(tuple(1 if k else 2 for k in kept))
    return _build(
        Coupling,
        key,
        degrees,
        keep,
        hidden_sizes,
        transformer,
        num_bins,
        interval,
        context_dim,
        activation,
        (min_bin_width, min_bin_height, min_derivative),
        dtype,
    )
