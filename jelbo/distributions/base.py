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
import warnings
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jelbo import _checks
from jelbo import bijectors as _bijectors
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.module import Module, is_static

__all__ = [
    "Distribution",
    "Factorized",
    "entropy",
    "log_prob",
    "sample",
    "sample_and_log_prob",
    "sample_and_stopped_log_prob",
]


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
        "`name` must be ...". The default requires that no parameter is NaN; families with
        constraints (a positive scale, ``df > 0``) override it.
        """
        checks = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if is_static(field) or value is None:
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
        names = [f.name for f in dataclasses.fields(cls) if not is_static(f)]
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
            if is_static(field) or getattr(self, field.name) is None:  # unset optional field
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


def _param_shape(dist: Distribution) -> Shape:
    """Broadcast shape of all parameters of a family whose last axis is the event axis."""
    named = [
        (f.name, jnp.shape(getattr(dist, f.name)))
        for f in dataclasses.fields(dist)
        if not is_static(f) and getattr(dist, f.name) is not None
    ]
    shape = _checks.broadcast_shapes(*named)
    if len(shape) < 1:
        listed = ", ".join(f"`{name}` {shape}" for name, shape in named)
        raise ValueError(
            f"{type(dist).__name__} parameters need at least one axis, the event axis "
            f"(the last); got {listed}. Use e.g. jnp.zeros(K) for a K-dimensional event."
        )
    return shape


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
    return dist._sample_and_stopped_log_prob(key, shape)


def entropy(dist: Distribution) -> Array:
    r"""Closed-form entropy :math:`H[p] = -\mathbb E_p[\log p(x)]`, summed over the event axis.

    Returns an array of shape ``dist.batch_shape``. Raises ``NotImplementedError`` for
    families without a closed form (``Poisson``).
    """
    _checks.check_instance(dist, Distribution, "dist")
    return dist._entropy()
