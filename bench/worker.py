"""Runs one contender at one size in this process and prints one JSON line.

``python -m bench.worker --contender jax-b --size 256,64,8,32`` — :mod:`bench.run` starts one
such process per contender, size and allocator, so that allocators (``LD_PRELOAD``), thread
pools and compilation caches do not leak from one contender into another.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from bench.contenders import by_key
from bench.timing import Budget, measure
from bench.workload import Size

__all__ = ["allocator_in_use", "main", "run_one"]


def allocator_in_use() -> str:
    """``"tcmalloc"`` if a tcmalloc library is mapped into this process, else ``"default"``."""
    try:
        with open("/proc/self/maps") as maps:
            return "tcmalloc" if "tcmalloc" in maps.read() else "default"
    except OSError:
        return "unknown"


def run_one(key: str, size: Size, budget: Budget) -> dict[str, Any]:
    """Measures contender ``key`` at ``size``; never raises (errors go into ``status``)."""
    contender = by_key(key)
    result: dict[str, Any] = {"contender": key, "size": size.label}
    missing = contender.missing()
    if missing:
        return result | {"status": "not installed", "detail": ", ".join(missing)}
    try:
        module = importlib.import_module(contender.module)
    except ImportError as error:
        return result | {"status": "not installed", "detail": f"{type(error).__name__}: {error}"}
    try:
        measurement = measure(lambda: module.make_runner(contender.variant, size), budget)
    except Exception as error:  # report, do not crash the sweep
        return result | {"status": "error", "detail": f"{type(error).__name__}: {error}"}
    return result | {"status": "ok", "allocator": allocator_in_use(), **measurement.to_dict()}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", required=True)
    parser.add_argument("--size", required=True, type=Size.parse)
    parser.add_argument("--seconds", type=float, default=Budget.seconds)
    parser.add_argument("--min-reps", type=int, default=Budget.min_reps)
    parser.add_argument("--max-reps", type=int, default=Budget.max_reps)
    args = parser.parse_args(argv)
    budget = Budget(
        seconds=args.seconds,
        warmup_seconds=0.25 * args.seconds,
        min_reps=args.min_reps,
        max_reps=args.max_reps,
    )
    print(json.dumps(run_one(args.contender, args.size, budget)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
