"""The benchmark harness runs end to end (``python -m bench.run --quick``), so it cannot rot.

Optional contenders (numpyro, torch, tfp-jax) must either run or report "not installed";
every other contender must run. The results go to a temporary directory.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.contenders import CONTENDERS
from bench.workload import LOG_2PI, SIZES

REPO = Path(__file__).resolve().parent.parent

OPTIONAL = {"numpyro-trace", "numpyro-meanfield", "torch", "tfp-jax"}
UNNORMALIZED = {"numpy-loop", "numpy-vectorized", "jelbo-classic"}
NOT_AN_ELBO = {"jelbo-noise"}  # times the draw of z alone; its "loss" is the mean of z


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs the quick benchmark once and loads its JSON."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (json_file,) = out.glob("*.json")
    (md_file,) = out.glob("*.md")
    data = json.loads(json_file.read_text())
    data["_markdown"] = md_file.read_text()
    data["_stdout"] = proc.stdout
    return data


@pytest.mark.slow
def test_every_contender_has_a_row(report: dict) -> None:
    assert {r["size"] for r in report["results"]} == {SIZES[0].label}
    assert {r["contender"] for r in report["results"]} == {c.key for c in CONTENDERS}
    for r in report["results"]:
        allowed = ("ok", "not installed") if r["contender"] in OPTIONAL else ("ok",)
        assert r["status"] in allowed, r
        if r["status"] == "ok":
            assert r["median_s"] > 0 and r["first_call_s"] > 0 and r["reps"] >= 3
            assert math.isfinite(r["loss"])
    for contender in CONTENDERS:
        allocators = {
            r["requested_allocator"] for r in report["results"] if r["contender"] == contender.key
        }
        both = contender.key in ("jax-b", "jelbo")  # --quick: only these two under tcmalloc
        assert allocators == (set(report["allocators"]) if both else {"default"})


@pytest.mark.slow
def test_tcmalloc_rows_really_preload_it(report: dict) -> None:
    for r in report["results"]:
        if r["status"] == "ok":
            assert r["allocator"] == r["requested_allocator"], r


@pytest.mark.slow
def test_contenders_compute_the_same_elbo(report: dict) -> None:
    """Same parameters and data: the first losses agree up to Monte Carlo noise."""
    d = SIZES[0].D
    losses = {}
    for r in report["results"]:
        if r["status"] == "ok" and r["contender"] not in NOT_AN_ELBO:
            shift = 0.5 * d * LOG_2PI if r["contender"] in UNNORMALIZED else 0.0
            losses[(r["contender"], r["requested_allocator"])] = r["loss"] + shift
    reference = losses[("jax-b", "default")]
    for name, loss in losses.items():
        assert loss == pytest.approx(reference, rel=0.05), name


@pytest.mark.slow
def test_markdown_and_memory(report: dict) -> None:
    table = report["_markdown"]
    assert "| jelbo.elbo | step |" in table and "## Targets" in table
    for r in report["results"]:
        if r["status"] == "not installed":
            assert "not installed" in table
    chunked = [m for m in report["memory"] if m["sample_chunk_size"] is not None]
    plain = [m for m in report["memory"] if m["sample_chunk_size"] is None]
    assert chunked and plain
    assert chunked[0]["peak_rss_bytes"] < 2**30
    assert chunked[0]["elbo"] == pytest.approx(plain[0]["elbo"], rel=1e-5)


@pytest.mark.slow
def test_interleaved_run(report: dict) -> None:
    (entry,) = report["interleaved"]
    assert entry["requested_allocator"] == "default" and entry["rounds"] >= 5
    assert {"jax-a", "jax-b", "jelbo"} <= set(entry["median_s"])
    assert all(t > 0 for t in entry["median_s"].values())
    assert any(t["target"].startswith("interleaved: jelbo") for t in report["targets"])
