"""Distributions as immutable pytrees, and the pure functions that act on them.

Shape convention: leading axes are batch axes and the **last axis is the event axis**
(except for :class:`Categorical`, whose event is a scalar index and whose last parameter
axis holds the categories). ``log_prob`` sums over the event axis and returns the batch
shape; ``sample`` returns ``sample_shape + batch_shape + event_shape``.

Every distribution is a frozen dataclass registered as a JAX pytree whose leaves are its
parameters, so it passes through ``jax.jit``, ``jax.vmap``, ``jax.grad`` and optax.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import warnings
from typing import Any, ClassVar, dataclass_transform

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jelbo import _checks, _random, _special
from jelbo import bijectors as _bijectors
from jelbo._typing import Array, ArrayLike, Shape

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

__all__ = [
    "Bernoulli",
    "Categorical",
    "Distribution",
    "Factorized",
    "Laplace",
    "MultivariateNormalTriL",
    "Normal",
    "Poisson",
    "StudentT",
    "entropy",
    "log_prob",
    "sample",
    "static_field",
]


def static_field(**kwargs: Any) -> Any:
    """A dataclass field kept as static pytree aux data instead of a traced leaf.

    Use it for structural options of a family (a dimension, a flag) that must stay Python
    values under ``jax.jit``/``jax.vmap``: they become part of the treedef (so they must be
    hashable), are not converted to arrays and are not differentiated. Example::

        class MyFamily(Distribution):
            loc: ArrayLike
            dim: int = static_field()
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


_POSITIVE_FIELDS = frozenset(
    {
        "scale",
        "rate",
        "concentration",
        "concentration0",
        "concentration1",
        "df",
        "temperature",
        "total_count",
    }
)


def _is_static(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("static", False))


# Hooks that jelbo 0.1 families could leave out (see Distribution.__new__).
_LENIENT_HOOKS = frozenset({"_log_prob", "_sample"})


