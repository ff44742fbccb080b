"""The sweeps of ``tests/test_sweep_*.py`` as a report: every family method and KL pair of
the registry (``tests/families.py``) against mpmath, on whichever jelbo is first on the path.

    python -m bench.numerics_sweep --out bench/results/numerics_sweep_after.md
    PYTHONPATH=/path/to/old/checkout python -m bench.numerics_sweep --out ..._before.md

(from the repository root; the registry is loaded from ``tests/families.py`` by its file
path, so nothing edits ``sys.path`` and ``PYTHONPATH`` picks the jelbo under test).

Each row is one (entry, method or KL, dtype): the number of values and partial derivatives
checked, how many miss the tests' tolerances (``families.TOLERANCES`` with the floors of
``families.compare`` and the registry's documented per-point overrides), the worst error
(relative, with those floors; gradients only in float64), and the worst failures with the
point, jelbo's number and mpmath's. The registry and its references are
the tests' own, so the report and the tests cannot disagree.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import jax
import mpmath as mp
import numpy as np

import jelbo

REGISTRY = Path(__file__).resolve().parent.parent / "tests" / "families.py"
DTYPES = (np.float64, np.float32)


def load_registry(path: Path = REGISTRY) -> ModuleType:
    """``tests/families.py`` as a module, imported by its file path (it depends on jax,
    mpmath, numpy and jelbo only)."""
    spec = importlib.util.spec_from_file_location("families", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def run(show: int) -> list[str]:
    reg = load_registry()
    lines = [
        "| entry | method | dtype | checked | failing | worst error | worst failures "
        "(jelbo vs mpmath) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    jobs = [(f.name, f, reg.family_findings) for f in reg.FAMILIES]
    jobs += [(f"KL({p.name})", p, reg.kl_findings) for p in reg.KL_PAIRS]
    for label, entry, findings_of in jobs:
        for dtype in DTYPES:
            try:
                findings = findings_of(entry, dtype)
            except Exception as err:  # an error is a finding: report it
                lines.append(f"| {label} | all | {np.dtype(dtype).name} | - | error | "
                             f"{type(err).__name__}: {str(err)[:200]} |")  # fmt: skip
                continue
            groups = defaultdict(list)
            for f in findings:
                key = "kl" if label.startswith("KL(") else f.what.split(" [")[0].split(".")[-1]
                groups[key].append(f)
            for method, group in groups.items():
                bad = sorted((f for f in group if not f.ok), key=lambda f: -f.error)
                worst = "; ".join(str(f).replace("|", "\\|") for f in bad[:show])
                error = max(f.error for f in group)
                lines.append(
                    f"| {label} | {method} | {np.dtype(dtype).name} | {len(group)} | "
                    f"{len(bad)} | {error:.1e} | {worst} |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the Markdown report here")
    parser.add_argument("--label", default="", help="a label (e.g. the commit)")
    parser.add_argument("--show", type=int, default=3, help="failures listed per row")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    rows = run(args.show)
    text = "\n".join(
        [
            f"# Numerics sweep {args.label}".rstrip(),
            "",
            f"jelbo from `{jelbo.__file__}`, jax {jax.__version__}, mpmath {mp.__version__}, "
            f"Python {platform.python_version()}; {time.perf_counter() - start:.0f} s.",
            "",
            *rows,
        ]
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
