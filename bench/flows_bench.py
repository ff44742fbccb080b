"""Benchmarks of ``jelbo.flows`` (issue 22's "proof and benchmark"): one script, four parts.

    python -m bench.flows_bench schools       # eight schools, non-centered and centered, 3 seeds
    python -m bench.flows_bench funnel        # 10-D funnel: jelbo vs NumPyro and flowjax, 10 seeds
    python -m bench.flows_bench posteriordb   # the eleven posteriordb models, flow vs full-rank
    python -m bench.flows_bench timing        # step and compile time (bench/flows.py's workers)

Run from the repository root. Every part writes ``bench/results/flows-<part>-<date>.json``
and ``.md`` with the command line, the configuration and the machine's load average.

- ``schools`` and ``posteriordb`` use ``bench/posteriordb.py``'s machinery (``run_model``,
  ``evaluate``): the same log joint of the unconstrained vector, the same Adam with cosine
  decay, steps and draws per step for every method (the flows at their own step size,
  ``--flow-lr``), each fit compiled end to end. Methods: the flow recipe (an
  IAF at ``jelbo.flows`` defaults, ELBO with STL) from a standard normal (``jelbo-iaf-unit``,
  the schools default), from the other methods' start ``N(0, 0.1^2 I)`` (``jelbo-iaf-stl``), or
  in the Laplace approximation's whitened coordinates (``jelbo-iaf-init``); and the full-rank
  Gaussians ``jelbo-fullrank-stl`` and ``jelbo-fullrank-init``. The centered eight schools
  (``eight_schools-eight_schools_centered``, a funnel) is judged by the non-centered model's
  reference draws: the posterior of ``(theta, mu, tau)`` is the same.
- ``funnel``: Neal's funnel in 10 dimensions, normalized (``v ~ N(0, 3^2)``,
  ``x_i | v ~ N(0, e^v)``), so the ELBO is ``-KL(q || p)``; float32; every contender at its
  library's defaults (architecture and gradient estimator), the same optax Adam schedule,
  steps and draws. Reported per seed: the ELBO of 20,000 fresh draws with its Monte Carlo
  standard error, the sd of ``v`` (truth 3), and whether the fit went non-finite.
- ``timing``: ``bench/flows.py`` (one process per contender; first call = trace + compile +
  one step; steady-state median step).

Timings need a quiet machine: every result file records the load average, and the report
flags a 1-minute load above 2.5.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SCHOOLS = ("eight_schools-eight_schools_noncentered", "eight_schools-eight_schools_centered")
GAUSS_FLOW_PAIRS = (
    ("jelbo-fullrank-stl", "jelbo-iaf-unit"),
    ("jelbo-fullrank-stl", "jelbo-iaf-stl"),
    ("jelbo-fullrank-init", "jelbo-iaf-init"),
)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _meta(argv: list[str]) -> dict[str, Any]:
    import jax

    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for mod in ("numpyro", "flowjax", "optax", "equinox"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            versions[mod] = "?"
    return {
        "command": "python -m bench.flows_bench " + " ".join(argv),
        "started_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "load_average_start": _load(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _busy_note(meta: dict[str, Any]) -> str:
    loads = [*meta.get("load_average_start", [])[:1], *meta.get("load_average_end", [])[:1]]
    if max(loads, default=0.0) > 2.5:
        return (
            "**The machine was busy** (1-minute load above 2.5 on 2 CPUs): the times overstate "
            "every method; the accuracies are unaffected. Rerun on a quiet machine with: "
            f"`{meta['command']}`.\n"
        )
    return ""


def _write(stem: pathlib.Path, result: dict[str, Any], markdown: str) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(f"wrote {stem}.json and .md", flush=True)


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    if len(v) == 1:
        return fmt.format(v[0])
    return f"{fmt.format(float(np.median(v)))} ({fmt.format(min(v))}–{fmt.format(max(v))})"


# --- posteriordb (and eight schools) ------------------------------------------------------


def run_posteriordb(argv: list[str], opts: argparse.Namespace, part: str) -> dict[str, Any]:
    import jax

    jax.config.update("jax_enable_x64", True)
    from bench import posteriordb as P

    cfg = P.Config(
        steps=opts.steps,
        num_samples=opts.samples,
        learning_rate=opts.lr,
        flow_learning_rate=opts.flow_lr,
        eval_draws=opts.eval_draws,
    )
    meta = {**_meta(argv), "config": cfg._asdict(), "seeds": list(range(opts.seeds))}
    records: list[dict] = []
    result = {"meta": meta, "records": records}
    stem = RESULTS / f"flows-{part}{opts.tag}-{meta['started_utc'][:10]}"
    for name in opts.models.split(","):
        print(f"{name}:", flush=True)
        records += P.run_model(
            name,
            opts.methods.split(","),
            list(range(opts.seeds)),
            cfg,
            repeats=1,
            log=lambda s: print(s, flush=True),
        )
        meta["load_average_end"] = _load()
        meta["finished_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        _write(stem, result, _posteriordb_markdown(result, part))
    return result


def _by(records: list[dict], model: str, method: str, key: str) -> list[float]:
    return [r[key] for r in records if r["model"] == model and r["method"] == method]


def _posteriordb_markdown(result: dict[str, Any], part: str) -> str:
    meta, records = result["meta"], result["records"]
    models = list(dict.fromkeys(r["model"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    out = [
        f"# jelbo.flows: {part}\n",
        f"- command: `{meta['command']}`",
        f"- started {meta['started_utc']}, finished {meta.get('finished_utc')}; "
        f"{meta['cpu_count']} CPUs; load average (1, 5, 15 min) {meta['load_average_start']} "
        f"at start, {meta.get('load_average_end')} at end",
        f"- config {meta['config']}; seeds {meta['seeds']}; {meta['versions']}",
        "",
        _busy_note(meta),
        "Cells: median over seeds (min–max). mean err = max over parameters of "
        "|mean − ref mean| / ref sd; sd ratio = sd / ref sd (min and max over parameters); "
        "log-sd err = max |log sd ratio|; k̂ = Pareto k of log p − log q over the evaluation "
        "draws; PSIS mean err after Pareto-smoothed reweighting; ELBO ± its Monte Carlo "
        "standard error (median seed's); ms/step = compiled fit wall time / steps (includes "
        "the L-BFGS Laplace fit for the `-init` methods).\n",
    ]
    out.append(
        "| model | method | mean err | sd ratio min | sd ratio max | log-sd err | k̂ | "
        "PSIS mean err | ELBO | ms/step | compile s |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for m in methods:
            rec = [r for r in records if r["model"] == model and r["method"] == m]
            if not rec:
                continue
            elbo = sorted(rec, key=lambda r: r["elbo"])[len(rec) // 2]
            out.append(
                f"| {model} | {m} | {_spread([r['mean_err'] for r in rec])} | "
                f"{_spread([r['sd_ratio_min'] for r in rec])} | "
                f"{_spread([r['sd_ratio_max'] for r in rec])} | "
                f"{_spread([r['sd_err'] for r in rec])} | {_spread([r['khat'] for r in rec])} | "
                f"{_spread([r['psis_mean_err'] for r in rec])} | "
                f"{elbo['elbo']:.3f} ± {elbo['elbo_se']:.3f} | "
                f"{_spread([r['ms_per_step'] for r in rec], '{:.3f}')} | "
                f"{rec[0]['compile_s']:.1f} |"
            )
    out.append("")
    out.append(
        "## Flow against the full-rank Gaussian\n\nSame steps and draws. ✓ accuracy: the "
        "flow's median mean err ≤ the Gaussian's max and its median log-sd err ≤ the "
        "Gaussian's max (within the seed spread); ✓ k̂: where the Gaussian's median k̂ > 0.7, "
        "the flow's median is lower (– where it is not above 0.7).\n"
    )
    out.append(
        "| model | Gaussian | flow | mean err G / flow | log-sd err G / flow | k̂ G / flow | "
        "accuracy | k̂ |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for model in models:
        for gauss, flow in GAUSS_FLOW_PAIRS:
            if not _by(records, model, gauss, "mean_err") or not _by(
                records, model, flow, "mean_err"
            ):
                continue
            g = {k: _by(records, model, gauss, k) for k in ("mean_err", "sd_err", "khat")}
            f = {k: _by(records, model, flow, k) for k in ("mean_err", "sd_err", "khat")}
            acc = np.median(f["mean_err"]) <= max(g["mean_err"]) and np.median(f["sd_err"]) <= max(
                g["sd_err"]
            )
            kh = "–"
            if np.median(g["khat"]) > 0.7:
                kh = "✓" if np.median(f["khat"]) < np.median(g["khat"]) else "✗"
            out.append(
                f"| {model} | {gauss} | {flow} | {_spread(g['mean_err'])} / "
                f"{_spread(f['mean_err'])} | {_spread(g['sd_err'])} / {_spread(f['sd_err'])} | "
                f"{_spread(g['khat'])} / {_spread(f['khat'])} | {'✓' if acc else '✗'} | {kh} |"
            )
    if part == "schools":
        out.append(
            "\n## Issue 22's eight-schools target\n\nA flow with every seed's means within "
            "0.05 sd and every sd ratio within 0.9–1.1 of the reference, without PSIS.\n"
        )
        out.append("| model | method | seeds passing | per seed (mean err, sd ratio min–max) |")
        out.append("|---|---|---|---|")
        for model in models:
            for m in methods:
                rec = [r for r in records if r["model"] == model and r["method"] == m]
                ok = [
                    r["mean_err"] <= 0.05 and 0.9 <= r["sd_ratio_min"] and r["sd_ratio_max"] <= 1.1
                    for r in rec
                ]
                cells = "; ".join(
                    f"{r['mean_err']:.3f}, {r['sd_ratio_min']:.3f}–{r['sd_ratio_max']:.3f}"
                    for r in rec
                )
                out.append(f"| {model} | {m} | {sum(ok)} / {len(ok)} | {cells} |")
    return "\n".join(out) + "\n"


# --- the funnel ---------------------------------------------------------------------------


class _Fit(NamedTuple):
    fit: Callable[[Any], Any]  # key -> (state, losses), jitted
    draw: Callable[[Any, Any, int], tuple[Any, Any]]  # (key, state, n) -> (z (n, D), log w (n,))


def _funnel_config(opts: argparse.Namespace) -> Any:
    """The posteriordb bench's Adam (cosine decay to 5%) at the funnel's steps and step size."""
    from bench.posteriordb import Config

    return Config(steps=opts.steps, learning_rate=opts.lr)


def _scan_steps(loss: Callable, params: Any, key: Any, opts: argparse.Namespace) -> Any:
    from bench.posteriordb import adam_scan

    return adam_scan(loss, params, key, _funnel_config(opts))


def _funnel_jelbo(opts: argparse.Namespace, **flow_options: Any) -> _Fit:
    import jax
    import jax.numpy as jnp

    import jelbo
    from bench.flows import funnel_log_density
    from jelbo import flows

    dim = opts.dim
    base = jelbo.Normal(jnp.zeros(dim), jnp.ones(dim))
    objective = jelbo.ELBO(num_samples=opts.draws, kl="mc", grad_estimator="stl")

    @jax.jit
    def fit(key):
        k0, k1 = jax.random.split(key)
        flow = flows.masked_autoregressive(k0, dim, inverse=True, **flow_options)

        def loss(f, k):
            return -objective(k, jelbo.Transformed(base, f), funnel_log_density).value

        return _scan_steps(loss, flow, k1, opts)

    def draw(key, flow, n):
        z, log_q = jelbo.sample_and_log_prob(key, jelbo.Transformed(base, flow), (n,))
        return z, jax.vmap(funnel_log_density)(z) - log_q

    return _Fit(fit, draw)


def _funnel_flowjax(builder: str, stick_the_landing: bool) -> Callable[[argparse.Namespace], _Fit]:
    def build(opts: argparse.Namespace) -> _Fit:
        import equinox as eqx
        import flowjax.flows
        import jax
        from flowjax.distributions import StandardNormal
        from flowjax.train.losses import ElboLoss

        from bench.flows import funnel_log_density

        def make(key):
            kwargs = {"invert": False} if builder == "masked_autoregressive_flow" else {}
            # invert=False: the fast direction is sampling (flowjax's advice for VI)
            return getattr(flowjax.flows, builder)(
                key, base_dist=StandardNormal((opts.dim,)), **kwargs
            )

        static = eqx.partition(make(jax.random.key(0)), eqx.is_inexact_array)[1]
        elbo = ElboLoss(funnel_log_density, opts.draws, stick_the_landing=stick_the_landing)

        @jax.jit
        def fit(key):
            k0, k1 = jax.random.split(key)
            params = eqx.partition(make(k0), eqx.is_inexact_array)[0]
            return _scan_steps(lambda p, k: elbo(p, static, k), params, k1, opts)

        def draw(key, params, n):
            flow = eqx.combine(params, static)
            z, log_q = flow.sample_and_log_prob(key, (n,))
            return z, jax.vmap(funnel_log_density)(z) - log_q

        return _Fit(fit, draw)

    return build


def _funnel_numpyro(guide_name: str) -> Callable[[argparse.Namespace], _Fit]:
    def build(opts: argparse.Namespace) -> _Fit:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from numpyro import handlers
        from numpyro.infer import SVI, Trace_ELBO, autoguide
        from numpyro.infer.util import log_density
        from numpyro.optim import optax_to_numpyro

        from bench.flows import funnel_log_density

        dim = opts.dim

        def model():
            z = numpyro.sample("z", dist.ImproperUniform(dist.constraints.real_vector, (), (dim,)))
            numpyro.factor("funnel", funnel_log_density(z))

        guide = getattr(autoguide, guide_name)(model)  # its defaults
        elbo = Trace_ELBO(num_particles=opts.draws, vectorize_particles=True)
        from bench.posteriordb import optimizer

        svi = SVI(model, guide, optax_to_numpyro(optimizer(_funnel_config(opts))), elbo)

        @jax.jit
        def fit(key):
            state = svi.init(key)
            state, losses = jax.lax.scan(lambda s, _: svi.update(s), state, None, opts.steps)
            return svi.get_params(state), losses

        def draw(key, params, n):
            def one(k):
                log_q, trace = log_density(handlers.seed(guide, k), (), {}, params)
                z = trace["z"]["value"]
                return z, funnel_log_density(z) - log_q

            return jax.jit(jax.vmap(one))(jax.random.split(key, n))

        del jnp
        return _Fit(fit, draw)

    return build


FUNNEL: dict[str, Callable[[argparse.Namespace], _Fit]] = {
    "jelbo-iaf": _funnel_jelbo,
    # flowjax's default capacity (8 layers, one hidden layer of 50), jelbo's other defaults
    "jelbo-iaf-8x50": lambda opts: _funnel_jelbo(opts, num_layers=8, hidden_sizes=(50,)),
    "numpyro-iaf": _funnel_numpyro("AutoIAFNormal"),
    "numpyro-bnaf": _funnel_numpyro("AutoBNAFNormal"),
    "flowjax-maf": _funnel_flowjax("masked_autoregressive_flow", False),
    "flowjax-coupling": _funnel_flowjax("coupling_flow", False),
    "flowjax-maf-stl": _funnel_flowjax("masked_autoregressive_flow", True),
}


def run_funnel(argv: list[str], opts: argparse.Namespace) -> dict[str, Any]:
    import jax

    meta = {**_meta(argv), "config": {k: v for k, v in vars(opts).items() if k != "part"}}
    meta["truth"] = {"sd_v": 3.0, "elbo": 0.0}
    records: list[dict] = []
    result = {"meta": meta, "records": records}
    stem = RESULTS / f"flows-funnel{opts.tag}-{meta['started_utc'][:10]}"
    for name in opts.contenders.split(","):
        t0 = time.perf_counter()
        fitted = FUNNEL[name](opts)
        exe = fitted.fit.lower(jax.random.key(0)).compile()
        compile_s = time.perf_counter() - t0
        for seed in range(opts.seeds):
            fit_key, eval_key = jax.random.split(jax.random.key(seed))
            t0 = time.perf_counter()
            state, losses = jax.block_until_ready(exe(fit_key))
            run_s = time.perf_counter() - t0
            finite_params = all(
                bool(np.all(np.isfinite(np.asarray(x))))
                for x in jax.tree.leaves(state)
                if np.issubdtype(np.asarray(x).dtype, np.inexact)
            )
            losses = np.asarray(losses)
            rec: dict[str, Any] = {
                "contender": name,
                "seed": seed,
                "finite_params": finite_params,
                "nonfinite_losses": int((~np.isfinite(losses)).sum()),
                "final_loss": float(np.mean(losses[-100:])),
                "compile_s": compile_s,
                "run_s": run_s,
                "load_average": _load(),
            }
            if finite_params:
                z, log_w = fitted.draw(eval_key, state, opts.eval_draws)
                z, log_w = np.asarray(z, np.float64), np.asarray(log_w, np.float64)
                ok = np.isfinite(log_w)
                lw = log_w[ok]
                rec.update(
                    elbo=float(np.mean(lw)) if lw.size else float("nan"),
                    elbo_se=float(np.std(lw, ddof=1) / math.sqrt(lw.size)) if lw.size > 1 else 0.0,
                    nonfinite_draws=int((~ok).sum()),
                    sd_v=float(np.std(z[:, 0], ddof=1)),
                    mean_v=float(np.mean(z[:, 0])),
                )
            rec["nan"] = (
                not finite_params
                or rec["nonfinite_losses"] > 0
                or rec.get("nonfinite_draws", 1) > 0
            )
            records.append(rec)
            print(
                f"{name:18s} seed {seed}: elbo {rec.get('elbo', float('nan')):9.4f} ± "
                f"{rec.get('elbo_se', float('nan')):.4f} sd(v) {rec.get('sd_v', float('nan')):.3f} "
                f"nan {rec['nan']} ({run_s:.1f} s, compile {compile_s:.1f} s)",
                flush=True,
            )
        meta["load_average_end"] = _load()
        meta["finished_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        _write(stem, result, _funnel_markdown(result))
    return result


def _funnel_markdown(result: dict[str, Any]) -> str:
    meta, records = result["meta"], result["records"]
    c = meta["config"]
    out = [
        "# jelbo.flows: Neal's funnel, 10 dimensions\n",
        f"- command: `{meta['command']}`",
        f"- started {meta['started_utc']}, finished {meta.get('finished_utc')}; "
        f"{meta['cpu_count']} CPUs; load average {meta['load_average_start']} at start, "
        f"{meta.get('load_average_end')} at end; {meta['versions']}",
        f"- target: v ~ N(0, 3²), x_i | v ~ N(0, e^v), i = 1..{c['dim'] - 1}, normalized: "
        "ELBO = −KL(q‖p) ≤ 0; sd(v) = 3.",
        f"- every contender: {c['steps']} Adam steps (optax, cosine decay from {c['lr']} to 5%), "
        f"{c['draws']} draws per step, float32, the whole fit one compiled `lax.scan`; "
        f"evaluated on {c['eval_draws']} fresh draws per seed; seeds 0..{c['seeds'] - 1}.",
        "- architectures at each library's defaults: jelbo `masked_autoregressive(inverse=True)` "
        "(4 affine IAF layers, MADE 2×max(2D, 32) tanh, STL); NumPyro `AutoIAFNormal` (3 "
        "layers, hidden [D, D], ELU), `AutoBNAFNormal` (1 flow, hidden factors [8, 8]), both "
        "`Trace_ELBO` (no STL option); flowjax `masked_autoregressive_flow` (8 affine layers, "
        "width 50, depth 1, `invert=False` for fast sampling) and `coupling_flow` (8 affine "
        "layers, width 50, depth 1), `ElboLoss` (default `stick_the_landing=False`; "
        "`flowjax-maf-stl` with `True`); `jelbo-iaf-8x50`: jelbo's IAF at flowjax's default "
        "capacity (8 layers, one hidden layer of 50 units).",
        "",
        _busy_note(meta),
        "Cells: median over the seeds without NaN (min–max). NaN: seeds whose fit produced a "
        "non-finite loss, parameter or evaluation log-weight. ELBO ± se: the median seed's "
        "ELBO and its Monte Carlo standard error.\n",
        "| contender | NaN seeds | ELBO (= −KL) | ELBO ± se (median seed) | sd(v) (truth 3) | "
        "fit s / seed | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["contender"] for r in records):
        rec = [r for r in records if r["contender"] == name]
        good = [r for r in rec if not r["nan"] and "elbo" in r]
        med = sorted(good, key=lambda r: r["elbo"])[len(good) // 2] if good else None
        cell = f"{med['elbo']:.3f} ± {med['elbo_se']:.3f}" if med else "–"
        out.append(
            f"| {name} | {sum(r['nan'] for r in rec)} / {len(rec)} | "
            f"{_spread([r['elbo'] for r in good], '{:.3f}')} | {cell} | "
            f"{_spread([r['sd_v'] for r in good])} | "
            f"{_spread([r['run_s'] for r in rec], '{:.1f}')} | {rec[0]['compile_s']:.1f} |"
        )
    return "\n".join(out) + "\n"


# --- timing -------------------------------------------------------------------------------


def run_timing(argv: list[str]) -> None:
    from bench import flows

    flows.main(argv)


# --- driver -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    for part in ("schools", "posteriordb"):
        p = sub.add_parser(part)
        default_models = ",".join(SCHOOLS)
        default_methods = "jelbo-fullrank-stl,jelbo-iaf-unit"
        if part == "posteriordb":
            from bench.posteriordb_models import POSTERIORS

            default_models = ",".join(POSTERIORS)
            default_methods = "jelbo-fullrank-stl,jelbo-iaf-stl,jelbo-fullrank-init,jelbo-iaf-init"
        p.add_argument("--models", default=default_models)
        p.add_argument("--methods", default=default_methods)
        p.add_argument("--seeds", type=int, default=3)
        p.add_argument("--steps", type=int, default=5000)
        p.add_argument("--samples", type=int, default=16)
        p.add_argument("--lr", type=float, default=0.02, help="Gaussians' Adam step size")
        p.add_argument("--flow-lr", type=float, default=1e-3, help="flows' Adam step size")
        p.add_argument("--eval-draws", type=int, default=20000 if part == "schools" else 4000)
    p = sub.add_parser("funnel")
    p.add_argument("--contenders", default=",".join(FUNNEL))
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--draws", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-draws", type=int, default=20000)
    for p in sub.choices.values():
        p.add_argument("--tag", default="", help="added to the result files' names")
    sub.add_parser("timing", add_help=False)
    if argv[:1] == ["timing"]:
        run_timing(argv[1:])
        return
    opts = parser.parse_args(argv)
    if opts.part == "funnel":
        run_funnel(argv, opts)
    else:
        run_posteriordb(argv, opts, opts.part)


if __name__ == "__main__":
    main()
