r"""Training steps of a Dirichlet VAE and a Gumbel-softmax (Concrete) VAE, per contender.

Both models are float32 with a linear encoder ``h = x @ enc_w + enc_b`` (``(B, K)``), a linear
decoder with a Bernoulli likelihood, :math:`\log p(x|z) = \sum_d x_d\log\sigma(l_d) +
(1-x_d)\log\sigma(-l_d)`, :math:`l = z W + c`, ``S`` reparameterized samples per datapoint,
loss = the negative ELBO averaged over the batch, value + gradient + one Adam update:

- **dirichlet**: :math:`q(z|x) = \mathrm{Dir}(\mathrm{softplus}(h) + 10^{-2})`, prior
  :math:`\mathrm{Dir}(0.5\cdot\mathbf 1_K)`, analytic KL (Dirichlet‖Dirichlet);
- **gumbel**: :math:`q(z|x) = \mathrm{Concrete}(\lambda_q = 0.5, h)`, prior
  :math:`\mathrm{Concrete}(\lambda_p = 0.5, \mathbf 0)` (Maddison et al. 2017), Monte Carlo
  KL :math:`\log q(z) - \log p(z)` on the same samples.

Contenders: hand-written JAX (flattened ``(S·B, K) @ (K, D)``, ``jax.random.dirichlet`` /
Gumbel noise, densities written out), jelbo (``jelbo.ELBO`` with a per-example
``log_likelihood``, as the README shows), TFP on JAX (``tfd.Dirichlet`` /
``tfd.RelaxedOneHotCategorical``, ``tfd.kl_divergence``), and NumPyro for the Dirichlet VAE
(``TraceMeanField_ELBO``; NumPyro has no relaxed one-hot categorical). All JAX steps are one
``jit(value_and_grad)`` + ``optax.adam`` (:class:`bench.jax_common.OptaxStepRunner`), except
NumPyro's ``jit(svi.update)``.

``python -m bench.families`` times every contender of each workload and size **interleaved**
in one process per (workload, size) (:func:`bench.interleaved.time_interleaved`), repeats it
``--rounds`` times, and writes ``bench/results/families-<host>-<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a file: bench's modules import each other as bench.*
    sys.exit("Run it from the repository root as a module: python -m bench.families")

from bench.workload import LEARNING_RATE, Size  # noqa: E402

__all__ = ["CONTENDERS", "SIZES", "WORKLOADS", "init_params", "make_data", "make_runner"]

WORKLOADS = ("dirichlet", "gumbel")
SIZES: tuple[Size, ...] = (Size(256, 64, 8, 1), Size(256, 64, 8, 32), Size(1024, 784, 32, 8))
CONTENDERS: dict[str, tuple[str, ...]] = {
    "dirichlet": ("jax", "jelbo", "tfp", "numpyro"),
    "gumbel": ("jax", "jelbo", "tfp"),
}
REQUIRES = {"jax": ("optax",), "jelbo": ("optax",), "tfp": ("tensorflow_probability", "optax")}
REQUIRES["numpyro"] = ("numpyro",)
PRIOR_CONCENTRATION = 0.5
MIN_CONCENTRATION = 1e-2
TEMPERATURE_Q = 0.5
TEMPERATURE_P = 0.5


def init_params(size: Size, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial parameters (float32), identical for every contender."""
    rng = np.random.default_rng(seed)
    d, k = size.D, size.K
    return {
        "enc_w": (0.1 * rng.standard_normal((d, k)) / math.sqrt(d)).astype(np.float32),
        "enc_b": np.zeros(k, np.float32),
        "dec_w": (rng.standard_normal((k, d))).astype(np.float32),
        "dec_b": np.zeros(d, np.float32),
    }