@dataclass_transform(frozen_default=True, eq_default=False)
class Distribution(abc.ABC):
    r"""Base class of jelbo's distributions: subclass it and a family is a frozen dataclass
    and a JAX pytree in one step.

    Declare the parameters as annotated fields; every field is a pytree leaf (an array or a
    Python number), so the family passes through ``jax.jit``, ``jax.vmap``, ``jax.grad`` and
    optax. Structural options (a dimension, a flag) are declared with :func:`static_field`
    and kept as static aux data. Implement the abstract hooks (type checkers see them, and a
    family that misses one cannot be instantiated):

    - ``batch_shape`` and ``event_shape`` (properties, from the parameters' static shapes);
    - ``_log_prob(x)`` with ``x`` already checked against the event shape, returning the
      log-density summed over the event;
    - ``_sample(key, sample_shape)`` returning ``sample_shape + batch_shape + event_shape``.

    and, where they exist in closed form, the optional hooks ``_entropy``, ``_mean``,
    ``_variance``, ``_covariance`` and ``_mode`` (the defaults raise ``NotImplementedError``
    naming the family). ``_validate`` runs at construction (so at trace time) and should
    raise ``ValueError`` naming any parameter whose shape does not fit. Set the class
    variable ``is_reparameterized = True`` when ``_sample`` is differentiable in the
    parameters.

    The public methods (``log_prob``, ``sample``, ``entropy``, ``mean``, ...) are thin over
    the free functions :func:`log_prob`, :func:`sample` and :func:`entropy`, which check
    their arguments and then call the hooks. See "Writing your own family" in
    ``docs/distributions.md``.
    """

    is_reparameterized: ClassVar[bool] = False
    # Every subclass is a dataclass (see __init_subclass__); declared so that type checkers
    # accept dataclasses.fields(self).
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
        # Immutability comes from Distribution.__setattr__, not from a per-class frozen
        # __setattr__, so that 0.1 families that also apply @dataclasses.dataclass(frozen=True)
        # themselves keep working.
        for name in ("__setattr__", "__delattr__"):
            if name in cls.__dict__:
                delattr(cls, name)
        jax.tree_util.register_pytree_node(
            cls, _flatten, lambda static, leaves: _unflatten(cls, static, leaves)
        )

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        missing = cls.__abstractmethods__
        if missing and missing <= _LENIENT_HOOKS:
            # jelbo 0.1 let a family leave out _log_prob or _sample (e.g. a prior that is
            # never sampled); that keeps working, with a warning, until it is called.
            warnings.warn(
                f"{cls.__name__} does not implement {', '.join(sorted(missing))}; jelbo 0.2 "
                "makes these hooks abstract. Calling them raises NotImplementedError.",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.__abstractmethods__ = frozenset()
        return super().__new__(cls)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(
            f"{type(self).__name__} is immutable; build a new one (dataclasses.replace)."
        )

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"{type(self).__name__} is immutable.")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if _is_static(field):
                continue
            value = getattr(self, field.name)
            if isinstance(value, (list, tuple)):  # Python scalars stay weakly typed
                value = jnp.asarray(value)
                object.__setattr__(self, field.name, value)
            dtype = getattr(value, "dtype", None)
            if dtype is not None and not jnp.issubdtype(dtype, jnp.inexact):
                # Integer (or boolean) parameter arrays are promoted once, here, so that every
                # method sees the same floating parameters (jnp.log_softmax & co. reject ints).
                object.__setattr__(self, field.name, jnp.asarray(value, jnp.result_type(float)))
        self._validate()

    def _validate(self) -> None:
        """Checks parameter shapes at construction (and so at trace time); none by default."""
        return None

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        """``(name, ok, requirement)`` per parameter for :func:`jelbo.check_parameters`.

        ``ok`` is a boolean array, True where the value is valid; ``requirement`` completes
        "`name` must be ...". The default requires that no parameter is NaN; families with
        constraints (a positive scale, ``df > 0``) override it.
        """
        checks = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if _is_static(field) or value is None:
                continue
            checks.append((field.name, ~jnp.isnan(jnp.asarray(value)), "not NaN"))
        return checks

    # --- abstract hooks ---------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def batch_shape(self) -> Shape:
        """Shape of the batch of independent distributions."""

    @property
    @abc.abstractmethod
    def event_shape(self) -> Shape:
        """Shape of one draw (``()`` for scalar events such as a category index)."""

    @abc.abstractmethod
    def _log_prob(self, x: Array) -> Array:
        """Log-density of checked ``x``, summed over the event."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _log_prob.")

    @abc.abstractmethod
    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        """Draws of shape ``sample_shape + batch_shape + event_shape``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _sample.")

    # --- optional hooks ---------------------------------------------------------------------

    def _missing(self, what: str, hint: str = "") -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} has no closed-form {what}.{hint}")

    def _entropy(self) -> Array:
        raise self._missing(
            "entropy",
            " Estimate it by Monte Carlo as -mean(log_prob(dist, sample(key, dist, (n,)))).",
        )

    def _mean(self) -> Array:
        raise self._missing("mean")

    def _variance(self) -> Array:
        raise self._missing("variance")

    def _covariance(self) -> Array:
        raise self._missing("covariance")

    def _mode(self) -> Array:
        raise self._missing("mode")

    # --- properties and methods -------------------------------------------------------------

    @property
    def dtype(self) -> Any:
        """The floating dtype of the parameters (and of reparameterized samples)."""
        params = jax.tree_util.tree_leaves(self)
        return jnp.result_type(float, *params)

    # --- unconstrained parameterization ---------------------------------------------------

    #: ``field name -> bijector`` from an unconstrained array onto the parameter's support.
    #: Fields not listed that are named like a positive parameter (``scale``, ``rate``,
    #: ``concentration``, ``concentration0``/``1``, ``df``, ``temperature``, ``total_count``)
    #: map by softplus; the others are unconstrained already (identity), and fields that hold
    #: a distribution or a bijector are passed through as they are.
    unconstrained_bijectors: ClassVar[dict[str, _bijectors.Bijector]] = {}

    @classmethod
    def _unconstrained_map(cls) -> dict[str, _bijectors.Bijector]:
        names = [f.name for f in dataclasses.fields(cls) if not _is_static(f)]
        out: dict[str, _bijectors.Bijector] = {
            name: _bijectors.Softplus() for name in names if name in _POSITIVE_FIELDS
        }
        out.update(cls.unconstrained_bijectors)
        return out

    @classmethod
    def from_unconstrained(cls, *args: Any, **kwargs: Any) -> Any:
        r"""Builds the family from unconstrained arrays, so that optax never leaves the support.

        Takes the constructor's arguments (same names and order), each parameter given by an
        unconstrained array that :attr:`unconstrained_bijectors` maps onto its support (e.g.
        ``scale = softplus(raw)``; ``scale_tril`` from a ``K(K+1)/2`` vector through
        :class:`jelbo.bijectors.FillScaleTriL`). Static fields are passed as they are.
        The inverse is :meth:`to_unconstrained`::

            raw = q.to_unconstrained()                  # dict of arrays, e.g. for init
            q = type(q).from_unconstrained(**raw)       # the same distribution
        """
        names = [f.name for f in dataclasses.fields(cls)]
        if len(args) > len(names):
            raise TypeError(
                f"{cls.__name__}.from_unconstrained takes at most {len(names)} positional "
                f"arguments ({', '.join(names)}); got {len(args)}."
            )
        values = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in names or name in values:
                raise TypeError(
                    f"{cls.__name__}.from_unconstrained: unexpected or repeated argument "
                    f"`{name}`; the parameters are {names}."
                )
            values[name] = value
        for name, bijector in cls._unconstrained_map().items():
            if name in values and not isinstance(values[name], (Distribution, _bijectors.Bijector)):
                values[name] = _bijectors.forward(bijector, values[name])
        return cls(**values)

    def to_unconstrained(self) -> dict[str, Any]:
        """The unconstrained arrays of the (non-static) parameters, ``name -> array``: the
        inverse of :meth:`from_unconstrained` (e.g. to initialize a variational family)."""
        out = {}
        for field in dataclasses.fields(self):
            if _is_static(field) or getattr(self, field.name) is None:  # unset optional field
                continue
            value = getattr(self, field.name)
            if isinstance(value, (Distribution, _bijectors.Bijector)):
                out[field.name] = value
                continue
            value = jnp.asarray(value)
            bijector = self._unconstrained_map().get(field.name)
            if bijector is not None:
                value = _bijectors.inverse(bijector, value)
            out[field.name] = value
        return out

    def log_prob(self, x: ArrayLike) -> Array:
        """``log p(x)`` summed over the event; the same as :func:`jelbo.log_prob`."""
        return log_prob(self, x)

    def sample(self, key: Array, sample_shape: int | Shape = ()) -> Array:
        """Draws ``sample_shape + batch_shape + event_shape``; as :func:`jelbo.sample`."""
        return sample(key, self, sample_shape)

    def entropy(self) -> Array:
        """Closed-form entropy, shape ``batch_shape``; the same as :func:`jelbo.entropy`."""
        return entropy(self)

    def mean(self) -> Array:
        r""":math:`\mathbb E[x]`, shape ``batch_shape + event_shape``."""
        return self._mean()

    def variance(self) -> Array:
        r"""Elementwise :math:`\mathrm{Var}[x]`, shape ``batch_shape + event_shape``."""
        return self._variance()

    def stddev(self) -> Array:
        """Elementwise standard deviation, the square root of :meth:`variance`."""
        return jnp.sqrt(self.variance())

    def covariance(self) -> Array:
        r""":math:`\mathrm{Cov}[x]` of a vector event, shape ``batch_shape + (K, K)``."""
        return self._covariance()

    def mode(self) -> Array:
        """A most probable value, shape ``batch_shape + event_shape``."""
        return self._mode()

    def __repr__(self) -> str:
        params = ", ".join(
            f"{f.name}={_checks.describe(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None  # optional parameters left unset
        )
        return f"{type(self).__name__}({params})"


