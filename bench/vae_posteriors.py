r"""IAF against Gaussian posterior in the digits VAE: test IWAE-1000, same decoder and training.

``python -m bench.vae_posteriors`` (from the repository root) runs ``examples/vae.py`` once per
posterior (``--posteriors``, default ``gaussian,iaf``) and seed (``--seeds``, default ``0,1``),
each in its own process with the example's defaults unless ``--extra`` adds options (e.g.
``--extra=--objective=iwae``): the same encoder and decoder MLPs, data split, optimizer,
schedule, epochs and training objective; ``--posterior iaf`` only adds the encoder's context
output and the conditional IAF. The Gaussian's ELBO uses the closed-form KL, the IAF's the
Monte Carlo KL on its own sample (none exists in closed form); with ``--objective=iwae`` both
train on the same estimator.

It reports each run's test-set IWAE bound with 1000 samples (nats per digit, the example's
standard error over the test set's Monte Carlo estimates), the test ELBO with 100 draws, their
difference (an estimate of :math:`\mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))` under the trained
decoder: the posterior family's gap), the IWAE's effective sample size, the mean over seeds,
and the paired difference per seed (IAF minus Gaussian; positive: the IAF is better). Results go to
``bench/results/vae-posteriors-<date>[-<tag>]`` (``.json`` and ``.md``) with the command line
and the load average (the training times are only indicative on a busy machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _run(posterior: str, seed: int, extra: list[str], out: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        str(ROOT / "examples" / "vae.py"),
        f"--posterior={posterior}",
        f"--seed={seed}",
        f"--out={out}",
        "--quiet",
        "--no-figure",
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    summary = json.loads((out / "summary.json").read_text())
    summary["command"] = " ".join(command[1:])
    return summary


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# VAE on digits: IAF against Gaussian posterior ({result['date']})",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Host {result['host']}; load average {result['load_start']} at the start, "
        f"{result['load_end']} at the end (2 cores, shared).",
        "",
        "| posterior | seed | test IWAE-1000 (nats/digit) | ± se | test ELBO-100 | ± se | "
        "IWAE − ELBO | IWAE ESS / 1000 | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['posterior']} | {run['seed']} | {run['test_iwae_bound']:.3f} | "
            f"{run['test_iwae_bound_stderr']:.3f} | {run['test_elbo']:.3f} | "
            f"{run['test_elbo_stderr']:.3f} | {run['test_iwae_bound'] - run['test_elbo']:.3f} | "
            f"{run['test_iwae_ess_fraction']:.3f} | {run['train_seconds']:.0f} |"
        )
    lines += ["", "| posterior | mean over seeds | seed spread (max − min) |", "|---|---|---|"]
    for name, stats in result["by_posterior"].items():
        lines.append(f"| {name} | {stats['mean']:.3f} | {stats['spread']:.3f} |")
    if result["paired"]:
        lines += ["", "Paired difference per seed (IAF − Gaussian, ± combined se):", ""]
        for seed, (diff, se) in result["paired"].items():
            lines.append(f"- seed {seed}: {diff:+.3f} ± {se:.3f} nats per digit")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--posteriors", default="gaussian,iaf")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--extra", default="", help="options passed on to examples/vae.py")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    posteriors = [p for p in args.posteriors.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    extra = args.extra.split()
    load_start = _load()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for posterior in posteriors:
                run = _run(posterior, seed, extra, Path(tmp) / f"{posterior}-{seed}")
                print(
                    f"{posterior} seed {seed}: {run['test_iwae_bound']:.3f} ± "
                    f"{run['test_iwae_bound_stderr']:.3f}",
                    flush=True,
                )
                runs.append(run)
    by_posterior = {}
    for name in posteriors:
        values = [r["test_iwae_bound"] for r in runs if r["posterior"] == name]
        by_posterior[name] = {
            "mean": sum(values) / len(values),
            "spread": max(values) - min(values),
        }
    paired = {}
    if {"gaussian", "iaf"} <= set(posteriors):
        for seed in seeds:
            g, f = (
                next(r for r in runs if r["posterior"] == p and r["seed"] == seed)
                for p in ("gaussian", "iaf")
            )
            se = math.hypot(g["test_iwae_bound_stderr"], f["test_iwae_bound_stderr"])
            paired[str(seed)] = (f["test_iwae_bound"] - g["test_iwae_bound"], se)
    date = datetime.date.today().isoformat()
    result = {
        "date": date,
        "host": platform.node(),
        "command": "python -m bench.vae_posteriors " + " ".join(argv or sys.argv[1:]),
        "load_start": load_start,
        "load_end": _load(),
        "runs": runs,
        "by_posterior": by_posterior,
        "paired": paired,
    }
    stem = f"vae-posteriors-{date}" + (f"-{args.tag}" if args.tag else "")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(_markdown(result))
    print(_markdown(result))
    return result


if __name__ == "__main__":
    main()
