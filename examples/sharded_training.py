r"""Data-parallel training of the linear-decoder VAE on several devices.

The model of the main example, ``_linear.py`` (shared with ``fit_linear_decoder.py`` and the
tests), on scikit-learn's digits: prior :math:`\mathcal N(0, I_K)`, decoder
:math:`p(x|z) = \mathcal N(Wz + b, \sigma^2 I)`, amortized encoder
:math:`q(z|x) = \mathcal N(Ax + a, \mathrm{diag}(\mathrm{softplus}(Cx + c)))`, its
parameters in units standardized by the data's mean and scale, trained by maximizing the
ELBO (``jelbo.ELBO``) with ``optax.adam``.

Each minibatch is split over a 1-D device mesh with axis ``"data"``
(:func:`jelbo.sharding.shard_batch`); the parameters, the standardizer, the optimizer state
and the PRNG key are replicated (:func:`jelbo.sharding.replicate`). The train step is the
same ``jax.jit``-compiled function that runs on one device: XLA partitions it from the
shardings of its inputs and inserts the all-reduce of the gradients. The same seed gives the
same parameters for any number of devices (``--compare-single-device`` checks it).

Run::

    python examples/sharded_training.py                        # all visible devices
    python examples/sharded_training.py --simulate-devices 4   # 4 simulated CPU devices
    python examples/sharded_training.py --simulate-devices 8 --devices 2 --compare-single-device

``--simulate-devices N`` sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before
JAX is imported (this only works on the CPU backend; simulated devices share the same cores,
so they show that the program is partitioned correctly, not that it gets faster).

On several hosts, start one process per host with ``--distributed`` (see
``docs/scaling_out.md``): every process loads the same data and draws the same permutation,
takes its own contiguous share of each global batch, and :func:`jelbo.sharding.shard_batch`
assembles the global batch across processes.
"""

from __future__ import annotations

import argparse
import os


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line (before JAX is imported, for ``--simulate-devices``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=None, help="devices to use (all)")
    parser.add_argument(
        "--simulate-devices",
        type=int,
        default=None,
        metavar="N",
        help="simulate N CPU devices (sets XLA_FLAGS before JAX is imported)",
    )
    parser.add_argument("--axis-type", choices=("explicit", "auto"), default="explicit")
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--batch-size", type=int, default=128, help="global batch size, over all devices"
    )
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compare-single-device",
        action="store_true",
        help="also train on one device and print the largest parameter difference",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (one process per host)",
    )
    parser.add_argument("--coordinator-address", default=None, help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument(
        "--save-params",
        default=None,
        metavar="PATH.npz",
        help="W, b, sigma2, A, a, C, c (process 0)",
    )
    args = parser.parse_args(argv)
    if args.distributed and args.compare_single_device:
        parser.error("--compare-single-device needs a single process (no --distributed)")
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.simulate_devices is not None:
        flag = f"--xla_force_host_platform_device_count={ARGS.simulate_devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")

import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import _linear as linear  # noqa: E402  (the model, next to this file)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import AxisType, Mesh  # noqa: E402

import jelbo  # noqa: E402

Array = jax.Array
AXIS_TYPES = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}


def loss_fn(
    params: linear.Params, std: linear.Standardizer, key: Array, x: Array, objective: Any
) -> Array:
    """Negative mean bound per datapoint (the mean runs over the global batch)."""
    return -jnp.mean(linear.bound(objective, params, std, key, x).value)


