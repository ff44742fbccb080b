r"""Parameter spaces: a Bayesian model's parameters as one flat unconstrained vector.

Describe the parameters once, by name, shape and constraint::

    from jelbo.parameters import ParameterSpace, interval, positive, real, simplex

    space = ParameterSpace({
        "mu": real(),
        "tau": positive(),
        "theta": real((8,)),
        "alpha1": interval(0.0, 1.0),
        "beta1": interval(0.0, lambda p: 1.0 - p["alpha1"]),  # depends on alpha1
        "w": simplex(3),
    })
    params, log_det = space.constrain(u)  # u: (*batch, space.dim)
    u = space.unconstrain(params)

and fit a variational family over ``u`` with the change-of-variables log density
:math:`\log p(x, T(u)) + \log|\det J_T(u)|`.

The transforms are Stan's (Stan Reference Manual, "Constraint transforms"): ``positive`` and
``greater_than``/``less_than`` by :math:`e^u` (:math:`y = l + e^u`, :math:`y = h - e^u`),
``interval`` by the scaled logistic :math:`y = l + (h-l)\sigma(u)`, ``simplex`` by stick
breaking (:class:`jelbo.bijectors.StickBreaking`), ``ordered``/``positive_ordered`` by
cumulative sums of exponentials, ``corr_cholesky`` by :class:`jelbo.bijectors.CorrCholesky`.
The flat vector holds the parameters in the dict's order, each flattened in C order. Because
a parameter's bounds may depend only on parameters declared before it, the Jacobian of the
whole map is block lower triangular and its log-determinant is the sum of the blocks'.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from jelbo import bijectors as _bij
from jelbo._typing import Array, ArrayLike, Shape

__all__ = [
    "Constraint",
    "ParameterSpace",
    "corr_cholesky",
    "greater_than",
    "interval",
    "less_than",
    "ordered",
    "positive",
    "positive_ordered",
    "real",
    "simplex",
]

Bound = ArrayLike | Callable[[dict[str, Array]], ArrayLike]
_ELEMENTWISE = ("real", "positive", "interval", "greater_than", "less_than")


@dataclasses.dataclass(frozen=True)
class Constraint:
    """A parameter's constraint and shape; build it with the constructors of this module.

    Attributes:
        kind: ``"real"``, ``"positive"``, ``"interval"``, ``"greater_than"``, ``"less_than"``,
            ``"simplex"``, ``"ordered"``, ``"positive_ordered"`` or ``"corr_cholesky"``.
        shape: the constrained parameter's shape (without batch axes).
        low: lower bound (arrays broadcasting against ``shape``, or a callable of the
            parameters declared earlier), where the kind has one.
        high: upper bound, likewise.
    """

    kind: str
    shape: Shape
    low: Any = None
    high: Any = None

    @property
    def unconstrained_size(self) -> int:
        """Number of unconstrained coordinates of this parameter."""
        if self.kind in _ELEMENTWISE:
            return math.prod(self.shape)
        k = self.shape[-1]
        if self.kind == "simplex":
            return k - 1
        if self.kind == "corr_cholesky":
            return k * (k - 1) // 2
        return k

    def _bounds(self, params: dict[str, Array]) -> tuple[Array | None, Array | None]:
        def evaluate(bound: Any) -> Array | None:
            if bound is None:
                return None
            return jnp.asarray(bound(params) if callable(bound) else bound)

        return evaluate(self.low), evaluate(self.high)

    def _bijector(self, params: dict[str, Array], batch: Shape, dtype: Any) -> _bij.Bijector:
        """The bijector acting on this parameter's unconstrained vector ``(*batch, size)``.

        Elementwise bounds are broadcast to ``(*batch, *shape)`` and flattened like the
        vector.
        """
        low, high = self._bounds(params)
        n = self.unconstrained_size

        def flat(bound: Array) -> Array:
            full = jnp.broadcast_to(jnp.asarray(bound, dtype), (*batch, *self.shape))
            return full.reshape((*batch, n))

        if self.kind == "real":
            return _bij.Identity()
        if self.kind == "positive":
            return _bij.Exp()
        if self.kind == "greater_than":
            assert low is not None
            return _bij.Chain([_bij.Exp(), _bij.Affine(flat(low), 1.0)])
        if self.kind == "less_than":
            assert high is not None
            return _bij.Chain([_bij.Exp(), _bij.Affine(flat(high), -1.0)])
        if self.kind == "interval":
            assert low is not None and high is not None
            return _bij.Sigmoid(flat(low), flat(high))
        return {
            "simplex": _bij.StickBreaking,
            "ordered": _bij.Ordered,
            "positive_ordered": _bij.PositiveOrdered,
            "corr_cholesky": _bij.CorrCholesky,
        }[self.kind]()


def _shape(shape: int | Shape, name: str) -> Shape:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"{name}: `shape` must be a tuple of non-negative ints; got {shape!r}.")
    return tuple(int(s) for s in shape)


def _size(k: Any, name: str, minimum: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < minimum:
        raise ValueError(f"{name}: `k` must be a Python int >= {minimum}; got {k!r}.")
    return k


def _check_bound(bound: Any, shape: Shape, name: str, arg: str) -> Any:
    if callable(bound):
        return bound
    try:
        jnp.broadcast_shapes(jnp.shape(bound), shape)
    except ValueError:
        raise ValueError(
            f"{name}: `{arg}` of shape {jnp.shape(bound)} does not broadcast against the "
            f"parameter shape {shape}."
        ) from None
    return bound


def real(shape: int | Shape = ()) -> Constraint:
    """Unconstrained real parameter(s) of ``shape`` (identity transform)."""
    return Constraint("real", _shape(shape, "real"))


def positive(shape: int | Shape = ()) -> Constraint:
    """Positive parameter(s): :math:`y = e^u`, :math:`\\log|J| = u`."""
    return Constraint("positive", _shape(shape, "positive"))


def greater_than(low: Bound, shape: int | Shape = ()) -> Constraint:
    """Parameter(s) above ``low``: :math:`y = l + e^u`.

    ``low`` broadcasts against ``shape`` or is a callable of the earlier parameters.
    """
    shape = _shape(shape, "greater_than")
    return Constraint("greater_than", shape, low=_check_bound(low, shape, "greater_than", "low"))


def less_than(high: Bound, shape: int | Shape = ()) -> Constraint:
    """Parameter(s) below ``high``: :math:`y = h - e^u`."""
    shape = _shape(shape, "less_than")
    return Constraint("less_than", shape, high=_check_bound(high, shape, "less_than", "high"))


def interval(low: Bound, high: Bound, shape: int | Shape = ()) -> Constraint:
    r"""Parameter(s) in the open interval :math:`(l, h)`: :math:`y = l + (h-l)\sigma(u)`,
    :math:`\log|J| = \log(h-l) + \log\sigma(u) + \log\sigma(-u)`.

    ``low``/``high`` broadcast against ``shape``, or are callables
    ``f(params_so_far) -> array`` of the parameters declared earlier (constrained values
    with the batch axes leading, e.g. ``lambda p: 1.0 - p["alpha1"]``); a callable must
    return an array that broadcasts against ``(*batch, *shape)``.
    """
    shape = _shape(shape, "interval")
    return Constraint(
        "interval",
        shape,
        low=_check_bound(low, shape, "interval", "low"),
        high=_check_bound(high, shape, "interval", "high"),
    )


def simplex(k: int) -> Constraint:
    """A point of the open ``k``-simplex (event ``(k,)``, ``k - 1`` unconstrained
    coordinates), by Stan's stick breaking."""
    return Constraint("simplex", (_size(k, "simplex", 2),))


