r"""Constraints: the sets that parameters and samples live in, and the one table that maps
each of them to a bijector from the unconstrained reals.

A :class:`Constraint` names a set (``real``, ``positive``, ``simplex``, ...). Each
distribution family declares its parameters' constraints once, in the class variable
``arg_constraints`` (``{"loc": real, "scale": positive}``, as in NumPyro and torch), and the
set its samples lie in, ``support``. From that one declaration jelbo derives

- the **value checks** of :func:`jelbo.check_parameters` (:meth:`Constraint.check`, with the
  requirement it prints, :attr:`Constraint.requirement`);
- the **unconstrained parameterization**: :func:`biject_to` maps a constraint to a bijector
  from unconstrained arrays onto the set, which
  :meth:`jelbo.Distribution.from_unconstrained_params` and
  :meth:`~jelbo.Distribution.unconstrained_params` apply parameter by parameter;
- the layout of a :class:`jelbo.parameters.ParameterSpace` (a constraint with a shape, for
  the parameters of a Bayesian model).

The table (:func:`biject_to`; Stan Reference Manual, "Constraint transforms"; NumPyro's
``biject_to``):

==============================  ==========================================  ================
constraint                      bijector                                    checks
==============================  ==========================================  ================
``real``                        ``Identity``                                finite
``extended_real``               ``Identity``                                not NaN
``real_or_neg_inf``             ``Identity``                                < +inf, not NaN
``positive``                    ``Exp``: :math:`y = e^u`                    > 0, finite
``extended_positive``           ``Exp``                                     > 0, not NaN
``nonnegative``                 ``Exp``                                     >= 0, finite
``softplus_positive``           ``Softplus``: :math:`y = \log(1 + e^u)`     > 0, finite
``unit_interval``               ``Sigmoid(0, 1)``                           in [0, 1]
``interval(l, h)``              ``Sigmoid(l, h)``                           in (l, h)
``greater_than(l)``             ``Chain([Exp, Affine(l, 1)])``              > l
``less_than(h)``                ``Chain([Exp, Affine(h, -1)])``             < h
``simplex``                     ``StickBreaking``                           >= 0, sum 1
``ordered``                     ``Ordered``                                 increasing
``positive_ordered``            ``PositiveOrdered``                         > 0, increasing
``corr_cholesky``               ``CorrCholesky``                            unit rows
``softplus_lower_cholesky``     ``FillScaleTriL`` (softplus diagonal)       see below
==============================  ==========================================  ================

**Positive is** :math:`e^u`, as in Stan and NumPyro: log is the natural scale of a scale
parameter (a Gaussian approximation of its posterior lives there), and
:class:`~jelbo.parameters.ParameterSpace`, the Laplace fits and the posteriordb results use
it. :data:`softplus_positive` is the same set with the softplus map, for those who want it
(it grows linearly, not exponentially, for large :math:`u`). jelbo 0.2's
``Distribution.from_unconstrained`` mapped positive parameters by softplus; it keeps those
numbers until 0.4, deprecated (it uses this table with ``positive`` read as
``softplus_positive``).

``softplus_lower_cholesky`` (a :class:`~jelbo.MultivariateNormalTriL`'s ``scale_tril``) maps a
vector of :math:`K(K+1)/2` entries to a lower-triangular matrix with a **softplus** diagonal
(:class:`jelbo.bijectors.FillScaleTriL`, unchanged since 0.1); its check accepts any finite
lower triangle with a nonzero diagonal, since jelbo's Gaussian reads :math:`|L_{ii}|`.

The remaining constraints describe supports and have no bijector (:func:`biject_to` raises):
``boolean``, ``nonnegative_integer``, ``integer_interval(l, h)``, ``one_hot`` and
``sphere``.

A constraint is a frozen dataclass ``Constraint(kind, shape=(), low=None, high=None)``;
calling it gives a copy with a shape, which :class:`~jelbo.parameters.ParameterSpace` needs
(``positive((3,))``, ``simplex(3)``, ``corr_cholesky(4)``; jelbo 0.2's
``jelbo.parameters.positive()`` and friends are these same objects).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jelbo import bijectors as _bij
from jelbo._typing import Array, ArrayLike, Shape

__all__ = [
    "Constraint",
    "biject_to",
    "boolean",
    "corr_cholesky",
    "extended_positive",
    "extended_real",
    "greater_than",
    "integer_interval",
    "interval",
    "less_than",
    "nonnegative",
    "nonnegative_integer",
    "one_hot",
    "ordered",
    "positive",
    "positive_ordered",
    "real",
    "real_or_neg_inf",
    "simplex",
    "softplus_lower_cholesky",
    "softplus_positive",
    "sphere",
    "unit_interval",
]

#: A bound of an interval: an array, or (in a ParameterSpace) a callable of the parameters
#: declared before it.
Bound = ArrayLike | Callable[[dict[str, Array]], ArrayLike]


@dataclasses.dataclass(frozen=True)
class Constraint:
    """A set that a parameter (or a sample) lives in; see the module docstring for the kinds.

    Build one with this module's constants and constructors (``positive``,
    ``interval(0.0, 1.0)``); call it to give it a shape (``positive((3,))``).

    Attributes:
        kind: the set's name, a key of the table (``"real"``, ``"positive"``,
            ``"interval"``, ...).
        shape: the constrained value's shape, without batch axes; used by
            :class:`~jelbo.parameters.ParameterSpace` (``()`` elsewhere).
        low: lower bound, for ``interval``, ``greater_than`` and ``integer_interval`` (an
            array broadcasting against ``shape``, or a callable of the parameters declared
            earlier in a ParameterSpace).
        high: upper bound, likewise.
    """

    kind: str
    shape: Shape = ()
    low: Any = None
    high: Any = None

    def __post_init__(self) -> None:
        if self.kind not in _TABLE:
            raise ValueError(
                f"Constraint: unknown kind {self.kind!r}; the kinds are {sorted(_TABLE)}."
            )

    def __call__(self, shape: int | Shape = ()) -> Constraint:
        """This constraint with the value shape ``shape`` (for a ParameterSpace).

        Elementwise constraints take any shape (an int ``n`` is ``(n,)``). ``simplex(k)``,
        ``ordered(k)`` and ``positive_ordered(k)`` take the vector length ``k``, and
        ``corr_cholesky(k)`` the matrix size (shape ``(k, k)``).
        """
        rule = _TABLE[self.kind]
        if rule.event_dim == 0:
            return dataclasses.replace(self, shape=_shape(shape, self.kind))
        k = _size(shape, self.kind, rule.min_size)
        return dataclasses.replace(self, shape=(k,) * rule.event_dim)

    def __repr__(self) -> str:
        bounds = [f"{b}" for b in (self.low, self.high) if b is not None and not callable(b)]
        inner = ", ".join(bounds + ([f"shape={self.shape}"] if self.shape else []))
        return f"{self.kind}({inner})" if inner else self.kind

    @property
    def event_dim(self) -> int:
        """Number of trailing axes one element of the set has (0 elementwise, 1 for a
        simplex, 2 for a Cholesky factor)."""
        return _TABLE[self.kind].event_dim

    @property
    def requirement(self) -> str:
        """What a value must be, completing "`name` must be ...", for error messages."""
        text = _TABLE[self.kind].requirement
        return text.format(low=_describe(self.low), high=_describe(self.high))

    @property
    def has_bijector(self) -> bool:
        """Whether :func:`biject_to` maps the unconstrained arrays onto this set (False for
        the discrete sets and the sphere)."""
        return _TABLE[self.kind].bijector is not None

    def check(self, value: ArrayLike) -> Array:
        """Boolean array, True where ``value`` lies in the set; the last :attr:`event_dim`
        axes are reduced (one entry per element of the set)."""
        value = jnp.asarray(value)
        if not jnp.issubdtype(value.dtype, jnp.inexact):
            value = value.astype(jnp.result_type(float))
        return _TABLE[self.kind].check(self, value)

    @property
    def unconstrained_size(self) -> int:
        """Number of unconstrained coordinates of a value of :attr:`shape`."""
        rule = _TABLE[self.kind]
        if rule.event_dim == 0:
            return math.prod(self.shape)
        return rule.size(self.shape[-1])


class _Rule(NamedTuple):
    """One row of the table: how a kind maps, checks and counts."""

    bijector: Callable[[Constraint], _bij.Bijector] | None
    check: Callable[[Constraint, Array], Array]
    requirement: str
    event_dim: int = 0
    size: Callable[[int], int] = lambda k: k  # unconstrained size of a vector kind
    min_size: int = 1  # smallest k of a vector kind


def _finite(c: Constraint, x: Array) -> Array:
    return jnp.isfinite(x)


def _not_nan(c: Constraint, x: Array) -> Array:
    return ~jnp.isnan(x)


def _below_inf(c: Constraint, x: Array) -> Array:
    return ~jnp.isnan(x) & (x < jnp.inf)


def _positive(c: Constraint, x: Array) -> Array:
    return (x > 0) & jnp.isfinite(x)


def _simplex_ok(c: Constraint, x: Array) -> Array:
    tol = math.sqrt(float(jnp.finfo(x.dtype).eps))
    return jnp.all(x >= 0, axis=-1) & (jnp.abs(jnp.sum(x, axis=-1) - 1.0) <= tol)


def _corr_cholesky_ok(c: Constraint, x: Array) -> Array:
    tol = math.sqrt(float(jnp.finfo(x.dtype).eps))
    k = x.shape[-1]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    lower_ok = jnp.all(jnp.where(upper, x == 0, jnp.isfinite(x)), axis=(-2, -1))
    diag_ok = jnp.all(jnp.diagonal(x, axis1=-2, axis2=-1) > 0, axis=-1)
    norms_ok = jnp.all(jnp.abs(jnp.sum(x * x, axis=-1) - 1.0) <= tol, axis=-1)
    return lower_ok & diag_ok & norms_ok


def _tril_ok(c: Constraint, x: Array) -> Array:
    k = x.shape[-1]
    lower = np.tril(np.ones((k, k), dtype=bool))
    finite = jnp.all(jnp.where(lower, jnp.isfinite(x), True), axis=(-2, -1))
    diag = jnp.diagonal(x, axis1=-2, axis2=-1)
    return finite & jnp.all(diag != 0, axis=-1)


def _bounds(c: Constraint, dtype: Any) -> tuple[Array, Array]:
    low = jnp.asarray(-jnp.inf if c.low is None else c.low, dtype)
    high = jnp.asarray(jnp.inf if c.high is None else c.high, dtype)
    return low, high


def _concrete(c: Constraint) -> Constraint:
    for bound in (c.low, c.high):
        if callable(bound):
            raise ValueError(
                f"biject_to({c!r}): the bound is a callable of other parameters; only a "
                "ParameterSpace can resolve it (or pass an array)."
            )
    return c


_TABLE: dict[str, _Rule] = {
    "real": _Rule(lambda c: _bij.Identity(), _finite, "finite"),
    "extended_real": _Rule(lambda c: _bij.Identity(), _not_nan, "not NaN (+-inf allowed)"),
    "real_or_neg_inf": _Rule(
        lambda c: _bij.Identity(), _below_inf, "< +inf and not NaN (-inf allowed)"
    ),
    "positive": _Rule(lambda c: _bij.Exp(), _positive, "> 0 and finite"),
    "extended_positive": _Rule(
        lambda c: _bij.Exp(), lambda c, x: (x > 0) & ~jnp.isnan(x), "> 0 (+inf allowed)"
    ),
    "nonnegative": _Rule(
        lambda c: _bij.Exp(), lambda c, x: (x >= 0) & jnp.isfinite(x), ">= 0 and finite"
    ),
    "softplus_positive": _Rule(lambda c: _bij.Softplus(), _positive, "> 0 and finite"),
    "unit_interval": _Rule(
        lambda c: _bij.Sigmoid(0.0, 1.0), lambda c, x: (x >= 0) & (x <= 1), "in [0, 1]"
    ),
    "interval": _Rule(
        lambda c: _bij.Sigmoid(_concrete(c).low, c.high),
        lambda c, x: (x > _bounds(c, x.dtype)[0]) & (x < _bounds(c, x.dtype)[1]),
        "in ({low}, {high})",
    ),
    "greater_than": _Rule(
        lambda c: _bij.Chain([_bij.Exp(), _bij.Affine(_concrete(c).low, 1.0)]),
        lambda c, x: x > _bounds(c, x.dtype)[0],
        "> {low}",
    ),
    "less_than": _Rule(
        lambda c: _bij.Chain([_bij.Exp(), _bij.Affine(_concrete(c).high, -1.0)]),
        lambda c, x: x < _bounds(c, x.dtype)[1],
        "< {high}",
    ),
    "simplex": _Rule(
        lambda c: _bij.StickBreaking(),
        _simplex_ok,
        "on the simplex (>= 0, summing to 1 along the last axis)",
        event_dim=1,
        size=lambda k: k - 1,
        min_size=2,
    ),
    "ordered": _Rule(
        lambda c: _bij.Ordered(),
        lambda c, x: jnp.all(jnp.isfinite(x), -1) & jnp.all(jnp.diff(x, axis=-1) > 0, -1),
        "finite and increasing along the last axis",
        event_dim=1,
    ),
    "positive_ordered": _Rule(
        lambda c: _bij.PositiveOrdered(),
        lambda c, x: (
            jnp.all(jnp.isfinite(x), -1)
            & jnp.all(x[..., :1] > 0, -1)
            & jnp.all(jnp.diff(x, axis=-1) > 0, -1)
        ),
        "positive, finite and increasing along the last axis",
        event_dim=1,
    ),
    "corr_cholesky": _Rule(
        lambda c: _bij.CorrCholesky(),
        _corr_cholesky_ok,
        "the Cholesky factor of a correlation matrix (lower triangular, positive diagonal, "
        "unit rows)",
        event_dim=2,
        size=lambda k: k * (k - 1) // 2,
    ),
    "softplus_lower_cholesky": _Rule(
        lambda c: _bij.FillScaleTriL(),
        _tril_ok,
        "of nonzero diagonal and finite in its lower triangle",
        event_dim=2,
        size=lambda k: k * (k + 1) // 2,
    ),
    # Supports without a bijector.
    "boolean": _Rule(None, lambda c, x: (x == 0) | (x == 1), "0 or 1"),
    "nonnegative_integer": _Rule(
        None,
        lambda c, x: (x >= 0) & (x == jnp.floor(x)) & jnp.isfinite(x),
        "a non-negative integer",
    ),
    "integer_interval": _Rule(
        None,
        lambda c, x: (
            (x >= _bounds(c, x.dtype)[0]) & (x <= _bounds(c, x.dtype)[1]) & (x == jnp.floor(x))
        ),
        "an integer in [{low}, {high}]",
    ),
    "one_hot": _Rule(
        None,
        lambda c, x: jnp.all((x == 0) | (x == 1), axis=-1) & (jnp.sum(x, axis=-1) == 1),
        "a one-hot vector along the last axis",
        event_dim=1,
    ),
    "sphere": _Rule(
        None,
        lambda c, x: (
            jnp.abs(jnp.linalg.norm(x, axis=-1) - 1.0) <= math.sqrt(float(jnp.finfo(x.dtype).eps))
        ),
        "a unit vector along the last axis",
        event_dim=1,
    ),
}


def biject_to(constraint: Constraint) -> _bij.Bijector:
    r"""The bijector from unconstrained arrays onto ``constraint``'s set (the module table).

    As NumPyro's ``biject_to``: e.g. ``biject_to(positive)`` is :class:`~jelbo.bijectors.Exp`,
    ``biject_to(simplex)`` is :class:`~jelbo.bijectors.StickBreaking` (:math:`K-1`
    unconstrained coordinates per point of the :math:`K`-simplex). Use it to optimize a
    constrained parameter with optax, or to build a variational family on a support,
    ``jelbo.Transformed(jelbo.Normal(loc, scale), biject_to(prior.support))``.

    Raises:
        TypeError: ``constraint`` is not a :class:`Constraint`.
        ValueError: a discrete set (``boolean``, ``nonnegative_integer``, ...) or ``sphere``
            (no bijection from the reals onto them), or a bound given as a callable.
    """
    if not isinstance(constraint, Constraint):
        raise TypeError(
            f"biject_to: `constraint` must be a jelbo.constraints.Constraint; got "
            f"{type(constraint).__name__}."
        )
    make = _TABLE[constraint.kind].bijector
    if make is None:
        raise ValueError(
            f"biject_to: there is no bijection from unconstrained arrays onto {constraint!r} "
            "(a discrete set or the sphere)."
        )
    return make(constraint)


# --- the constraints ----------------------------------------------------------------------


def _shape(shape: int | Shape, name: str) -> Shape:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
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


def _describe(bound: Any) -> str:
    if bound is None:
        return ""
    if callable(bound):
        return "a bound computed from other parameters"
    if jnp.ndim(bound) == 0:
        try:
            return f"{float(bound):g}"
        except Exception:  # a traced bound
            return "a traced bound"
    return "the bound array"


#: Finite reals. Identity.
real = Constraint("real")
#: Reals with ``±inf`` allowed (the logits of a deterministic coordinate). Identity.
extended_real = Constraint("extended_real")
#: Reals or ``-inf`` (the log of a non-negative number: a masked category's logit, the
#: log-rate of a zero rate). Identity.
real_or_neg_inf = Constraint("real_or_neg_inf")
#: :math:`(0, \infty)`, finite. ``Exp``.
positive = Constraint("positive")
#: :math:`(0, \infty]`: ``+inf`` allowed (a Student-t's ``df``, whose limit is the Normal).
#: ``Exp``.
extended_positive = Constraint("extended_positive")
#: :math:`[0, \infty)`, finite. ``Exp`` (0 is its limit at :math:`u = -\infty`).
nonnegative = Constraint("nonnegative")
#: :math:`(0, \infty)` mapped by ``Softplus``.
softplus_positive = Constraint("softplus_positive")
#: :math:`[0, 1]` (probabilities). ``Sigmoid(0, 1)`` onto the open interval.
unit_interval = Constraint("unit_interval")
#: The probability simplex along the last axis. ``StickBreaking``.
simplex = Constraint("simplex")
#: Increasing vectors. ``Ordered``.
ordered = Constraint("ordered")
#: Increasing positive vectors. ``PositiveOrdered``.
positive_ordered = Constraint("positive_ordered")
#: Cholesky factors of correlation matrices. ``CorrCholesky``.
corr_cholesky = Constraint("corr_cholesky")
#: Lower-triangular scale factors with a softplus diagonal. ``FillScaleTriL``.
softplus_lower_cholesky = Constraint("softplus_lower_cholesky")
#: ``{0, 1}`` (a support; no bijector).
boolean = Constraint("boolean")
#: ``{0, 1, 2, ...}`` (a support; no bijector).
nonnegative_integer = Constraint("nonnegative_integer")
#: One-hot vectors along the last axis (a support; no bijector).
one_hot = Constraint("one_hot")
#: Unit vectors along the last axis (a support; no bijector).
sphere = Constraint("sphere")


def interval(low: Bound, high: Bound, shape: int | Shape = ()) -> Constraint:
    r"""The open interval :math:`(l, h)`: ``Sigmoid(low, high)``, :math:`y = l + (h-l)\sigma(u)`,
    :math:`\log|J| = \log(h-l) + \log\sigma(u) + \log\sigma(-u)`.

    ``low``/``high`` broadcast against ``shape``, or (in a
    :class:`~jelbo.parameters.ParameterSpace`) are callables ``f(params_so_far) -> array`` of
    the parameters declared earlier (constrained values with the batch axes leading, e.g.
    ``lambda p: 1.0 - p["alpha1"]``); a callable must return an array that broadcasts
    against ``(*batch, *shape)``.
    """
    shape = _shape(shape, "interval")
    return Constraint(
        "interval",
        shape,
        low=_check_bound(low, shape, "interval", "low"),
        high=_check_bound(high, shape, "interval", "high"),
    )


def greater_than(low: Bound, shape: int | Shape = ()) -> Constraint:
    """Values above ``low``: :math:`y = l + e^u`. ``low`` as in :func:`interval`."""
    shape = _shape(shape, "greater_than")
    return Constraint("greater_than", shape, low=_check_bound(low, shape, "greater_than", "low"))


def less_than(high: Bound, shape: int | Shape = ()) -> Constraint:
    """Values below ``high``: :math:`y = h - e^u`. ``high`` as in :func:`interval`."""
    shape = _shape(shape, "less_than")
    return Constraint("less_than", shape, high=_check_bound(high, shape, "less_than", "high"))


def integer_interval(low: ArrayLike, high: ArrayLike) -> Constraint:
    """The integers ``low, ..., high`` (both included; a support, no bijector)."""
    return Constraint("integer_interval", low=low, high=high)
