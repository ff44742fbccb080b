"""The plumbing of the training examples, so that a script shows its model, step and loop.

- options declared once: a frozen dataclass whose fields are made by :func:`option`;
  :func:`parse` turns the fields into command-line flags (``batch_size`` -> ``--batch-size``)
  and :func:`check` validates them (also when the dataclass is built in Python);
- :func:`adam` with a warmup + cosine schedule, and :func:`split_rows`, a seeded train/test
  split;
- one atomic writer, :func:`write_atomic` (and :func:`save_npz`, :func:`save_json` on it);
- checkpoints of a :class:`TrainState` (any pytree of arrays, PRNG keys and Python scalars),
  refused when the run's :func:`fingerprint` (options and data) differs
  (:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`resume`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

T = TypeVar("T")
Check = tuple[Callable[[Any], bool], str]

AT_LEAST_1: Check = (lambda v: v >= 1, "must be >= 1")
POSITIVE: Check = (lambda v: v > 0, "must be > 0")
NON_NEGATIVE: Check = (lambda v: v >= 0, "must be >= 0")
FRACTION: Check = (lambda v: 0 <= v < 1, "must be in [0, 1)")


# --- options ---------------------------------------------------------------------------------


def option(
    default: Any,
    help: str,
    check: Check | None = None,
    *,
    choices: Sequence[Any] | None = None,
    trajectory: bool = True,
) -> Any:
    """A field of an options dataclass, which is also a command-line flag.

    Args:
        default: the default value; its type is the flag's type (``None``: a string, a bool:
            a ``store_true`` flag).
        help: the flag's help text.
        check: ``(predicate, message)``: :func:`check` raises unless ``predicate(value)``.
        choices: the allowed values.
        trajectory: whether the option changes the training trajectory, so that
            ``--resume`` refuses a checkpoint written with another value (see
            :func:`trajectory`).
    """
    meta = {"help": help, "check": check, "choices": choices, "trajectory": trajectory}
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    """The command-line flag of the field ``name``."""
    return "--" + name.replace("_", "-")


def check(options: Any) -> None:
    """Raises ``ValueError`` naming the flag of the first field of ``options`` (a dataclass
    whose fields were made by :func:`option`) whose value is not allowed."""
    for field in dataclasses.fields(options):
        value, meta = getattr(options, field.name), field.metadata
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise ValueError(f"{flag(field.name)} must be one of {meta['choices']}; got {value!r}")
        if meta.get("check") is not None and not meta["check"][0](value):
            raise ValueError(f"{flag(field.name)} {meta['check'][1]}; got {value!r}")


def parse(cls: type[T], argv: Sequence[str] | None, description: str) -> T:
    """The options dataclass ``cls`` from the command line ``argv`` (default
    ``sys.argv[1:]``); an invalid value exits with the parser's usage and the reason."""
    parser = argparse.ArgumentParser(description=description)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        meta, default = field.metadata, field.default
        if isinstance(default, bool):
            parser.add_argument(flag(field.name), action="store_true", help=meta["help"])
            continue
        kind = str if default is None else type(default)
        parser.add_argument(
            flag(field.name),
            type=kind,
            default=default,
            choices=meta["choices"],
            help=f"{meta['help']} (default: %(default)s)",
        )
    args = parser.parse_args(argv)
    try:
        return cls(**vars(args))
    except ValueError as error:
        parser.error(str(error))


def trajectory(options: Any) -> dict[str, Any]:
    """The options that determine the training trajectory (those that must match on
    ``--resume``), as a dict."""
    fields = dataclasses.fields(options)
    return {f.name: getattr(options, f.name) for f in fields if f.metadata["trajectory"]}


def fingerprint(options: Any, x_train: np.ndarray) -> dict[str, Any]:
    """What identifies a run for ``--resume``: its :func:`trajectory` options and the shape
    and SHA-256 of its training rows."""
    digest = hashlib.sha256(np.ascontiguousarray(x_train).tobytes()).hexdigest()
    return {**trajectory(options), "train_shape": list(x_train.shape), "train_sha256": digest}


@functools.cache  # one object per schedule: a static jit argument is compiled for it once
def adam(lr: float, warmup: float, final: float, steps: int) -> optax.GradientTransformation:
    """``optax.adam`` with the learning rate warmed up linearly from 0 to ``lr`` over the first
    ``warmup × steps`` steps, then decayed along a cosine to ``final × lr`` at ``steps``."""
    warm = max(1, round(warmup * steps))
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warm, max(steps, warm + 1), lr * final)
    return optax.adam(schedule)


