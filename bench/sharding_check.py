"""Correctness record for data-parallel training: do 1, 2, 4 and 8 devices give the same numbers?

Runs (in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``) one
``value_and_grad`` of the negative mean bound of the linear-decoder VAE of the examples
(``examples/_linear.py``) on a global batch of digits, on one device without a mesh
and with the batch sharded over 1, 2, 4 and 8 devices (mesh axis ``"data"``, default
``AxisType.Explicit`` and ``AxisType.Auto``), for three estimators and in float32 and
float64, and records the largest absolute difference of the loss and of the gradients from
the single-device run. From the compiled HLO of the 8-device step it also records whether the
gradients are all-reduced and how many random numbers each device draws (the noise of its own
shard, or of the whole batch).

Simulated CPU devices share the same cores: this is a correctness record only, and nothing
here measures speed.

Run: ``python -m bench.sharding_check`` (a few minutes on 2 cores); writes
``bench/results/sharding_check.json`` and ``bench/results/sharding_check.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.hlo import noise_elements

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "bench" / "results"
DEVICE_COUNTS = (1, 2, 4, 8)
BATCH, LATENT = 256, 2
ESTIMATORS = {  # name: (objective class in jelbo, its options)
    "elbo": ("ELBO", {"num_samples": 2, "kl": "analytic"}),
    "elbo-mc-stl": ("ELBO", {"num_samples": 2, "kl": "mc", "grad_estimator": "stl"}),
    "iwae-dreg": ("IWAE", {"num_samples": 4, "grad_estimator": "dreg", "sample_chunk_size": 3}),
}


def _describe(cls: str, options: dict) -> str:
    return f"{cls}(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"


def worker() -> dict:
    """Measures everything; runs with 8 simulated devices."""
    import _linear as linear  # examples/ is on the worker's PYTHONPATH (main)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import AxisType

    import jelbo

    jax.config.update("jax_enable_x64", True)
    data = linear.load_data().astype(np.float32)  # sklearn's digits
    rows = np.random.default_rng(0).permutation(data.shape[0])[:BATCH]

    objectives = {
        name: getattr(jelbo, cls)(**options) for name, (cls, options) in ESTIMATORS.items()
    }

    def loss(params, std, key, x, estimator):
        return -jnp.mean(linear.bound(objectives[estimator], params, std, key, x).value)

    def max_abs_diff(a, b):
        return max(
            float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    rows_out = []
    hlo_out = []
    for dtype in ("float32", "float64"):
        x = data[rows].astype(dtype)
        params = linear.init_params(jax.random.key(1), x.shape[1], LATENT, dtype)
        std = linear.standardizer(x)
        # Move away from the initialization so that every gradient is non-trivial.
        params["A"] = params["A"] + 0.01
        key = jax.random.key(2)
        for estimator in ESTIMATORS:
            fn = jax.jit(jax.value_and_grad(loss), static_argnums=4)
            ref_loss, ref_grads = fn(params, std, key, x, estimator)
            grad_scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ref_grads))
            for axis_type in ("explicit", "auto"):
                kind = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}[axis_type]
                for n in DEVICE_COUNTS:
                    mesh = jelbo.sharding.data_parallel_mesh(n, axis_type=kind)
                    with jax.set_mesh(mesh):
                        ps, ss = jelbo.sharding.replicate((params, std), mesh)
                        xs = jelbo.sharding.shard_batch(x, mesh)
                        value, grads = fn(ps, ss, key, xs, estimator)
                        if n == DEVICE_COUNTS[-1] and dtype == "float32":
                            hlo = fn.lower(ps, ss, key, xs, estimator).compile().as_text()
                            hlo_out.append(
                                {
                                    "estimator": estimator,
                                    "axis_type": axis_type,
                                    "devices": n,
                                    "all_reduce": "all-reduce" in hlo,
                                    "noise_per_device": noise_elements(hlo),
                                }
                            )
                    rows_out.append(
                        {
                            "dtype": dtype,
                            "estimator": estimator,
                            "axis_type": axis_type,
                            "devices": n,
                            "loss": float(ref_loss),
                            "loss_abs_diff": abs(float(value) - float(ref_loss)),
                            "grad_max_abs": grad_scale,
                            "grad_max_abs_diff": max_abs_diff(grads, ref_grads),
                        }
                    )
    for entry in hlo_out:
        objective = objectives[entry["estimator"]]
        at_once = objective.sample_chunk_size or objective.num_samples  # iwae: chunks of 3
        entry["noise_whole_batch"] = at_once * BATCH * LATENT
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "simulated_devices": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "batch": BATCH,
        "latent_dim": LATENT,
        "model": "linear-decoder VAE of examples/_linear.py on sklearn digits",
        "estimators": {name: _describe(*spec) for name, spec in ESTIMATORS.items()},
        "comparisons": rows_out,
        "hlo": hlo_out,
    }


def markdown(report: dict) -> str:
    """The Markdown table of a report."""
    lines = [
        "# Data-parallel correctness: 1 / 2 / 4 / 8 simulated devices vs. one device",
        "",
        f"JAX {report['jax']} on {report['backend']} with "
        f"{report['simulated_devices']} simulated devices "
        f"(`XLA_FLAGS={report['xla_flags']}`), partitionable threefry "
        f"{'on' if report['threefry_partitionable'] else 'OFF'}; machine: {report['machine']}; "
        f"jelbo at commit {report['commit']}. "
        f"{report['model']}, global batch {report['batch']}, K = {report['latent_dim']}. "
        "Same key, data and parameters; batch sharded over mesh axis `data`, parameters "
        "replicated. Largest absolute difference from the run on one device without a mesh. "
        "**Correctness only: simulated devices share the CPU cores, no timings are recorded.**",
        "",
        "| dtype | estimator | axis type | devices | loss | abs. diff. of loss | largest grad | "
        "largest abs. diff. of grads |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["comparisons"]:
        lines.append(
            f"| {row['dtype']} | {row['estimator']} | {row['axis_type']} | {row['devices']} | "
            f"{row['loss']:.4f} | {row['loss_abs_diff']:.2e} | {row['grad_max_abs']:.3g} | "
            f"{row['grad_max_abs_diff']:.2e} |"
        )
    lines += [
        "",
        "Estimators: "
        + "; ".join(f"`{name}` = `{call}`" for name, call in report["estimators"].items())
        + ".",
        "",
        "## Compiled 8-device step (float32)",
        "",
        "`noise per device`: the largest array of random bits one device generates at once; "
        "the whole batch's noise is `samples × batch × K` (samples per chunk for "
        "`sample_chunk_size`), one shard's is that divided by 8.",
        "",
        "| estimator | axis type | all-reduce of the gradients | noise per device | whole batch |",
        "|---|---|---|---:|---:|",
    ]
    for entry in report["hlo"]:
        lines.append(
            f"| {entry['estimator']} | {entry['axis_type']} | "
            f"{'yes' if entry['all_reduce'] else 'NO'} | {entry['noise_per_device']} | "
            f"{entry['noise_whole_batch']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Runs the worker in a subprocess with 8 simulated devices and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker()))
        return
    env = dict(os.environ)
    flag = f"--xla_force_host_platform_device_count={DEVICE_COUNTS[-1]}"
    # Cheap CPU code generation (compiling dominates); the SPMD partitioning is unaffected.
    flag += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    # The worker imports bench (the repository root) and the examples' model (examples/).
    paths = [str(ROOT), str(ROOT / "examples"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    result = subprocess.run(
        [sys.executable, "-m", "bench.sharding_check", "--worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        sys.exit(result.stderr)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    report["commit"] = commit.stdout.strip() or None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sharding_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "sharding_check.md").write_text(markdown(report))
    worst = {}
    for row in report["comparisons"]:
        worst[row["dtype"]] = max(
            worst.get(row["dtype"], 0.0), row["loss_abs_diff"], row["grad_max_abs_diff"]
        )
    print(markdown(report))
    print(f"wrote {args.out / 'sharding_check.json'} and sharding_check.md; worst |Δ|: {worst}")


if __name__ == "__main__":
    main()