def _flatten(dist: Distribution) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    fields = dataclasses.fields(dist)
    children = tuple(getattr(dist, f.name) for f in fields if not _is_static(f))
    static = tuple(getattr(dist, f.name) for f in fields if _is_static(f))
    return children, static


def _unflatten(cls: type, static: tuple[Any, ...], leaves: Any) -> Distribution:
    # Bypasses __init__: JAX rebuilds pytrees with placeholder leaves that must not be checked.
    dist = object.__new__(cls)
    fields = dataclasses.fields(cls)
    dynamic = [f for f in fields if not _is_static(f)]
    for field, leaf in zip(dynamic, leaves, strict=True):
        object.__setattr__(dist, field.name, leaf)
    for field, value in zip([f for f in fields if _is_static(f)], static, strict=True):
        object.__setattr__(dist, field.name, value)
    return dist


def _param_shape(dist: Distribution) -> Shape:
    """Broadcast shape of all parameters of a family whose last axis is the event axis."""
    named = [
        (f.name, jnp.shape(getattr(dist, f.name)))
        for f in dataclasses.fields(dist)
        if not _is_static(f) and getattr(dist, f.name) is not None
    ]
    shape = _checks.broadcast_shapes(*named)
    if len(shape) < 1:
        listed = ", ".join(f"`{name}` {shape}" for name, shape in named)
        raise ValueError(
            f"{type(dist).__name__} parameters need at least one axis, the event axis "
            f"(the last); got {listed}. Use e.g. jnp.zeros(K) for a K-dimensional event."
        )
    return shape


def _common(*values: ArrayLike) -> list[Array]:
    """The values as arrays of their common floating dtype, broadcast against each other."""
    dtype = jnp.result_type(float, *values)
    return jnp.broadcast_arrays(*(jnp.asarray(v, dtype) for v in values))


def _finite_checks(dist: Distribution, *names: str) -> list[tuple[str, Any, str]]:
    return [(n, jnp.isfinite(jnp.asarray(getattr(dist, n))), "finite") for n in names]


def _positive_checks(dist: Distribution, *names: str) -> list[tuple[str, Any, str]]:
    def ok(value: Any) -> Array:
        value = jnp.asarray(value)
        return (value > 0) & jnp.isfinite(value)

    return [(n, ok(getattr(dist, n)), "> 0 and finite") for n in names]


def _not_nan_or_plus_inf(value: ArrayLike) -> Array:
    value = jnp.asarray(value)
    return ~jnp.isnan(value) & (value < jnp.inf)


class Factorized(Distribution):
    """Base of families with independent coordinates along the event (last) axis.

    Every parameter broadcasts to ``batch_shape + (K,)``. Subclasses implement
    ``_log_prob_elementwise(x)`` (per coordinate, before the sum over the event) and
    ``_sample``, and optionally ``_entropy_elementwise``; ``_full(value)`` broadcasts a
    per-coordinate quantity to the parameter shape.
    """

    def _validate(self) -> None:
        _param_shape(self)

    @property
    def param_shape(self) -> Shape:
        """The parameters' broadcast shape, ``batch_shape + event_shape``."""
        return _param_shape(self)

    @property
    def batch_shape(self) -> Shape:
        return self.param_shape[:-1]

    @property
    def event_shape(self) -> Shape:
        return self.param_shape[-1:]

    def _log_prob(self, x: Array) -> Array:
        return jnp.sum(self._log_prob_elementwise(x), axis=-1)

    def _entropy(self) -> Array:
        return jnp.sum(jnp.broadcast_to(self._entropy_elementwise(), self.param_shape), axis=-1)

    def _log_prob_elementwise(self, x: Array) -> Array:
        raise NotImplementedError

    def _entropy_elementwise(self) -> Array:
        return Distribution._entropy(self)

    def _full(self, value: ArrayLike) -> Array:
        """``value`` broadcast to the parameters' shape ``batch_shape + event_shape``."""
        return jnp.broadcast_to(jnp.asarray(value, self.dtype), self.param_shape)

    def _covariance(self) -> Array:
        variance = self.variance()
        return variance[..., :, None] * jnp.eye(variance.shape[-1], dtype=variance.dtype)


