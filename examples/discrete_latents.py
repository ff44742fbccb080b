r"""A sigmoid belief net on binarized digits, trained with score-function gradients.

Model (scikit-learn's bundled 8×8 digits, binarized at half intensity, :math:`D = 64`;
:math:`H` binary latents):

.. math::
    p(z) = \prod_h \mathrm{Bernoulli}(z_h;\ \sigma(\pi_h)), \qquad
    p(x\mid z) = \prod_d \mathrm{Bernoulli}(x_d;\ \sigma(Wz + b)_d), \qquad
    q(z\mid x) = \prod_h \mathrm{Bernoulli}(z_h;\ \sigma(Ax + c)_h).

Binary latents cannot be reparameterized, so the encoder's gradient comes from the score
function :math:`f\,\nabla\log q(z)`. We train the same model from the same initialization
with three estimators (in lockstep, on the same minibatches and keys), each using :math:`K`
samples per datapoint:

- ``score``: ``jelbo.ELBO(K, grad_estimator="score", baseline=0.0)``, plain REINFORCE;
- ``score-loo``: ``jelbo.ELBO(K, grad_estimator="score")``, each sample's baseline the
  mean learning signal of the other :math:`K-1` samples (leave-one-out);
- ``vimco``: ``jelbo.IWAE(K, grad_estimator="vimco")`` (Mnih & Rezende 2016),
  the IWAE bound with VIMCO's leave-one-out control variates.

Both ELBO estimators use the closed-form Bernoulli KL (its gradient is exact); only
:math:`\mathbb E_q[\log p(x|z)]` goes through the score function. The script prints each
estimator's training objective as it trains, then evaluates all three models on the same
footing (train-set ELBO and IWAE-256 bound, nats per digit), and measures the variance of
the encoder gradient of each estimator over 256 keys at the same parameters (at
initialization and at the end of VIMCO training).

Run: ``python examples/discrete_latents.py [--steps 1500] [--samples 8] [--latents 16]``.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import jelbo

Array = jax.Array
Params = dict[str, Array]

# Each estimator is an objective for K samples per datapoint.
OBJECTIVES: dict[str, Callable[[int], jelbo.ELBO | jelbo.IWAE]] = {
    "score": lambda k: jelbo.ELBO(k, grad_estimator="score", baseline=0.0),
    "score-loo": lambda k: jelbo.ELBO(k, grad_estimator="score"),
    "vimco": lambda k: jelbo.IWAE(k, grad_estimator="vimco"),
}
ESTIMATORS = tuple(OBJECTIVES)


def load_binarized_digits() -> Array:
    """scikit-learn's 1797 digits (pixel values 0..16) binarized at 8: ``(1797, 64)`` 0/1."""
    return jnp.asarray(load_digits().data >= 8.0, dtype=jnp.float32)


def init_params(key: Array, x: Array, num_latents: int) -> Params:
    """Small random weights; the decoder bias starts at the logit of the mean pixel."""
    k_enc, k_dec = jax.random.split(key)
    mean = jnp.clip(jnp.mean(x, axis=0), 0.01, 0.99)
    return {
        "A": 0.01 * jax.random.normal(k_enc, (num_latents, x.shape[1])),
        "c": jnp.zeros(num_latents),
        "W": 0.1 * jax.random.normal(k_dec, (x.shape[1], num_latents)),
        "b": jnp.log(mean) - jnp.log1p(-mean),
        "prior": jnp.zeros(num_latents),
    }


def model(params: Params, x: Array) -> tuple[jelbo.Bernoulli, Callable, jelbo.Bernoulli]:
    """``(q(z|x) for the batch, log p(x|z) for one z and one x, p(z))``."""
    q = jelbo.Bernoulli(logits=x @ params["A"].T + params["c"])
    prior = jelbo.Bernoulli(logits=params["prior"])

    def log_likelihood(z: Array, x: Array) -> Array:
        return jelbo.log_prob(jelbo.Bernoulli(logits=params["W"] @ z + params["b"]), x)

    return q, log_likelihood, prior


def objective(estimator: str, num_samples: int) -> Callable[[Array, Params, Array], Array]:
    """The per-batch training objective (mean over datapoints) for an estimator."""
    chosen = OBJECTIVES[estimator](num_samples)

    def bound(key: Array, params: Params, x: Array) -> Array:
        q, log_likelihood, prior = model(params, x)
        return jnp.mean(chosen(key, q, log_likelihood, prior, x).value)

    return bound


