"""Copy the posteriordb subset into the project (run once; the benchmark never reads ../shared).

    python -m bench.posteriordb_import [--source ../shared/posteriordb]

For each posterior folder of the source it writes ``bench/posteriordb_data/<posterior>/``:

- ``model.stan``, ``posterior.json``, ``reference_info.json``: copied unchanged;
- ``data.json``: the unzipped ``data.json.zip``;
- ``reference_summary.json``: ``{"param[i]": {"mean", "sd", "q05", "q50", "q95"}}`` from ALL
  10,000 reference draws (10 chains x 1,000), ``sd`` with ``ddof=1``, quantiles by numpy's
  default (linear) rule;
- ``reference_draws_thinned.json``: ``{"param[i]": [1,000 draws]}``, every 10th draw of the
  chains concatenated in order (chain 1 first), rounded to 9 significant digits.

and copies posteriordb's ``LICENCE.md`` beside a ``README.md`` with the attribution.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import zipfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
# ``../shared/posteriordb`` beside the checkout (or beside the folder of worktrees).
_CANDIDATES = [HERE.parents[n] / "shared" / "posteriordb" for n in (1, 2)]
DEFAULT_SOURCE = next((c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[0])
TARGET = HERE / "posteriordb_data"
THIN = 10

README = """\
# posteriordb subset (data and reference posteriors)

Eleven posteriors from **posteriordb** (Magnusson, Torgander, Bürkner, Zhang, Carpenter &
Vehtari, "posteriordb: testing, benchmarking and developing Bayesian inference algorithms",
2024; <https://github.com/stan-dev/posteriordb>), distributed under the BSD 3-Clause licence
reproduced in `LICENCE.md` (Copyright (c) 2011-2024, Stan Developers and their Assignees).
They are the non-ODE models that the Pathfinder paper (Zhang, Carpenter, Gelman & Vehtari,
JMLR 2022) used to compare variational methods. The Stan code, data and reference draws are
posteriordb's; the summaries and the thinned draws are derived from its reference draws by
`bench/posteriordb_import.py` (which is the only code that reads the original copy).

Per posterior folder:

- `model.stan`: the Stan model (posteriordb's, unchanged);
- `posterior.json`: model/data names and parameter dimensions (unchanged);
- `reference_info.json`: how the reference draws were made (Stan NUTS, 10 chains) and their
  diagnostics (unchanged);
- `data.json`: the data (posteriordb's `data.json.zip`, unzipped);
- `reference_summary.json`: `{"param[i]": {"mean", "sd", "q05", "q50", "q95"}}` from all
  10,000 reference draws (sd with ddof=1);
- `reference_draws_thinned.json`: `{"param[i]": [...]}`, every 10th of the 10,000 draws
  (chains concatenated), 1,000 per parameter, 9 significant digits.

Parameters are named as in the reference draws (Stan's 1-based `name[i]`), constrained space.
"""


def _read_zip_json(path: pathlib.Path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(z.namelist()[0]))


def _summary(x: np.ndarray) -> dict:
    q05, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
    return {
        "mean": float(np.mean(x)),
        "sd": float(np.std(x, ddof=1)),
        "q05": float(q05),
        "q50": float(q50),
        "q95": float(q95),
    }


def import_posterior(src: pathlib.Path, dst: pathlib.Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("model.stan", "posterior.json", "reference_info.json"):
        shutil.copyfile(src / name, dst / name)
    data = _read_zip_json(src / "data.json.zip")
    (dst / "data.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
    chains = _read_zip_json(src / "reference_draws.json.zip")
    names = list(chains[0])
    draws = {k: np.concatenate([np.asarray(c[k], dtype=np.float64) for c in chains]) for k in names}
    for k, v in draws.items():
        if v.shape != (10_000,) or not np.all(np.isfinite(v)):
            raise ValueError(f"{src.name}: {k} has shape {v.shape} or non-finite draws")
    summary = {k: _summary(v) for k, v in draws.items()}
    (dst / "reference_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    thinned = {k: [float(f"{x:.9g}") for x in v[::THIN]] for k, v in draws.items()}
    (dst / "reference_draws_thinned.json").write_text(
        json.dumps(thinned, separators=(",", ":")) + "\n"
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=pathlib.Path, default=DEFAULT_SOURCE)
    args = p.parse_args(argv)
    src = args.source.resolve()
    TARGET.mkdir(exist_ok=True)
    shutil.copyfile(src / "LICENCE.md", TARGET / "LICENCE.md")
    (TARGET / "README.md").write_text(README)
    folders = sorted(d for d in src.iterdir() if (d / "posterior.json").exists())
    for d in folders:
        import_posterior(d, TARGET / d.name)
        print(f"{d.name}: ok")


if __name__ == "__main__":
    main()