# --- data ------------------------------------------------------------------------------------


def split_rows(
    key: jax.Array, x: np.ndarray, test_fraction: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """A random train/test split of the rows of ``x`` drawn with ``key`` (each part keeps the
    rows' order); ``round(test_fraction * N)`` test rows, ``None`` when that is 0."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in [0, 1); got {test_fraction}.")
    n = x.shape[0]
    n_test = round(test_fraction * n)
    if n_test == 0:
        return x, None
    if n - n_test < 2:
        raise ValueError(f"test_fraction={test_fraction} leaves fewer than 2 training rows.")
    perm = np.asarray(jax.random.permutation(key, n))
    return x[np.sort(perm[n_test:])], x[np.sort(perm[:n_test])]


# --- atomic files and checkpoints ------------------------------------------------------------


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> None:
    """Writes ``path`` with ``write(file)`` atomically: into a temporary file in the same
    directory, flushed to disk, then ``os.replace``'d over ``path``. A crash leaves the old
    or the new file, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """``np.savez`` of ``arrays`` to ``path``, atomically."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON to ``path``, atomically."""
    write_atomic(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


class TrainState(NamedTuple):
    """What a training loop carries from epoch to epoch, and what a checkpoint holds.

    Attributes:
        params: the parameters.
        opt_state: the optax state.
        key: the PRNG key of the remaining epochs.
        epoch: completed epochs.
        history: per-epoch curves, ``{name: (epoch,) array}``.
    """

    params: Any
    opt_state: optax.OptState
    key: jax.Array
    epoch: int
    history: dict[str, np.ndarray]


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save_checkpoint(path: str | os.PathLike, state: Any, fingerprint: dict[str, Any]) -> None:
    """Writes the pytree ``state`` (arrays, PRNG keys, Python scalars) to ``path`` (``.npz``,
    one entry per leaf, named by its path in the tree) atomically, with ``fingerprint``."""
    arrays = {"fingerprint": np.asarray(json.dumps(fingerprint, sort_keys=True))}
    for keys, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = jax.tree_util.keystr(keys, simple=True, separator="/")
        arrays[name] = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
    save_npz(path, arrays)


def load_checkpoint(path: str | os.PathLike, template: T, fingerprint: dict[str, Any]) -> T:
    """Reads a checkpoint of :func:`save_checkpoint` into the structure and leaf types of
    ``template`` (a freshly initialized state).

    Raises:
        ValueError: if the checkpoint was written by a run with another fingerprint (other
            options or data), or does not fit ``template``.
    """
    with np.load(path, allow_pickle=False) as f:
        saved = json.loads(str(f["fingerprint"]))
        if saved != fingerprint:
            diff = {
                k: (saved.get(k), fingerprint.get(k))
                for k in sorted(set(saved) | set(fingerprint))
                if saved.get(k) != fingerprint.get(k)
            }
            raise ValueError(
                f"{path} was written by a run with other options or data (saved, now): {diff}. "
                "Resume with the same options, or start afresh without --resume."
            )
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
        restored = []
        for keys, leaf in leaves:
            name = jax.tree_util.keystr(keys, simple=True, separator="/")
            if name not in f.files:
                raise ValueError(f"{path} has no {name!r}: it holds another model or optimizer.")
            value = f[name]
            if _is_key(leaf):
                restored.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf)))
            elif isinstance(leaf, jax.Array | np.ndarray):
                if value.dtype != leaf.dtype:
                    raise ValueError(f"{path}: {name!r} is {value.dtype}, expected {leaf.dtype}.")
                restored.append(jnp.asarray(value) if isinstance(leaf, jax.Array) else value)
            else:
                restored.append(type(leaf)(value))
    return jax.tree_util.tree_unflatten(treedef, restored)


def resume(path: Path, template: T, fingerprint: dict[str, Any]) -> T:
    """The state of the checkpoint ``path`` if it exists (:func:`load_checkpoint`), else
    ``template``; says which."""
    if not path.exists():
        print(f"no checkpoint at {path}; starting from scratch")
        return template
    state = load_checkpoint(path, template, fingerprint)
    print(f"resuming from {path} after epoch {getattr(state, 'epoch', '?')}")
    return state