def train(
    key: Array,
    init: Params,
    x: Array,
    *,
    num_samples: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    report_every: int,
) -> tuple[dict[str, Params], dict[str, np.ndarray]]:
    """Adam on minibatches, all estimators in lockstep from ``init`` on the same minibatches
    and keys (one compiled program). Returns the final parameters and the mean training
    objective over each ``report_every`` steps, per estimator."""
    bounds = {e: objective(e, num_samples) for e in ESTIMATORS}
    optimizer = optax.adam(learning_rate)

    def step(carry, key):
        k_batch, k_bound = jax.random.split(key)
        batch = x[jax.random.choice(k_batch, x.shape[0], (batch_size,), replace=False)]
        new, values = {}, {}
        for e, (params, state) in carry.items():
            values[e], grads = jax.value_and_grad(bounds[e], argnums=1)(k_bound, params, batch)
            ascent = jax.tree_util.tree_map(jnp.negative, grads)
            updates, state = optimizer.update(ascent, state)
            new[e] = (optax.apply_updates(params, updates), state)
        return new, values

    @jax.jit
    def run(carry, keys):
        carry, values = jax.lax.scan(step, carry, keys)
        return carry, {e: jnp.mean(v) for e, v in values.items()}

    carry = {e: (init, optimizer.init(init)) for e in ESTIMATORS}
    curves: dict[str, list[float]] = {e: [] for e in ESTIMATORS}
    for chunk_keys in jax.random.split(key, (steps // report_every, report_every)):
        carry, means = run(carry, chunk_keys)
        for e in ESTIMATORS:
            curves[e].append(float(means[e]))
    return {e: carry[e][0] for e in ESTIMATORS}, {e: np.array(c) for e, c in curves.items()}


@jax.jit
def evaluate(key: Array, params: Params, x: Array) -> tuple[Array, Array]:
    """Train-set ELBO (analytic KL, 64 samples) and IWAE-256 bound, nats per digit."""
    q, log_likelihood, prior = model(params, x)
    k1, k2 = jax.random.split(key)
    elbo = jelbo.ELBO(64, grad_estimator="score")(k1, q, log_likelihood, prior, x)
    iwae = jelbo.IWAE(256, grad_estimator="vimco", sample_chunk_size=64)(
        k2, q, log_likelihood, prior, x
    )
    return jnp.mean(elbo.value), jnp.mean(iwae.value)


@functools.partial(jax.jit, static_argnames=("num_samples", "num_keys"))
def encoder_gradient_variance(
    key: Array, params: Params, x: Array, *, num_samples: int, num_keys: int = 256
) -> dict[str, Array]:
    """Total variance (summed over coordinates) of the encoder gradient, per estimator."""
    keys = jax.random.split(key, num_keys)
    out = {}
    for estimator in ESTIMATORS:
        grad = jax.grad(objective(estimator, num_samples), argnums=1)
        draws = jax.vmap(lambda k, g=grad: g(k, params, x))(keys)
        out[estimator] = sum(jnp.sum(jnp.var(draws[n], axis=0)) for n in ("A", "c"))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--samples", type=int, default=8, help="K samples per datapoint")
    parser.add_argument("--latents", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--report-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be >= 2 (leave-one-out and VIMCO need two samples)")
    if args.steps % args.report_every:
        parser.error("--steps must be a multiple of --report-every")

    start = time.perf_counter()
    x = load_binarized_digits()
    k_init, k_train, k_eval, k_var = jax.random.split(jax.random.key(args.seed), 4)
    init = init_params(k_init, x, args.latents)
    print(
        f"sigmoid belief net: {x.shape[0]} binarized digits, D={x.shape[1]}, "
        f"H={args.latents} binary latents, K={args.samples} samples, {args.steps} Adam steps"
    )

    trained, curves = train(
        k_train,
        init,
        x,
        num_samples=args.samples,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        report_every=args.report_every,
    )

    steps = [args.report_every * (i + 1) for i in range(args.steps // args.report_every)]
    print("\ntraining objective (mean over the last steps' minibatches, nats per digit)")
    print("  step  " + "".join(f"{e:>12s}" for e in ESTIMATORS))
    for i, step in enumerate(steps):
        print(f"{step:6d}  " + "".join(f"{curves[e][i]:12.2f}" for e in ESTIMATORS))
    print("  (score and score-loo maximize the ELBO, vimco the IWAE bound)")

    print("\nall trained models on the same footing (train set, nats per digit)")
    print(f"{'':12s}{'ELBO':>10s}{'IWAE-256':>10s}")
    for estimator in ("init", *ESTIMATORS):
        params = init if estimator == "init" else trained[estimator]
        elbo, iwae = evaluate(k_eval, params, x)
        print(f"{estimator:12s}{float(elbo):10.2f}{float(iwae):10.2f}")

    batch = x[: args.batch_size]
    print(f"\nencoder gradient variance (sum over A, c; 256 keys, {args.batch_size} digits)")
    print(f"{'at':18s}" + "".join(f"{e:>12s}" for e in ESTIMATORS) + "   ratio to score")
    for label, params in (("initialization", init), ("end of vimco", trained["vimco"])):
        var = {
            e: float(v)
            for e, v in encoder_gradient_variance(
                k_var, params, batch, num_samples=args.samples
            ).items()
        }
        ratios = " / ".join(f"{var[e] / var['score']:.3g}" for e in ESTIMATORS[1:])
        print(f"{label:18s}" + "".join(f"{var[e]:12.3g}" for e in ESTIMATORS) + f"   {ratios}")
    print(f"\n{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
