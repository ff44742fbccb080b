r"""``jax.random`` draws with the threefry hash unrolled: the same numbers, faster on CPU.

JAX lowers its threefry2x32 hash on CPU as a rolled ``while`` loop of five 4-round blocks,
so every draw is a loop whose iterations each stream the whole counter array through
memory (and cost a few kernel launches even for a handful of numbers). Written out as
plain ``jax.numpy`` integer ops, the twenty rounds fuse into one elementwise kernel
instead: on a 2-core CPU ``normal`` of 2,048 float32 values takes 63 µs instead of
149 µs, and of 65,536 values 242 µs instead of 602 µs.

The functions here reproduce ``jax.random`` **bit for bit** (threefry2x32 keys with the
default ``jax_threefry_partitionable=True``: element :math:`i` of a draw of shape ``shape``
hashes the 64-bit counter :math:`i` of the flattened shape, and a 32-bit draw keeps the
XOR of the two output words). A one-axis ``out_sharding`` of a flat draw (what
:func:`draw` asks for under an Explicit mesh) shards the counters, so each
device hashes only its slice. Any other key implementation or configuration, any other
``out_sharding``, or a dtype other than float32/float64, falls back to ``jax.random``
itself, so results never depend on which path ran.

The unrolled path is taken **on CPU only** (chosen when the program is lowered, with
``lax.platform_dependent``): on GPU and TPU JAX's own threefry lowering is already unrolled
or a dedicated kernel, and a program lowered for them calls ``jax.random`` itself, with the
same bits.

:func:`draw` is what the families call: noise of a given shape drawn flat, and under an
Explicit mesh sharded like the parameters it will be combined with (so that the family
definitions know nothing about meshes).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jelbo._typing import Array, Shape

# jax.config's flags are attributes that its type stubs do not declare.
_CONFIG: Any = jax.config

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = np.uint32(0x1BD11BDA)  # Threefry's key-schedule constant C240
_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _rotate_left(x: Array, bits: int) -> Array:
    return lax.shift_left(x, np.uint32(bits)) | lax.shift_right_logical(x, np.uint32(32 - bits))


def _threefry2x32(k1: Array, k2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 block cipher (20 rounds) of counters ``(x1, x2)`` under ``(k1, k2)``.

    The same function as ``jax.random``'s ``threefry2x32`` primitive, unrolled.
    """
    ks = (k1, k2, k1 ^ k2 ^ _KEY_PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for block in range(5):
        for bits in _ROTATIONS[block % 2]:
            x1 = x1 + x2
            x2 = x1 ^ _rotate_left(x2, bits)
        x1 = x1 + ks[(block + 1) % 3]
        x2 = x2 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x1, x2


def _is_typed(key: Array) -> bool:
    """A typed key (``jax.random.key``), as opposed to a raw ``uint32[2]`` one."""
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def _is_threefry(key: Array) -> bool:
    """Whether ``key`` draws with partitionable threefry (the only case reproduced here)."""
    if not _CONFIG.jax_threefry_partitionable:
        return False
    if _is_typed(key):
        return str(jax.random.key_impl(key)) == "threefry2x32"
    return _CONFIG.jax_default_prng_impl == "threefry2x32"  # a legacy raw uint32[2] key


def _key_words_array(key: Array) -> Array:
    """The uint32 words of a threefry key (typed or raw), as ``(..., 2)``."""
    return jax.random.key_data(key) if _is_typed(key) else key


def _key_words(key: Array) -> tuple[Array, Array]:
    """The two uint32 words of a threefry key (typed or raw)."""
    data = _key_words_array(key)
    return data[..., 0], data[..., 1]


def _counters(size: int, sharding: Any = None) -> tuple[Array, Array]:
    """The 64-bit counters ``0 .. size-1`` as (high, low) uint32 words (``size < 2**32``),
    laid out with ``sharding`` (a one-axis ``PartitionSpec``) under an Explicit mesh."""
    low = lax.broadcasted_iota(np.uint32, (size,), 0, out_sharding=sharding)
    return jnp.zeros_like(low), low


def _fast(key: Array, shape: Shape, dtype: Any, out_sharding: Any) -> bool:
    flat_sharding = isinstance(out_sharding, P) and len(shape) == 1 and len(out_sharding) <= 1
    return (
        (out_sharding is None or flat_sharding)
        and np.dtype(dtype) in _FAST_DTYPES
        and math.prod(shape) < 2**32
        and _is_threefry(key)
    )


def _computed_once(bits: Array, k1: Array) -> Array:
    """``bits``, unchanged, but computed once.

    XLA's CPU fusion copies cheap elementwise producers (all of the hash is integer adds,
    shifts and xors) into every fusion that reads their result, so noise read by the
    forward pass and by two gradient terms was hashed three times. An integer division by
    a divisor it cannot prove constant counts as expensive, so the hash is emitted once
    and its result stored; the divisor ``(k1 >> 31) | 1`` is always 1, which LLVM folds
    away when it compiles the kernel.
    """
    one = lax.shift_right_logical(k1, np.uint32(31)) | np.uint32(1)
    return lax.div(bits, lax.convert_element_type(one, bits.dtype))


def _random_bits(words: tuple[Array, Array], size: int, nbits: int, sharding: Any) -> Array:
    """``jax.random.bits`` of ``size`` elements, ``nbits`` (32 or 64) wide, computed once."""
    b1, b2 = _threefry2x32(*words, *_counters(size, sharding))
    if nbits == 64:
        bits = lax.shift_left(b1.astype(np.uint64), np.uint64(32)) | b2.astype(np.uint64)
    else:
        bits = b1 ^ b2
    return _computed_once(bits, words[0])


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _uniform(
    key: Array, shape: Shape, dtype: np.dtype, minval: float, maxval: float, sharding: Any
) -> Array:
    """``jax.random.uniform``: the mantissa bits of a float in ``[1, 2)``, minus one, scaled.

    Compiled as one function, as ``jax.random``'s is, so that ``floats * (high - low) + low``
    is contracted to the same fused multiply-add (or not) in eager mode too.
    """
    finfo = jnp.finfo(dtype)
    bits = _random_bits(_key_words(key), math.prod(shape), finfo.bits, sharding)
    uint = bits.dtype.type
    mantissa = lax.shift_right_logical(bits, uint(finfo.bits - finfo.nmant))
    one = np.array(1.0, dtype).view(uint)
    floats = lax.bitcast_convert_type(mantissa | one, dtype) - np.array(1.0, dtype)
    low, high = np.array(minval, dtype), np.array(maxval, dtype)
    return lax.max(low, (floats * (high - low) + low).reshape(shape))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _normal(key: Array, shape: Shape, dtype: np.dtype, sharding: Any) -> Array:
    low = float(np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype)))
    u = _uniform(key, shape, dtype, low, 1.0, sharding)
    return lax.erf_inv(u) * np.array(np.sqrt(2), dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _laplace(key: Array, shape: Shape, dtype: np.dtype, sharding: Any) -> Array:
    u = _uniform(key, shape, dtype, -1.0 + float(jnp.finfo(dtype).epsneg), 1.0, sharding)
    return lax.mul(lax.sign(u), lax.log1p(lax.neg(lax.abs(u))))


@functools.partial(jax.jit, static_argnums=1)
def _split_data(key: Array, num: int) -> Array:
    words = _key_words(key)
    b1, b2 = _threefry2x32(*words, *_counters(num))
    return _computed_once(jnp.stack([b1, b2], axis=-1), words[0])


def _shape_and_dtype(shape: Shape, dtype: Any) -> tuple[Shape, np.dtype]:
    """``shape`` as a tuple; ``dtype``, or ``jax.random``'s default float when ``None``."""
    return tuple(shape), np.dtype(jax.dtypes.canonicalize_dtype(float if dtype is None else dtype))


def _gated(
    unrolled: Any, reference: Any, key: Array, shape: Shape, dtype: Any, sharding: Any, **kw: Any
) -> Array:
    """``reference(key, shape, dtype, **kw)`` (``jax.random``'s), computed by ``unrolled`` (this
    module's, the same bits) where the program is lowered for CPU and the key allows it.

    JAX rolls its threefry into a loop only on CPU; on GPU and TPU its own lowering is
    already unrolled (or a dedicated kernel) and the integer division of
    :func:`_computed_once` would only force the bits through memory. The choice is made when
    the program is lowered (``lax.platform_dependent``): a program lowered for one platform
    holds only that platform's branch.
    """
    shape, dtype = _shape_and_dtype(shape, dtype)
    default = functools.partial(reference, shape=shape, dtype=dtype, out_sharding=sharding, **kw)
    if not _fast(key, shape, dtype, sharding):
        return default(key)
    kw = {name: float(value) for name, value in kw.items()}
    fast = functools.partial(unrolled, shape=shape, dtype=dtype, sharding=sharding, **kw)
    return lax.platform_dependent(key, cpu=fast, default=default)


def uniform(
    key: Array,
    shape: Shape,
    dtype: Any = None,
    minval: float = 0.0,
    maxval: float = 1.0,
    *,
    out_sharding: Any = None,
) -> Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, bit for bit."""
    return _gated(
        _uniform, jax.random.uniform, key, shape, dtype, out_sharding, minval=minval, maxval=maxval
    )


def normal(key: Array, shape: Shape, dtype: Any = None, *, out_sharding: Any = None) -> Array:
    """``jax.random.normal(key, shape, dtype)``, bit for bit: ``sqrt(2) * erfinv(u)``."""
    return _gated(_normal, jax.random.normal, key, shape, dtype, out_sharding)


def laplace(key: Array, shape: Shape, dtype: Any = None, *, out_sharding: Any = None) -> Array:
    """``jax.random.laplace(key, shape, dtype)``, bit for bit: ``sign(u) * log1p(-|u|)``."""
    return _gated(_laplace, jax.random.laplace, key, shape, dtype, out_sharding)


def split(key: Array, num: int) -> Array:
    """``jax.random.split(key, num)``, bit for bit: typed keys stay typed, raw keys raw."""
    if not _is_threefry(key):
        return jax.random.split(key, num)
    data = lax.platform_dependent(  # as in _gated: the unrolled hash on CPU only
        key,
        cpu=functools.partial(_split_data, num=num),
        default=lambda key: _key_words_array(jax.random.split(key, num)),
    )
    if _is_typed(key):
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return data


# --- noise for the families: flat, and sharded like their parameters -------------------------


def draw(sampler: Any, key: Array, shape: Shape, dtype: Any, *params: Any) -> Array:
    """``sampler(key, shape, dtype)`` (one of this module's) drawn as one flat vector and
    reshaped, laid out like the parameters that the noise will be combined with.

    With JAX's (default) partitionable threefry the values are identical, but XLA compiles
    the flat form much faster on CPU when it is vmapped over keys (e.g. 1.3 s instead of
    12 s for 16 keys × (1797, 10)).

    Under a mesh with Explicit axes, parameters (``params``) sharded along batch axes give
    the noise the same sharding (see :func:`noise_sharding`), so that each device generates
    only its shard: still flat when the only sharded axis leads (the ELBO's case), else
    drawn in ``shape`` (slower to compile when vmapped; the values are the same either way).
    """
    sharding = noise_sharding(shape, *params)
    if sharding is None:
        return sampler(key, (math.prod(shape),), dtype).reshape(shape)
    sharded = [i for i, axes in enumerate(sharding) if axes is not None]
    if len(sharded) == 1 and math.prod(shape[: sharded[0]]) == 1:
        # The leading non-trivial axis is the only sharded one (the ELBO's case: one key per
        # sample, batch-major): contiguous slices of the flat vector are the shards.
        flat = sampler(key, (math.prod(shape),), dtype, out_sharding=P(sharding[sharded[0]]))
        return jnp.reshape(flat, shape, out_sharding=sharding)
    return sampler(key, shape, dtype, out_sharding=sharding)


def noise_sharding(shape: Shape, *params: Any) -> Any:
    """``out_sharding`` for noise of ``shape`` drawn for parameters on Explicit mesh axes.

    Under ``jax.set_mesh`` with ``AxisType.Explicit`` axes an array's sharding is part of its
    type, and a random draw without ``out_sharding`` is typed replicated: every device would
    generate the noise of the whole (batch-sharded) batch and keep only its slice. Returns
    the parameters' sharding, right-aligned against ``shape``, or ``None`` (no mesh, Auto
    axes, replicated parameters).

    Args:
        shape: the noise shape, ``sample_shape + batch_shape + event_shape``.
        *params: parameter arrays, right-aligned against ``shape``; ``(array, n)`` drops the
            array's last ``n`` axes first (e.g. ``(scale_tril, 1)``).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not mesh.explicit_axes:
        return None
    out: list[Any] = [None] * len(shape)
    for param in params:
        array, drop = param if isinstance(param, tuple) else (param, 0)
        aval = jax.typeof(array)
        spec = tuple(aval.sharding.spec) + (None,) * (aval.ndim - len(aval.sharding.spec))
        dims = aval.shape[: aval.ndim - drop]
        offset = len(shape) - len(dims)
        for i, (axes, size) in enumerate(zip(spec[: len(dims)], dims, strict=True)):
            if axes is not None and size != 1 and offset + i >= 0 and out[offset + i] is None:
                out[offset + i] = axes
    if all(axes is None for axes in out):
        return None
    return P(*out)
