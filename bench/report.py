"""Turns the sweep's results into the Markdown table and the target checks."""

from __future__ import annotations

from typing import Any

from bench.contenders import BASELINE, CONTENDERS
from bench.workload import SIZES, Size

__all__ = ["check_targets", "markdown", "peer_threshold"]

GIB = 1024**3
PEERS = ("numpyro-trace", "numpyro-meanfield", "tfp-jax", "torch")
Result = dict[str, Any]


def first_call_s(result: Result) -> float:
    """Time to the first finished step: building the runner plus the first (compiling) call."""
    return result["build_s"] + result["first_call_s"]


def _lookup(results: list[Result], key: str, size: str, allocator: str) -> Result | None:
    """The ``ok`` result for a contender, size and allocator (non-JAX rows use ``default``)."""
    for r in results:
        if r["contender"] == key and r["size"] == size and r["status"] == "ok":
            if r["requested_allocator"] == allocator:
                return r
    return None


def peer_threshold(size: Size) -> float:
    """How much faster than each peer library jelbo must be at ``size``."""
    if size == SIZES[2]:
        return 1.8
    if size == SIZES[1]:
        return 2.5
    return 1.0


def check_targets(
    results: list[Result], interleaved: list[Result], memory: list[Result], allocators: list[str]
) -> list[dict[str, Any]]:
    """Evaluates the issue's targets on the measured numbers (only those that were measured).

    Step-time ratios are checked twice: from the separate processes (the table) and from
    the interleaved one-process run, which is far less sensitive to a changing load.
    """
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float, op: str, threshold: float) -> None:
        met = value <= threshold if op == "<=" else value >= threshold
        targets.append(
            {"target": name, "value": value, "op": op, "threshold": threshold, "met": met}
        )

    sizes = sorted({r["size"] for r in results}, key=lambda s: [x.label for x in SIZES].index(s))
    for allocator in allocators:
        for label in sizes:
            size = Size.parse(label)
            jelbo = _lookup(results, "jelbo", label, allocator)
            base = _lookup(results, BASELINE, label, allocator)
            if jelbo is None:
                continue
            if base is not None:
                add(
                    f"jelbo step / 3(b) step, {label}, {allocator}",
                    jelbo["median_s"] / base["median_s"],
                    "<=",
                    1.10,
                )
                add(
                    f"jelbo first call / 3(b) first call, {label}, {allocator}",
                    first_call_s(jelbo) / first_call_s(base),
                    "<=",
                    1.25,
                )
                add(
                    f"jelbo first-call CPU time / 3(b)'s, {label}, {allocator}",
                    (jelbo["build_cpu_s"] + jelbo["first_call_cpu_s"])
                    / (base["build_cpu_s"] + base["first_call_cpu_s"]),
                    "<=",
                    1.25,
                )
            for peer in PEERS:
                # torch is not a JAX program: it always runs with the default allocator
                other = _lookup(results, peer, label, "default" if peer == "torch" else allocator)
                if other is None:
                    continue
                add(
                    f"{peer} step / jelbo step, {label}, {allocator}",
                    other["median_s"] / jelbo["median_s"],
                    ">=",
                    peer_threshold(size),
                )
            if size == SIZES[1]:
                loop = _lookup(results, "numpy-loop", label, "default")
                if loop is not None:
                    add(
                        f"numpy-loop value / jelbo step (per datapoint), {label}, {allocator}",
                        loop["median_s"] / jelbo["median_s"],
                        ">=",
                        1000.0,
                    )
                noise = _lookup(results, "jelbo-noise", label, allocator)
                if loop is not None and noise is not None:
                    # no step that draws the S·B·K latents can beat this ratio
                    add(
                        f"numpy-loop value / drawing z alone (ceiling of the above), {label}, "
                        f"{allocator}",
                        loop["median_s"] / noise["median_s"],
                        ">=",
                        1000.0,
                    )
    for entry in interleaved:
        medians = entry.get("median_s", {})
        if "jelbo" not in medians:
            continue
        label, allocator = entry["size"], entry["requested_allocator"]
        jelbo_s = medians["jelbo"]
        if BASELINE in medians:
            add(
                f"interleaved: jelbo step / 3(b) step, {label}, {allocator}",
                jelbo_s / medians[BASELINE],
                "<=",
                1.10,
            )
        for peer in PEERS:
            if peer in medians:
                add(
                    f"interleaved: {peer} step / jelbo step, {label}, {allocator}",
                    medians[peer] / jelbo_s,
                    ">=",
                    peer_threshold(Size.parse(label)),
                )
    by_chunk = {m.get("sample_chunk_size"): m for m in memory if "peak_rss_bytes" in m}
    chunked = [m for c, m in by_chunk.items() if c is not None]
    for m in chunked:
        add(
            f"peak RSS (GiB), num_samples={m['num_samples']:,}, chunk={m['sample_chunk_size']}",
            m["peak_rss_bytes"] / GIB,
            "<=",
            1.0,
        )
        plain = by_chunk.get(None)
        if plain is not None:
            scale = max(1.0, abs(plain["elbo"]))
            add(
                "|chunked - unchunked| / max(1, |ELBO|)",
                abs(m["elbo"] - plain["elbo"]) / scale,
                "<=",
                1e-5,
            )
    return targets


