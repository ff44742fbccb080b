"""Markdown tables from ``bench/posteriordb.py`` results.

    python bench/posteriordb_report.py bench/results/posteriordb-DATE.json [more.json ...]
    python bench/posteriordb_report.py --summary RESULT.json     # the table of docs/benchmarks.md

Several result files (e.g. a main run and a run of methods that landed later, with the same
config) are merged record by record; the header lists every run.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

import numpy as np

COLUMNS = (
    ("mean_err", "mean err", "{:.2f}"),
    ("sd_err", "log-sd err", "{:.2f}"),
    ("khat", "k̂", "{:.2f}"),
    ("psis_mean_err", "PSIS mean err", "{:.2f}"),
    ("psis_sd_err", "PSIS log-sd err", "{:.2f}"),
    ("elbo", "ELBO", "{:.1f}"),
    ("ms_per_step", "ms/step", "{:.3f}"),
)
FULL, NUMPYRO_FULL = "jelbo-fullrank-stl", "numpyro-mvn"
REPARAM, INIT = "jelbo-fullrank-reparam", "jelbo-fullrank-init"
MULTI, FLOOR = "jelbo-fullrank-multistart", "floor-logjoint"
TIME_PAIRS = (
    ("jelbo-fullrank-stl", "numpyro-mvn"),
    ("jelbo-fullrank-reparam", "numpyro-mvn"),
    ("jelbo-meanfield", "numpyro-normal"),
    ("jelbo-lowrank", "numpyro-lowrank"),
    ("floor-logjoint", "numpyro-mvn"),
)
NOT_VI = ("blackjax-pathfinder", "floor-logjoint")  # excluded from the PSIS rule's count


def _fmt(v: float, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _cell(values, fmt):
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return "—"
    if v.size == 1:
        return _fmt(float(v[0]), fmt)
    return f"{_fmt(float(np.median(v)), fmt)} ({_fmt(v.min(), fmt)}–{_fmt(v.max(), fmt)})"


def _values(records, model, method, key) -> np.ndarray:
    return np.asarray(
        [r[key] for r in records if r["model"] == model and r["method"] == method], float
    )


def _median(records, model, method, key) -> float:
    v = _values(records, model, method, key)
    return float(np.median(v)) if v.size else float("nan")


def merge(results: list[dict]) -> dict:
    """One result from several runs: records concatenated, metas kept in a list."""
    return {
        "meta": results[0]["meta"],
        "runs": [r["meta"] for r in results],
        "records": [rec for r in results for rec in r["records"]],
    }


def _header(result: dict) -> list[str]:
    lines = []
    for meta in result.get("runs", [result["meta"]]):
        methods = sorted({r["method"] for r in result["records"]})
        lines.append(
            f"- run started {meta['started_utc']}, finished {meta.get('finished_utc')}; "
            f"{meta['cpu_count']} CPUs, load average (1, 5, 15 min) "
            f"{meta['load_average_start']} at start, {meta.get('load_average_end')} at end; "
            f"config {meta['config']}; seeds {meta['seeds']}; {meta['versions']}"
        )
    lines.append(f"- methods: {', '.join(methods)}")
    return lines


def markdown(result: dict) -> str:
    records = result["records"]
    lines = [
        "# posteriordb benchmark",
        "",
        *_header(result),
        "",
        "Cells: median over seeds (min–max). mean err = max over parameters of "
        "|mean − ref mean| / ref sd; log-sd err = max over parameters of |log(sd / ref sd)|; "
        "PSIS = the same after Pareto-smoothed importance reweighting of the evaluation "
        "draws; k̂ = Pareto k of those weights; ELBO = mean log weight of the evaluation draws; "
        "ms/step = compiled fit wall time / steps (fastest of the repeats; for "
        "blackjax-pathfinder, the whole L-BFGS run).",
        "",
    ]
    lines += targets(records)
    lines += ratio_table(records)
    models = list(dict.fromkeys(r["model"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    for model in models:
        lines += [f"## {model}", ""]
        lines.append("| method | " + " | ".join(c[1] for c in COLUMNS) + " | compile s |")
        lines.append("|---" * (len(COLUMNS) + 2) + "|")
        for m in methods:
            rs = [r for r in records if r["model"] == model and r["method"] == m]
            if not rs:
                continue
            cells = [_cell([r[k] for r in rs], f) for k, _, f in COLUMNS]
            cells.append(f"{rs[0]['compile_s']:.1f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def ratio_table(records) -> list[str]:
    """Per model: jelbo's time per step over NumPyro's (medians over seeds)."""
    models = list(dict.fromkeys(r["model"] for r in records))
    lines = [
        "## Time per step, jelbo / NumPyro (median over seeds; same steps, samples, optimizer)",
        "",
        "| model | " + " | ".join(f"{a} / {b}" for a, b in TIME_PAIRS) + " |",
        "|---" * (len(TIME_PAIRS) + 1) + "|",
    ]
    cols: dict = {p: [] for p in TIME_PAIRS}
    for model in models:
        cells = []
        for a, b in TIME_PAIRS:
            r = _median(records, model, a, "ms_per_step") / _median(
                records, model, b, "ms_per_step"
            )
            cols[(a, b)].append(r)
            cells.append(_fmt(r, "{:.2f}"))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    med = [
        float(np.nanmedian(cols[p])) if not np.all(np.isnan(cols[p])) else float("nan")
        for p in TIME_PAIRS
    ]
    lines.append("| **median** | " + " | ".join(_fmt(x, "**{:.2f}**") for x in med) + " |")
    lines.append("")
    return lines


def targets(records) -> list[str]:
    """The issue's targets, per model, from the records."""
    models = list(dict.fromkeys(r["model"] for r in records))
    lines = [
        "## Targets per model",
        "",
        "full = jelbo full-rank STL, AMVN = NumPyro AutoMultivariateNormal, reparam = jelbo "
        "full-rank reparam, init = jelbo full-rank from the Laplace initialization (multistart: "
        "from jelbo.multistart_laplace's 8 starts); mean err "
        "medians (min–max over seeds). ✓/✗: full ≤ AMVN and STL ≤ reparam within the seed "
        "spread (median ≤ the other's max); init within 0.25 sd and sd ratio 0.8–1.25 "
        "(log-sd err ≤ 0.223) on every seed; PSIS: every fit with k̂ < 0.7 has PSIS mean err "
        "≤ 0.1, every fit with mean err > 0.5 has k̂ > 0.7.",
        "",
        "| model | full | AMVN | full ≤ AMVN | reparam | STL ≤ reparam | init mean / log-sd err "
        "| init ok | multistart mean / log-sd err | multistart ok | k̂ full (min–max) "
        "| PSIS rule (fits ok / all) |",
        "|---" * 12 + "|",
    ]
    for model in models:
        full = _values(records, model, FULL, "mean_err")
        amvn = _values(records, model, NUMPYRO_FULL, "mean_err")
        rep = _values(records, model, REPARAM, "mean_err")
        k = _values(records, model, FULL, "khat")

        def cmp(a, b):
            if not a.size or not b.size:
                return "—"
            return "✓" if np.median(a) <= b.max() else "✗"

        init_cell, init_ok = _init_cells(records, model, INIT)
        multi_cell, multi_ok = _init_cells(records, model, MULTI)
        rs = [r for r in records if r["model"] == model and r["method"] not in NOT_VI]
        ok = sum(
            (r["khat"] >= 0.7 or r["psis_mean_err"] <= 0.1)
            and (r["mean_err"] <= 0.5 or r["khat"] > 0.7)
            for r in rs
        )
        lines.append(
            f"| {model} | {_cell(full, '{:.2f}')} | {_cell(amvn, '{:.2f}')} | {cmp(full, amvn)} "
            f"| {_cell(rep, '{:.2f}')} | {cmp(full, rep)} | {init_cell} | {init_ok} "
            f"| {multi_cell} | {multi_ok} "
            f"| {_cell(k, '{:.2f}')} | {ok} / {len(rs)} |"
        )
    lines.append("")
    return lines


