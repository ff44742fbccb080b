r"""A nonlinear VAE on scikit-learn's digits with switchable latents, likelihoods and bounds.

Model: an MLP encoder :math:`q_\phi(z\mid x)` and an MLP decoder :math:`p_\theta(x\mid z)`
(two hidden layers of ``--hidden`` tanh units each, written with ``flax.nnx``), trained with
``optax.adam`` through ONE jitted train step on scikit-learn's bundled 8×8 digits (1797 × 64,
no download; a fixed 80/20 train/test split).

``--latent``
    - ``gaussian``: :math:`q = \mathcal N(\mu(x), \mathrm{diag}\,\sigma^2(x))`,
      prior :math:`\mathcal N(0, I)`, closed-form KL.
    - ``dirichlet``: :math:`q = \mathrm{Dir}(\alpha(x))` on the simplex, prior
      :math:`\mathrm{Dir}(0.5\cdot\mathbf 1)`, closed-form KL; sampled by implicit
      reparameterization (``jelbo.Dirichlet``).
    - ``gumbel-softmax``: ``--categoricals`` independent Concrete / Gumbel-softmax variables
      of ``--latent-dim`` categories each (``jelbo.RelaxedOneHotCategorical`` made one latent
      of event shape ``(categoricals, latent_dim)`` by ``jelbo.Independent``), against
      uniform relaxed priors at the same temperature, Monte Carlo KL. The temperature is
      annealed from 1 to ``--min-temperature`` (exponential decay per step); the test bound is
      that of the relaxed model at the final temperature.

``--posterior`` (with ``--latent gaussian``): ``gaussian`` (the diagonal Gaussian above) or
``iaf``: the encoder also outputs a context vector :math:`h(x)` (``--context-dim``) and the
posterior is the Gaussian pushed through a conditional inverse autoregressive flow,
:math:`z = f_\psi(z_0; h(x))`, :math:`z_0 \sim \mathcal N(\mu(x), \mathrm{diag}\,\sigma^2(x))`
(``jelbo.flows.masked_autoregressive(..., inverse=True, context_dim=C)``, ``--flow-layers``
layers; Kingma et al. 2016). Its KL has no closed form: the ELBO uses the Monte Carlo KL on
its own sample, whose log-density costs one network pass per flow layer (no inverse).

``--likelihood``: ``bernoulli`` on the digits binarized at half intensity, or
``continuous-bernoulli`` (``jelbo.ContinuousBernoulli``, Loaiza-Ganem & Cunningham 2019) on
the grey levels :math:`x/16 \in [0, 1]` (its log-density is a density, so its nats are not
comparable to the binary model's).

``--objective``: ``elbo`` (``jelbo.ELBO``, one sample) or ``iwae`` (``jelbo.IWAE`` with
``--num-samples`` samples).

At the end it reports the test-set importance-weighted bound with 1000 samples (nats per
digit, ± its standard error), writes ``summary.json`` and ``vae.png`` (test digits and
their reconstructions, samples from the prior, a latent traversal) to ``--out`` (default
``runs/vae``, git-ignored).

Run: ``python examples/vae.py --latent dirichlet --likelihood bernoulli --objective iwae``
or ``python examples/vae.py --posterior iaf``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from tqdm import tqdm

import jelbo
from jelbo import flows

LATENTS = ("gaussian", "dirichlet", "gumbel-softmax")
LIKELIHOODS = ("bernoulli", "continuous-bernoulli")
OBJECTIVES = ("elbo", "iwae")
POSTERIORS = ("gaussian", "iaf")
DIRICHLET_PRIOR = 0.5


def relaxed_categoricals(temperature: jax.Array, logits: jax.Array) -> jelbo.Distribution:
    """``N`` independent Gumbel-softmax variables as ONE latent of event shape ``(N, C)``.

    ``jelbo.RelaxedOneHotCategorical`` with logits ``(*batch, N, C)`` has batch shape
    ``(*batch, N)``; the bounds treat the batch shape as the data batch, so
    ``jelbo.Independent`` moves the ``N`` axis into the event (the log-densities add up).
    """
    return jelbo.Independent(jelbo.RelaxedOneHotCategorical(temperature, logits=logits), 1)


class MLP(nnx.Module):
    """``in -> hidden -> hidden -> out`` with tanh activations."""

    def __init__(self, sizes: tuple[int, ...], rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = jnp.tanh(layer(x))
        return self.layers[-1](x)


class VAE(nnx.Module):
    def __init__(self, args: argparse.Namespace, pixel_logit: np.ndarray, rngs: nnx.Rngs):
        self.latent = args.latent
        self.code_shape = code_shape(args)
        self.context_dim = args.context_dim if args.posterior == "iaf" else 0
        size = math.prod(self.code_shape)
        out = 2 * size + self.context_dim if args.latent == "gaussian" else size
        self.encoder = MLP((64, args.hidden, args.hidden, out), rngs)
        self.decoder = MLP((size, args.hidden, args.hidden, 64), rngs)
        # Start the decoder at the mean image.
        last = self.decoder.layers[-1]
        last.bias = nnx.Param(jnp.asarray(pixel_logit, jnp.float32))

    def posterior(
        self, x: jax.Array, temperature: jax.Array, flow: flows.InverseAutoregressive | None
    ) -> jelbo.Distribution:
        """q(z | x); with ``flow`` (``--posterior iaf``) the Gaussian pushed through the
        flow conditioned on the encoder's context output (one context per digit)."""
        h = self.encoder(x)
        if self.latent == "gaussian":
            k = self.code_shape[0]
            loc, pre, context = h[..., :k], h[..., k : 2 * k], h[..., 2 * k :]
            gaussian = jelbo.Normal(loc, jax.nn.softplus(pre) + 1e-4)
            if flow is None:
                return gaussian
            return jelbo.Transformed(gaussian, flow.condition(context))
        if self.latent == "dirichlet":
            return jelbo.Dirichlet(jnp.exp(jnp.clip(h, -7.0, 7.0)))
        return relaxed_categoricals(temperature, h.reshape(*h.shape[:-1], *self.code_shape))

    def decode(self, z: jax.Array) -> jax.Array:
        """Decoder logits for one or more latents."""
        return self.decoder(z.reshape(*z.shape[: z.ndim - len(self.code_shape)], -1))


