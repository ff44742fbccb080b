"""Eight schools (non-centered) by variational inference: a full-rank Gaussian over the
unconstrained parameters, fitted with the ``prior=None`` ELBO (STL gradients) and optax.

The model (posteriordb ``eight_schools-eight_schools_noncentered``)::

    theta_trans ~ normal(0, 1)      (8,)
    mu ~ normal(0, 5)
    tau ~ cauchy(0, 5), tau > 0
    theta = mu + tau * theta_trans
    y ~ normal(theta, sigma)

``jelbo.ParameterSpace`` maps the 10 unconstrained coordinates to ``(theta_trans, mu, tau)``
(``tau = exp(u)``) with the log-det-Jacobian, so the log joint in the unconstrained space is
``log p(y, T(u)) + log|det J_T(u)|``. Run ``python examples/eight_schools.py`` to fit and
compare the posterior means and standard deviations with posteriordb's reference draws
(``bench/posteriordb_data``); it takes a few seconds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import jelbo
from jelbo.parameters import ParameterSpace, positive, real

Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
REFERENCE = (
    Path(__file__).parents[1]
    / "bench/posteriordb_data/eight_schools-eight_schools_noncentered/reference_summary.json"
)

SPACE = ParameterSpace({"theta_trans": real(8), "mu": real(), "tau": positive()})


def normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - jnp.log(scale) - 0.5 * math.log(2 * math.pi)


def log_joint(u):
    """Unnormalized log posterior density of the unconstrained vector ``u`` (shape (10,))."""
    p, log_det = SPACE.constrain(u)
    theta = p["mu"] + p["tau"] * p["theta_trans"]
    log_prior = (
        jnp.sum(normal_logpdf(p["theta_trans"], 0.0, 1.0))
        + normal_logpdf(p["mu"], 0.0, 5.0)
        - jnp.log1p((p["tau"] / 5.0) ** 2)  # half-Cauchy(0, 5), up to a constant
    )
    return log_prior + jnp.sum(normal_logpdf(Y, theta, SIGMA)) + log_det


def make_q(params):
    """The full-rank Gaussian q(u) from unconstrained variational parameters."""
    return jelbo.MultivariateNormalTriL.from_unconstrained_params(**params)


def fit(key, *, num_steps=3000, num_samples=32, learning_rate=2e-2):
    """Maximizes the ELBO; returns the fitted q (a MultivariateNormalTriL over u)."""
    dim = SPACE.dim
    init_q = jelbo.MultivariateNormalTriL(jnp.zeros(dim), jnp.eye(dim))
    params = init_q.unconstrained_params()  # {"loc": (10,), "scale_tril": (55,)}
    objective = jelbo.ELBO(num_samples=num_samples, kl="mc", grad_estimator="stl")
    schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.02)
    optimizer = optax.adam(schedule)

    def loss(params, key):
        return -objective(key, make_q(params), log_joint).value

    @jax.jit
    def run(params, key):
        def step(carry, key):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, key)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        keys = jax.random.split(key, num_steps)
        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), keys)
        return params, losses

    params, losses = run(params, key)
    return make_q(params), losses


def posterior_summary(key, q, num_draws=200_000):
    """Means and sds of mu, tau and theta[1..8] from draws of q mapped to the constrained space."""
    u = jelbo.sample(key, q, (num_draws,))
    p, _ = SPACE.constrain(u)
    theta = p["mu"][:, None] + p["tau"][:, None] * p["theta_trans"]
    draws = {"mu": p["mu"], "tau": p["tau"]}
    draws.update({f"theta[{i + 1}]": theta[:, i] for i in range(8)})
    return {k: (float(jnp.mean(v)), float(jnp.std(v))) for k, v in draws.items()}


def compare(summary, reference):
    """Per parameter ``(|mean - ref mean| / ref sd, sd / ref sd)``."""
    return {
        name: (abs(m - reference[name]["mean"]) / reference[name]["sd"], s / reference[name]["sd"])
        for name, (m, s) in summary.items()
    }


def main():
    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    q, losses = fit(jax.random.key(0))
    jax.block_until_ready(q)
    elapsed = time.perf_counter() - start
    summary = posterior_summary(jax.random.key(1), q)
    table = compare(summary, json.loads(REFERENCE.read_text()))
    print(f"fit in {elapsed:.1f} s; final -ELBO {float(jnp.mean(losses[-200:])):.3f}")
    print(f"{'param':10s} {'|Δmean|/sd':>11s} {'sd ratio':>9s}")
    for name, (z, ratio) in table.items():
        print(f"{name:10s} {z:11.3f} {ratio:9.3f}")
    print(f"max |Δmean|/sd = {max(z for z, _ in table.values()):.3f}")


if __name__ == "__main__":
    main()