def _cells(result: Result | None, base: Result | None) -> list[str]:
    if result is None:
        return ["—", "—", "—"]
    if result["status"] != "ok":
        return [result["status"], "—", "—"]
    ratio = f"{result['median_s'] / base['median_s']:.2f}" if base else "—"
    return [f"{first_call_s(result):.2f}", f"{1e3 * result['median_s']:.3f}", ratio]


def _any(results: list[Result], key: str, size: str) -> Result | None:
    for r in results:
        if r["contender"] == key and r["size"] == size:
            return r
    return None


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: machine, one table per size, targets, memory."""
    results, allocators = report["results"], report["allocators"]
    machine = report["machine"]
    lines = [
        f"# jelbo benchmark — {report['host']}, {report['date']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']:.0f} GiB, "
        f"{machine['platform']}; Python {machine['python']}. "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + f". Load average at start / end: {machine['load_start']} / {machine['load_end']}.",
        "",
        "Workload: linear VAE step (linear encoder, linear decoder, unit-variance Gaussian "
        "likelihood, N(0, I) prior, analytic KL), float32, value + gradient + Adam; `value` "
        "rows evaluate the ELBO only. *first call*: building the runner plus the first call "
        "(tracing and compiling), seconds; *median*: steady-state median per call after "
        "warm-up, ms; *× 3(b)*: median over the hand-written flattened JAX step's, same "
        "allocator. `tcmalloc`: the same run with `libtcmalloc_minimal.so.4` preloaded "
        "(JAX contenders only)."
        + (
            f" Each contender ran {report['rounds']} times (interleaved); the table shows the "
            "lowest median and the lowest first call."
            if report.get("rounds", 1) > 1
            else ""
        ),
        "",
    ]
    header = ["contender", "kind"]
    for allocator in allocators:
        header += [f"first call (s) {allocator}", f"median (ms) {allocator}", f"× 3(b) {allocator}"]
    for label in [s.label for s in SIZES if any(r["size"] == s.label for r in results)]:
        lines += [f"## {label}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        for contender in CONTENDERS:
            if _any(results, contender.key, label) is None:
                continue
            row = [contender.label, contender.kind]
            for allocator in allocators:
                if allocator != "default" and not contender.uses_jax:
                    row += ["—", "—", "—"]
                    continue
                result = next(
                    (
                        r
                        for r in results
                        if r["contender"] == contender.key
                        and r["size"] == label
                        and r["requested_allocator"] == allocator
                    ),
                    None,
                )
                row += _cells(result, _lookup(results, BASELINE, label, allocator))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if report.get("interleaved"):
        lines += [
            "## Interleaved: the JAX steps timed in turn in one process",
            "",
            "Median ms per step (× 3(b)). The contenders take turns in one process, a few "
            "steps each (one untimed to re-warm caches, then timed ones), round after round: "
            "all see the same load, so on a busy machine these ratios are steadier than "
            "those of the separate processes above.",
            "",
        ]
        keys = list(dict.fromkeys(k for e in report["interleaved"] for k in e.get("median_s", {})))
        labels = {c.key: c.label for c in CONTENDERS}
        lines.append("| size | allocator | " + " | ".join(labels[k] for k in keys) + " |")
        lines.append("|" + "---|" * (len(keys) + 2))
        for entry in report["interleaved"]:
            medians = entry.get("median_s")
            if not medians:
                lines.append(f"| {entry['size']} | {entry['requested_allocator']} | error |")
                continue
            base = medians.get(BASELINE)
            cells = [
                f"{1e3 * medians[k]:.3f} ({medians[k] / base:.2f})"
                if k in medians and base
                else "—"
                for k in keys
            ]
            lines.append(
                f"| {entry['size']} | {entry['requested_allocator']} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    if report["targets"]:
        lines += ["## Targets", "", "| target | measured | required | met |", "|---|---|---|---|"]
        for t in report["targets"]:
            value = f"{t['value']:.3g}"
            lines.append(
                f"| {t['target']} | {value} | {t['op']} {t['threshold']:g} | "
                f"{'yes' if t['met'] else '**no**'} |"
            )
        lines.append("")
    if report["memory"]:
        lines += [
            "## Peak memory: `jelbo.elbo` value, one datapoint, K = 32, D = 64",
            "",
            "| num_samples | sample_chunk_size | peak RSS (MiB) | RSS before the call (MiB) "
            "| seconds | ELBO |",
            "|---|---|---|---|---|---|",
        ]
        for m in report["memory"]:
            if "peak_rss_bytes" not in m:
                lines.append(
                    f"| {m.get('num_samples')} | {m.get('sample_chunk_size')} | "
                    f"{m.get('status', 'error')} | — | — | — |"
                )
                continue
            lines.append(
                f"| {m['num_samples']:,} | {m['sample_chunk_size']} | "
                f"{m['peak_rss_bytes'] / 2**20:.0f} | {m['peak_rss_before_bytes'] / 2**20:.0f} | "
                f"{m['seconds']:.2f} | {m['elbo']:.6g} |"
            )
        lines.append("")
    return "\n".join(lines)
