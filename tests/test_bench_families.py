"""The families benchmark (``bench/families.py``) runs, and its contenders compute the same
loss: the same parameters and data, so their first losses agree up to Monte Carlo noise."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import families
from bench.workload import Size

REPO = Path(__file__).resolve().parent.parent

OPTIONAL = {"tfp", "numpyro"}


@pytest.mark.parametrize("workload", families.WORKLOADS)
def test_contenders_run_and_agree(workload):
    size = Size(16, 8, 3, 64)
    result = families.run_one(workload, size, 0.05, list(families.CONTENDERS[workload]))
    assert set(result["skipped"]) <= OPTIONAL
    assert {"jax", "jelbo"} <= set(result["median_s"])
    assert result["rounds"] >= 5 and all(t > 0 for t in result["median_s"].values())
    losses = result["first_loss"]
    assert all(math.isfinite(v) for v in losses.values())
    for name, loss in losses.items():
        assert loss == pytest.approx(losses["jax"], rel=0.03), name