class Normal(Factorized):
    r"""Diagonal Gaussian :math:`\mathcal N(x; \mu, \mathrm{diag}(\sigma^2))`.

    :math:`\log p(x) = \sum_i -\tfrac12 ((x_i-\mu_i)/\sigma_i)^2 - \log\sigma_i
    - \tfrac12\log 2\pi`.

    Attributes:
        loc: mean :math:`\mu`, shape ``(*batch, K)``.
        scale: standard deviation :math:`\sigma > 0`, broadcastable to ``loc``.
        log_scale: optional (keyword-only) :math:`\log\sigma`, which then replaces
            ``log(scale)`` wherever the log-scale appears (log-density, entropy, KL), so a
            scale that underflows (``from_log_var(0, -180)``: :math:`\sigma = e^{-90}`, 0 in
            float32) keeps exact entropies and KLs. Set by :meth:`from_log_var`; when given
            it must equal ``log(scale)`` up to rounding.

    Parameter values are not checked: a non-positive, infinite or NaN scale or a non-finite loc
    gives NaN or meaningless results rather than an error (shapes are checked at construction).
    :func:`jelbo.check_parameters` checks them on demand, also under ``jit``."""

    loc: ArrayLike
    scale: ArrayLike
    log_scale: ArrayLike | None = dataclasses.field(default=None, kw_only=True)
    is_reparameterized: ClassVar[bool] = True
    unconstrained_bijectors: ClassVar[dict[str, _bijectors.Bijector]] = {
        "scale": _bijectors.Softplus()
    }

    @classmethod
    def from_log_var(cls, loc: ArrayLike, log_var: ArrayLike) -> Normal:
        r"""Builds :math:`\mathcal N(\mu, \mathrm{diag}(e^{v}))` from the log-variance :math:`v`.

        ``scale = exp(log_var / 2)``, and ``log_scale = log_var / 2`` is kept so that
        entropies, KLs and log-densities stay exact where the scale underflows.
        """
        log_scale = 0.5 * jnp.asarray(log_var)
        return cls(loc, jnp.exp(log_scale), log_scale=log_scale)

    def _log_scale(self) -> Array:
        if self.log_scale is not None:
            return jnp.asarray(self.log_scale, self.dtype)
        return jnp.log(jnp.asarray(self.scale, self.dtype))

    def _log_prob_elementwise(self, x: Array) -> Array:
        x, loc, scale = _common(x, self.loc, self.scale)
        z = _special.standardize(x, loc, scale)
        return -0.5 * z * z - self._log_scale() - _HALF_LOG_2PI

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        eps = _random.draw(_random.normal, key, shape, self.dtype, self.loc, self.scale)
        return eps * self.scale + self.loc

    def _entropy_elementwise(self) -> Array:
        return 0.5 + _HALF_LOG_2PI + self._log_scale()

    def _mean(self) -> Array:
        return self._full(self.loc)

    def _variance(self) -> Array:
        return self._full(jnp.square(self.scale))

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        checks = [*_finite_checks(self, "loc"), *_positive_checks(self, "scale")]
        if self.log_scale is not None:
            checks += _finite_checks(self, "log_scale")
        return checks

    def _mode(self) -> Array:
        return self._full(self.loc)


class Laplace(Factorized):
    r"""Factorized Laplace, :math:`\log p(x) = \sum_i -\log(2b_i) - |x_i-\mu_i|/b_i`.

    Parameter values are not checked: a non-positive, infinite or NaN scale or a non-finite loc
    give NaN or meaningless results rather than an error (shapes are checked at construction).
    :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        loc: location :math:`\mu`, shape ``(*batch, K)``.
        scale: scale :math:`b > 0`, broadcastable to ``loc``.
    """

    loc: ArrayLike
    scale: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    unconstrained_bijectors: ClassVar[dict[str, _bijectors.Bijector]] = {
        "scale": _bijectors.Softplus()
    }

    def _log_prob_elementwise(self, x: Array) -> Array:
        x, loc, scale = _common(x, self.loc, self.scale)
        return -math.log(2.0) - jnp.log(scale) - jnp.abs(_special.standardize(x, loc, scale))

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        eps = _random.draw(_random.laplace, key, shape, self.dtype, self.loc, self.scale)
        return eps * self.scale + self.loc

    def _entropy_elementwise(self) -> Array:
        return 1.0 + math.log(2.0) + jnp.log(self.scale)

    def _mean(self) -> Array:
        return self._full(self.loc)

    def _variance(self) -> Array:
        return self._full(2.0 * jnp.square(self.scale))

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        return [*_finite_checks(self, "loc"), *_positive_checks(self, "scale")]

    def _mode(self) -> Array:
        return self._full(self.loc)


