"""Contender 4: jelbo, written the way its README tells users to write it.

- ``"step"``: the training step with :class:`jelbo.ELBO` and a per-example
  ``log_likelihood(z, x)`` (one latent, one datapoint), ``jit(value_and_grad)`` + optax;
- ``"value"``: the same :class:`jelbo.ELBO` loss, value only;
- ``"classic"``: :func:`jelbo.classic.compute_elbo` (the recipe's unnormalized
  reconstruction term), vmapped over the datapoints, value only;
- ``"noise"``: only the draw of the ``S·B·K`` latents ``z ~ q`` (averaged, so the draw is
  not dead code), with the sampler ``jelbo.ELBO`` uses: a floor under any step that draws
  them, and so a ceiling on how many times faster than the NumPy loop a step can be.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import jelbo
from bench.jax_common import LossFn, OptaxStepRunner, ValueRunner
from bench.runner import Runner
from bench.workload import Size, init_params, make_data

__all__ = ["make_classic_loss", "make_loss", "make_noise_loss", "make_runner"]

VARIANTS = ("step", "value", "classic", "noise")


def make_loss(size: Size) -> LossFn:
    """The negative ELBO per datapoint via :class:`jelbo.ELBO`."""
    k = size.K
    prior = jelbo.Normal(jnp.zeros(k), jnp.ones(k))

    def loss(params: dict[str, Any], key: jax.Array, x: jax.Array) -> jax.Array:
        h = x @ params["enc_w"] + params["enc_b"]
        q = jelbo.Normal.from_log_var(h[:, :k], h[:, k:])

        def log_likelihood(z: jax.Array, x: jax.Array) -> jax.Array:
            mean = z @ params["dec_w"] + params["dec_b"]
            return jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, 1.0))

        bound = jelbo.ELBO(num_samples=size.S)(key, q, log_likelihood, prior, x)
        return -jnp.mean(bound.value)

    return loss


def make_classic_loss(size: Size) -> LossFn:
    """The recipe's negative ELBO per datapoint via :func:`jelbo.classic.compute_elbo`."""
    k, s = size.K, size.S

    def loss(params: dict[str, Any], key: jax.Array, x: jax.Array) -> jax.Array:
        h = x @ params["enc_w"] + params["enc_b"]
        mu, log_var = h[:, :k], h[:, k:]

        def decoder(z: jax.Array) -> jax.Array:
            return z @ params["dec_w"] + params["dec_b"]

        def one(key: jax.Array, x: jax.Array, mu: jax.Array, log_var: jax.Array) -> jax.Array:
            z = jelbo.classic.reparameterize(key, mu, log_var, s)
            return jelbo.classic.compute_elbo(x, z, mu, log_var, decoder)[0]

        keys = jax.random.split(key, x.shape[0])
        return -jnp.mean(jax.vmap(one)(keys, x, mu, log_var))

    return loss


def make_noise_loss(size: Size) -> LossFn:
    """The mean of ``S`` draws of ``z ~ q(z|x)`` for the batch (``jelbo.sample``)."""
    k, s = size.K, size.S

    def loss(params: dict[str, Any], key: jax.Array, x: jax.Array) -> jax.Array:
        q = jelbo.Normal(jnp.zeros((x.shape[0], k), x.dtype), jnp.ones((x.shape[0], k), x.dtype))
        return jnp.mean(jelbo.sample(key, q, (s,)))

    return loss


def make_runner(variant: str, size: Size) -> Runner:
    """A runner for ``variant`` (``"step"``, ``"value"`` or ``"classic"``) at ``size``."""
    params, x = init_params(size), make_data(size)
    if variant == "step":
        return OptaxStepRunner(make_loss(size), params, x)
    if variant == "value":
        return ValueRunner(make_loss(size), params, x)
    if variant == "classic":
        return ValueRunner(make_classic_loss(size), params, x)
    if variant == "noise":
        return ValueRunner(make_noise_loss(size), params, x)
    raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