def make_data(size: Size, seed: int = 1) -> np.ndarray:
    """A fixed binary batch ``(B, D)``: Bernoulli pixels of a K-cluster model."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((size.K, size.D)) * 2.0
    labels = rng.integers(0, size.K, size.B)
    p = 1.0 / (1.0 + np.exp(-centers[labels]))
    return (rng.uniform(size=p.shape) < p).astype(np.float32)


# --- the losses ----------------------------------------------------------------------------


def _bernoulli_log_lik(logits: Any, x: Any) -> Any:
    import jax

    return x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)


def _concentration(h: Any) -> Any:
    import jax

    return jax.nn.softplus(h) + MIN_CONCENTRATION


def _jax_loss(workload: str, size: Size) -> Callable[..., Any]:
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import digamma, gammaln, logsumexp

    s, b, k, d = size.S, size.B, size.K, size.D

    def decode(z: Any, params: Any, x: Any) -> Any:
        logits = z.reshape(s * b, k) @ params["dec_w"] + params["dec_b"]
        return jnp.sum(_bernoulli_log_lik(logits.reshape(s, b, d), x), axis=-1)  # (S, B)

    def dirichlet(params: Any, key: Any, x: Any) -> Any:
        alpha = _concentration(x @ params["enc_w"] + params["enc_b"])
        z = jax.random.dirichlet(key, alpha, (s, b))
        beta = jnp.full(k, PRIOR_CONCENTRATION, alpha.dtype)
        a0 = jnp.sum(alpha, -1)
        kl = (
            gammaln(a0)
            - jnp.sum(gammaln(alpha), -1)
            - gammaln(jnp.sum(beta))
            + jnp.sum(gammaln(beta))
            + jnp.sum((alpha - beta) * (digamma(alpha) - digamma(a0)[:, None]), -1)
        )
        return -jnp.mean(jnp.mean(decode(z, params, x), 0) - kl)

    def concrete_log_prob(temperature: float, logits: Any, log_z: Any) -> Any:
        # Maddison et al. (2017), eq. 3, from log z (the log-softmax of the sample).
        return (
            gammaln(float(k))
            + (k - 1) * math.log(temperature)
            + jnp.sum(logits - (temperature + 1.0) * log_z, -1)
            - k * logsumexp(logits - temperature * log_z, -1)
        )

    def gumbel(params: Any, key: Any, x: Any) -> Any:
        logits = x @ params["enc_w"] + params["enc_b"]
        tiny = jnp.finfo(logits.dtype).tiny
        u = jax.random.uniform(key, (s, b, k), logits.dtype, minval=tiny)
        log_z = jax.nn.log_softmax((logits - jnp.log(-jnp.log(u))) / TEMPERATURE_Q, -1)
        log_z = jnp.maximum(log_z, math.log(tiny))
        z = jnp.exp(log_z)
        kl = concrete_log_prob(TEMPERATURE_Q, logits, log_z) - concrete_log_prob(
            TEMPERATURE_P, jnp.zeros(k, logits.dtype), log_z
        )
        return -jnp.mean(decode(z, params, x) - kl)

    return {"dirichlet": dirichlet, "gumbel": gumbel}[workload]


def _jelbo_loss(workload: str, size: Size) -> Callable[..., Any]:
    import jax.numpy as jnp

    import jelbo

    k = size.K
    if workload == "dirichlet":
        prior = jelbo.Dirichlet(jnp.full(k, PRIOR_CONCENTRATION, jnp.float32))
        posterior = lambda h: jelbo.Dirichlet(_concentration(h))
        kl = "analytic"
    else:
        prior = jelbo.RelaxedOneHotCategorical(TEMPERATURE_P, logits=jnp.zeros(k, jnp.float32))
        posterior = lambda h: jelbo.RelaxedOneHotCategorical(TEMPERATURE_Q, logits=h)
        kl = "mc"

    def loss(params: Any, key: Any, x: Any) -> Any:
        q = posterior(x @ params["enc_w"] + params["enc_b"])

        def log_likelihood(z: Any, x: Any) -> Any:
            return jnp.sum(
                jelbo.Bernoulli(logits=z @ params["dec_w"] + params["dec_b"]).log_prob(x)
            )

        bound = jelbo.ELBO(num_samples=size.S, kl=kl)(key, q, log_likelihood, prior, x)
        return -jnp.mean(bound.value)

    return loss


def _tfp_loss(workload: str, size: Size) -> Callable[..., Any]:
    import jax.numpy as jnp
    from tensorflow_probability.substrates import jax as tfp

    tfd = tfp.distributions
    k, s = size.K, size.S

    def log_lik(z: Any, params: Any, x: Any) -> Any:
        logits = z @ params["dec_w"] + params["dec_b"]
        return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=x.dtype), 1).log_prob(x)

    def dirichlet(params: Any, key: Any, x: Any) -> Any:
        q = tfd.Dirichlet(_concentration(x @ params["enc_w"] + params["enc_b"]))
        prior = tfd.Dirichlet(jnp.full(k, PRIOR_CONCENTRATION, x.dtype))
        z = q.sample(s, seed=key)  # (S, B, K)
        return -jnp.mean(jnp.mean(log_lik(z, params, x), 0) - tfd.kl_divergence(q, prior))

    def gumbel(params: Any, key: Any, x: Any) -> Any:
        q = tfd.RelaxedOneHotCategorical(
            TEMPERATURE_Q, logits=x @ params["enc_w"] + params["enc_b"]
        )
        prior = tfd.RelaxedOneHotCategorical(TEMPERATURE_P, logits=jnp.zeros(k, x.dtype))
        z = q.sample(s, seed=key)
        kl = q.log_prob(z) - prior.log_prob(z)
        return -jnp.mean(log_lik(z, params, x) - kl)

    return {"dirichlet": dirichlet, "gumbel": gumbel}[workload]


class _NumPyroRunner:
    """``jit(svi.update)`` with ``TraceMeanField_ELBO`` (analytic Dirichlet KL)."""

    def __init__(self, size: Size, params: dict[str, np.ndarray], x: np.ndarray) -> None:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from numpyro import handlers
        from numpyro.infer import SVI, TraceMeanField_ELBO

        b, k = x.shape[0], size.K

        def model(x: Any) -> None:
            dec_w = numpyro.param("dec_w", jnp.asarray(params["dec_w"]))
            dec_b = numpyro.param("dec_b", jnp.asarray(params["dec_b"]))
            with numpyro.plate("data", b):
                z = numpyro.sample("z", dist.Dirichlet(jnp.full(k, PRIOR_CONCENTRATION)))
                logits = z @ dec_w + dec_b
                numpyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

        def guide(x: Any) -> None:
            enc_w = numpyro.param("enc_w", jnp.asarray(params["enc_w"]))
            enc_b = numpyro.param("enc_b", jnp.asarray(params["enc_b"]))
            with numpyro.plate("data", b):
                numpyro.sample("z", dist.Dirichlet(_concentration(x @ enc_w + enc_b)))

        svi = SVI(
            handlers.scale(model, scale=1.0 / b),
            handlers.scale(guide, scale=1.0 / b),
            numpyro.optim.Adam(LEARNING_RATE),
            TraceMeanField_ELBO(num_particles=size.S, vectorize_particles=True),
        )
        self._x = jnp.asarray(x)
        self._state: Any = svi.init(jax.random.PRNGKey(0), self._x)
        self._update = jax.jit(svi.update)
        self._loss: Any = None

    def step(self) -> None:
        import jax

        self._state, self._loss = self._update(self._state, self._x)
        jax.block_until_ready((self._state, self._loss))

    def loss(self) -> float:
        return float(self._loss)


def missing(contender: str) -> list[str]:
    """The packages ``contender`` needs that are not installed."""
    return [p for p in REQUIRES[contender] if importlib.util.find_spec(p) is None]


def make_runner(workload: str, contender: str, size: Size) -> Any:
    """A :class:`bench.runner.Runner` for ``contender`` on ``workload`` at ``size``."""
    if contender not in CONTENDERS[workload]:
        raise ValueError(f"{workload}: contender must be one of {CONTENDERS[workload]}")
    params, x = init_params(size), make_data(size)
    if contender == "numpyro":
        return _NumPyroRunner(size, params, x)
    from bench.jax_common import OptaxStepRunner

    loss = {"jax": _jax_loss, "jelbo": _jelbo_loss, "tfp": _tfp_loss}[contender]
    return OptaxStepRunner(loss(workload, size), params, x)


# --- the timing ----------------------------------------------------------------------------


def run_one(workload: str, size: Size, seconds: float, contenders: list[str]) -> dict[str, Any]:
    """Builds the contenders (first call timed) and times them interleaved, in this process."""
    from bench.interleaved import time_interleaved
    from bench.worker import allocator_in_use

    runners, first_call, losses, skipped = {}, {}, {}, {}
    for contender in contenders:
        if missing(contender):
            skipped[contender] = "not installed: " + ", ".join(missing(contender))
            continue
        start = time.perf_counter()
        runner = make_runner(workload, contender, size)
        runner.step()
        first_call[contender] = time.perf_counter() - start
        losses[contender] = runner.loss()
        for _ in range(2):  # warm-up, as bench.interleaved
            runner.step()
        runners[contender] = runner
    timing = time_interleaved(runners, seconds)
    return {
        "workload": workload,
        "size": size.label,
        "allocator": allocator_in_use(),
        "first_call_s": first_call,
        "first_loss": losses,
        "skipped": skipped,
        **timing,
    }


def _markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"# Dirichlet and Gumbel-softmax VAE steps, interleaved ({report['date']})",
        "",
        f"{machine['cpu']}, {machine['cores']} cores; load average {machine['load_start']} at "
        f"start, {machine['load_end']} at the end; jax {report['versions'].get('jax')}, "
        f"numpyro {report['versions'].get('numpyro')}, "
        f"tfp-nightly {report['versions'].get('tfp-nightly')}. Per step: median wall-clock ms "
        "/ median process CPU ms, best of "
        f"{report['rounds']} interleaved round(s) (each a fresh process); in brackets × the "
        "hand-written JAX step of the same round.",
        "",
    ]
    for workload in WORKLOADS:
        entries = [e for e in report["entries"] if e.get("workload") == workload]
        if not entries:
            continue
        sizes = list(dict.fromkeys(e["size"] for e in entries))
        lines += [f"## {workload}", "", "| contender | " + " | ".join(sizes) + " |"]
        lines.append("|---|" + "---:|" * len(sizes))
        for contender in CONTENDERS[workload]:
            cells = []
            for size in sizes:
                wall = _best(entries, size, contender, "median_s")
                cpu = _best(entries, size, contender, "median_cpu_s")
                cells.append(
                    "—"
                    if wall is None or cpu is None
                    else f"{1e3 * wall[0]:.3f} ({wall[1]:.2f}) / {1e3 * cpu[0]:.3f} ({cpu[1]:.2f})"
                )
            lines.append(f"| {contender} | " + " | ".join(cells) + " |")
        first = {
            c: [e.get("first_call_s", {}).get(c) for e in entries] for c in CONTENDERS[workload]
        }
        shown = ", ".join(
            f"{c} {min(v for v in ts if v is not None):.1f}"
            for c, ts in first.items()
            if any(v is not None for v in ts)
        )
        lines += ["", f"First call (build + trace + compile + one step), s, fastest: {shown}.", ""]
    return "\n".join(lines)


def _best(
    entries: list[dict[str, Any]], size: str, contender: str, metric: str
) -> tuple[float, float] | None:
    """(lowest ``metric``, its round's ratio to the hand-written step) over the rounds."""
    found = [
        (e[metric][contender], e[metric][contender] / e[metric]["jax"])
        for e in entries
        if e["size"] == size and contender in e.get(metric, {}) and "jax" in e[metric]
    ]
    return min(found) if found else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: every workload and size, ``--rounds`` fresh processes each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--sizes", help="e.g. '256,64,8,1;1024,784,32,8' (default: the three)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: 'workload;size'
    args = parser.parse_args(argv)
    if args.one:
        workload, label = args.one.split(";")
        result = run_one(workload, Size.parse(label), args.seconds, list(CONTENDERS[workload]))
        print(json.dumps(result))
        return result
    from bench.run import _env, _machine, _versions

    sizes = [Size.parse(s) for s in args.sizes.split(";")] if args.sizes else list(SIZES)
    load_start = os.getloadavg()
    entries = []
    for index in range(args.rounds):
        for workload in args.workloads.split(","):
            for size in sizes:
                command = [
                    sys.executable,
                    "-m",
                    "bench.families",
                    "--one",
                    f"{workload};{size.label}",
                ]
                command += ["--seconds", str(args.seconds)]
                proc = subprocess.run(
                    command, cwd=REPO, env=_env(None), capture_output=True, text=True
                )
                try:
                    entry = json.loads(proc.stdout.strip().splitlines()[-1])
                except (IndexError, json.JSONDecodeError):
                    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    entry = {"workload": workload, "size": size.label, "error": tail}
                entry["round"] = index
                entries.append(entry)
                shown = entry.get("error") or ", ".join(
                    f"{k} {1e3 * v:.3f}" for k, v in entry["median_s"].items()
                )
                print(
                    f"round {index + 1} {workload} {size.label}: median ms {shown}", file=sys.stderr
                )
    report = {
        "host": socket.gethostname().split(".")[0] or "host",
        "date": datetime.date.today().isoformat(),
        "machine": _machine(load_start),
        "versions": _versions(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "entries": entries,
    }
    table = _markdown(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"families-{report['host']}-{report['date']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(table + "\n")
    print(table)
    return report


if __name__ == "__main__":
    main()
