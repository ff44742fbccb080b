"""``jelbo.fit`` on the eleven posteriordb posteriors: evaluations and time to a fit, accuracy.

    python -m bench.fit_posteriordb                     # every model and method, 3 seeds
    python -m bench.fit_posteriordb --models gp_pois_regr-gp_regr --methods jelbo-pathfinder \\
        --seeds 1 --repeats 1                           # a quick look
    python -m bench.fit_posteriordb --report bench/results/fit-posteriordb-<date>.json

Every contender fits the SAME log joint of one unconstrained vector
(``bench/posteriordb_models.py``) from ``init = 0`` at its defaults (the contender's own, or
the recipe named in ``METHODS``), once per seed. For each (model, method, seed):

- ``evals``: evaluations of the log density counted by a counter INSIDE it (an
  ``io_callback`` in the log joint, ``Counter``: one call per point, vmapped or not; a
  value and a gradient at one point count once, because the callback runs in the forward
  pass only; a dense Hessian counts once too, so a method that uses Hessians reports more
  in ``reported_evals`` than it shows here). The same
  counter for every contender, in a separately compiled copy of the fit, so that the
  callbacks do not slow the timed run;
- ``reported_evals``, ``converged``: what the method itself says (``Fit.num_evals``,
  ``Fit.converged``; ``None`` for contenders without such a report);
- ``compile_s`` (lower + compile of the whole fit, once per model and method), ``run_s``
  (the compiled fit, waited for; the fastest of ``--repeats`` runs with the same key);
- the accuracy of the fitted ``q`` against the reference draws, exactly as
  ``bench/posteriordb.py`` measures it (``evaluate``: 4,000 draws from ``q``; ``mean_err``
  the largest |mean − ref mean| / ref sd, ``sd_ratio_min``/``max`` the range of sd / ref
  sd, ``sd_err`` the largest |log sd ratio|, the same after PSIS reweighting, and k̂).

Methods (``METHODS``; a registry that other algorithms of ``jelbo.fit`` extend):

- ``jelbo-pathfinder``: ``jelbo.fit.pathfinder`` at its defaults (4 paths);
- ``jelbo-pathfinder-1``: the same with ``num_paths=1``;
- ``jelbo-dadvi``, ``jelbo-batch-and-match``, ``jelbo-advi``: ``jelbo.fit.dadvi``,
  ``batch_and_match`` and ``advi`` at their defaults (``bench/fit_tune.py`` has their tuning
  runs);
- ``numpyro-mvn``: NumPyro ``AutoMultivariateNormal``, ``Trace_ELBO(8)``, 5,000 Adam steps with
  the cosine-decayed learning rate 0.02 → 0.001, ``init_scale=0.1``: ``bench/posteriordb.py``'s
  recipe, the same code (``numpyro_method``);
- ``blackjax-pathfinder``: ``blackjax.vi.pathfinder.approximate`` at its defaults
  (``maxiter=30``, 200 ELBO draws per iterate), draws by ``pathfinder.sample``;
- ``blackjax-pathfinder-100``: the same with ``maxiter=100``. (blackjax evaluates the ELBO at
  every one of the ``maxiter + 1`` iterates it allocates, 200 draws each, in one vmapped
  call, whether the optimizer used them or not: ``maxiter=1000``, Stan's default, would
  evaluate the log density at 200,200 points at once, about 8 GB of intermediates on
  ``diamonds``.)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

if __package__ in (None, ""):  # run as a file: bench's modules import each other as bench.*
    sys.exit("Run it from the repository root as a module: python -m bench.fit_posteriordb")

import jelbo
from bench import posteriordb as PDB
from bench import posteriordb_models as M

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
EVAL_DRAWS = 4000


class Built(NamedTuple):
    """A contender on one log joint.

    Attributes:
        fit: ``key -> state``, traceable (the harness jits it).
        draw: ``(key, state, n) -> (u (n, dim), log q(u) (n,))``.
        report: ``state -> {"reported_evals": int | None, "converged": bool | None, ...}``.
    """

    fit: Callable[[jax.Array], Any]
    draw: Callable[[jax.Array, Any, int], tuple[jax.Array, jax.Array]]
    report: Callable[[Any], dict[str, Any]]


class Method(NamedTuple):
    """``build(log_joint, dim) -> Built`` and a line for the results file."""

    build: Callable[[Callable, int], Built]
    description: str


# --- jelbo.fit -----------------------------------------------------------------------------


def _draw_from_q(key: jax.Array, fit: Any, n: int) -> tuple[jax.Array, jax.Array]:
    u = jelbo.sample(key, fit.q, (n,))
    return u, jelbo.log_prob(fit.q, u)


def _fit_report(fit: Any) -> dict[str, Any]:
    """What a ``jelbo.fit.Fit`` says about itself."""
    return {
        "reported_evals": int(fit.num_evals),
        "converged": bool(fit.converged),
        "num_iters": int(fit.num_iters),
        "fit_elbo": float(fit.bound.value),
        "fit_khat": float(fit.pareto_k),
    }


def jelbo_fit_method(algorithm: Callable[..., Any], **options: Any) -> Callable:
    """A ``jelbo.fit`` algorithm (``fit(key, log_joint, init, **options)``) from ``init = 0``."""

    def build(log_joint: Callable, dim: int) -> Built:
        def fit(key: jax.Array) -> Any:
            return algorithm(key, log_joint, jnp.zeros(dim), **options)

        return Built(fit, _draw_from_q, _fit_report)

    return build


# --- NumPyro, blackjax ---------------------------------------------------------------------


def numpyro_mvn(log_joint: Callable, dim: int) -> Built:
    """``bench/posteriordb.py``'s AutoMultivariateNormal recipe (5,000 Adam steps, 8 draws)."""
    cfg = PDB.Config(steps=5000, num_samples=8)
    fitted = PDB.numpyro_method("AutoMultivariateNormal")(log_joint, dim, cfg)
    fit = getattr(fitted.fit, "__wrapped__", fitted.fit)  # the harness jits it

    def report(state: Any) -> dict[str, Any]:
        _, losses = state
        return {"reported_evals": None, "converged": None, "final_loss": float(losses[-1])}

    return Built(fit, lambda key, state, n: fitted.draw(key, state[0], n), report)


