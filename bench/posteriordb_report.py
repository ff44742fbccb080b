"""Markdown tables from a ``bench/posteriordb.py`` result.

python bench/posteriordb_report.py bench/results/posteriordb-DATE.json [more.json ...]
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections import defaultdict

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


def _cell(values, fmt):
    v = np.asarray(values, dtype=float)
    med = np.median(v)
    if v.size == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(v.min())}–{fmt.format(v.max())})"


def group(records):
    out = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[(r["model"], r["method"])]["records"].append(r)
    return out


def markdown(result: dict) -> str:
    meta, records = result["meta"], result["records"]
    lines = [
        "# posteriordb benchmark",
        "",
        f"Started {meta['started_utc']}, finished {meta.get('finished_utc')}; "
        f"{meta['cpu_count']} CPUs, load average {meta['load_average_start']} at start and "
        f"{meta.get('load_average_end')} at end; {meta['platform']}; {meta['versions']}.",
        "",
        f"Config: {meta['config']}; seeds {meta['seeds']}.",
        "",
        "Cells: median over seeds (min–max). mean err = max over parameters of "
        "|mean − ref mean| / ref sd; log-sd err = max |log(sd / ref sd)|; PSIS = after "
        "Pareto-smoothed importance reweighting; ms/step = compiled fit time / steps.",
        "",
    ]
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
    lines += ratio_table(records)
    return "\n".join(lines) + "\n"


def _median(records, model, method, key):
    v = [r[key] for r in records if r["model"] == model and r["method"] == method]
    return float(np.median(v)) if v else float("nan")


def ratio_table(records) -> list[str]:
    """Per model: jelbo full-rank (stl) vs NumPyro AutoMVN, and time ratios."""
    models = list(dict.fromkeys(r["model"] for r in records))
    pairs = (
        ("jelbo-fullrank-stl", "numpyro-mvn"),
        ("jelbo-fullrank-reparam", "numpyro-mvn"),
        ("jelbo-meanfield", "numpyro-normal"),
        ("jelbo-lowrank", "numpyro-lowrank"),
    )
    lines = [
        "## Time per step, jelbo / NumPyro (median over seeds, same steps and samples)",
        "",
        "| model | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |",
        "|---" * (len(pairs) + 1) + "|",
    ]
    cols = defaultdict(list)
    for model in models:
        cells = []
        for a, b in pairs:
            r = _median(records, model, a, "ms_per_step") / _median(
                records, model, b, "ms_per_step"
            )
            cols[(a, b)].append(r)
            cells.append("—" if np.isnan(r) else f"{r:.2f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    med = [np.nanmedian(cols[p]) if not np.all(np.isnan(cols[p])) else np.nan for p in pairs]
    lines.append(
        "| **median** | " + " | ".join("—" if np.isnan(x) else f"**{x:.2f}**" for x in med) + " |"
    )
    lines.append("")
    return lines


if __name__ == "__main__":
    result = json.loads(pathlib.Path(sys.argv[1]).read_text())
    print(markdown(result))
