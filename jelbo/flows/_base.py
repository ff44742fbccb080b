"""TEMPORARY: static fields for flow bijectors until ``jelbo.module`` (issue 20) lands.

Replaced by ``jelbo.module.Module``/``static_field`` once main has them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jelbo.bijectors import Bijector


def static_field(**kwargs: Any) -> Any:
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


class FlowBijector(Bijector):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super(Bijector, cls).__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        static = tuple(f.name for f in fields if f.metadata.get("static"))
        leaves = tuple(f.name for f in fields if not f.metadata.get("static"))

        def flatten(obj: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            return tuple(getattr(obj, n) for n in leaves), tuple(getattr(obj, n) for n in static)

        def unflatten(aux: tuple[Any, ...], children: Any) -> Any:
            obj = object.__new__(cls)
            for n, v in zip(static, aux, strict=True):
                object.__setattr__(obj, n, v)
            for n, v in zip(leaves, children, strict=True):
                object.__setattr__(obj, n, v)
            return obj

        jax.tree_util.register_pytree_node(cls, flatten, unflatten)