class StudentT(Factorized):
    r"""Factorized Student-t with ``df`` :math:`\nu`, location :math:`\mu`, scale :math:`\sigma`.

    :math:`\log p(x) = \sum_i \log\Gamma(\tfrac{\nu+1}2) - \log\Gamma(\tfrac\nu2)
    - \tfrac12\log(\nu\pi) - \log\sigma - \tfrac{\nu+1}2\log(1 + t_i^2/\nu)`,
    :math:`t_i = (x_i-\mu_i)/\sigma_i`.

    Parameter values are not checked: ``df <= 0``, a non-positive or NaN scale or a non-finite
    loc give NaN or meaningless results rather than an error (shapes are checked at
    construction). :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        df: degrees of freedom :math:`\nu > 0`, broadcastable to ``loc``.
        loc: location, shape ``(*batch, K)``.
        scale: scale :math:`\sigma > 0`, broadcastable to ``loc``.
    """

    df: ArrayLike
    loc: ArrayLike
    scale: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    unconstrained_bijectors: ClassVar[dict[str, _bijectors.Bijector]] = {
        "df": _bijectors.Softplus(),
        "scale": _bijectors.Softplus(),
    }

    def _log_prob_elementwise(self, x: Array) -> Array:
        # log Gamma((v+1)/2) - log Gamma(v/2) - log(v pi)/2 = R(v/2) - log(2 pi)/2 with
        # R(h) = log Gamma(h + 1/2) - log Gamma(h) - log(h)/2 -> 0 (jelbo._special): no two
        # large log-gammas are subtracted, so the density stays exact from df 0.1 to 1e10.
        x, df, loc, scale = _common(x, self.df, self.loc, self.scale)
        t = _special.standardize(x, loc, scale)
        # -(v+1)/2 log1p(w), w = t^2/v: for w < 1 as -t^2/2 (1 + 1/v) + (v+1)/2 (w - log1p(w)),
        # whose df-derivative does not cancel at large df; else without overflowing t^2.
        small = t * t < df
        t_small = jnp.where(small, t, 0.0)
        w = t_small * t_small / df
        near = -0.5 * t_small * t_small * (1.0 + 1.0 / df) + 0.5 * (
            df + 1.0
        ) * _special.x_minus_log1p(w)
        far = -0.5 * (df + 1.0) * _special.log1p_square(jnp.where(small, 1.0, t) / jnp.sqrt(df))
        return (
            _special.log_gamma_ratio_excess(0.5, 0.5 * df)
            - _HALF_LOG_2PI
            - jnp.log(scale)
            + jnp.where(small, near, far)
        )

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        df = jnp.broadcast_to(jnp.asarray(self.df, self.dtype), shape)
        return jax.random.t(key, df, shape, self.dtype) * self.scale + self.loc

    def _entropy_elementwise(self) -> Array:
        # (h + 1/2)(psi(h + 1/2) - psi(h)) + log(v)/2 + log B(h, 1/2) + log(scale), h = v/2,
        # with log(v)/2 + log B(h, 1/2) = log(2 pi)/2 - R(h) and the digamma difference from
        # jelbo._special (both exact where they nearly cancel, at large df).
        half_df = 0.5 * jnp.asarray(self.df, self.dtype)
        return (
            -(half_df + 0.5) * _special.digamma_difference(0.5, half_df)
            + _HALF_LOG_2PI
            - _special.log_gamma_ratio_excess(0.5, half_df)
            + jnp.log(self.scale)
        )

    def _mean(self) -> Array:
        # Defined for df > 1; NaN otherwise (as NumPyro and TFP; scipy returns inf).
        return self._full(jnp.where(jnp.asarray(self.df) > 1, self.loc, jnp.nan))

    def _variance(self) -> Array:
        # scale² df/(df-2) for df > 2, +inf for 1 < df <= 2, NaN for df <= 1 (as in scipy).
        df = jnp.asarray(self.df, self.dtype)
        safe = jnp.where(df > 2, df, 3.0)
        finite = jnp.square(self.scale) * safe / (safe - 2.0)
        return self._full(jnp.where(df > 2, finite, jnp.where(df > 1, jnp.inf, jnp.nan)))

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        df = jnp.asarray(self.df)
        return [
            ("df", (df > 0) & ~jnp.isnan(df), "> 0 (+inf allowed)"),
            *_finite_checks(self, "loc"),
            *_positive_checks(self, "scale"),
        ]

    def _mode(self) -> Array:
        return self._full(self.loc)


