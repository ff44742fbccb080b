"""Steady-state step times of several JAX contenders measured in one process, interleaved.

``python -m bench.interleaved --size 256,64,8,32 --contenders jax-b,jelbo,numpyro-trace``
builds every contender, warms each up, then times a few steps of each in turn, round after
round (in a shuffled order), and prints one JSON line with each contender's median. On a
shared machine the load changes over seconds; taking the steps in turn exposes every
contender to the same load, so the ratios between them are far more stable than those of
separate processes run one after another. (First-call times are not measured here:
compilation caches are shared in one process. :mod:`bench.worker` measures those.)
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import statistics
import time
from typing import Any

from bench.contenders import by_key
from bench.runner import Runner
from bench.worker import allocator_in_use
from bench.workload import Size

__all__ = ["main", "run_interleaved", "time_interleaved"]


def run_interleaved(
    keys: list[str],
    size: Size,
    seconds: float,
    *,
    block: int = 3,
    min_rounds: int = 5,
    max_rounds: int = 100,
) -> dict[str, Any]:
    """Times the contenders in turn, a block of steps each; skips those not installed.

    Each round visits the contenders in a shuffled order; each visit runs one untimed step
    (to bring the contender's buffers back into cache after the others ran) and then times
    ``block`` single steps, so the times are warm-cache steady-state times like those of
    :mod:`bench.worker`, taken under the same load for every contender.
    """
    runners: dict[str, Runner] = {}
    skipped: dict[str, str] = {}
    for key in keys:
        contender = by_key(key)
        missing = contender.missing()
        if missing:
            skipped[key] = "not installed: " + ", ".join(missing)
            continue
        try:
            module = importlib.import_module(contender.module)
        except ImportError as error:
            skipped[key] = f"not installed: {error}"
            continue
        runner = module.make_runner(contender.variant, size)
        for _ in range(3):
            runner.step()
        runners[key] = runner
    return {"size": size.label, "allocator": allocator_in_use(), "skipped": skipped} | (
        time_interleaved(
            runners, seconds, block=block, min_rounds=min_rounds, max_rounds=max_rounds
        )
    )


def time_interleaved(
    runners: dict[str, Runner],
    seconds: float,
    *,
    block: int = 3,
    min_rounds: int = 5,
    max_rounds: int = 100,
) -> dict[str, Any]:
    """Times warmed-up ``runners`` in turn (see :func:`run_interleaved`); median and min s."""
    times: dict[str, list[float]] = {key: [] for key in runners}
    cpu_times: dict[str, list[float]] = {key: [] for key in runners}
    clock, cpu_clock = time.perf_counter, time.process_time
    order, shuffle = list(runners), random.Random(0).shuffle
    start, rounds = clock(), 0
    while runners and rounds < max_rounds and (rounds < min_rounds or clock() - start < seconds):
        shuffle(order)  # no contender always runs right after the same other one
        for key in order:
            runner = runners[key]
            runner.step()
            for _ in range(block):
                t0, c0 = clock(), cpu_clock()
                runner.step()
                times[key].append(clock() - t0)
                cpu_times[key].append(cpu_clock() - c0)
        rounds += 1
    return {
        "rounds": rounds,
        "block": block,
        "median_s": {key: statistics.median(ts) for key, ts in times.items()},
        "min_s": {key: min(ts) for key, ts in times.items()},
        # Process CPU time (all threads) per step: on a loaded machine it tracks the work
        # done far better than wall-clock time does.
        "median_cpu_s": {key: statistics.median(ts) for key, ts in cpu_times.items()},
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contenders", required=True, help="comma-separated keys")
    parser.add_argument("--size", required=True, type=Size.parse)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    result = run_interleaved(args.contenders.split(","), args.size, args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
