"""Peak resident memory of one ``jelbo.ELBO`` value evaluation with very many samples.

``python -m bench.memory --num-samples 1000000 [--chunk 10000]`` evaluates the ELBO of one
datapoint (``D`` = 64, ``K`` = 32, linear decoder) under ``jit`` and prints one JSON line
with the process's peak resident set size (``ru_maxrss``) after compiling and after running,
and the value. :mod:`bench.run` runs it in a fresh process per setting, so the peak belongs
to that evaluation alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

__all__ = ["main", "peak_rss_bytes", "run_memory"]

DATA_DIM = 64
LATENT_DIM = 32


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_memory(num_samples: int, chunk: int | None) -> dict[str, Any]:
    """Compiles and runs the evaluation; returns peak RSS before and after running it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jelbo

    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((LATENT_DIM, DATA_DIM)) / np.sqrt(LATENT_DIM), jnp.float32)
    x = jnp.asarray(rng.standard_normal(DATA_DIM), jnp.float32)
    q = jelbo.Normal(jnp.full(LATENT_DIM, 0.1, jnp.float32), jnp.full(LATENT_DIM, 0.5, jnp.float32))
    prior = jelbo.Normal(jnp.zeros(LATENT_DIM), jnp.ones(LATENT_DIM))

    def log_likelihood(z: jax.Array, x: jax.Array) -> jax.Array:
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, z @ w, 1.0))

    def value(key: jax.Array) -> jax.Array:
        objective = jelbo.ELBO(num_samples=num_samples, sample_chunk_size=chunk)
        return objective(key, q, log_likelihood, prior, x).value

    key = jax.random.key(0)
    compiled = jax.jit(value).lower(key).compile()
    before = peak_rss_bytes()
    start = time.perf_counter()
    result = float(jax.block_until_ready(compiled(key)))
    seconds = time.perf_counter() - start
    return {
        "num_samples": num_samples,
        "sample_chunk_size": chunk,
        "latent_dim": LATENT_DIM,
        "data_dim": DATA_DIM,
        "peak_rss_before_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(),
        "seconds": seconds,
        "elbo": result,
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-samples", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(run_memory(args.num_samples, args.chunk)))


if __name__ == "__main__":
    main()
