"""Runs the benchmark: every contender at every size, in subprocesses; writes Markdown + JSON.

``python -m bench.run`` (a few minutes on a 2-core CPU) or ``python -m bench.run --quick``
(the smallest size only, and only 3(b) and jelbo under tcmalloc: a smoke test, under a
minute on a quiet machine). Results go to
``bench/results/<host>-<date>.{json,md}`` unless ``--out-dir`` says otherwise; the table is
also printed. Each JAX contender runs twice: with the default allocator and, where
``libtcmalloc_minimal.so.4`` is found, with it in ``LD_PRELOAD``.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a file: bench's modules import each other as bench.*
    sys.exit("Run it from the repository root as a module: python -m bench.run")

from bench.contenders import BASELINE, CONTENDERS, Contender  # noqa: E402
from bench.report import check_targets, markdown  # noqa: E402
from bench.workload import SIZES, Size  # noqa: E402

__all__ = ["find_tcmalloc", "main"]

TCMALLOC_GLOBS = (
    "/usr/lib/*/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
    "/usr/local/lib/libtcmalloc_minimal.so.4",
)
MEMORY_SAMPLES = 1_000_000
MEMORY_CHUNK = 10_000
# JAX step contenders that are also timed together in one process, steps interleaved
INTERLEAVED = ("jax-b", "jelbo", "jax-a", "numpyro-trace", "numpyro-meanfield", "tfp-jax")
VERSIONED = ("jax", "jaxlib", "numpy", "optax", "numpyro", "torch", "tfp-nightly")


def find_tcmalloc() -> str | None:
    """Path of ``libtcmalloc_minimal.so.4`` (``$BENCH_TCMALLOC`` overrides), or ``None``."""
    override = os.environ.get("BENCH_TCMALLOC")
    if override:
        return override if Path(override).exists() else None
    for pattern in TCMALLOC_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def _env(preload: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    return env


def _run_json(args: list[str], preload: str | None, timeout: float) -> dict[str, Any]:
    """Runs ``python -m <args>`` and parses the JSON on its last line of output."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=_env(preload),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "detail": f"timed out after {timeout:.0f} s"}
    wall = {"process_wall_s": time.perf_counter() - start}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            return json.loads(lines[-1]) | wall
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "error", "detail": f"exit {proc.returncode}: {tail}"} | wall


