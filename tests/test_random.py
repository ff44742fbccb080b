"""Tests of jelbo's unrolled-threefry draws: bit for bit the numbers of ``jax.random``.

jelbo's samplers draw their noise through :mod:`jelbo._random`, which must reproduce
``jax.random`` exactly (so that results do not depend on which path ran, and the sharded and
single-device runs agree); every test compares with ``jax.random`` itself under ``==``.
"""

from __future__ import annotations

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jelbo
from jelbo import _random

SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (4097,)]
SAMPLERS = {
    "normal": (_random.normal, jax.random.normal),
    "laplace": (_random.laplace, jax.random.laplace),
    "uniform": (_random.uniform, jax.random.uniform),
}


@contextlib.contextmanager
def threefry_partitionable(value: bool):
    """Temporarily sets ``jax_threefry_partitionable``."""
    old = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", value)
    try:
        yield
    finally:
        jax.config.update("jax_threefry_partitionable", old)


def assert_identical(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(
        actual.reshape(-1).view(np.uint8), expected.reshape(-1).view(np.uint8)
    )


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_samplers_match_jax_random_bit_for_bit(name, shape, dtype, maybe_jit):
    ours, theirs = SAMPLERS[name]
    for seed in range(3):
        key = jax.random.key(seed)
        expected = theirs(key, shape, dtype)
        assert_identical(maybe_jit(ours, static_argnums=(1, 2))(key, shape, dtype), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_uniform_bounds_match_jax_random(dtype):
    key = jax.random.key(5)
    for low, high in [(-1.0, 1.0), (-3.5, 0.25), (2.0, 2.5)]:
        assert_identical(
            _random.uniform(key, (257,), dtype, low, high),
            jax.random.uniform(key, (257,), dtype, low, high),
        )


def test_draws_cover_the_extreme_uniform_values():
    """Large draws of float32 normals stay finite and match, tails included."""
    key = jax.random.key(11)
    ours = jax.jit(lambda k: _random.normal(k, (1 << 20,)))(key)
    assert_identical(ours, jax.random.normal(key, (1 << 20,)))
    assert np.isfinite(np.asarray(ours)).all() and float(jnp.max(jnp.abs(ours))) > 4.5


@pytest.mark.parametrize("num", [1, 2, 3, 32])
def test_split_matches_jax_random_for_typed_and_raw_keys(num, maybe_jit):
    split = maybe_jit(_random.split, static_argnums=1)
    typed = jax.random.key(3)
    ours = split(typed, num)
    assert jax.dtypes.issubdtype(ours.dtype, jax.dtypes.prng_key)
    assert str(jax.random.key_impl(ours)) == "threefry2x32"
    assert_identical(jax.random.key_data(ours), jax.random.key_data(jax.random.split(typed, num)))
    raw = jax.random.PRNGKey(3)
    assert_identical(split(raw, num), jax.random.split(raw, num))


def test_raw_keys_give_the_same_draws_as_typed_keys():
    raw, typed = jax.random.PRNGKey(9), jax.random.key(9)
    assert_identical(_random.normal(raw, (5, 3)), jax.random.normal(typed, (5, 3)))


def test_vmapped_over_keys_matches_jax_random():
    keys = jax.random.split(jax.random.key(0), 6)
    ours = jax.jit(jax.vmap(lambda k: _random.normal(k, (4, 3))))(keys)
    assert_identical(ours, jax.vmap(lambda k: jax.random.normal(k, (4, 3)))(keys))
    split = jax.jit(jax.vmap(lambda k: jax.random.key_data(_random.split(k, 4))))(keys)
    assert_identical(split, jax.vmap(lambda k: jax.random.key_data(jax.random.split(k, 4)))(keys))


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg", "threefry2x32"])
def test_other_key_implementations_fall_back_to_jax_random(impl):
    key = jax.random.key(4, impl=impl)
    assert_identical(_random.normal(key, (6,)), jax.random.normal(key, (6,)))
    assert_identical(
        jax.random.key_data(_random.split(key, 3)), jax.random.key_data(jax.random.split(key, 3))
    )


def test_non_partitionable_threefry_falls_back_to_jax_random():
    with threefry_partitionable(False):
        key = jax.random.key(2)
        assert_identical(_random.normal(key, (9,)), jax.random.normal(key, (9,)))
        assert_identical(
            jax.random.key_data(_random.split(key, 3)),
            jax.random.key_data(jax.random.split(key, 3)),
        )


def test_half_precision_falls_back_to_jax_random():
    key = jax.random.key(1)
    assert_identical(
        _random.normal(key, (8,), jnp.bfloat16), jax.random.normal(key, (8,), jnp.bfloat16)
    )


def test_distribution_samples_are_jax_random_draws():
    """``jelbo.sample`` of a Normal is ``loc + scale * jax.random.normal`` on the flat shape."""
    key = jax.random.key(8)
    loc, scale = jnp.arange(6.0).reshape(2, 3), jnp.full((2, 3), 0.5)
    z = jax.jit(lambda k: jelbo.sample(k, jelbo.Normal(loc, scale), (4,)))(key)
    expected = jax.jit(
        lambda k: loc + scale * jax.random.normal(k, (4 * 2 * 3,), loc.dtype).reshape(4, 2, 3)
    )(key)
    assert_identical(z, expected)


def test_gradients_flow_through_samples_only_via_the_parameters():
    """The integer fence around the hash leaves reparameterization gradients intact."""
    key = jax.random.key(0)

    def mean_sample(loc, scale):
        return jnp.mean(jelbo.sample(key, jelbo.Normal(loc, scale), (1000,)))

    d_loc, d_scale = jax.grad(mean_sample, argnums=(0, 1))(
        jnp.array([0.3], jnp.float32), jnp.array([2.0], jnp.float32)
    )
    eps = jax.random.normal(key, (1000,), jnp.float32)
    np.testing.assert_allclose(float(d_loc[0]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(d_scale[0]), float(jnp.mean(eps)), rtol=1e-5)


# --- the platform gate: the unrolled hash on CPU only --------------------------------------

GATED = {
    "normal": lambda sampler: lambda k: sampler(k, (16,)),
    "laplace": lambda sampler: lambda k: sampler(k, (16,)),
    "uniform": lambda sampler: lambda k: sampler(k, (4, 3), minval=-2.0, maxval=3.0),
}


def _exported(fn, platforms):
    """The StableHLO text of ``fn(key)`` lowered for ``platforms`` (no device needed)."""
    return jax.export.export(jax.jit(fn), platforms=platforms)(jax.random.key(0)).mlir_module()


def _ops(module: str) -> dict[str, int]:
    """How often each StableHLO operation occurs, except the platform switch's own (a ``case``
    on a constant index, its ``return``s and constants)."""
    ops: dict[str, int] = {}
    for op in re.findall(r"\bstablehlo\.[a-z_]+", module):
        if op not in ("stablehlo.case", "stablehlo.return", "stablehlo.constant"):
            ops[op] = ops.get(op, 0) + 1
    return ops


@pytest.mark.parametrize("name", [*GATED, "split"])
def test_unrolled_hash_on_cpu_and_jax_threefry_elsewhere(name):
    """Lowered for CPU, a draw has no call to JAX's ``threefry2x32`` (nor its rolled loop);
    lowered for CUDA or TPU, it is JAX's own draw: the same operations as ``jax.random``."""
    if name == "split":
        ours, theirs = (lambda k: _random.split(k, 3)), (lambda k: jax.random.split(k, 3))
    else:
        ours, theirs = GATED[name](SAMPLERS[name][0]), GATED[name](SAMPLERS[name][1])
    cpu = _exported(ours, ["cpu"])
    assert "@threefry2x32" not in cpu and "stablehlo.while" not in cpu
    assert "@threefry2x32" in _exported(theirs, ["cpu"])  # what the CPU path replaces
    for platform in ("cuda", "tpu"):
        module = _exported(ours, [platform])
        assert "@threefry2x32" in module, platform
        assert _ops(module) == _ops(_exported(theirs, [platform])), platform


def test_a_program_lowered_for_cpu_and_cuda_draws_the_same_bits():
    """Both branches in one module (``lax.platform_dependent``): run on CPU, jax.random's bits."""
    key = jax.random.key(3)
    exported = jax.export.export(
        jax.jit(lambda k: _random.normal(k, (33,))), platforms=["cpu", "cuda"]
    )(key)
    assert_identical(exported.call(key), jax.random.normal(key, (33,)))
