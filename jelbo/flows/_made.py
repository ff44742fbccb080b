r"""Masked conditioner networks (MADE, Germain et al. 2015) as plain arrays and static masks.

A conditioner maps ``u`` (``(…, D)``) and an optional context (``(…, C)``) to ``P``
parameters per coordinate, ``(…, P, D)``, such that the parameters of coordinate ``j`` depend
only on the coordinates ``i`` of lower *degree*, ``m(i) < m(j)``. MADE's masks enforce it:
every unit gets a degree (inputs their coordinate's, context inputs 0, hidden units one in
``[min, max]``), a connection ``a -> b`` into a hidden unit exists when ``m(b) >= m(a)``,
and into an output of coordinate ``j`` when ``m(j) > m(a)``. With degrees ``rank + 1`` this
is an autoregressive network in the order of the ranks; with degrees 1 (conditioning half) and
2 (transformed half) it is a coupling layer's conditioner. The masks are NumPy constants
computed at trace time from static degrees and cached.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jelbo._typing import Array

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
}


def hidden_degrees(input_degrees: Sequence[int], hidden_size: int) -> np.ndarray:
    """Degrees of ``hidden_size`` units, cycling over ``[min, max - 1]`` of the input degrees.

    Units of degree ``max`` would feed no output; when every input has the same degree
    (``D = 1``), the units get degree ``min - 1`` and see only the context (or nothing).
    """
    low, high = min(input_degrees), max(input_degrees)
    if high == low:
        return np.full(hidden_size, low - 1, dtype=np.int64)
    return low + np.arange(hidden_size) % (high - low)


@functools.lru_cache(maxsize=256)
def masks(
    input_degrees: tuple[int, ...], hidden_sizes: tuple[int, ...], num_params: int
) -> tuple[np.ndarray, ...]:
    """Boolean masks of the weight matrices ``in -> h1 -> … -> out`` (out is ``P*D``, P-major)."""
    d_in = np.asarray(input_degrees)
    degrees = [d_in] + [hidden_degrees(input_degrees, h) for h in hidden_sizes]
    out: list[np.ndarray] = []
    for prev, nxt in itertools.pairwise(degrees):
        out.append(nxt[None, :] >= prev[:, None])
    out_degrees = np.tile(d_in, num_params)
    out.append(out_degrees[None, :] > degrees[-1][:, None])
    for m in out:
        m.setflags(write=False)
    return tuple(out)


def stacked_masks(
    degrees: tuple[tuple[int, ...], ...], hidden_sizes: tuple[int, ...], num_params: int
) -> tuple[np.ndarray, ...]:
    """The masks of every layer stacked on a leading axis, as float constants."""
    per_layer = [masks(d, hidden_sizes, num_params) for d in degrees]
    return tuple(np.stack(ms).astype(np.float32) for ms in zip(*per_layer, strict=True))


def init_layer(
    key: Array,
    input_degrees: tuple[int, ...],
    hidden_sizes: tuple[int, ...],
    num_params: int,
    context_dim: int | None,
    dtype: jnp.dtype,
) -> tuple[list[Array], list[Array], Array | None]:
    """Weights and biases of one conditioner; the output layer is zero (identity transform).

    Hidden weights are normal with variance one over the unit's number of connected inputs
    (LeCun initialization on the masked fan-in, context inputs included), biases zero.
    """
    ms = masks(input_degrees, hidden_sizes, num_params)
    keys = jax.random.split(key, len(ms) + 1)
    weights, biases = [], []
    c = context_dim or 0
    for i, m in enumerate(ms):
        n_in, n_out = m.shape
        if i == len(ms) - 1:
            weights.append(jnp.zeros((n_in, n_out), dtype))
        else:
            fan_in = np.maximum(m.sum(axis=0) + (c if i == 0 else 0), 1)
            std = jnp.asarray(1.0 / np.sqrt(fan_in), dtype)
            weights.append(jax.random.normal(keys[i], (n_in, n_out), dtype) * std * m)
        biases.append(jnp.zeros((n_out,), dtype))
    context_weights = None
    if context_dim is not None:
        fan_in = ms[0].sum(axis=0) + context_dim
        std = jnp.asarray(1.0 / np.sqrt(np.maximum(fan_in, 1)), dtype)
        context_weights = jax.random.normal(keys[-1], (context_dim, hidden_sizes[0]), dtype) * std
    return weights, biases, context_weights


def apply(
    weights: Sequence[Array],
    biases: Sequence[Array],
    layer_masks: Sequence[Array],
    context_term: Array | None,
    activation: str,
    u: Array,
    num_params: int,
) -> Array:
    """The conditioner's outputs ``(…, P, D)`` for inputs ``u`` ``(…, D)``.

    ``context_term`` is the context's contribution to the first hidden layer (``context @
    W_c``, computed once per context and broadcast over samples), or ``None``.
    """
    act = ACTIVATIONS[activation]
    h = u
    n = len(weights)
    for i, (w, b, m) in enumerate(zip(weights, biases, layer_masks, strict=True)):
        h = h @ (w * m.astype(w.dtype)) + b
        if i == 0 and context_term is not None:
            h = h + context_term
        if i < n - 1:
            h = act(h)
    dim = u.shape[-1]
    return h.reshape(h.shape[:-1] + (num_params, dim))