def make_train_step(optimizer: optax.GradientTransformation, *, num_samples: int = 1) -> Any:
    """The jit-compiled train step, identical for one device and for a sharded batch.

    Returns:
        ``train_step(params, opt_state, std, key, x) -> (params, opt_state, loss)``.
    """
    objective = jelbo.ELBO(num_samples)

    @jax.jit
    def train_step(
        params: linear.Params,
        opt_state: optax.OptState,
        std: linear.Standardizer,
        key: Array,
        x: Array,
    ) -> tuple[linear.Params, optax.OptState, Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, std, key, x, objective)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def batches(key: Array, num_rows: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Shuffled global minibatches of row indices; the last partial batch is dropped."""
    order = np.asarray(jax.random.permutation(key, num_rows))
    for step in range(num_rows // batch_size):
        yield step, order[step * batch_size : (step + 1) * batch_size]


def train(
    x: np.ndarray,
    mesh: Mesh,
    *,
    latent_dim: int = 2,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 3e-2,
    num_samples: int = 1,
    seed: int = 0,
    verbose: bool = True,
) -> tuple[linear.Params, list[float]]:
    """Trains on ``mesh``: batch sharded over ``"data"``, everything else replicated.

    Every process passes the same ``x`` (the full data set); process ``p`` of ``P`` feeds
    rows ``p·B/P … (p+1)·B/P − 1`` of each global batch of size ``B``.

    Returns:
        The final parameters (on the host) and the mean train ELBO per datapoint of each
        epoch.
    """
    if batch_size > x.shape[0]:
        raise ValueError(f"--batch-size {batch_size} exceeds the {x.shape[0]} rows of data.")
    processes, pid = jax.process_count(), jax.process_index()
    if batch_size % processes:
        raise ValueError(f"--batch-size {batch_size} is not divisible by {processes} processes.")
    local = batch_size // processes
    key = jax.random.key(seed)
    init_key, key = jax.random.split(key)
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, epochs * (x.shape[0] // batch_size)))
    train_step = make_train_step(optimizer, num_samples=num_samples)
    history = []
    with jax.set_mesh(mesh):
        std = jelbo.sharding.replicate(linear.standardizer(x), mesh)
        init = linear.init_params(init_key, x.shape[1], latent_dim)
        params = jelbo.sharding.replicate(init, mesh)
        opt_state = jelbo.sharding.replicate(optimizer.init(params), mesh)
        for epoch in range(epochs):
            epoch_key, key = jax.random.split(jax.random.fold_in(key, epoch))
            perm_key, step_keys = jax.random.split(epoch_key)
            total, count, start = 0.0, 0, time.perf_counter()
            for step, rows in batches(perm_key, x.shape[0], batch_size):
                xb = jelbo.sharding.shard_batch(x[rows[pid * local : (pid + 1) * local]], mesh)
                step_key = jelbo.sharding.replicate(jax.random.fold_in(step_keys, step), mesh)
                params, opt_state, loss = train_step(params, opt_state, std, step_key, xb)
                total, count = total - float(loss), count + 1
            history.append(total / count)
            if verbose:
                print(
                    f"epoch {epoch + 1:3d}  train ELBO {history[-1]:10.3f} nats/datapoint  "
                    f"({time.perf_counter() - start:.2f} s)"
                )
    return jax.device_get(params), history


def main(args: argparse.Namespace) -> None:
    """Runs the command line."""
    if args.distributed:
        jax.distributed.initialize(
            coordinator_address=args.coordinator_address,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    mesh = jelbo.sharding.data_parallel_mesh(args.devices, axis_type=AXIS_TYPES[args.axis_type])
    x = linear.load_data().astype(np.float32)  # scikit-learn's digits
    if jax.process_index() == 0:
        print(
            f"{mesh.size} {jax.devices()[0].platform} device(s) on mesh axis 'data' "
            f"({args.axis_type}), {jax.process_count()} process(es); global batch "
            f"{args.batch_size} = {args.batch_size // mesh.size} rows per device; "
            f"{x.shape[0]} digits × {x.shape[1]} pixels"
        )
    options = dict(
        latent_dim=args.latent_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        num_samples=args.num_samples,
        seed=args.seed,
    )
    params, _ = train(x, mesh, verbose=jax.process_index() == 0, **options)
    if args.save_params and jax.process_index() == 0:  # raw units, like fit_linear_decoder.py's
        np.savez(args.save_params, **linear.export(params, linear.standardizer(x)))
    if args.compare_single_device:
        single = jelbo.sharding.data_parallel_mesh(1)
        reference, _ = train(x, single, verbose=False, **options)
        diff = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True)
        )
        print(f"max |params({mesh.size} devices) - params(1 device)| = {diff:.3g}")


if __name__ == "__main__":
    main(ARGS)