def blackjax_pathfinder(maxiter: int | None) -> Callable:
    """``blackjax.vi.pathfinder.approximate`` from 0 at its defaults (or ``maxiter``)."""

    def build(log_joint: Callable, dim: int) -> Built:
        from blackjax.vi import pathfinder

        kwargs = {} if maxiter is None else {"maxiter": maxiter}

        def fit(key: jax.Array) -> Any:
            state, _ = pathfinder.approximate(key, log_joint, jnp.zeros(dim), **kwargs)
            return state

        def report(state: Any) -> dict[str, Any]:
            return {"reported_evals": None, "converged": None, "fit_elbo": float(state.elbo)}

        return Built(fit, lambda key, state, n: pathfinder.sample(key, state, n), report)

    return build


METHODS: dict[str, Method] = {
    "jelbo-pathfinder": Method(
        jelbo_fit_method(jelbo.fit.pathfinder), "jelbo.fit.pathfinder, defaults (4 paths)"
    ),
    "jelbo-pathfinder-1": Method(
        jelbo_fit_method(jelbo.fit.pathfinder, num_paths=1),
        "jelbo.fit.pathfinder(num_paths=1), other options at their defaults",
    ),
    "jelbo-dadvi": Method(
        jelbo_fit_method(jelbo.fit.dadvi), "jelbo.fit.dadvi, defaults (full rank)"
    ),
    "jelbo-batch-and-match": Method(
        jelbo_fit_method(jelbo.fit.batch_and_match), "jelbo.fit.batch_and_match, defaults"
    ),
    "jelbo-advi": Method(jelbo_fit_method(jelbo.fit.advi), "jelbo.fit.advi, defaults"),
    "numpyro-mvn": Method(
        numpyro_mvn,
        "NumPyro AutoMultivariateNormal, Trace_ELBO(8), 5,000 Adam steps (lr 0.02 cosine to "
        "0.001), init_scale 0.1: bench/posteriordb.py's recipe",
    ),
    "blackjax-pathfinder": Method(
        blackjax_pathfinder(None), "blackjax 1.7 pathfinder.approximate, defaults (maxiter=30)"
    ),
    "blackjax-pathfinder-100": Method(
        blackjax_pathfinder(100), "blackjax 1.7 pathfinder.approximate, maxiter=100"
    ),
}


# --- the counter inside the log density ----------------------------------------------------


