"""Type aliases shared by every module (one place, so that annotations agree)."""

from __future__ import annotations

from typing import Any, TypeAlias

import jax
from jax.typing import ArrayLike

Array: TypeAlias = jax.Array
Shape: TypeAlias = tuple[int, ...]
PyTree: TypeAlias = Any

__all__ = ["Array", "ArrayLike", "PyTree", "Shape"]
