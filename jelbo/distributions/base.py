"""The base of every family, :class:`Distribution` (and :class:`Factorized`), and the pure
functions that act on any distribution: :func:`log_prob`, :func:`sample`, :func:`entropy`.

Shape convention: leading axes are batch axes and the **last axis is the event axis**
(except for :class:`~jelbo.Categorical`, whose event is a scalar index and whose last
parameter axis holds the categories). ``log_prob`` sums over the event axis and returns the
batch shape; ``sample`` returns ``sample_shape + batch_shape + event_shape``.

Every distribution is a :class:`jelbo.Module`: a frozen dataclass registered as a JAX pytree
whose leaves are its parameters, so it passes through ``jax.jit``, ``jax.vmap``,
``jax.grad`` and optax.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import warnings
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jelbo import _checks
from jelbo import bijectors as _bijectors
from jelbo import constraints as _constraints
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import Constraint
from jelbo.module import Module, is_static

__all__ = [
    "Distribution",
    "Factorized",
    "entropy",
    "keyword_parameter",
    "log_prob",
    "sample",
    "sample_and_log_prob",
    "sample_and_stopped_log_prob",
]


# jelbo 0.2 guessed positive parameters from these field names; only the deprecated
# from_unconstrained/to_unconstrained still do, for families that declare no arg_constraints.
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


# Hooks that jelbo 0.1 families could leave out (see Distribution.__new__).
_LENIENT_HOOKS = frozenset({"_log_prob", "_sample"})

# The constraint kinds that 0.2's from_unconstrained mapped by softplus (0.2 mapped every
# positive parameter by softplus); the deprecated methods read them as softplus_positive.
_LEGACY_SOFTPLUS = frozenset({"positive", "extended_positive", "nonnegative"})
# Kinds whose bijector is the identity (0.2 listed no bijector for them).
_IDENTITY_KINDS = frozenset({"real", "extended_real", "real_or_neg_inf"})


def keyword_parameter(name: str) -> Any:
    """The storage field of the keyword parameter ``name`` of a family with alternative
    parameterizations (``probs=`` or ``logits=``).

    Declare one field per alternative (``_probs: ArrayLike | None =
    keyword_parameter("probs")``) and list the groups in the class variable
    ``parameterizations`` (``(("probs", "logits"),)``): the constructor then takes them as
    keywords, exactly one per group, stores the one given (the others stay ``None``, and are
    not pytree leaves), and the family exposes the public names as properties. ``repr``,
    :func:`jelbo.check_parameters` and the unconstrained parameterization use the public
    names.
    """
    return dataclasses.field(default=None, kw_only=True, metadata={"public_name": name})


def _public_name(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("public_name", field.name)


class _LegacyUnconstrainedBijectors:
    """``Distribution.unconstrained_bijectors``, jelbo 0.2's per-class map: deprecated; it
    returns the map of the deprecated :meth:`Distribution.from_unconstrained`."""

    def __get__(self, obj: Any, cls: type | None = None) -> dict[str, _bijectors.Bijector]:
        owner = cls if cls is not None else type(obj)
        warnings.warn(
            f"{owner.__name__}.unconstrained_bijectors is deprecated since jelbo 0.3 and will "
            "be removed in 0.4: each family declares `arg_constraints`, and "
            "jelbo.constraints.biject_to(constraint) gives the bijector of a parameter "
            "(positive parameters map by exp there; this map keeps 0.2's softplus).",
            DeprecationWarning,
            stacklevel=2,
        )
        return owner._legacy_unconstrained_map()  # type: ignore[attr-defined]


class Distribution(Module, abc.ABC):
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
    #: The constraint of each parameter, ``{public name: Constraint}`` (:mod:`jelbo.constraints`),
    #: declared once per family: it drives :func:`jelbo.check_parameters` and the
    #: unconstrained parameterization (:meth:`from_unconstrained_params`). A parameter
    #: without an entry is only checked for NaN and has no unconstrained parameterization.
    arg_constraints: ClassVar[dict[str, Constraint]] = {}
    #: The set the samples lie in (a :class:`~jelbo.constraints.Constraint`), or ``None``
    #: where jelbo cannot say (a :class:`~jelbo.Transformed`). Discrete families'
    #: supports (``nonnegative_integer``) have no bijector.
    support: ClassVar[Constraint | None] = None
    #: Groups of alternative keyword parameterizations, e.g. ``(("probs", "logits"),)``: see
    #: :func:`keyword_parameter`. Empty for most families.
    parameterizations: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # jelbo 0.2's positional argument order of a family with parameterizations, and what its
    # ambiguous positional argument meant there (for the deprecation warning).
    _legacy_positional: ClassVar[tuple[str, ...]] = ()
    _legacy_meaning: ClassVar[str] = ""
    # Deprecated 0.2 class attribute (a descriptor that warns); not a dataclass field.
    unconstrained_bijectors = _LegacyUnconstrainedBijectors()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        own_init = "__init__" in cls.__dict__
        super().__init_subclass__(**kwargs)
        if cls.parameterizations and not own_init:
            _install_keyword_init(cls)
        if isinstance(cls.__dict__.get("unconstrained_bijectors"), dict):
            warnings.warn(
                f"{cls.__name__}.unconstrained_bijectors is deprecated since jelbo 0.3 and will "
                "be removed in 0.4: declare the parameters' constraints instead, "
                "`arg_constraints = {'scale': jelbo.constraints.positive}` (the deprecated "
                "from_unconstrained keeps using this map until then).",
                DeprecationWarning,
                stacklevel=2,
            )
        unknown = sorted(set(cls.arg_constraints) - set(cls._parameter_names()))
        if unknown:
            raise TypeError(
                f"{cls.__name__}.arg_constraints names {unknown}, which are not parameters of "
                f"the family; its parameters are {cls._parameter_names()}."
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

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if is_static(field):
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
        "`name` must be ...". By default each parameter is checked against its constraint
        in :attr:`arg_constraints` (a parameter without one: not NaN), and a parameter that
        is a distribution (a mixture's components) by its own checks. Families with checks
        beyond their constraints (a categorical's row with no finite logit) extend it.
        """
        checks: list[tuple[str, Any, str]] = []
        for name, value in self._parameters().items():
            if isinstance(value, Distribution):
                checks += [(f"{name}.{n}", ok, r) for n, ok, r in value._parameter_checks()]
                continue
            if isinstance(value, _bijectors.Bijector):
                continue
            constraint = self.arg_constraints.get(name)
            if constraint is None:
                checks.append((name, ~jnp.isnan(jnp.asarray(value)), "not NaN"))
            else:
                checks.append((name, constraint.check(value), constraint.requirement))
        return checks

    def _parameters(self) -> dict[str, Any]:
        """The parameters that are set, ``{public name: value}`` (static fields excluded)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not is_static(field) and value is not None:
                out[_public_name(field)] = value
        return out

    @classmethod
    def _parameter_names(cls) -> list[str]:
        """The public names of the parameters (the non-static fields)."""
        return [_public_name(f) for f in dataclasses.fields(cls) if not is_static(f)]

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

    def _sample_and_log_prob(self, key: Array, sample_shape: Shape) -> tuple[Array, Array]:
        """Draws and their log-density in one pass (see :func:`sample_and_log_prob`).

        Default: ``_sample`` then ``_log_prob``. Override it where the density of one's own
        draws is cheaper than that of an arbitrary point (e.g. no inverse of a bijector). It
        must return the values of the default, with the same gradients.
        """
        x = self._sample(key, sample_shape)
        return x, self._log_prob(x)

    def _sample_and_stopped_log_prob(self, key: Array, sample_shape: Shape) -> tuple[Array, Array]:
        r"""Draws ``z`` and :math:`\log q(z)` with the parameters behind a stop-gradient (see
        :func:`sample_and_stopped_log_prob`).

        Default: ``_sample``, then ``_log_prob`` of ``jax.lax.stop_gradient(self)`` at the
        draws. Override it where that is cheaper another way; the gradient of the returned
        log-density must reach the parameters through ``z`` only.
        """
        z = self._sample(key, sample_shape)
        return z, jax.lax.stop_gradient(self)._log_prob(z)

    def _sample_density_issue(self) -> str | None:
        r"""Why ``log_prob`` at this family's own samples is not their log-density (an error
        message), or ``None`` (the default). :func:`sample_and_log_prob`,
        :func:`sample_and_stopped_log_prob` and the estimators that evaluate :math:`\log q`
        at :math:`q`'s samples raise it (a straight-through relaxed categorical, whose
        samples are one-hot, says so)."""
        return None

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

    @classmethod
    def _bijector_of(cls, name: str) -> _bijectors.Bijector:
        constraint = cls.arg_constraints.get(name)
        if constraint is None:
            raise TypeError(
                f"{cls.__name__} declares no constraint for `{name}`, so it has no unconstrained "
                "parameterization: add it to the class variable `arg_constraints` (see "
                "jelbo.constraints)."
            )
        if not constraint.has_bijector:
            raise ValueError(
                f"{cls.__name__} `{name}` lies in {constraint!r}, onto which no bijector maps "
                f"the unconstrained arrays, so {cls.__name__} has no unconstrained "
                "parameterization; build it from constrained values (a direction: u / |u|)."
            )
        return _constraints.biject_to(constraint)

    @classmethod
    def from_unconstrained_params(cls, **params: Any) -> Any:
        r"""Builds the family from unconstrained arrays, so that optax never leaves the support.

        Each parameter ``name`` is given by an unconstrained array ``u`` and becomes
        ``biject_to(arg_constraints[name])(u)`` (:func:`jelbo.constraints.biject_to`): e.g.
        ``scale = exp(u)``, ``probs = sigmoid(u)``, a ``simplex`` by stick breaking,
        ``scale_tril`` from a :math:`K(K+1)/2` vector by
        :class:`~jelbo.bijectors.FillScaleTriL` (softplus diagonal). Keywords only; static
        fields (``dim``, ``straight_through``) and parameters that are distributions or
        bijectors are passed as they are. The inverse is :meth:`unconstrained_params`::

            params = q0.unconstrained_params()          # {"loc": ..., "scale": log(scale)}
            q = jelbo.Normal.from_unconstrained_params(**params)   # q0 again

            def loss(params):                           # optax updates params freely
                q = jelbo.Normal.from_unconstrained_params(**params)
                ...
        """
        names = cls._parameter_names()
        static = {f.name for f in dataclasses.fields(cls) if is_static(f)}
        values = {}
        for name, value in params.items():
            if name in static or isinstance(value, (Distribution, _bijectors.Bijector)):
                values[name] = value
                continue
            if name not in names:
                raise TypeError(
                    f"{cls.__name__}.from_unconstrained_params: unknown parameter `{name}`; the "
                    f"parameters are {names}."
                )
            values[name] = _bijectors.forward(cls._bijector_of(name), value)
        return cls(**values)

    def unconstrained_params(self) -> dict[str, Any]:
        """The unconstrained arrays of the parameters that are set, ``{name: array}``: the
        inverse of :meth:`from_unconstrained_params` (e.g. to initialize a variational
        family from a distribution). Static fields are not included; parameters that are
        distributions or bijectors are returned as they are."""
        out: dict[str, Any] = {}
        for name, value in self._parameters().items():
            if isinstance(value, (Distribution, _bijectors.Bijector)):
                out[name] = value
            else:
                out[name] = _bijectors.inverse(self._bijector_of(name), jnp.asarray(value))
        return out

    @classmethod
    def _legacy_unconstrained_map(cls) -> dict[str, _bijectors.Bijector]:
        """The map of the deprecated :meth:`from_unconstrained` (jelbo 0.2's numbers): the
        constraint table with ``positive`` read as ``softplus_positive``; for parameters
        without a declared constraint, 0.2's guess from the field name; then a family's own
        0.2 ``unconstrained_bijectors`` dict, if it defines one."""
        out: dict[str, _bijectors.Bijector] = {
            name: _bijectors.Softplus()
            for name in cls._parameter_names()
            if name in _POSITIVE_FIELDS and name not in cls.arg_constraints
        }
        for name, constraint in cls.arg_constraints.items():
            if constraint.kind in _LEGACY_SOFTPLUS:
                constraint = _constraints.softplus_positive
            if constraint.has_bijector and constraint.kind not in _IDENTITY_KINDS:
                out[name] = _constraints.biject_to(constraint)
        for klass in cls.__mro__:
            own = klass.__dict__.get("unconstrained_bijectors")
            if isinstance(own, dict):
                out.update(own)
                break
        return out

    @classmethod
    def from_unconstrained(cls, *args: Any, **kwargs: Any) -> Any:
        """Deprecated since jelbo 0.3 (removed in 0.4): use :meth:`from_unconstrained_params`.

        jelbo 0.2's map, kept with its numbers: the constructor's arguments (0.2's names and
        order), positive parameters given by ``u`` with ``softplus(u)`` (where
        :meth:`from_unconstrained_params` takes ``exp(u)``, as Stan and NumPyro), the other
        constraints as in :func:`jelbo.constraints.biject_to`.
        """
        warnings.warn(
            f"{cls.__name__}.from_unconstrained is deprecated since jelbo 0.3 and will be "
            f"removed in 0.4; use {cls.__name__}.from_unconstrained_params(**params), which "
            "maps each parameter by jelbo.constraints.biject_to(arg_constraints[name]): "
            "positive parameters by exp, where from_unconstrained used softplus.",
            DeprecationWarning,
            stacklevel=2,
        )
        fields = dataclasses.fields(cls)
        positional = list(cls._legacy_positional) or [f.name for f in fields]
        allowed = set(positional) | set(cls._parameter_names())
        allowed |= {f.name for f in fields if is_static(f)}
        if len(args) > len(positional):
            raise TypeError(
                f"{cls.__name__}.from_unconstrained takes at most {len(positional)} positional "
                f"arguments ({', '.join(positional)}); got {len(args)}."
            )
        values = dict(zip(positional, args, strict=False))
        for name, value in kwargs.items():
            if name not in allowed or name in values:
                raise TypeError(
                    f"{cls.__name__}.from_unconstrained: unexpected or repeated argument "
                    f"`{name}`; the parameters are {positional}."
                )
            values[name] = value
        for name, bijector in cls._legacy_unconstrained_map().items():
            if name in values and not isinstance(values[name], (Distribution, _bijectors.Bijector)):
                values[name] = _bijectors.forward(bijector, values[name])
        return cls(**values)

    def to_unconstrained(self) -> dict[str, Any]:
        """Deprecated since jelbo 0.3 (removed in 0.4): use :meth:`unconstrained_params`.

        The inverse of the deprecated :meth:`from_unconstrained` (0.2's numbers: softplus for
        positive parameters)."""
        warnings.warn(
            f"{type(self).__name__}.to_unconstrained is deprecated since jelbo 0.3 and will be "
            "removed in 0.4; use .unconstrained_params(), the inverse of "
            "from_unconstrained_params (positive parameters by log, where to_unconstrained "
            "used the inverse softplus).",
            DeprecationWarning,
            stacklevel=2,
        )
        legacy = self._legacy_unconstrained_map()
        out = {}
        for name, value in self._parameters().items():
            if isinstance(value, (Distribution, _bijectors.Bijector)):
                out[name] = value
                continue
            value = jnp.asarray(value)
            bijector = legacy.get(name)
            out[name] = value if bijector is None else _bijectors.inverse(bijector, value)
        return out

    def log_prob(self, x: ArrayLike) -> Array:
        """``log p(x)`` summed over the event; the same as :func:`jelbo.log_prob`."""
        return log_prob(self, x)

    def sample(self, key: Array, sample_shape: int | Shape = ()) -> Array:
        """Draws ``sample_shape + batch_shape + event_shape``; as :func:`jelbo.sample`."""
        return sample(key, self, sample_shape)

    def sample_and_log_prob(
        self, key: Array, sample_shape: int | Shape = ()
    ) -> tuple[Array, Array]:
        """Draws and their log-density, ``(x, log_prob(x))``; the same as
        :func:`jelbo.sample_and_log_prob`."""
        return sample_and_log_prob(key, self, sample_shape)

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


def _install_keyword_init(cls: type[Distribution]) -> None:
    """Gives a family with alternative parameterizations its keyword constructor."""

    def __init__(self: Distribution, *args: Any, **kwargs: Any) -> None:
        _keyword_init(self, args, kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__signature__ = _keyword_signature(cls)  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def _keyword_signature(cls: type[Distribution]) -> inspect.Signature:
    """``(self, <0.2 positional non-alternatives>, *, <alternatives>=None, <others>)``."""
    kind = inspect.Parameter
    fields = {f.name: f for f in dataclasses.fields(cls)}
    alternatives = [n for group in cls.parameterizations for n in group]
    params = [kind("self", kind.POSITIONAL_OR_KEYWORD)]
    positional: list[str] = []
    for name in cls._legacy_positional:  # those before the first alternative stay positional
        if name in alternatives:
            break
        positional.append(name)
    for name in positional:
        default = fields[name].default
        empty = default is dataclasses.MISSING
        params.append(
            kind(name, kind.POSITIONAL_OR_KEYWORD, default=kind.empty if empty else default)
        )
    params += [kind(n, kind.KEYWORD_ONLY, default=None) for n in alternatives]
    for f in fields.values():
        if f.name not in positional and "public_name" not in f.metadata and f.init:
            params.append(kind(f.name, kind.KEYWORD_ONLY, default=f.default))
    return inspect.Signature(params)


def _keyword_init(self: Distribution, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The constructor of a family with alternative parameterizations (see
    :func:`keyword_parameter`): exactly one alternative per group, positional use of 0.2's
    meaning warns, and the storage fields' own names (as :func:`dataclasses.replace` passes
    them) are accepted, the public ones taking precedence."""
    cls = type(self)
    name = cls.__name__
    fields = {f.name: f for f in dataclasses.fields(cls)}
    storage = {_public_name(f): f.name for f in fields.values() if "public_name" in f.metadata}
    positional = cls._legacy_positional
    if len(args) > len(positional):
        raise TypeError(
            f"{name} takes at most {len(positional)} positional argument(s) "
            f"({', '.join(positional) or 'none'}); got {len(args)}."
        )
    given: dict[str, Any] = dict(zip(positional, args, strict=False))
    known = set(fields) | set(storage)
    for key, value in kwargs.items():
        if key not in known:
            raise TypeError(
                f"{name} got an unexpected argument `{key}`; it takes "
                f"{', '.join(cls._parameter_names())}."
            )
        if key in given:
            raise TypeError(f"{name} got multiple values for `{key}`.")
        given[key] = value
    values: dict[str, Any] = {}
    warn_for: list[tuple[str, ...]] = []
    for group in cls.parameterizations:
        public = {n: given.pop(n) for n in group if n in given}
        private = {n: given.pop(storage[n]) for n in group if storage[n] in given}
        chosen = {n: v for n, v in (public or private).items() if v is not None}
        if len(chosen) != 1:
            options = " or ".join(f"`{n}=`" for n in group)
            got = "neither" if not chosen else "both " + " and ".join(f"`{n}`" for n in chosen)
            raise TypeError(f"{name} takes exactly one of {options}; got {got}.")
        if any(n in group for n in positional[: len(args)]):
            warn_for.append(group)
        for n in group:
            values[storage[n]] = chosen.get(n)
    values.update(given)  # the other fields
    for key, field in fields.items():
        if key in values:
            continue
        if field.default is not dataclasses.MISSING:
            values[key] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            values[key] = field.default_factory()
        else:
            raise TypeError(f"{name} is missing the argument `{key}`.")
    for group in warn_for:
        shown = [n if n not in group else "x" for n in positional[: len(args)]]
        warnings.warn(
            f"{name}({', '.join(shown)}) positionally is {cls._legacy_meaning} as in jelbo 0.2; "
            f"pass {' or '.join(f'{n}=' for n in group)} (positional use is deprecated since "
            "jelbo 0.3 and is an error from 0.4).",
            DeprecationWarning,
            stacklevel=3,
        )
    for key, value in values.items():
        object.__setattr__(self, key, value)
    self.__post_init__()


def _param_shape(dist: Distribution) -> Shape:
    """Broadcast shape of the (array) parameters of a :class:`Factorized` family."""
    named = [
        (name, jnp.shape(value))
        for name, value in dist._parameters().items()
        if not isinstance(value, (Distribution, _bijectors.Bijector))
    ]
    return _checks.broadcast_shapes(*named)


class Factorized(Distribution):
    """Base of families with independent coordinates along the event (last) axis.

    Every parameter broadcasts to ``param_shape``: the last axis is the event and the others
    are batch axes, ``batch_shape + (K,)``; parameters with no axis at all (Python or 0-d
    numbers) give a **scalar** distribution, ``batch_shape == event_shape == ()``
    (``jelbo.Normal(0.0, 1.0)``). Subclasses implement ``_log_prob_elementwise(x)`` (per
    coordinate, before the sum over the event) and ``_sample``, and optionally
    ``_entropy_elementwise``; ``_full(value)`` broadcasts a per-coordinate quantity to the
    parameter shape and ``_event_sum(values)`` sums it over the event (no-op for a scalar).
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

    def _event_sum(self, values: Array) -> Array:
        """``values`` (per coordinate) summed over the event axis; unchanged for a scalar."""
        return jnp.sum(values, axis=-1) if self.event_shape else values

    def _log_prob(self, x: Array) -> Array:
        return self._event_sum(self._log_prob_elementwise(x))

    def _entropy(self) -> Array:
        return self._event_sum(jnp.broadcast_to(self._entropy_elementwise(), self.param_shape))

    def _log_prob_elementwise(self, x: Array) -> Array:
        raise NotImplementedError

    def _entropy_elementwise(self) -> Array:
        return Distribution._entropy(self)

    def _full(self, value: ArrayLike) -> Array:
        """``value`` broadcast to the parameters' shape ``batch_shape + event_shape``."""
        return jnp.broadcast_to(jnp.asarray(value, self.dtype), self.param_shape)

    def _covariance(self) -> Array:
        variance = self.variance()
        if not self.event_shape:  # a scalar event: its covariance is its variance
            return variance
        return variance[..., :, None] * jnp.eye(variance.shape[-1], dtype=variance.dtype)


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
    shape = _sample_shape(key, dist, sample_shape)  # first: it checks key and dist
    return dist._sample(key, shape)


def _sample_shape(key: Array, dist: Distribution, sample_shape: int | Shape) -> Shape:
    _checks.check_key(key)
    _checks.check_instance(dist, Distribution, "dist")
    if isinstance(sample_shape, int):
        sample_shape = (sample_shape,)
    return tuple(sample_shape)


def check_sample_density(dist: Distribution) -> None:
    r"""Raises ``ValueError`` if ``log_prob`` at ``dist``'s own samples is not their
    log-density (see ``Distribution._sample_density_issue``); for the estimators that
    evaluate :math:`\log q` at :math:`q`'s samples."""
    issue = dist._sample_density_issue()
    if issue is not None:
        raise ValueError(issue)


def sample_and_log_prob(
    key: Array, dist: Distribution, sample_shape: int | Shape = ()
) -> tuple[Array, Array]:
    r"""Draws :math:`x \sim p` and returns ``(x, log_prob(dist, x))`` in one pass.

    The same numbers (and, for reparameterized families, the same gradients) as
    ``x = sample(key, dist, sample_shape); log_prob(dist, x)``, but a family may compute the
    density of its own draws more cheaply: :class:`~jelbo.Transformed` evaluates
    :math:`\log p_Y(y) = \log p_X(x) - \log|\det J_f(x)|` at the base draw :math:`x`, so no
    inverse of the bijector runs. The objectives use it wherever they need :math:`\log q`
    at :math:`q`'s own samples. Families customize it with the hook
    ``_sample_and_log_prob(key, sample_shape)``.

    Args:
        key: a PRNG key.
        dist: a jelbo distribution with batch shape ``B`` and event shape ``E``.
        sample_shape: leading shape of independent draws ``S``.

    Returns:
        ``(x, log_p)``: draws of shape ``(*S, *B, *E)`` and their log-densities, shape
        ``(*S, *B)``.
    """
    shape = _sample_shape(key, dist, sample_shape)  # first: it checks key and dist
    check_sample_density(dist)
    return dist._sample_and_log_prob(key, shape)


def sample_and_stopped_log_prob(
    key: Array, dist: Distribution, sample_shape: int | Shape = ()
) -> tuple[Array, Array]:
    r"""Draws :math:`z \sim q_\phi` and :math:`\log q_{\bar\phi}(z)`, the log-density with
    the parameters behind a stop-gradient (:math:`\bar\phi`): its gradient reaches
    :math:`\phi` through :math:`z` only.

    This is the :math:`\log q` of the "sticking the landing" and doubly-reparameterized
    estimators (Roeder et al. 2017; Tucker et al. 2019), the same as
    ``z = sample(key, q); log_prob(jax.lax.stop_gradient(q), z)``. For a
    :class:`~jelbo.Transformed` it evaluates the base density at
    ``bijector._inverse_given(z, x)`` (the base draw ``x`` is known): by default the
    bijector's inverse, which a bijector with a costly inverse (an autoregressive flow) can
    replace by ``x`` with the inverse's derivative. Families customize the whole step with
    the hook ``_sample_and_stopped_log_prob(key, sample_shape)``.

    Returns:
        ``(z, log_q)`` with shapes ``(*S, *B, *E)`` and ``(*S, *B)``.
    """
    shape = _sample_shape(key, dist, sample_shape)  # first: it checks key and dist
    check_sample_density(dist)
    return dist._sample_and_stopped_log_prob(key, shape)


def entropy(dist: Distribution) -> Array:
    r"""Closed-form entropy :math:`H[p] = -\mathbb E_p[\log p(x)]`, summed over the event axis.

    Returns an array of shape ``dist.batch_shape``. Raises ``NotImplementedError`` for
    families without a closed form (``Poisson``).
    """
    _checks.check_instance(dist, Distribution, "dist")
    return dist._entropy()
