"""The rows of sections 1 and 3 of ``bench/results/numerics_audit-2026-12-07.md``: jelbo's
values at the points of the defects the issue-19 sweeps found, on whichever jelbo is first on
the path (``PYTHONPATH=/path/to/old/checkout`` for the "before" column)::

    python -m bench.numerics_cases

The mpmath values are in the audit, the named tests and the registry (``tests/families.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def cases() -> dict[str, Callable[[], Any]]:
    import jelbo

    def kl(q: Any, p: Any) -> Any:
        return jelbo.kl_divergence(q, p)

    mu, e2 = jnp.array([0.6, 0.8, 0.0]), jnp.array([0.0, 1.0, 0.0])
    ps32 = jelbo.PowerSpherical(mu.astype(jnp.float32), jnp.float32(2.5))
    bern, poisson = jelbo.Bernoulli, jelbo.Poisson
    return {
        "d/da Beta(a, 1).log_prob(0.5) at a = 1": lambda: jax.grad(
            lambda a: jelbo.Beta(a, 1.0).log_prob(0.5)
        )(1.0),
        "d/da Gamma(a, 2).log_prob(3) at a = 1": lambda: jax.grad(
            lambda a: jelbo.Gamma(a, 2.0).log_prob(3.0)
        )(1.0),
        "d/dkappa PowerSpherical(mu, kappa).log_prob(e2) at 0": lambda: jax.grad(
            lambda k: jelbo.PowerSpherical(mu, k).log_prob(e2)
        )(0.0),
        "KL(PowerSpherical(float32) || HypersphericalUniform(3)).dtype": lambda: str(
            kl(ps32, jelbo.HypersphericalUniform(3)).dtype
        ),
        "KL(Bernoulli(logits=785.9) || Bernoulli(logits=38.9))": lambda: kl(
            bern(logits=jnp.array([785.9])), bern(logits=jnp.array([38.9]))
        ),
        "its d/db": lambda: jax.grad(
            lambda b: kl(bern(logits=jnp.array([785.9])), bern(logits=b[None]))
        )(38.9),
        "Bernoulli(probs=1e-29).entropy()": lambda: bern(probs=jnp.array(1e-29)).entropy(),
        "KL(Bernoulli(probs=0.2) || Bernoulli(probs=1e-300))": lambda: kl(
            bern(probs=jnp.array(0.2)), bern(probs=jnp.array(1e-300))
        ),
        "KL(Poisson(rate=1) || Poisson(rate=1e-300))": lambda: kl(
            poisson(rate=jnp.array(1.0)), poisson(rate=jnp.array(1e-300))
        ),
        "KL(Poisson(rate=1e-30) || Poisson(rate=1e30)), float32": lambda: kl(
            poisson(rate=jnp.float32(1e-30)), poisson(rate=jnp.float32(1e30))
        ),
        "its d/d rate_q (float64)": lambda: jax.grad(
            lambda r: kl(poisson(rate=r), poisson(rate=jnp.array(1e30)))
        )(1e-30),
        "d/d rate Poisson(rate).log_prob(0) at rate 0": lambda: jax.grad(
            lambda r: poisson(rate=r).log_prob(0.0)
        )(0.0),
        "d/d probs Categorical(probs=(1, 0, 0)).log_prob(0)": lambda: jax.grad(
            lambda p: jelbo.Categorical(probs=p).log_prob(0)
        )(jnp.array([1.0, 0.0, 0.0])),
        "d/d probs OneHotCategorical(probs=(.5, .5, 0)).log_prob(e0)": lambda: jax.grad(
            lambda p: jelbo.OneHotCategorical(probs=p).log_prob(jnp.array([1.0, 0.0, 0.0]))
        )(jnp.array([0.5, 0.5, 0.0])),
    }


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    warnings.simplefilter("ignore", DeprecationWarning)
    for name, fn in cases().items():
        try:
            value = fn()
        except Exception as err:  # a failure is a row too
            value = f"{type(err).__name__}: {str(err)[:80]}"
        if hasattr(value, "dtype") and jnp.ndim(value) == 0:
            value = f"{float(value):.12g} ({value.dtype})"
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