def _init_cells(records, model, method) -> tuple[str, str]:
    """``mean / log-sd err`` cells of an initialized fit, and whether every seed met the
    target (mean within 0.25 sd, sd ratio within 0.8-1.25)."""
    m = _values(records, model, method, "mean_err")
    s = _values(records, model, method, "sd_err")
    if not m.size:
        return "—", "—"
    ok = np.all(m <= 0.25) and np.all(s <= math.log(1.25))
    return f"{_cell(m, '{:.2f}')} / {_cell(s, '{:.2f}')}", "✓" if ok else "✗"


def summary_table(records) -> list[str]:
    """The table of docs/benchmarks.md: medians over seeds of the main comparisons, per model."""
    models = list(dict.fromkeys(r["model"] for r in records))
    lines = [
        "| model | d | full-rank STL | NumPyro AMVN | full-rank reparam | Laplace-init "
        "(mean / log-sd err) | multistart-init | k̂ STL | PSIS mean err STL "
        "| time STL / AMVN | floor / AMVN |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for model in models:
        dim = next(r["dim"] for r in records if r["model"] == model)

        def med(method, key, model=model):
            return _median(records, model, method, key)

        def errs(method):
            mean, sd = med(method, "mean_err"), med(method, "sd_err")
            return f"{_fmt(mean, '{:.2f}')} / {_fmt(sd, '{:.2f}')}"

        ratio = med(FULL, "ms_per_step") / med(NUMPYRO_FULL, "ms_per_step")
        floor = med(FLOOR, "ms_per_step") / med(NUMPYRO_FULL, "ms_per_step")
        lines.append(
            f"| {model.split('-', 1)[1]} | {dim} | {_fmt(med(FULL, 'mean_err'), '{:.2f}')} "
            f"| {_fmt(med(NUMPYRO_FULL, 'mean_err'), '{:.2f}')} "
            f"| {_fmt(med(REPARAM, 'mean_err'), '{:.2f}')} | {errs(INIT)} | {errs(MULTI)} "
            f"| {_fmt(med(FULL, 'khat'), '{:.2f}')} | {_fmt(med(FULL, 'psis_mean_err'), '{:.2f}')} "
            f"| {_fmt(ratio, '{:.2f}')} | {_fmt(floor, '{:.2f}')} |"
        )
    return lines


def main(argv=None) -> None:
    paths = (argv if argv is not None else sys.argv[1:]) or []
    summary = "--summary" in paths
    paths = [p for p in paths if p != "--summary"]
    results = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    merged = merge(results)
    print("\n".join(summary_table(merged["records"])) if summary else markdown(merged))


if __name__ == "__main__":
    main()