class Counter:
    """Counts evaluations of a log joint from inside it (``jax.experimental.io_callback``).

    The callback's argument is ``u[0]`` behind a stop-gradient (no tangent reaches it, so it
    runs in the forward pass only); under ``vmap`` JAX maps an io_callback with a rolled
    ``lax.map``, one call per point (``jax.debug.callback`` would be unrolled, one call site
    per point: thousands for an importance sample, and minutes of compilation).
    """

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()  # XLA may call host callbacks from several threads

    def _add(self, marker: Any) -> None:
        with self._lock:
            self.count += int(np.size(marker))

    def wrap(self, log_joint: Callable) -> Callable:
        def counted(u: jax.Array) -> jax.Array:
            io_callback(self._add, None, jax.lax.stop_gradient(u[0]))
            return log_joint(u)

        return counted


# --- driver --------------------------------------------------------------------------------


def run_model(
    name: str, methods: list[str], seeds: list[int], repeats: int, log=print
) -> list[dict]:
    post = M.load(name)
    space = M.make_space(post.spec)
    log_joint = M.make_log_joint(post, space)
    dim = space.dim
    counter = Counter()
    counted_log_joint = counter.wrap(log_joint)
    records = []
    for m in methods:
        built = METHODS[m].build(log_joint, dim)
        t0 = time.perf_counter()
        exe = jax.jit(built.fit).lower(jax.random.key(0)).compile()
        compile_s = time.perf_counter() - t0
        counted_fit = jax.jit(METHODS[m].build(counted_log_joint, dim).fit)
        for seed in seeds:
            fit_key, eval_key = jax.random.split(jax.random.key(seed))
            run_s = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                state = jax.block_until_ready(exe(fit_key))
                run_s = min(run_s, time.perf_counter() - t0)
            counter.count = 0
            jax.block_until_ready(counted_fit(fit_key))
            jax.effects_barrier()
            evals = counter.count
            u, log_q = built.draw(eval_key, state, EVAL_DRAWS)
            rec = {
                "model": name,
                "method": m,
                "seed": seed,
                "dim": dim,
                "evals": evals,
                **built.report(state),
                **PDB.evaluate(post, space, log_joint, u, log_q),
                "compile_s": compile_s,
                "run_s": run_s,
                "load_average": PDB._load_average(),
            }
            records.append(rec)
            log(
                f"  seed {seed} {m:26s} evals {evals:7d} (reported {rec['reported_evals']}) "
                f"conv {rec['converged']} mean_err {rec['mean_err']:6.3f} sd ratio "
                f"{rec['sd_ratio_min']:.2f}-{rec['sd_ratio_max']:.2f} khat {rec['khat']:5.2f} "
                f"psis_mean_err {rec['psis_mean_err']:6.3f} run {run_s:.3f} s "
                f"(compile {compile_s:.1f} s)"
            )
    return records


# --- report --------------------------------------------------------------------------------

RAW_OK = {"mean": 0.25, "sd_lo": 0.75, "sd_hi": 1.33}
PSIS_OK = 0.1
KHAT_OK = 0.7


