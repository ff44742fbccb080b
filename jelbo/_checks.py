"""Trace-time argument checks shared by the public functions.

Every check here looks only at static information (shapes, dtypes, Python values), so it
runs while JAX traces a function and raises before anything is computed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def describe(x: Any) -> str:
    """A short ``dtype[shape]`` description of an array-like, for error messages."""
    shape = jnp.shape(x)
    dtype = getattr(x, "dtype", type(x).__name__)
    return f"{dtype}{list(shape)}"


def check_key(key: Any, name: str = "key") -> None:
    """Raises ``TypeError`` unless ``key`` is a single PRNG key.

    Accepts a typed key (``jax.random.key``) of shape ``()`` or a legacy raw key
    (``jax.random.PRNGKey``), a ``uint32`` array of shape ``(2,)``.
    """
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape == ():
            return
        raise TypeError(
            f"`{name}` must be a single PRNG key of shape (); got a key array of shape "
            f"{shape}. Split it outside and vmap, or pass one key."
        )
    if dtype is not None and dtype == jnp.uint32 and shape == (2,):
        return
    raise TypeError(
        f"`{name}` must be a PRNG key from jax.random.key(seed) (or the legacy "
        f"jax.random.PRNGKey(seed)); got {describe(key)}."
    )


def check_positive_int(value: Any, name: str) -> int:
    """Returns ``value`` if it is a Python int >= 1, else raises naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be a Python int >= 1 (it is static); got {value!r} of type "
            f"{type(value).__name__}."
        )
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1; got {value}.")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises ``ValueError``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}.")
    return value


def broadcast_shapes(*named_shapes: tuple[str, tuple[int, ...]]) -> tuple[int, ...]:
    """``np.broadcast_shapes`` with an error that names every argument and its shape."""
    try:
        return tuple(np.broadcast_shapes(*(shape for _, shape in named_shapes)))
    except ValueError:
        listed = ", ".join(f"`{name}` {tuple(shape)}" for name, shape in named_shapes)
        raise ValueError(f"Shapes do not broadcast: {listed}.") from None
