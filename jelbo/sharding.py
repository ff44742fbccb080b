r"""Data-parallel training on many devices with JAX's own SPMD partitioning.

jelbo needs no special code to run on several devices: its estimators are pure ``jax.numpy``
functions, so ``jax.jit`` partitions them like any other program once the inputs carry a
:class:`jax.sharding.NamedSharding`. This module holds the few helpers that make the usual
data-parallel setup short and hard to get wrong:

- :func:`data_parallel_mesh` builds a 1-D mesh whose only axis (``"data"``) spans the devices;
- :func:`shard_batch` splits the leading (batch) axis of every leaf over that axis, and
  refuses a batch whose size is not a multiple of the device count (instead of silently
  averaging over a different set of datapoints);
- :func:`replicate` puts parameters, optimizer state and keys on every device;
- :func:`check_partitionable_threefry` checks that JAX's partitionable threefry PRNG is on.

The train step is then the **same** ``jax.jit``-compiled function as on one device::

    mesh = jelbo.data_parallel_mesh()                 # all devices on the axis "data"
    with jax.set_mesh(mesh):
        params, opt_state = jelbo.replicate((params, opt_state), mesh)
        for x in batches:
            key, step_key = jax.random.split(key)
            params, opt_state, loss = train_step(params, opt_state, step_key,
                                                 jelbo.shard_batch(x, mesh))

XLA computes each device's share of the per-datapoint ELBOs and inserts the all-reduce that
sums the gradients over the ``"data"`` axis.

**Keys.** Pass the same key to the train step on every device (it is replicated, like the
parameters) and let jelbo split it exactly as on one device. With JAX's partitionable
threefry (the default since JAX 0.5) the random numbers drawn for datapoint ``i`` depend
only on the key and on ``i``'s position in the *global* batch, never on the device that
holds it, so the same key, data and parameters give the same ELBO and gradients on 1, 2, 4
or 8 devices (up to the order of floating-point reductions). Do **not**:

- split the key per device (``jax.random.split(key, num_devices)``) and hand each device
  its own key, e.g. with ``jax.shard_map`` or ``pmap``: the noise of a datapoint then depends
  on the device count and on which device holds it;
- call jelbo inside ``jax.shard_map`` with the replicated key: every device then draws the
  *same* noise for its own slice of the batch, so datapoints on different devices share
  their noise;
- ``jax.random.fold_in(key, jax.lax.axis_index("data"))`` inside ``shard_map`` for the
  same reason;
- turn ``jax_threefry_partitionable`` off: the numbers change, and every device has to
  generate the noise of the whole batch.

**Several hosts.** Call ``jax.distributed.initialize()`` first, on every host (one process
per host). :func:`data_parallel_mesh` then spans the devices of all hosts, and
:func:`shard_batch` treats its argument as *this process's* share of the global batch and
assembles the global array with :func:`jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

# jax.config's flags are attributes that its type stubs do not declare.
_CONFIG: Any = jax.config

PyTree = Any

__all__ = [
    "DATA_AXIS",
    "check_partitionable_threefry",
    "data_parallel_mesh",
    "replicate",
    "shard_batch",
]

DATA_AXIS = "data"
"""Default name of the mesh axis the batch is split over."""

_THREEFRY_HELP = (
    "jelbo's results are independent of the number of devices only with JAX's partitionable "
    "threefry PRNG, and without it every device generates the noise of the whole batch. "
    "It is on by default (JAX >= 0.5) but was turned off here: remove "
    "jax.config.update('jax_threefry_partitionable', False) / the environment variable "
    "JAX_THREEFRY_PARTITIONABLE=0, or call jax.config.update('jax_threefry_partitionable', "
    "True) before creating any keys."
)


def check_partitionable_threefry(*, strict: bool = False) -> bool:
    """Checks that ``jax_threefry_partitionable`` is on.

    With it, a random array drawn under ``jax.jit`` has the same values however it is
    sharded, and each device can generate only its own shard. It is JAX's default; turning
    it off changes every random number jelbo draws.

    Args:
        strict: raise instead of warning when the flag is off.

    Returns:
        ``True`` if partitionable threefry is on, ``False`` (after a ``UserWarning``) if not.

    Raises:
        RuntimeError: if the flag is off and ``strict`` is true; the message says how to turn
            it back on.
    """
    if _CONFIG.jax_threefry_partitionable:
        return True
    if strict:
        raise RuntimeError(_THREEFRY_HELP)
    warnings.warn(_THREEFRY_HELP, UserWarning, stacklevel=2)
    return False


def data_parallel_mesh(
    num_devices: int | None = None,
    axis_name: str = DATA_AXIS,
    *,
    axis_type: AxisType = AxisType.Explicit,
) -> Mesh:
    """A 1-D device mesh for data parallelism: one axis, ``axis_name``, over the devices.

    Use it with ``with jax.set_mesh(mesh):`` around the training loop, put the batch on it
    with :func:`shard_batch` and the parameters with :func:`replicate`. Warns if JAX's
    partitionable threefry is off (see :func:`check_partitionable_threefry`).

    Args:
        num_devices: how many devices to use, the first ``num_devices`` of ``jax.devices()``;
            ``None`` for all of them (across all hosts after ``jax.distributed.initialize``).
            On a CPU, more devices can be simulated by setting
            ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before JAX is imported.
        axis_name: name of the mesh axis the batch is split over.
        axis_type: ``AxisType.Explicit`` (JAX's default: shardings are part of the array
            types, ``jax.typeof(x).sharding``) or ``AxisType.Auto`` (the compiler propagates
            them). Results are the same.

    Returns:
        A :class:`jax.sharding.Mesh` of shape ``(num_devices,)``.

    Raises:
        ValueError: if ``num_devices`` is not between 1 and the number of devices.
    """
    check_partitionable_threefry()
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)):
        raise TypeError(f"`num_devices` must be an int or None; got {num_devices!r}.")
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"`num_devices` must be between 1 and the {len(devices)} visible "
            f"{devices[0].platform} device(s); got {num_devices}. On a CPU, simulate more "
            "devices with XLA_FLAGS=--xla_force_host_platform_device_count=N, set before "
            "JAX is imported."
        )
    return jax.make_mesh(
        (int(num_devices),),
        (axis_name,),
        axis_types=(axis_type,),
        devices=devices[: int(num_devices)],
    )


def _axis_size(mesh: Mesh, axis_name: str) -> int:
    if axis_name not in mesh.axis_names:
        raise ValueError(
            f"The mesh has no axis {axis_name!r}; its axes are {tuple(mesh.axis_names)}."
        )
    return int(mesh.shape[axis_name])


def shard_batch(batch: PyTree, mesh: Mesh, axis_name: str = DATA_AXIS) -> PyTree:
    """Places every leaf of ``batch`` on ``mesh`` with its leading axis split over ``axis_name``.

    All other axes (and all other mesh axes) are replicated: with a 1-D mesh of ``n``
    devices, device ``d`` holds rows ``d·B/n … (d+1)·B/n − 1`` of each leaf. The values are
    unchanged; only where they live changes, so a jitted loss computed on the result equals
    the single-device loss.

    The batch size must be a multiple of the device count. A batch that is not is refused
    rather than padded, because padding rows would silently enter the mean ELBO; drop the
    last partial batch (or pad *and* mask the padded rows out of the loss yourself).

    On several processes (after ``jax.distributed.initialize()``) ``batch`` is this
    process's share of the global batch; the global array, of leading size
    ``process_count × local size``, is assembled with
    :func:`jax.make_array_from_process_local_data`. Every process must call this with
    equally sized shares.

    Args:
        batch: pytree of arrays (NumPy or JAX) that share the leading batch size ``B``.
        mesh: the device mesh, e.g. from :func:`data_parallel_mesh`.
        axis_name: the mesh axis to split the batch over.

    Returns:
        The same pytree of :class:`jax.Array` s, sharded as ``PartitionSpec(axis_name)``.

    Raises:
        ValueError: if a leaf is a scalar, the leaves disagree on the batch size, or the batch
            size is not divisible by the number of devices on ``axis_name`` (the message
            names both sizes).
    """
    num_shards = _axis_size(mesh, axis_name)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(batch)
    if not leaves:
        raise ValueError("`batch` has no array leaves to shard.")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"`batch`{jax.tree_util.keystr(path)} is a scalar; every leaf needs a leading "
                "batch axis to split over the devices (replicate scalars with `replicate`)."
            )
        sizes[jax.tree_util.keystr(path)] = shape[0]
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"`batch`{path}: {size}" for path, size in sizes.items())
        raise ValueError(f"The leaves of `batch` disagree on the batch size: {listed}.")
    local_size = next(iter(sizes.values()))
    processes = jax.process_count()
    global_size = local_size * processes
    if global_size % num_shards:
        how = f" ({processes} processes × {local_size} rows)" if processes > 1 else ""
        raise ValueError(
            f"The batch size {global_size}{how} is not divisible by the {num_shards} devices "
            f"on mesh axis {axis_name!r}. Use a batch size that is a multiple of {num_shards} "
            "or drop the last partial batch; jelbo does not pad, because padded rows would "
            "silently change the mean ELBO."
        )
    sharding = NamedSharding(mesh, P(axis_name))
    if processes == 1:
        out = [jax.device_put(leaf, sharding) for _, leaf in leaves]
    else:
        out = [jax.make_array_from_process_local_data(sharding, leaf) for _, leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, out)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places a full copy of every leaf of ``tree`` on every device of ``mesh``.

    For parameters, optimizer state and PRNG keys. On several processes every process must
    pass the same values (e.g. initialized from the same seed).

    Args:
        tree: pytree of arrays (scalars included).
        mesh: the device mesh.

    Returns:
        The same pytree of :class:`jax.Array` s, sharded as ``PartitionSpec()``.
    """
    return jax.device_put(tree, NamedSharding(mesh, P()))