class Bernoulli(Factorized):
    r"""Factorized Bernoulli parameterized by logits :math:`a` (:math:`p = \sigma(a)`).

    :math:`\log p(x) = \sum_i x_i \log\sigma(a_i) + (1-x_i)\log\sigma(-a_i)`, computed with
    ``log_sigmoid`` so that it is finite for any finite logit. ``x`` may be fractional
    (e.g. grey-level pixels), as is common for VAE decoders.

    Values outside :math:`[0, 1]` (and NaN) have log-probability :math:`-\infty`. Logits
    :math:`\pm\infty` (deterministic coordinates) are allowed: :math:`0\log 0 = 0`.

    Parameter values are not checked: NaN logits give NaN or meaningless results rather than an
    error (shapes are checked at construction). :func:`jelbo.check_parameters` checks them on
    demand, also under ``jit``.

    Attributes:
        logits: shape ``(*batch, K)``.
    """

    logits: ArrayLike

    def _log_prob_elementwise(self, x: Array) -> Array:
        a = jnp.asarray(self.logits, self.dtype)
        x = jnp.asarray(x, jnp.result_type(x, a))
        # x log sigma(a) + (1 - x) log sigma(-a), each product 0 where its weight is 0 (so a
        # saturated or infinite logit gives 0 log 0 = 0, with zero gradients).
        ones = x * jnp.where(x == 0, 0.0, jax.nn.log_sigmoid(a))
        zeros = (1.0 - x) * jnp.where(x == 1, 0.0, jax.nn.log_sigmoid(-a))
        return jnp.where((x >= 0) & (x <= 1), ones + zeros, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        u = _random.draw(_random.uniform, key, shape, self.dtype, self.logits)
        # u < sigmoid(a)  <=>  logit(u) < a, compared in log space to stay exact at saturation.
        return (jnp.log(u) - jnp.log1p(-u) < self.logits).astype(self.dtype)

    def _entropy_elementwise(self) -> Array:
        a = jnp.asarray(self.logits, self.dtype)
        finite = jnp.isfinite(a)
        a = jnp.where(finite, a, 0.0)
        h = jax.nn.sigmoid(a) * jax.nn.softplus(-a) + jax.nn.sigmoid(-a) * jax.nn.softplus(a)
        return jnp.where(finite, h, 0.0)

    def _mean(self) -> Array:
        return self._full(jax.nn.sigmoid(self.logits))

    def _variance(self) -> Array:
        return self._full(jax.nn.sigmoid(self.logits) * jax.nn.sigmoid(-jnp.asarray(self.logits)))

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        return [("logits", ~jnp.isnan(jnp.asarray(self.logits)), "not NaN (+-inf allowed)")]

    def _mode(self) -> Array:
        # 1 where p > 1/2; ties (logit 0) go to 0, as in NumPyro.
        return self._full(jnp.asarray(self.logits) > 0)


class Poisson(Factorized):
    r"""Factorized Poisson parameterized by the log-rate :math:`\eta = \log\lambda`.

    :math:`\log p(x) = \sum_i x_i\eta_i - e^{\eta_i} - \log\Gamma(x_i+1)`, evaluated for
    :math:`x \ge 1` as :math:`-x\,\phi(\log x - \eta) - \tfrac12\log 2\pi x - \delta(x)`
    with :math:`\phi(t) = e^{-t} - 1 + t` and Stirling's correction :math:`\delta`, which
    keeps full relative precision for large counts. Values that are not non-negative
    integers have log-probability :math:`-\infty` (as in scipy). Samples are counts returned
    in the parameters' floating dtype (rates above :math:`2^{30}` in 32-bit mode are drawn
    from the normal approximation, whose error is far below float32 resolution there).

    Parameter values are not checked: a NaN or ``+inf`` log-rate gives NaN or meaningless results
    rather than an error (shapes are checked at construction). :func:`jelbo.check_parameters`
    checks them on demand, also under ``jit``.

    Attributes:
        log_rate: shape ``(*batch, K)``.
    """

    log_rate: ArrayLike

    def _log_prob_elementwise(self, x: Array) -> Array:
        eta = jnp.asarray(self.log_rate, self.dtype)
        x = jnp.asarray(x, jnp.result_type(x, eta))
        valid = (x >= 0) & (x == jnp.floor(x)) & jnp.isfinite(x)
        positive = valid & (x >= 1)
        xs = jnp.where(positive, x, 1.0)
        log_xs = jnp.log(xs)
        counts = (
            -xs * _special.expm1_plus(log_xs - eta)
            - 0.5 * (log_xs + 2.0 * _HALF_LOG_2PI)
            - _special.lgamma_correction(xs)
        )
        log_p = jnp.where(positive, counts, -jnp.exp(eta))
        return jnp.where(valid, log_p, -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.param_shape
        rate = jnp.broadcast_to(jnp.exp(jnp.asarray(self.log_rate, self.dtype)), shape)
        if jnp.iinfo(jax.dtypes.canonicalize_dtype(int)).bits > 32:
            return jax.random.poisson(key, rate, shape).astype(self.dtype)
        # int32 counts saturate at 2**31 - 1: above 2**30 use N(rate, rate), rounded.
        big = rate > 2.0**30
        counts = jax.random.poisson(key, jnp.where(big, 1.0, rate), shape).astype(self.dtype)
        noise = jax.random.normal(jax.random.fold_in(key, 1), shape, self.dtype)
        approx = jnp.round(rate + jnp.sqrt(jnp.where(big, rate, 1.0)) * noise)
        return jnp.where(big, approx, counts)

    def _mean(self) -> Array:
        return self._full(jnp.exp(self.log_rate))

    def _variance(self) -> Array:
        return self._full(jnp.exp(self.log_rate))

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        ok = _not_nan_or_plus_inf(self.log_rate)
        return [("log_rate", ok, "< +inf and not NaN (-inf, a zero rate, allowed)")]

    def _mode(self) -> Array:
        # floor(rate); for an integer rate both rate - 1 and rate are modes.
        return self._full(jnp.floor(jnp.exp(self.log_rate)))


class Categorical(Distribution):
    r"""Categorical over the last axis of ``logits``; values are integer indices.

    :math:`\log p(x) = \mathrm{log\_softmax}(a)_x`. The event is a scalar: ``logits`` of shape
    ``(*batch, C)`` give ``batch_shape == (*batch,)`` and ``event_shape == ()``.

    Parameter values are not checked: NaN or ``+inf`` logits, or a row of ``-inf`` logits only,
    give NaN or meaningless results rather than an error (shapes are checked at construction).
    :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        logits: unnormalized log-probabilities, shape ``(*batch, C)``.
    """

    logits: ArrayLike

    def _validate(self) -> None:
        if jnp.ndim(self.logits) < 1:
            raise ValueError(
                "Categorical `logits` need a last axis over the categories; got shape "
                f"{jnp.shape(self.logits)}."
            )

    @property
    def batch_shape(self) -> Shape:
        return tuple(jnp.shape(self.logits)[:-1])

    @property
    def event_shape(self) -> Shape:
        return ()

    @property
    def num_categories(self) -> int:
        return jnp.shape(self.logits)[-1]

    def log_probs(self) -> Array:
        """Normalized log-probabilities of every category, shape ``(*batch, C)`` (``-inf`` for
        masked categories)."""
        return _special.log_softmax(jnp.asarray(self.logits, self.dtype), axis=-1)

    def _log_prob(self, x: Array) -> Array:
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(
                f"Categorical values must be integer indices; got {_checks.describe(x)}."
            )
        log_p = self.log_probs()
        shape = jnp.broadcast_shapes(x.shape, self.batch_shape)
        log_p = jnp.broadcast_to(log_p, shape + (self.num_categories,))
        x = jnp.broadcast_to(x, shape)
        valid = (x >= 0) & (x < self.num_categories)  # no wrapped index (-1 is not C - 1)
        idx = jnp.where(valid, x, 0)[..., None]
        return jnp.where(valid, jnp.take_along_axis(log_p, idx, axis=-1)[..., 0], -jnp.inf)

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        return jax.random.categorical(
            key, self.logits, axis=-1, shape=sample_shape + self.batch_shape
        )

    def _entropy(self) -> Array:
        # 0 log 0 = 0 for masked (-inf) logits, with zero gradients there.
        log_p = self.log_probs()
        masked = log_p == -jnp.inf
        safe = jnp.where(masked, 0.0, log_p)
        return -jnp.sum(jnp.where(masked, 0.0, jnp.exp(safe) * safe), axis=-1)

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        logits = jnp.asarray(self.logits)
        return [
            ("logits", _not_nan_or_plus_inf(logits), "< +inf and not NaN (-inf masks)"),
            ("logits", jnp.any(logits > -jnp.inf, axis=-1), "finite for at least one category"),
        ]

    def _mode(self) -> Array:
        return jnp.argmax(self.logits, axis=-1)


class MultivariateNormalTriL(Distribution):
    r"""Full-rank Gaussian :math:`\mathcal N(\mu, LL^\top)` with lower-triangular scale :math:`L`.

    :math:`\log p(x) = -\tfrac12\lVert L^{-1}(x-\mu)\rVert^2 - \sum_i\log|L_{ii}|
    - \tfrac K2\log 2\pi`. Only the lower triangle of ``scale_tril`` is read.

    Parameter values are not checked: a singular or non-finite ``scale_tril`` or a non-finite
    loc give NaN or meaningless results rather than an error (shapes are checked at
    construction). :func:`jelbo.check_parameters` checks them on demand, also under ``jit``.

    Attributes:
        loc: mean, shape ``(*batch, K)``.
        scale_tril: Cholesky factor with positive diagonal, shape ``(*batch, K, K)``.
    """

    loc: ArrayLike
    scale_tril: ArrayLike
    is_reparameterized: ClassVar[bool] = True
    unconstrained_bijectors: ClassVar[dict[str, _bijectors.Bijector]] = {
        "scale_tril": _bijectors.FillScaleTriL()
    }

    def _validate(self) -> None:
        self._shapes()

    @property
    def batch_shape(self) -> Shape:
        return self._shapes()

    def _shapes(self) -> Shape:
        """The batch shape, after checking ``loc`` (..., K) against ``scale_tril`` (..., K, K)."""
        loc, tril = jnp.shape(self.loc), jnp.shape(self.scale_tril)
        if len(loc) < 1 or len(tril) < 2 or tril[-2:] != (loc[-1], loc[-1]):
            raise ValueError(
                "MultivariateNormalTriL needs `loc` of shape (*batch, K) and `scale_tril` of "
                f"shape (*batch, K, K); got `loc` {loc} and `scale_tril` {tril}."
            )
        return _checks.broadcast_shapes(
            ("loc[..., :-1]", loc[:-1]), ("scale_tril[..., :-2]", tril[:-2])
        )

    @property
    def event_shape(self) -> Shape:
        return tuple(jnp.shape(self.loc)[-1:])

    def _tril(self) -> Array:
        return jnp.tril(self.scale_tril)

    def _log_prob(self, x: Array) -> Array:
        k = self.event_shape[0]
        diff = x - self.loc
        # The batch may come from `scale_tril` alone (e.g. `loc` (K,), `scale_tril` (B, K, K)).
        diff = jnp.broadcast_to(
            diff, jnp.broadcast_shapes(diff.shape[:-1], self.batch_shape) + (k,)
        )
        tril = jnp.broadcast_to(self._tril(), diff.shape[:-1] + (k, k))
        y = solve_triangular(tril, diff[..., None], lower=True)[..., 0]
        half_log_det = jnp.sum(
            jnp.log(jnp.abs(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1))), -1
        )
        return -0.5 * jnp.sum(y * y, axis=-1) - half_log_det - k * _HALF_LOG_2PI

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        shape = sample_shape + self.batch_shape + self.event_shape
        eps = _random.draw(_random.normal, key, shape, self.dtype, self.loc, (self.scale_tril, 1))
        return jnp.einsum("...ij,...j->...i", self._tril(), eps) + self.loc

    def _entropy(self) -> Array:
        k = self.event_shape[0]
        log_diag = jnp.log(jnp.abs(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)))
        entropy = jnp.sum(log_diag, axis=-1) + k * (0.5 + _HALF_LOG_2PI)
        return jnp.broadcast_to(entropy, self.batch_shape)

    def _mean(self) -> Array:
        shape = self.batch_shape + self.event_shape
        return jnp.broadcast_to(jnp.asarray(self.loc, self.dtype), shape)

    def _parameter_checks(self) -> list[tuple[str, Any, str]]:
        diag = jnp.diagonal(jnp.asarray(self.scale_tril), axis1=-2, axis2=-1)
        return [
            *_finite_checks(self, "loc"),
            ("scale_tril", jnp.isfinite(jnp.tril(jnp.asarray(self.scale_tril))), "finite"),
            ("scale_tril", (diag != 0) & jnp.isfinite(diag), "of nonzero diagonal"),
        ]

    def _mode(self) -> Array:
        return self._mean()

    def _covariance(self) -> Array:
        tril = jnp.asarray(self._tril(), self.dtype)
        cov = tril @ jnp.swapaxes(tril, -1, -2)
        return jnp.broadcast_to(cov, self.batch_shape + cov.shape[-2:])

    def _variance(self) -> Array:
        variance = jnp.sum(jnp.square(jnp.asarray(self._tril(), self.dtype)), axis=-1)
        return jnp.broadcast_to(variance, self.batch_shape + self.event_shape)