def ordered(k: int) -> Constraint:
    """An increasing vector of length ``k``: :math:`y_1 = u_1`, :math:`y_i = y_{i-1} + e^{u_i}`."""
    return Constraint("ordered", (_size(k, "ordered", 1),))


def positive_ordered(k: int) -> Constraint:
    """An increasing positive vector of length ``k``: :math:`y_i = \\sum_{j\\le i} e^{u_j}`."""
    return Constraint("positive_ordered", (_size(k, "positive_ordered", 1),))


def corr_cholesky(k: int) -> Constraint:
    """The Cholesky factor of a ``k × k`` correlation matrix (event ``(k, k)``,
    ``k(k-1)/2`` unconstrained coordinates), by Stan's transform."""
    k = _size(k, "corr_cholesky", 1)
    return Constraint("corr_cholesky", (k, k))


class ParameterSpace:
    r"""Named, shaped, constrained parameters and their flat unconstrained vector.

    Args:
        constraints: a mapping ``name -> Constraint`` (dict order is the layout of the flat
            vector). Callable bounds may use only parameters declared earlier.

    Attributes:
        dim: the flat unconstrained size.
        names: the parameter names, in order.
        shapes: ``name -> constrained shape``.
    """

    def __init__(self, constraints: Mapping[str, Constraint]):
        if not isinstance(constraints, Mapping) or not constraints:
            raise TypeError("ParameterSpace: `constraints` must be a non-empty dict.")
        for name, c in constraints.items():
            if not isinstance(c, Constraint):
                raise TypeError(
                    f"ParameterSpace: `{name}` must be a Constraint (e.g. "
                    f"jelbo.parameters.positive()); got {type(c).__name__}."
                )
        self._constraints = dict(constraints)
        self.names: tuple[str, ...] = tuple(self._constraints)
        self.shapes: dict[str, Shape] = {n: c.shape for n, c in self._constraints.items()}
        sizes = [c.unconstrained_size for c in self._constraints.values()]
        self._offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        self.dim: int = self._offsets[-1]

    @property
    def constraints(self) -> dict[str, Constraint]:
        """``name -> Constraint`` (a copy)."""
        return dict(self._constraints)

    def __repr__(self) -> str:
        items = ", ".join(f"{n}: {c.kind}{list(c.shape)}" for n, c in self._constraints.items())
        return f"ParameterSpace({{{items}}}, dim={self.dim})"

    def constrain(self, u: ArrayLike) -> tuple[dict[str, Array], Array]:
        r"""Maps unconstrained ``u`` to the constrained parameters, with the log-det-Jacobian.

        Args:
            u: shape ``(*batch, dim)``.

        Returns:
            ``(params, log_det)``: a dict ``name -> (*batch, *shape)`` and
            :math:`\log|\det \partial T/\partial u|` of shape ``(*batch,)`` (for the simplex
            and correlation Cholesky parameters, onto their free coordinates).
        """
        u = jnp.asarray(u)
        if not jnp.issubdtype(u.dtype, jnp.floating):
            u = u.astype(jnp.result_type(float))
        if u.ndim < 1 or u.shape[-1] != self.dim:
            raise ValueError(
                f"ParameterSpace.constrain: `u` must have shape (*batch, {self.dim}); got "
                f"{u.shape}."
            )
        batch = u.shape[:-1]
        params: dict[str, Array] = {}
        log_det = jnp.zeros(batch, u.dtype)
        for i, (name, c) in enumerate(self._constraints.items()):
            piece = u[..., self._offsets[i] : self._offsets[i + 1]]
            b = c._bijector(params, batch, u.dtype)
            if c.unconstrained_size == 0:
                value = jnp.zeros((*batch, *c.shape), u.dtype)
                if c.kind == "corr_cholesky":
                    value = value + 1.0
                params[name] = value
                continue
            value = b._forward(piece)
            log_det = log_det + b._forward_log_det_jacobian(piece)
            if c.kind in _ELEMENTWISE:
                value = value.reshape((*batch, *c.shape))
            params[name] = value
        return params, log_det

    def unconstrain(self, params: Mapping[str, ArrayLike]) -> Array:
        """The inverse of :meth:`constrain`: the flat vector ``(*batch, dim)`` of ``params``.

        Args:
            params: ``name -> (*batch, *shape)`` for every parameter (the same batch).
        """
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"ParameterSpace.unconstrain: missing parameters {missing}.")
        arrays = {n: jnp.asarray(params[n]) for n in self.names}
        dtype = jnp.result_type(float, *arrays.values())
        arrays = {n: a.astype(dtype) for n, a in arrays.items()}
        batches = {}
        for n, a in arrays.items():
            shape = self.shapes[n]
            if a.shape[a.ndim - len(shape) :] != shape or a.ndim < len(shape):
                raise ValueError(
                    f"ParameterSpace.unconstrain: `{n}` must have shape (*batch, *{shape}); "
                    f"got {a.shape}."
                )
            batches[n] = a.shape[: a.ndim - len(shape)]
        if len(set(batches.values())) > 1:
            raise ValueError(
                f"ParameterSpace.unconstrain: the parameters' batch shapes differ: {batches}."
            )
        batch = next(iter(batches.values()))
        pieces = []
        done: dict[str, Array] = {}
        for name, c in self._constraints.items():
            value = arrays[name]
            b = c._bijector(done, batch, dtype)
            done[name] = value
            if c.unconstrained_size == 0:
                continue
            if c.kind in _ELEMENTWISE:
                value = value.reshape((*batch, c.unconstrained_size))
            pieces.append(b._inverse(value))
        if not pieces:
            return jnp.zeros((*batch, 0), dtype)
        return jnp.concatenate(pieces, axis=-1)