def accurate(rec: dict) -> bool:
    """Issue 21's accuracy target for one fit: raw means within 0.25 sd, sds within
    0.75–1.33× the reference, PSIS means within 0.1 sd where k̂ < 0.7."""
    raw = (
        rec["mean_err"] <= RAW_OK["mean"]
        and RAW_OK["sd_lo"] <= rec["sd_ratio_min"]
        and rec["sd_ratio_max"] <= RAW_OK["sd_hi"]
    )
    psis = rec["khat"] >= KHAT_OK or rec["psis_mean_err"] <= PSIS_OK
    return raw and psis


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    med = fmt.format(_median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def markdown(result: dict) -> str:
    records = result["records"]
    meta = result["meta"]
    models = list(dict.fromkeys(r["model"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    by = {}
    for r in records:
        by.setdefault((r["model"], r["method"]), []).append(r)
    lines = [
        "# jelbo.fit on posteriordb",
        "",
        f"- run started {meta['started_utc']}, finished {meta.get('finished_utc')}; "
        f"{meta['cpu_count']} CPUs, load average (1, 5, 15 min) {meta['load_average_start']} "
        f"at start, {meta.get('load_average_end')} at end; seeds {meta['seeds']}; "
        f"{meta['versions']}; {meta['platform']}",
        f"- command: `{meta['command']}`",
        *([f"- note: {meta['note']}"] if meta.get("note") else []),
        "",
        "Methods:",
        "",
        *[f"- `{m}`: {METHODS[m].description if m in METHODS else '?'}" for m in methods],
        "",
        "Cells: median over seeds (min–max). evals = log-density evaluations counted inside the "
        "log density (reported = what the method says it made); time = the compiled fit's "
        "wall time, fastest of the repeats (compile separately); mean err = max over "
        "parameters of |mean − ref| / ref sd; sd ratio = the range of sd / ref sd over "
        "parameters; PSIS = after Pareto-smoothed importance reweighting of 4,000 draws from "
        "q; ok = fits meeting issue 21's accuracy target (mean err ≤ 0.25, sd ratios in "
        "0.75–1.33, PSIS mean err ≤ 0.1 where k̂ < 0.7).",
        "",
    ]
    # summary table: per method, models accurate, median evals
    lines += [
        "## Summary",
        "",
        "| method | models with every seed ok | median evals (over models, of the per-model "
        "median) | max evals | median time s | converged fits |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        ok_models = [
            mo for mo in models if by.get((mo, m)) and all(accurate(r) for r in by[(mo, m)])
        ]
        ran = [mo for mo in models if by.get((mo, m))]
        med_evals = [_median([r["evals"] for r in by[(mo, m)]]) for mo in ran]
        all_evals = [r["evals"] for mo in ran for r in by[(mo, m)]]
        times = [_median([r["run_s"] for r in by[(mo, m)]]) for mo in ran]
        conv = [r["converged"] for mo in ran for r in by[(mo, m)]]
        conv_cell = (
            "–" if all(c is None for c in conv) else f"{sum(bool(c) for c in conv)} / {len(conv)}"
        )
        lines.append(
            f"| `{m}` | {len(ok_models)} / {len(ran)} | {_median(med_evals):,.0f} | "
            f"{max(all_evals):,} | {_median(times):.3f} | {conv_cell} |"
        )
    lines.append("")
    lines += _targets(by, models, methods)
    for mo in models:
        lines += [
            f"## {mo} (d = {by[(mo, methods[0])][0]['dim'] if by.get((mo, methods[0])) else '?'})",
            "",
            "| method | evals | reported | converged | mean err | sd ratio | k̂ | PSIS mean err | "
            "PSIS sd ratio | ok | time s | compile s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            recs = by.get((mo, m))
            if not recs:
                continue

            def v(key: str, recs: list[dict] = recs) -> list[float]:
                return [r[key] for r in recs if r.get(key) is not None]

            conv = [r["converged"] for r in recs]
            conv_cell = (
                "–" if all(c is None for c in conv) else f"{sum(bool(c) for c in conv)}/{len(conv)}"
            )
            sd_cell = f"{min(v('sd_ratio_min')):.2f}–{max(v('sd_ratio_max')):.2f}"
            psis_sd_cell = f"{min(v('psis_sd_ratio_min')):.2f}–{max(v('psis_sd_ratio_max')):.2f}"
            lines.append(
                f"| `{m}` | {_cell(v('evals'), '{:,.0f}')} | "
                f"{_cell(v('reported_evals'), '{:,.0f}')} | {conv_cell} | "
                f"{_cell(v('mean_err'), '{:.2f}')} | {sd_cell} | {_cell(v('khat'), '{:.2f}')} | "
                f"{_cell(v('psis_mean_err'), '{:.2f}')} | {psis_sd_cell} | "
                f"{sum(accurate(r) for r in recs)}/{len(recs)} | "
                f"{_cell(v('run_s'), '{:.3f}')} | {recs[0]['compile_s']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


TARGETED = ("jelbo-pathfinder", "jelbo-dadvi", "jelbo-batch-and-match")


def _targets(by: dict, models: list[str], methods: list[str]) -> list[str]:
    """Issue 21's targets, measured: for each of pathfinder (its default number of paths),
    dadvi and batch_and_match that ran, and pathfinder against blackjax's."""
    lines = ["## Targets (issue 21)", ""]
    for main in TARGETED:
        if main in methods:
            lines += _targets_of(by, models, methods, main)
    return lines if len(lines) > 2 else []


def _targets_of(by: dict, models: list[str], methods: list[str], main: str) -> list[str]:
    lines = [f"`{main}`:", ""]
    ran = [mo for mo in models if by.get((mo, main))]
    ok = [mo for mo in ran if all(accurate(r) for r in by[(mo, main)])]
    missed = [
        f"{mo} ({sum(accurate(r) for r in by[(mo, main)])}/{len(by[(mo, main)])} seeds)"
        for mo in ran
        if mo not in ok
    ]
    evals = [r["evals"] for mo in ran for r in by[(mo, main)]]
    lines.append(
        f"- accuracy (every seed: mean err ≤ 0.25, sd ratios 0.75–1.33, PSIS mean err ≤ 0.1 "
        f"where k̂ < 0.7): {len(ok)} of {len(ran)} models"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    lines.append(
        f"- evaluations (counted inside the log density): median {_median(evals):,.0f} over "
        f"{len(evals)} fits, max {max(evals):,} (targets 4,000 and 10,000)"
    )
    rel = [
        abs(r["reported_evals"] - r["evals"]) / r["evals"]
        for mo in ran
        for r in by[(mo, main)]
        if r.get("reported_evals") is not None
    ]
    if rel:
        lines.append(
            f"- `Fit.num_evals` against the counter: largest relative difference "
            f"{max(rel):.3%} over {len(rel)} fits (target 10 %)"
        )
    for other in ("blackjax-pathfinder", "blackjax-pathfinder-100"):
        if main != "jelbo-pathfinder" or other not in methods:
            continue
        both = [mo for mo in ran if by.get((mo, other))]
        better = [
            mo
            for mo in both
            if _median([r["mean_err"] for r in by[(mo, main)]])
            <= _median([r["mean_err"] for r in by[(mo, other)]])
            and _median([r["sd_err"] for r in by[(mo, main)]])
            <= _median([r["sd_err"] for r in by[(mo, other)]])
        ]
        ev_main = _median([_median([r["evals"] for r in by[(mo, main)]]) for mo in both])
        ev_other = _median([_median([r["evals"] for r in by[(mo, other)]]) for mo in both])
        ratios = [
            _median([r["run_s"] for r in by[(mo, main)]])
            / _median([r["run_s"] for r in by[(mo, other)]])
            for mo in both
        ]
        worse = [mo for mo in both if mo not in better]
        lines.append(
            f"- against `{other}`: at least as accurate (median mean err and median log-sd "
            f"err) on {len(better)} of {len(both)} models"
            + (f" (not: {', '.join(worse)})" if worse else "")
            + f"; median evaluations {ev_main:,.0f} vs {ev_other:,.0f}; wall time ratio "
            f"(jelbo / blackjax, per model) median {_median(ratios):.2f}, range "
            f"{min(ratios):.2f}–{max(ratios):.2f}"
        )
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(M.POSTERIORS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per fit (fastest kept)")
    p.add_argument(
        "--out", default=None, help="path stem; default bench/results/fit-posteriordb-<date>"
    )
    p.add_argument("--report", default=None, help="only rewrite the .md of this .json")
    args = p.parse_args(argv)
    if args.report:
        path = pathlib.Path(args.report)
        result = json.loads(path.read_text())
        path.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
        return result
    jax.config.update("jax_enable_x64", True)
    models, methods = args.models.split(","), args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    seeds = list(range(args.seeds))
    start = _dt.datetime.now(_dt.UTC)
    meta = {
        "started_utc": start.isoformat(timespec="seconds"),
        "command": " ".join(["python", "-m", "bench.fit_posteriordb", *(argv or sys.argv[1:])]),
        "seeds": seeds,
        "repeats": args.repeats,
        "eval_draws": EVAL_DRAWS,
        "load_average_start": PDB._load_average(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": PDB._versions(),
        "methods": {m: METHODS[m].description for m in methods},
    }
    records: list[dict] = []
    result = {"meta": meta, "records": records}
    stem = pathlib.Path(args.out) if args.out else RESULTS / f"fit-posteriordb-{start:%Y-%m-%d}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    for name in models:
        print(f"{name}:", flush=True)
        records += run_model(name, methods, seeds, args.repeats, log=lambda s: print(s, flush=True))
        meta["load_average_end"] = PDB._load_average()
        meta["finished_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        # written after every model, so that an interrupted run keeps what it measured
        stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {stem}.json and .md")
    return result


if __name__ == "__main__":
    main()
