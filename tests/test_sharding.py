"""Data-parallel training with jelbo.sharding on 4 simulated CPU devices.

JAX fixes the number of CPU devices when it starts, so the multi-device checks run in ONE
subprocess (this file run as a script with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``)
that prints its measurements as JSON; the tests below assert on them. The rest of the suite
keeps its single device.

The model is the linear-decoder VAE of the examples (``examples/_linear.py``: Gaussian
encoder, decoder ``N(Wz + b, σ²I)``), trained with ``jelbo.ELBO`` and ``optax.adam`` in
float32. Every
configuration compares against the same train step run on one device without a mesh, for
the default mesh (``AxisType.Explicit``) and for ``AxisType.Auto``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from support import noise_elements

import jelbo

NUM_DEVICES = 4
BATCH, DIM, LATENT, SAMPLES = 32, 16, 3, 2
AXIS_TYPES = ("explicit", "auto")
# float32 results may differ only by the order of the floating-point reductions.
RTOL = 2e-5


# --------------------------------------------------------------------------------------
# The subprocess: runs with NUM_DEVICES simulated devices and prints a JSON report.
# --------------------------------------------------------------------------------------


def _worker() -> dict:
    import _linear as linear  # examples/ is on PYTHONPATH (the fixture `report`)
    import jax.numpy as jnp
    import optax
    from jax.sharding import AxisType

    assert jax.device_count() == NUM_DEVICES, jax.devices()
    inspected: dict[str, list[str]] = {}
    label = ["single"]  # the configuration being compiled, for inspect_array_sharding

    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, DIM)).astype(np.float32) * 2.0 + 1.0
    std = linear.standardizer(x)  # a constant of the compiled steps, replicated

    def per_datapoint_elbo(params, key, x, objective=None):
        objective = jelbo.ELBO(SAMPLES) if objective is None else objective
        return linear.bound(objective, params, std, key, x).value

    def loss_fn(params, key, x):
        values = per_datapoint_elbo(params, key, x)
        # Records, when the step is compiled, how this intermediate is sharded.
        where = inspected.setdefault(label[0], [])
        jax.debug.inspect_array_sharding(values, callback=lambda s: where.append(str(s)))
        return -jnp.mean(values), values

    optimizer = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state, key, x):
        (loss, values), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key, x)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads, values

    params = {  # in the standardized units of _linear, away from its initialization
        "W": rng.normal(size=(DIM, LATENT)),
        "b": 0.1 * rng.normal(size=DIM),
        "rho": np.asarray(0.5),
        "A": 0.1 * rng.normal(size=(LATENT, DIM)),
        "a": np.zeros(LATENT),
        "C": 0.1 * rng.normal(size=(LATENT, DIM)),
        "c": np.zeros(LATENT),
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    key = jax.random.key(42)
    # The steps' keys, drawn once (eagerly under each mesh, fold_in compiled once per mesh).
    step_keys = [jax.random.fold_in(key, i) for i in range(10)]

    def max_diff(a, b):
        return max(
            float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    def max_abs(a):
        return max(float(np.max(np.abs(np.asarray(u)))) for u in jax.tree.leaves(a))

    def shard_shapes(a):
        return sorted({tuple(s.data.shape) for s in a.addressable_shards})

    def run_steps(mesh, num_steps):
        """``num_steps`` train steps on ``mesh`` (None: one device, no mesh)."""
        p, s, xs = params, optimizer.init(params), x
        if mesh is not None:
            p, s = jelbo.sharding.replicate((p, s), mesh)
            xs = jelbo.sharding.shard_batch(x, mesh)
        compiled = step.lower(p, s, key, xs).compile()
        outputs = []
        for i in range(num_steps):
            p, s, loss, grads, values = compiled(p, s, step_keys[i], xs)
            outputs.append((p, loss, grads, values))
        return outputs, compiled.as_text(), xs

    report: dict = {"devices": jax.device_count(), "configs": {}}
    reference, _, _ = run_steps(None, 10)
    ref_params, ref_loss, ref_grads, _ = reference[0]
    report["scale"] = {
        "loss": abs(float(ref_loss)),
        "grads": max_abs(ref_grads),
        "params": max_abs(ref_params),
    }
    report["ten_steps_scale"] = max_abs(reference[-1][0])

    axis_types = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}
    configs = [("explicit", 1), ("explicit", 2), ("explicit", NUM_DEVICES)]
    configs += [("auto", 2), ("auto", NUM_DEVICES)]
    for axis_type, n in configs:
        label[0] = f"{axis_type}-{n}"
        mesh = jelbo.sharding.data_parallel_mesh(n, axis_type=axis_types[axis_type])
        with jax.set_mesh(mesh):
            outputs, hlo, xs = run_steps(mesh, 10)
        new_params, loss, grads, values = outputs[0]
        report["configs"][label[0]] = {
            "loss": abs(float(loss) - float(ref_loss)),
            "grads": max_diff(grads, ref_grads),
            "params": max_diff(new_params, ref_params),
            "ten_steps_params": max_diff(outputs[-1][0], reference[-1][0]),
            "ten_steps_losses": max(
                abs(float(a[1]) - float(b[1])) for a, b in zip(outputs, reference, strict=True)
            ),
            "input_spec": list(xs.sharding.spec),
            "input_shard_shapes": shard_shapes(xs),
            "input_devices": len(xs.sharding.device_set),
            "elbo_spec": list(values.sharding.spec),
            "elbo_shard_shapes": shard_shapes(values),
            "inspected": inspected.get(label[0], []),
            "params_replicated": all(
                leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == n
                for leaf in jax.tree.leaves(new_params)
            ),
            "all_reduce": "all-reduce(" in hlo or "all-reduce-start(" in hlo,
            "all_gather_of_batch": bool(re.search(rf"f32\[{BATCH},{DIM}\]\S* all-gather", hlo)),
            "noise_elements": noise_elements(hlo),
            "rolled_rng_loop": "while(" in hlo,  # JAX's own CPU threefry lowering
        }

    # The other estimators, in one loss: Monte Carlo KL with STL + IWAE with DReG, chunked.
    def other_loss(p, k, v):
        mc = per_datapoint_elbo(p, k, v, jelbo.ELBO(SAMPLES, kl="mc", grad_estimator="stl"))
        iwae = per_datapoint_elbo(
            p, k, v, jelbo.IWAE(3, grad_estimator="dreg", sample_chunk_size=2)
        )
        return -jnp.mean(mc + iwae)

    grad = jax.jit(jax.value_and_grad(other_loss))
    ref = grad(params, key, x)
    mesh = jelbo.sharding.data_parallel_mesh(NUM_DEVICES)
    with jax.set_mesh(mesh):
        out = grad(jelbo.sharding.replicate(params, mesh), key, jelbo.sharding.shard_batch(x, mesh))
    report["estimators"] = {"diff": max_diff(out, ref), "scale": max_abs(ref)}

    # jelbo's sampler with a sharded output: the same bits as jax.random, laid out per device.
    from jax.sharding import PartitionSpec

    from jelbo import _random

    with jax.set_mesh(mesh):
        draw = jax.jit(lambda k: _random.normal(k, (4096,), out_sharding=PartitionSpec("data")))
        sharded = draw(key)
    report["sharded_draw"] = {
        "identical": bool(
            (np.asarray(sharded) == np.asarray(jax.random.normal(key, (4096,)))).all()
        ),
        "shard_shapes": shard_shapes(sharded),
    }

    try:
        jelbo.sharding.shard_batch({"x": x[:30]}, mesh)
        report["indivisible_error"] = None
    except ValueError as error:
        report["indivisible_error"] = str(error)
    return report


# --------------------------------------------------------------------------------------
# The tests.
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report() -> dict:
    env = dict(os.environ)
    # Cheaper CPU code generation: compiling dominates the run time, the SPMD partitioning
    # under test is unaffected, and every configuration is compiled with the same flags.
    flags = (
        f"--xla_force_host_platform_device_count={NUM_DEVICES} "
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    )
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    # As pytest's `pythonpath` setting: the repository root (bench) and examples/ (_linear).
    root = Path(__file__).resolve().parents[1]
    paths = [str(root), str(root / "examples"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _close(diff: float, scale: float) -> bool:
    return diff <= RTOL * max(scale, 1.0)


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_one_sharded_step_equals_the_single_device_step(report, axis_type):
    assert report["devices"] == NUM_DEVICES
    entry = report["configs"][f"{axis_type}-{NUM_DEVICES}"]
    for what in ("loss", "grads", "params"):
        assert _close(entry[what], report["scale"][what]), (what, entry[what])


def test_results_do_not_depend_on_the_device_count(report):
    for config in ("explicit-1", "explicit-2", "explicit-4", "auto-2", "auto-4"):
        entry = report["configs"][config]
        for what in ("loss", "grads", "params"):
            assert _close(entry[what], report["scale"][what]), (config, what, entry[what])


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_the_batch_is_really_sharded(report, axis_type):
    entry = report["configs"][f"{axis_type}-{NUM_DEVICES}"]
    rows = BATCH // NUM_DEVICES
    # The inputs: one quarter of the rows on each of the 4 devices.
    assert entry["input_spec"] == ["data"]
    assert entry["input_devices"] == NUM_DEVICES
    assert entry["input_shard_shapes"] == [[rows, DIM]]
    # An intermediate: the per-datapoint ELBOs stay split over the devices ...
    assert entry["elbo_spec"] == ["data"]
    assert entry["elbo_shard_shapes"] == [[rows]]
    assert entry["inspected"], "inspect_array_sharding never reported"
    assert all("'data'" in s for s in entry["inspected"]), entry["inspected"]
    # ... the gradients are summed over them, the batch is never gathered,
    # and the updated parameters are replicated on every device.
    assert entry["all_reduce"]
    assert not entry["all_gather_of_batch"]
    assert entry["params_replicated"]


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_each_device_draws_only_the_noise_of_its_shard(report, axis_type):
    entry = report["configs"][f"{axis_type}-{NUM_DEVICES}"]
    assert entry["noise_elements"] == SAMPLES * (BATCH // NUM_DEVICES) * LATENT


def test_sharded_draws_are_jax_random_bits_per_device(report):
    assert report["sharded_draw"]["identical"]
    assert report["sharded_draw"]["shard_shapes"] == [[4096 // NUM_DEVICES]]


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_sharded_noise_uses_jelbos_unrolled_sampler(report, axis_type):
    """Sharded draws take the fused-hash path too (same bits as jax.random: see test_random)."""
    entries = {k: v for k, v in report["configs"].items() if k.startswith(axis_type)}
    assert entries
    for name, entry in entries.items():
        assert not entry["rolled_rng_loop"], name


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_ten_sharded_steps_track_ten_single_device_steps(report, axis_type):
    entry = report["configs"][f"{axis_type}-{NUM_DEVICES}"]
    assert entry["ten_steps_losses"] <= RTOL * max(report["scale"]["loss"], 1.0)
    assert entry["ten_steps_params"] <= 1e-4 * max(report["ten_steps_scale"], 1.0)


def test_other_estimators_are_device_count_independent(report):
    # elbo(kl="mc", grad_estimator="stl") + iwae_bound(grad_estimator="dreg", chunked).
    entry = report["estimators"]
    assert _close(entry["diff"], entry["scale"]), entry


def test_batch_not_divisible_by_the_device_count_is_refused(report):
    message = report["indivisible_error"]
    assert message is not None, "a batch of 30 rows on 4 devices was accepted"
    assert "30" in message and "4 devices" in message and "'data'" in message


# In-process checks (one device).


def test_shard_batch_keeps_values_and_checks_the_leaves():
    mesh = jelbo.sharding.data_parallel_mesh(1)
    batch = {"x": np.arange(12.0).reshape(6, 2), "y": np.arange(6)}
    sharded = jelbo.sharding.shard_batch(batch, mesh)
    np.testing.assert_array_equal(sharded["x"], batch["x"])
    assert sharded["y"].sharding.spec == jax.sharding.PartitionSpec("data")
    with pytest.raises(ValueError, match="disagree on the batch size"):
        jelbo.sharding.shard_batch({"x": np.zeros((6, 2)), "y": np.zeros(5)}, mesh)
    with pytest.raises(ValueError, match="scalar"):
        jelbo.sharding.shard_batch({"x": np.zeros(())}, mesh)
    with pytest.raises(ValueError, match="no axis 'batch'"):
        jelbo.sharding.shard_batch(batch, mesh, axis_name="batch")
    replicated = jelbo.sharding.replicate({"w": np.ones(3), "key": jax.random.key(0)}, mesh)
    assert replicated["w"].sharding.is_fully_replicated


def test_data_parallel_mesh_checks_the_device_count():
    mesh = jelbo.sharding.data_parallel_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        jelbo.sharding.data_parallel_mesh(jax.device_count() + 1)


def test_partitionable_threefry_check():
    assert jelbo.sharding.check_partitionable_threefry(strict=True)
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        with pytest.raises(RuntimeError, match="jax_threefry_partitionable"):
            jelbo.sharding.check_partitionable_threefry(strict=True)
        with pytest.warns(UserWarning, match="jax_threefry_partitionable"):
            assert not jelbo.sharding.check_partitionable_threefry()
        with pytest.warns(UserWarning):
            jelbo.sharding.data_parallel_mesh(1)
    finally:
        jax.config.update("jax_threefry_partitionable", before)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jelbo.sharding.data_parallel_mesh(1)


if __name__ == "__main__":
    print(json.dumps(_worker()))
