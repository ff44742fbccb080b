"""Contender 7: TensorFlow Probability's JAX substrate (``tfp-nightly``).

The loss is written with ``tfd.Normal``/``tfd.Independent`` and ``tfd.kl_divergence``, then
``jit(value_and_grad)`` + ``optax.adam`` (:class:`OptaxStepRunner`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from tensorflow_probability.substrates import jax as tfp

from bench.jax_common import LossFn, OptaxStepRunner
from bench.workload import Size, init_params, make_data

__all__ = ["make_loss", "make_runner"]

tfd = tfp.distributions


def make_loss(size: Size) -> LossFn:
    """The negative ELBO per datapoint with TFP distributions."""
    k, s = size.K, size.S
    prior = tfd.Independent(tfd.Normal(jnp.zeros(k), jnp.ones(k)), 1)

    def loss(params: dict[str, Any], key: jax.Array, x: jax.Array) -> jax.Array:
        h = x @ params["enc_w"] + params["enc_b"]
        q = tfd.Independent(tfd.Normal(h[:, :k], jnp.exp(0.5 * h[:, k:])), 1)
        z = q.sample(s, seed=key)  # (S, B, K)
        likelihood = tfd.Independent(tfd.Normal(z @ params["dec_w"] + params["dec_b"], 1.0), 1)
        log_lik = likelihood.log_prob(x)  # (S, B)
        return -jnp.mean(jnp.mean(log_lik, axis=0) - tfd.kl_divergence(q, prior))

    return loss


def make_runner(variant: str, size: Size) -> OptaxStepRunner:
    """The TFP-on-JAX step at ``size`` (``variant`` must be ``"step"``)."""
    if variant != "step":
        raise ValueError(f"tfp-jax has only the 'step' variant; got {variant!r}")
    return OptaxStepRunner(make_loss(size), init_params(size), make_data(size))
