"""Contender 3: the minimal hand-written JAX step for the workload, in two forms.

- ``"a"``: the natural form, samples as an extra leading axis: ``(S, B, K) @ (K, D)``;
- ``"b"``: samples and batch flattened into one axis: ``(S·B, K) @ (K, D)``.

Both are one ``jit(value_and_grad)`` + ``optax.adam`` update (:class:`OptaxStepRunner`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bench.jax_common import LossFn, OptaxStepRunner
from bench.workload import LOG_2PI, Size, init_params, make_data

__all__ = ["make_loss", "make_runner"]

VARIANTS = ("a", "b")


def make_loss(size: Size, form: str) -> LossFn:
    """The negative ELBO per datapoint, written by hand in form ``"a"`` or ``"b"``."""
    if form not in VARIANTS:
        raise ValueError(f"form must be one of {VARIANTS}; got {form!r}")
    s, b, k, d = size.S, size.B, size.K, size.D

    def loss(params: dict[str, Any], key: jax.Array, x: jax.Array) -> jax.Array:
        h = x @ params["enc_w"] + params["enc_b"]
        mu, log_var = h[:, :k], h[:, k:]
        eps = jax.random.normal(key, (s, b, k), x.dtype)
        z = mu + jnp.exp(0.5 * log_var) * eps  # (S, B, K)
        if form == "a":
            mean = z @ params["dec_w"] + params["dec_b"]  # (S, B, K) @ (K, D)
        else:
            flat = z.reshape(s * b, k) @ params["dec_w"] + params["dec_b"]  # (S·B, K) @ (K, D)
            mean = flat.reshape(s, b, d)
        log_lik = -0.5 * jnp.sum(jnp.square(x - mean), axis=-1) - 0.5 * d * LOG_2PI  # (S, B)
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mu) - 1.0 - log_var, axis=-1)
        return -jnp.mean(jnp.mean(log_lik, axis=0) - kl)

    return loss


def make_runner(variant: str, size: Size) -> OptaxStepRunner:
    """A training-step runner for form ``variant`` at ``size``."""
    return OptaxStepRunner(make_loss(size, variant), init_params(size), make_data(size))
