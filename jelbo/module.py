r"""The one pytree base of jelbo's parameterized objects: :class:`Module` and :func:`static_field`.

Distributions, bijectors, objectives (and flows, and the results of :mod:`jelbo.fit`) are
*modules*: frozen dataclasses that are JAX pytrees, so they pass through ``jax.jit``,
``jax.vmap``, ``jax.grad`` and optax as they are. Subclassing :class:`Module` is the whole
recipe::

    class Scaled(jelbo.Module):
        scale: jax.Array                         # a child (pytree leaf or subtree)
        axis: int = jelbo.static_field(default=-1)  # static: part of the treedef

Every field is a **child** of the pytree (an array, a Python number, ``None``, or another
pytree such as a module) unless it is marked static with :func:`static_field` (or,
equivalently, ``dataclasses.field(metadata={"static": True})``). Static fields are auxiliary
data: they stay Python values under ``jit``/``vmap``, are not differentiated, must be
hashable, and a new value retraces a jitted function (they are compared with ``==`` as part
of the treedef). The pytree is registered with keys, so ``jax.tree_util.tree_flatten_with_path``
names each child by its field (``.loc``, ``.components.scale``).

Semantics, in one place:

- **Immutable.** Assigning or deleting an attribute raises
  :class:`dataclasses.FrozenInstanceError`; build a changed copy with
  :func:`dataclasses.replace`.
- **Rebuilt without** ``__init__``. JAX unflattens a module with placeholder leaves (tracers,
  ``object()`` sentinels, batching axes), so unflattening sets the fields directly and skips
  ``__init__``/``__post_init__`` and whatever validation they do.
- **Equality and hashing.** By default a module compares and hashes by *identity* (``eq=False``
  in dataclass terms): its children are usually arrays, whose ``==`` is elementwise and which
  cannot be hashed. A subclass that holds only hashable Python values and wants value
  semantics declares ``class MyOptions(Module, eq=True)``: it then compares and hashes by its
  fields (as a frozen dataclass does), and so can also be a ``static_argnums`` argument.
  Subclasses inherit the choice. The objectives (:class:`jelbo.ELBO` & co.) are ``eq=True``.
- **Subclasses of subclasses** are modules too: each class is made a dataclass and
  registered when it is defined, with its parents' fields first.
- **repr** shows each set field as ``name=dtype[shape]`` (``None`` fields are left out); a
  field with ``metadata={"public_name": ...}`` (the storage of a keyword parameterization,
  :func:`jelbo.distributions.keyword_parameter`) shows under that name, in ``repr`` and in
  tree paths (``.probs``, not ``._probs``).
- A subclass may apply ``@dataclasses.dataclass(frozen=True)`` itself (jelbo 0.1 families
  did): that keeps working, the class stays immutable and a registered pytree.

This module is the only place where jelbo registers pytree node types.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, dataclass_transform

import jax

from jelbo import _checks

__all__ = ["Module", "static_field"]


def static_field(
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    init: bool = True,
    repr: bool = True,
    kw_only: Any = dataclasses.MISSING,
    metadata: Any = None,
) -> Any:
    """A dataclass field kept as static pytree auxiliary data instead of a child.

    Use it for structural options (a dimension, a flag, a string choice) that must stay
    Python values under ``jax.jit``/``jax.vmap``: they become part of the treedef (so they
    must be hashable and compare with ``==``), are not converted to arrays and are not
    differentiated. It takes the keywords of :func:`dataclasses.field`; it is the same as
    ``dataclasses.field(..., metadata={"static": True})``. Example::

        class MyFamily(jelbo.Distribution):
            loc: ArrayLike
            dim: int = jelbo.static_field(default=3)
    """
    merged = dict(metadata or {})
    merged["static"] = True
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        init=init,
        repr=repr,
        kw_only=kw_only,
        metadata=merged,
    )


def is_static(field: dataclasses.Field[Any]) -> bool:
    """Whether a dataclass field is static pytree auxiliary data (see :func:`static_field`)."""
    return bool(field.metadata.get("static", False))


# Per class: (names of the children, names of the static fields), computed on first use
# (after a subclass's own @dataclasses.dataclass, if any, has run).
_LAYOUTS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _layout(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        fields = dataclasses.fields(cls)
        layout = (
            tuple(f.name for f in fields if not is_static(f)),
            tuple(f.name for f in fields if is_static(f)),
        )
        _LAYOUTS[cls] = layout
    return layout


def _flatten(module: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    children, static = _layout(type(module))
    return tuple(getattr(module, n) for n in children), tuple(getattr(module, n) for n in static)


# Per class: the key of each child in tree paths (its field's "public_name", else its name).
_KEYS: dict[type, tuple[Any, ...]] = {}


def _flatten_with_keys(module: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    cls = type(module)
    children, static = _layout(cls)
    keys = _KEYS.get(cls)
    if keys is None:
        public = {f.name: f.metadata.get("public_name", f.name) for f in dataclasses.fields(cls)}
        keys = _KEYS[cls] = tuple(jax.tree_util.GetAttrKey(public[n]) for n in children)
    keyed = tuple((k, getattr(module, n)) for k, n in zip(keys, children, strict=True))
    return keyed, tuple(getattr(module, n) for n in static)


def _unflatten(cls: type, static: tuple[Any, ...], children: Any) -> Any:
    # Bypasses __init__ (and so __post_init__ and any validation): JAX rebuilds pytrees with
    # placeholder leaves that must not be checked or converted.
    module = object.__new__(cls)
    child_names, static_names = _layout(cls)
    for name, value in zip(child_names, children, strict=True):
        object.__setattr__(module, name, value)
    for name, value in zip(static_names, static, strict=True):
        object.__setattr__(module, name, value)
    return module


def _describe(value: Any) -> str:
    """A short repr: Python values and modules as they are, arrays as ``dtype[shape]``."""
    if isinstance(value, list):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_describe(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, (Module, str, bool, int, float, complex)) or value is None:
        return repr(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return _checks.describe(value)
    return repr(value)


@dataclass_transform(
    frozen_default=True, eq_default=False, field_specifiers=(dataclasses.field, static_field)
)
class Module:
    """Base class of jelbo's parameterized objects: a frozen dataclass that is a JAX pytree.

    Subclass it and declare fields with annotations; see the module docstring
    (:mod:`jelbo.module`) for children, static fields, immutability, equality and hashing.
    Class keyword ``eq=True`` gives value equality and hashing (default: identity).
    """

    # Every subclass is a dataclass; declared so that type checkers accept fields(self).
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    # Whether instances compare and hash by their fields (class keyword ``eq``); inherited.
    _module_eq: ClassVar[bool] = False

    def __init_subclass__(cls, *, eq: bool | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if eq is not None:
            cls._module_eq = bool(eq)
        dataclasses.dataclass(frozen=True, eq=cls._module_eq, repr=False)(cls)
        # Immutability comes from Module.__setattr__, not from a per-class frozen __setattr__,
        # so that subclasses that also apply @dataclasses.dataclass(frozen=True) themselves
        # (as jelbo 0.1 families did) do not fail with "Cannot overwrite attribute".
        for name in ("__setattr__", "__delattr__"):
            if name in cls.__dict__:
                delattr(cls, name)
        _LAYOUTS.pop(cls, None)
        _KEYS.pop(cls, None)
        jax.tree_util.register_pytree_with_keys(
            cls,
            _flatten_with_keys,
            lambda static, children: _unflatten(cls, static, children),
            _flatten,
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(
            f"{type(self).__name__} is immutable; build a changed copy with "
            f"dataclasses.replace(obj, {name}=...)."
        )

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"{type(self).__name__} is immutable.")

    def __repr__(self) -> str:
        params = ", ".join(
            f"{f.metadata.get('public_name', f.name)}={_describe(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if f.repr and getattr(self, f.name) is not None  # unset optional fields
        )
        return f"{type(self).__name__}({params})"