def _measure(
    contender: Contender, size: Size, allocator: str, preload: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    missing = contender.missing()
    if missing:
        result = {"status": "not installed", "detail": ", ".join(missing)}
    else:
        worker = ["bench.worker", "--contender", contender.key, "--size", size.label]
        worker += ["--seconds", str(args.seconds), "--min-reps", str(3 if args.quick else 10)]
        result = _run_json(worker, preload, timeout=600)
    return (
        {"contender": contender.key, "size": size.label}
        | result
        | {"requested_allocator": allocator}
    )


def _allocators_for(contender: Contender, allocators: list[str], quick: bool) -> list[str]:
    """JAX contenders run under every allocator; with ``--quick`` only 3(b) and jelbo do."""
    if not contender.uses_jax:
        return ["default"]
    if quick and contender.key not in (BASELINE, "jelbo"):
        return allocators[:1]
    return allocators


def _best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Combines repeated runs: the lowest median and the lowest first call, all kept too."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[-1]
    best = dict(min(ok, key=lambda r: r["median_s"]))
    first = min(ok, key=lambda r: r["build_s"] + r["first_call_s"])
    for key in ("build_s", "first_call_s", "build_cpu_s", "first_call_cpu_s"):
        best[key] = first[key]
    if len(runs) > 1:
        keys = ("median_s", "build_s", "first_call_s", "first_call_cpu_s", "reps")
        best["rounds"] = [{k: r[k] for k in keys} for r in ok]
    return best


def _machine(load_start: tuple[float, ...]) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    memory_gib = 0.0
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("model name")
        )
        meminfo = Path("/proc/meminfo").read_text().split()
        memory_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_start": " ".join(f"{x:.2f}" for x in load_start),
        "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return f"{result['status']} ({result.get('detail', '')})"
    return (
        f"first call {result['build_s'] + result['first_call_s']:.2f} s, "
        f"median {1e3 * result['median_s']:.3f} ms ({result['reps']} reps; "
        f"process {result['process_wall_s']:.1f} s)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smallest size only, short timing")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--contenders", help="comma-separated keys (default: all)")
    parser.add_argument("--sizes", help="e.g. '256,64,8,1;1024,784,32,8' (default: the three)")
    parser.add_argument("--seconds", type=float, help="timed seconds per contender and size")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat each measurement; keep the best (noisy hosts)"
    )
    parser.add_argument("--no-tcmalloc", action="store_true", help="default allocator only")
    parser.add_argument(
        "--no-interleaved", action="store_true", help="skip the interleaved one-process timing"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 1.0
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the sweep and writes ``<out-dir>/<host>-<date>.{json,md}``; returns the report."""
    args = parse_args(argv)
    load_start = os.getloadavg()
    if args.sizes:
        sizes = [Size.parse(s) for s in args.sizes.split(";")]
    else:
        sizes = list(SIZES[:1] if args.quick else SIZES)
    contenders = list(CONTENDERS)
    if args.contenders:
        keys = args.contenders.split(",")
        contenders = [c for c in CONTENDERS if c.key in keys]
    tcmalloc = None if args.no_tcmalloc else find_tcmalloc()
    allocators = ["default"] + (["tcmalloc"] if tcmalloc else [])
    _log(f"tcmalloc: {tcmalloc or 'not found (install libtcmalloc-minimal4)'}")

    results = []
    for size in sizes:
        rounds: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for index in range(args.rounds):
            for contender in contenders:
                for allocator in _allocators_for(contender, allocators, args.quick):
                    preload = tcmalloc if allocator == "tcmalloc" else None
                    result = _measure(contender, size, allocator, preload, args)
                    rounds.setdefault((contender.key, allocator), []).append(result)
                    tag = f"round {index + 1}/{args.rounds} " if args.rounds > 1 else ""
                    _log(
                        f"{size.label}  {tag}{contender.key:18s} {allocator:8s} {_summary(result)}"
                    )
        results += [_best_of(runs) for runs in rounds.values()]

    interleaved = []
    # --quick (a smoke test) interleaves only the hand-written forms and jelbo
    chosen = INTERLEAVED[:3] if args.quick else INTERLEAVED
    keys = [c.key for c in contenders if c.key in chosen]
    if BASELINE in keys and len(keys) > 1 and not args.no_interleaved:
        for size in sizes:
            for allocator in allocators[:1] if args.quick else allocators:
                preload = tcmalloc if allocator == "tcmalloc" else None
                command = ["bench.interleaved", "--contenders", ",".join(keys)]
                command += ["--size", size.label, "--seconds", str(2 * args.seconds)]
                entry = _run_json(command, preload, timeout=900)
                entry |= {"size": size.label, "requested_allocator": allocator}
                interleaved.append(entry)
                shown = entry.get("detail") or ", ".join(
                    f"{k} {1e3 * v:.3f}" for k, v in entry["median_s"].items()
                )
                _log(f"{size.label}  interleaved {allocator:8s} median ms: {shown}")

    memory = []
    if not args.no_memory:
        for chunk in (None, MEMORY_CHUNK):
            command = ["bench.memory", "--num-samples", str(MEMORY_SAMPLES)]
            if chunk is not None:
                command += ["--chunk", str(chunk)]
            entry = _run_json(command, None, timeout=600)
            entry.setdefault("num_samples", MEMORY_SAMPLES)
            entry.setdefault("sample_chunk_size", chunk)
            memory.append(entry)
            peak = entry.get("peak_rss_bytes")
            shown = f"{peak / 2**20:.0f} MiB" if peak else entry.get("detail")
            _log(f"memory: num_samples={MEMORY_SAMPLES:,} chunk={chunk}: peak RSS {shown}")

    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    report: dict[str, Any] = {
        "host": host,
        "date": date,
        "quick": args.quick,
        "machine": _machine(load_start),
        "versions": _versions(),
        "tcmalloc": tcmalloc,
        "allocators": allocators,
        "seconds_per_measurement": args.seconds,
        "rounds": args.rounds,
        "results": results,
        "interleaved": interleaved,
        "memory": memory,
    }
    report["targets"] = check_targets(results, interleaved, memory, allocators)
    table = markdown(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"{host}-{date}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(table + "\n")
    print(table)
    _log(f"wrote {stem}.json and {stem}.md")
    return report


if __name__ == "__main__":
    main()
