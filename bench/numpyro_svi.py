"""Contender 5: NumPyro SVI on the same model and guide.

``"trace"`` uses ``Trace_ELBO`` (Monte Carlo KL), ``"meanfield"`` uses ``TraceMeanField_ELBO``
(analytic KL between the Normal guide and prior), both with ``num_particles=S,
vectorize_particles=True``; model and guide are scaled by ``1/B`` so the loss is the batch
mean, and ``svi.update`` is ``jax.jit``-compiled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from bench.jax_common import UpdateRunner
from bench.runner import check_variant
from bench.workload import LEARNING_RATE, Params, Size, init_params, make_data

__all__ = ["make_runner"]

VARIANTS = ("trace", "meanfield")


class SVIRunner(UpdateRunner):
    """``jit(svi.update)`` on a fixed batch."""

    def __init__(
        self, variant: str, params: Params, x: np.ndarray, num_samples: int, seed: int = 0
    ) -> None:
        b, k = x.shape[0], params["dec_w"].shape[0]

        def model(x: jax.Array) -> None:
            dec_w = numpyro.param("dec_w", jnp.asarray(params["dec_w"]))
            dec_b = numpyro.param("dec_b", jnp.asarray(params["dec_b"]))
            with numpyro.plate("data", b):
                z = numpyro.sample("z", dist.Normal(jnp.zeros(k), jnp.ones(k)).to_event(1))
                numpyro.sample("x", dist.Normal(z @ dec_w + dec_b, 1.0).to_event(1), obs=x)

        def guide(x: jax.Array) -> None:
            enc_w = numpyro.param("enc_w", jnp.asarray(params["enc_w"]))
            enc_b = numpyro.param("enc_b", jnp.asarray(params["enc_b"]))
            h = x @ enc_w + enc_b
            with numpyro.plate("data", b):
                scale = jnp.exp(0.5 * h[:, k:])
                numpyro.sample("z", dist.Normal(h[:, :k], scale).to_event(1))

        elbo_cls = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}[variant]
        loss = elbo_cls(num_particles=num_samples, vectorize_particles=True)
        svi = SVI(
            handlers.scale(model, scale=1.0 / b),
            handlers.scale(guide, scale=1.0 / b),
            numpyro.optim.Adam(LEARNING_RATE),
            loss,
        )
        super().__init__(svi.update, svi.init(jax.random.PRNGKey(seed), jnp.asarray(x)), x)


def make_runner(variant: str, size: Size) -> SVIRunner:
    """An SVI runner with ``Trace_ELBO`` (``"trace"``) or ``TraceMeanField_ELBO``."""
    check_variant("numpyro", variant, VARIANTS)
    return SVIRunner(variant, init_params(size), make_data(size), size.S)