def code_shape(args: argparse.Namespace) -> tuple[int, ...]:
    if args.latent == "gumbel-softmax":
        return (args.categoricals, args.latent_dim)
    return (args.latent_dim,)


def make_prior(args: argparse.Namespace, temperature: jax.Array) -> jelbo.Distribution:
    k = args.latent_dim
    if args.latent == "gaussian":
        return jelbo.Normal(jnp.zeros(k), jnp.ones(k))
    if args.latent == "dirichlet":
        return jelbo.Dirichlet(jnp.full(k, DIRICHLET_PRIOR))
    return relaxed_categoricals(temperature, jnp.zeros(code_shape(args)))


def likelihood(args: argparse.Namespace, logits: jax.Array) -> jelbo.Distribution:
    if args.likelihood == "bernoulli":
        return jelbo.Bernoulli(logits=logits)
    return jelbo.ContinuousBernoulli(logits=logits)


def load_data(likelihood_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Train/test digits (a fixed 80/20 split): 0/1 pixels or grey levels in [0, 1]."""
    pixels = np.asarray(load_digits(return_X_y=True)[0]) / 16.0
    if likelihood_name == "bernoulli":
        pixels = (pixels >= 0.5).astype(np.float64)
    order = np.random.default_rng(0).permutation(len(pixels))
    n_test = len(pixels) // 5
    return pixels[order[n_test:]].astype(np.float32), pixels[order[:n_test]].astype(np.float32)


def make_flow(args: argparse.Namespace) -> flows.InverseAutoregressive | None:
    """The conditional IAF of ``--posterior iaf`` (float32, like the networks), else None."""
    if args.posterior != "iaf":
        return None
    flow = flows.masked_autoregressive(
        jax.random.key(args.seed + 7),
        args.latent_dim,
        num_layers=args.flow_layers,
        context_dim=args.context_dim,
        inverse=True,
        dtype=jnp.float32,
    )
    assert isinstance(flow, flows.InverseAutoregressive)
    return flow


def label(args: argparse.Namespace) -> str:
    return args.latent if args.posterior == "gaussian" else f"{args.latent}+{args.posterior}"


def kl_for(args: argparse.Namespace) -> str:
    """The ELBO's KL: closed form where one exists (Gaussian or Dirichlet q and prior)."""
    closed_form = args.latent in ("gaussian", "dirichlet") and args.posterior == "gaussian"
    return "analytic" if closed_form else "mc"


def objective_for(args: argparse.Namespace, num_samples: int | None = None):
    if args.objective == "elbo" and num_samples is None:
        return jelbo.ELBO(num_samples=1, kl=kl_for(args))
    return jelbo.IWAE(num_samples=num_samples or args.num_samples)


def temperature_at(args: argparse.Namespace, step: jax.Array | int) -> jax.Array:
    """exp(-rate * step), floored at --min-temperature (the rate reaches the floor at 2/3 of
    the run)."""
    rate = -math.log(args.min_temperature) / max(1.0, 2.0 * args.steps / 3.0)
    return jnp.maximum(args.min_temperature, jnp.exp(-rate * jnp.asarray(step, jnp.float32)))


def bound(args, model, flow, key, x, temperature, objective):
    q = model.posterior(x, temperature, flow)

    def log_likelihood(z, x_one):
        return jelbo.log_prob(likelihood(args, model.decode(z)), x_one)

    return objective(key, q, log_likelihood, make_prior(args, temperature), x)


def train(args: argparse.Namespace) -> dict:
    x_train, x_test = load_data(args.likelihood)
    mean = np.clip(x_train.mean(0), 1e-3, 1 - 1e-3)
    model = VAE(args, np.log(mean) - np.log1p(-mean), nnx.Rngs(args.seed))
    graphdef, net_params = nnx.split(model)
    params = (net_params, make_flow(args))
    steps_per_epoch = len(x_train) // args.batch_size
    args.steps = args.epochs * steps_per_epoch
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, 100, max(args.steps, 101))
    tx = optax.adam(schedule)
    opt_state = tx.init(params)
    objective = objective_for(args)

    @jax.jit
    def train_step(params, opt_state, key, x, step):
        def loss(params):
            out = bound(
                args,
                nnx.merge(graphdef, params[0]),
                params[1],
                key,
                x,
                temperature_at(args, step),
                objective,
            )
            return -jnp.mean(out.value)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, -value

    key = jax.random.key(args.seed)
    x_train_j = jnp.asarray(x_train)
    history = []
    value = jnp.nan
    start = time.perf_counter()
    step = 0
    for _ in (bar := tqdm(range(args.epochs), disable=args.quiet, desc=label(args))):
        key, k_perm = jax.random.split(key)
        order = jax.random.permutation(k_perm, len(x_train))[: steps_per_epoch * args.batch_size]
        batches = x_train_j[order].reshape(steps_per_epoch, args.batch_size, 64)
        for batch in batches:
            key, k_step = jax.random.split(key)
            params, opt_state, value = train_step(params, opt_state, k_step, batch, step)
            step += 1
        history.append(float(value))
        bar.set_postfix(bound=f"{history[-1]:.2f}")
    train_seconds = time.perf_counter() - start

    model, flow = nnx.merge(graphdef, params[0]), params[1]
    final_temperature = temperature_at(args, args.steps)
    evaluate = jax.jit(
        lambda key, x: bound(
            args, model, flow, key, x, final_temperature,
            jelbo.IWAE(num_samples=args.eval_samples, sample_chunk_size=100),
        )
    )  # fmt: skip
    test = evaluate(jax.random.key(args.seed + 1), jnp.asarray(x_test))
    test_bound = float(jnp.mean(test.value))
    test_se = float(jnp.sqrt(jnp.sum(test.stderr**2)) / len(x_test))
    # The ELBO on the test set (100 draws): IWAE-1000 minus it estimates (an upper bound on)
    # KL(q(z|x) || p(z|x)) under the trained model, i.e. how good the posterior family is.
    test_elbo = jax.jit(
        lambda key, x: bound(
            args, model, flow, key, x, final_temperature,
            jelbo.ELBO(num_samples=args.eval_elbo_samples, kl=kl_for(args)),
        )
    )(jax.random.key(args.seed + 2), jnp.asarray(x_test))  # fmt: skip
    summary = {
        "latent": args.latent,
        "posterior": args.posterior,
        "flow_layers": args.flow_layers if args.posterior == "iaf" else None,
        "context_dim": args.context_dim if args.posterior == "iaf" else None,
        "likelihood": args.likelihood,
        "objective": args.objective,
        "num_samples": 1 if args.objective == "elbo" else args.num_samples,
        "latent_dim": args.latent_dim,
        "categoricals": args.categoricals if args.latent == "gumbel-softmax" else None,
        "final_temperature": float(final_temperature) if args.latent == "gumbel-softmax" else None,
        "seed": args.seed,
        "epochs": args.epochs,
        "steps": args.steps,
        "train_seconds": train_seconds,
        "final_train_objective": history[-1],
        "test_iwae_samples": args.eval_samples,
        "test_iwae_bound": test_bound,
        "test_iwae_bound_stderr": test_se,
        "test_iwae_ess_fraction": float(jnp.mean(test.ess)) / args.eval_samples,
        "test_elbo_samples": args.eval_elbo_samples,
        "test_elbo": float(jnp.mean(test_elbo.value)),
        "test_elbo_stderr": float(jnp.sqrt(jnp.sum(test_elbo.stderr**2)) / len(x_test)),
        "num_train": len(x_train),
        "num_test": len(x_test),
    }
    if not args.quiet:
        print(
            f"{label(args)}/{args.likelihood}/{args.objective}: trained {args.steps} steps in "
            f"{train_seconds:.1f} s; test IWAE-{args.eval_samples} bound "
            f"{test_bound:.3f} ± {test_se:.3f} nats per digit (test ELBO "
            f"{summary['test_elbo']:.3f})"
        )
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        if not args.no_figure:
            path = os.path.join(args.out, "vae.png")
            figure(args, model, flow, x_test, final_temperature, path)
    return summary