def _check_distribution(dist: Any, name: str) -> None:
    # Kept for family modules written against it; new code calls _checks.check_instance.
    _checks.check_instance(dist, Distribution, name)


def log_prob(dist: Distribution, x: ArrayLike) -> Array:
    r"""Log-density (or log-mass) :math:`\log p(x)` summed over the event axis.

    Args:
        dist: a jelbo distribution with batch shape ``B`` and event shape ``E``.
        x: values of shape ``(*extra, *B, *E)`` (any leading axes broadcast against ``B``).

    Returns:
        ``log p(x)`` with shape ``broadcast(x.shape[:-len(E)], B)``.

    Raises:
        ValueError: if ``x``'s trailing (event) axes differ from ``E`` or its batch axes do
            not broadcast against ``B``.
    """
    _checks.check_instance(dist, Distribution, "dist")
    x = jnp.asarray(x)
    event, batch = dist.event_shape, dist.batch_shape
    n_event = len(event)
    x_event = x.shape[x.ndim - n_event :] if n_event else ()
    if x.ndim < n_event or x_event != event:
        raise ValueError(
            f"log_prob: `x` has shape {x.shape}, whose trailing (event) axes must be {event} "
            f"for {type(dist).__name__} with batch shape {batch} and event shape {event}."
        )
    _checks.broadcast_shapes(
        ("x batch axes", x.shape[: x.ndim - n_event]), ("dist.batch_shape", batch)
    )
    return dist._log_prob(x)


def sample(key: Array, dist: Distribution, sample_shape: int | Shape = ()) -> Array:
    r"""Draws samples of shape ``(*sample_shape, *dist.batch_shape, *dist.event_shape)``.

    Continuous families are reparameterized: the draw is a differentiable function of the
    parameters, e.g. :math:`z = \mu + \sigma\odot\epsilon` for :class:`Normal`, so
    ``jax.grad`` flows through it. Samples have the parameters' dtype (indices for
    :class:`Categorical`).

    Args:
        key: a PRNG key (``jax.random.key``).
        dist: a jelbo distribution.
        sample_shape: leading shape of independent draws.
    """
    _checks.check_key(key)
    _checks.check_instance(dist, Distribution, "dist")
    if isinstance(sample_shape, int):
        sample_shape = (sample_shape,)
    return dist._sample(key, tuple(sample_shape))


def entropy(dist: Distribution) -> Array:
    r"""Closed-form entropy :math:`H[p] = -\mathbb E_p[\log p(x)]`, summed over the event axis.

    Returns an array of shape ``dist.batch_shape``. Raises ``NotImplementedError`` for
    families without a closed form (``Poisson``).
    """
    _checks.check_instance(dist, Distribution, "dist")
    return dist._entropy()
