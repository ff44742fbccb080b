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

The constraints are those of :mod:`jelbo.constraints` (``positive((3,))`` is the constraint
``positive`` with a shape), and each maps by :func:`jelbo.constraints.biject_to`, the table
the distributions use too. The transforms are Stan's (Stan Reference Manual, "Constraint
transforms"): ``positive`` and ``greater_than``/``less_than`` by :math:`e^u`
(:math:`y = l + e^u`, :math:`y = h - e^u`), ``interval`` by the scaled logistic
:math:`y = l + (h-l)\sigma(u)`, ``simplex`` by stick breaking
(:class:`jelbo.bijectors.StickBreaking`), ``ordered``/``positive_ordered`` by cumulative
sums of exponentials, ``corr_cholesky`` by :class:`jelbo.bijectors.CorrCholesky`. Any
other constraint with a bijector works too (``softplus_positive((2,))``,
``unit_interval()``). The flat vector holds the parameters in the dict's order, each
flattened in C order. Because
a parameter's bounds may depend only on parameters declared before it, the Jacobian of the
whole map is block lower triangular and its log-determinant is the sum of the blocks'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jelbo import bijectors as _bij
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import (
    Constraint,
    biject_to,
    corr_cholesky,
    greater_than,
    interval,
    less_than,
    ordered,
    positive,
    positive_ordered,
    real,
    simplex,
)

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


def _resolve(c: Constraint, params: dict[str, Array], batch: Shape, dtype: Any) -> _bij.Bijector:
    """The bijector of ``c`` acting on its unconstrained vector ``(*batch, size)``.

    Bounds that are callables are evaluated on the parameters declared earlier; elementwise
    bounds are broadcast to ``(*batch, *shape)`` and flattened like the vector. The map
    itself is :func:`jelbo.constraints.biject_to`'s.
    """
    n = c.unconstrained_size

    def flat(bound: Any) -> Any:
        if bound is None:
            return None
        value = jnp.asarray(bound(params) if callable(bound) else bound, dtype)
        return jnp.broadcast_to(value, (*batch, *c.shape)).reshape((*batch, n))

    return biject_to(dataclasses.replace(c, low=flat(c.low), high=flat(c.high)))


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
            if not c.has_bijector:
                raise ValueError(
                    f"ParameterSpace: `{name}` is {c!r}, a set with no unconstrained "
                    "parameterization."
                )
            if c.event_dim and not c.shape:
                raise ValueError(
                    f"ParameterSpace: `{name}` needs the size of its {c.kind} (e.g. "
                    f"{c.kind}(3)); got {c!r}."
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
            b = _resolve(c, params, batch, u.dtype)
            if c.unconstrained_size == 0:
                value = jnp.zeros((*batch, *c.shape), u.dtype)
                if c.kind == "corr_cholesky":
                    value = value + 1.0
                params[name] = value
                continue
            value = b._forward(piece)
            log_det = log_det + b._forward_log_det_jacobian(piece)
            if c.event_dim == 0:
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
            b = _resolve(c, done, batch, dtype)
            done[name] = value
            if c.unconstrained_size == 0:
                continue
            if c.event_dim == 0:
                value = value.reshape((*batch, c.unconstrained_size))
            pieces.append(b._inverse(value))
        if not pieces:
            return jnp.zeros((*batch, 0), dtype)
        return jnp.concatenate(pieces, axis=-1)