def traversal(args: argparse.Namespace, n: int) -> np.ndarray:
    """Latent codes along a path: the first two Gaussian coordinates over [-2.5, 2.5]; for
    the Dirichlet, from vertex i to vertex i+1 of the simplex; for the categoricals, the
    first variable through its categories (the others at their first category)."""
    k = args.latent_dim
    if args.latent == "gaussian":
        grid = np.linspace(-2.5, 2.5, n)
        codes = np.zeros((2, n, k))
        codes[0, :, 0] = grid
        codes[1, :, min(1, k - 1)] = grid
        return codes
    if args.latent == "dirichlet":
        t = np.linspace(0.0, 1.0, n)[:, None]
        eye = np.eye(k) * 0.9 + 0.1 / k
        return np.stack([(1 - t) * eye[i] + t * eye[(i + 1) % k] for i in range(2)])
    codes = np.zeros((2, n, args.categoricals, k))
    codes[..., 0] = 1.0
    for j in range(n):
        codes[0, j, 0] = np.eye(k)[j % k]
        codes[1, j, 1] = np.eye(k)[j % k]
    return codes


def figure(args, model, flow, x_test, temperature, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 10

    def pixel_means(z: jax.Array) -> jax.Array:
        return likelihood(args, model.decode(z)).mean()

    q = model.posterior(jnp.asarray(x_test[:n]), temperature, flow)
    recon = pixel_means(jelbo.sample(jax.random.key(0), q))
    samples = pixel_means(jelbo.sample(jax.random.key(1), make_prior(args, temperature), (n,)))
    trav = pixel_means(jnp.asarray(traversal(args, n), jnp.float32))
    rows = [("test digits", x_test[:n]), ("reconstructions", recon), ("prior samples", samples)]
    rows += [(f"traversal {i + 1}", trav[i]) for i in range(2)]
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0))
    for r, (title, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=7)
    posterior = "" if args.posterior == "gaussian" else f" ({args.posterior} posterior)"
    fig.suptitle(
        f"{args.latent} latent{posterior}, {args.likelihood}, {args.objective}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--latent", choices=LATENTS, default="gaussian")
    p.add_argument("--posterior", choices=POSTERIORS, default="gaussian")
    p.add_argument("--flow-layers", type=int, default=2, help="IAF layers (--posterior iaf)")
    p.add_argument("--context-dim", type=int, default=16, help="encoder context for the IAF")
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli")
    p.add_argument("--objective", choices=OBJECTIVES, default="elbo")
    p.add_argument("--latent-dim", type=int, default=None, help="K (categories for gumbel)")
    p.add_argument("--categoricals", type=int, default=8, help="Gumbel-softmax variables")
    p.add_argument("--min-temperature", type=float, default=0.5)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--num-samples", type=int, default=8, help="IWAE samples in training")
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--eval-elbo-samples", type=int, default=100, help="test ELBO draws")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("runs", "vae"))
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.posterior != "gaussian" and args.latent != "gaussian":
        p.error(f"--posterior {args.posterior} needs --latent gaussian (got {args.latent}).")
    if args.latent_dim is None:
        args.latent_dim = {"gaussian": 8, "dirichlet": 10, "gumbel-softmax": 8}[args.latent]
    return args


if __name__ == "__main__":
    train(parse_args())
