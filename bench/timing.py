"""Timing one runner: the first call (trace + compile + run), then the steady state."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bench.runner import Runner

__all__ = ["Budget", "Measurement", "measure"]


@dataclass(frozen=True)
class Budget:
    """How long to time: at least ``warmup`` calls (and ``warmup_seconds``) of warm-up, then
    between ``min_reps`` and ``max_reps`` timed calls, stopping after ``seconds``."""

    warmup: int = 3
    warmup_seconds: float = 0.3
    min_reps: int = 3
    max_reps: int = 300
    seconds: float = 1.5


@dataclass(frozen=True)
class Measurement:
    """Timings in seconds; ``loss`` is the first call's negative ELBO per datapoint.

    ``*_cpu_s`` are the process's CPU time (all threads) over the same spans: on a busy
    machine they stay close to what the work costs, when wall-clock times do not.
    """

    build_s: float
    first_call_s: float
    build_cpu_s: float
    first_call_cpu_s: float
    median_s: float
    median_cpu_s: float
    min_s: float
    q25_s: float
    q75_s: float
    reps: int
    loss: float

    def to_dict(self) -> dict[str, float | int]:
        """As a JSON-ready dict."""
        return asdict(self)


def measure(make: Callable[[], Runner], budget: Budget) -> Measurement:
    """Builds a runner, times its first call, warms it up and times ``reps`` single calls.

    Each call is timed on its own (``Runner.step`` returns only when the work is done, e.g.
    after ``jax.block_until_ready``), and the median is reported.
    """
    clock, cpu = time.perf_counter, time.process_time
    start, start_cpu = clock(), cpu()
    runner = make()
    build_s, build_cpu_s = clock() - start, cpu() - start_cpu

    start, start_cpu = clock(), cpu()
    runner.step()
    first_call_s, first_call_cpu_s = clock() - start, cpu() - start_cpu
    loss = runner.loss()

    start, done = clock(), 0
    while done < budget.warmup or clock() - start < budget.warmup_seconds:
        runner.step()
        done += 1

    times: list[float] = []
    cpu_times: list[float] = []
    start = clock()
    while len(times) < budget.max_reps and (
        len(times) < budget.min_reps or clock() - start < budget.seconds
    ):
        t0, c0 = clock(), cpu()
        runner.step()
        times.append(clock() - t0)
        cpu_times.append(cpu() - c0)
    q25, _, q75 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return Measurement(
        build_s=build_s,
        first_call_s=first_call_s,
        build_cpu_s=build_cpu_s,
        first_call_cpu_s=first_call_cpu_s,
        median_s=statistics.median(times),
        median_cpu_s=statistics.median(cpu_times),
        min_s=min(times),
        q25_s=q25,
        q75_s=q75,
        reps=len(times),
        loss=loss,
    )
