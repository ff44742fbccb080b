r"""Fit a linear VAE (probabilistic PCA) with optax and jelbo, and prove it reached the optimum.

The model (``_linear.py``, shared with ``sharded_training.py`` and the tests):
:math:`p(z) = \mathcal N(0, I_K)`, :math:`p(x\mid z) = \mathcal N(Wz + b, \sigma^2 I)`,
:math:`q(z\mid x) = \mathcal N(Ax + a, \mathrm{diag}(\mathrm{softplus}(Cx + c)))`, trained on
the ELBO or the IWAE bound with ``optax.adam``, by default on scikit-learn's 8×8 digits. Its
:math:`\log p(x)` is exact and its optimum known in closed form (``ppca.py``): the script
prints jelbo's final ELBO with its standard error, the exact ELBO and log-likelihood of the fit
and the optimum, and checks ``ELBO <= log-likelihood <= optimum``. It writes ``params.npz``,
``summary.json``, ``fit_linear_decoder.png`` and, every epoch, ``checkpoint.npz`` (``--resume``
ends bit-identical to an uninterrupted run) to ``--out``, atomically. Options: ``--help``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _linear as linear  # the model and its closed-form references
import _report as report  # the final numbers, the printed table, the figure
import _training as tr  # options, checkpoints, atomic files
import jax
import jax.numpy as jnp
import numpy as np
import optax
import ppca
from _linear import Array, Params, Standardizer
from tqdm.auto import tqdm

import jelbo

Objective = jelbo.ELBO | jelbo.IWAE
CHECKPOINT, FIGURE = "checkpoint.npz", "fit_linear_decoder.png"
ESTIMATORS = {"elbo": ("reparam", "stl"), "iwae": ("reparam", "dreg")}


@dataclasses.dataclass(frozen=True)
class Config:
    """Every option, each a command-line flag (``batch_size`` is ``--batch-size``)."""

    latent_dim: int = tr.option(2, "K, the number of latents", tr.AT_LEAST_1)
    epochs: int = tr.option(150, "passes over the training rows", tr.AT_LEAST_1)
    batch_size: int = tr.option(128, "rows per minibatch (drops the rest)", tr.AT_LEAST_1)
    lr: float = tr.option(0.1, "peak learning rate", tr.POSITIVE)
    num_samples: int = tr.option(1, "samples per datapoint in training", tr.AT_LEAST_1)
    objective: str = tr.option("elbo", "training objective", choices=tuple(ESTIMATORS))
    grad_estimator: str = tr.option("reparam", "elbo: reparam|stl, iwae: reparam|dreg")
    seed: int = tr.option(0, "seeds the split, the initialization and all sampling")
    test_fraction: float = tr.option(0.2, "fraction of rows held out", tr.FRACTION)
    warmup_fraction: float = tr.option(0.02, "fraction of steps warming up", tr.FRACTION)
    final_lr_fraction: float = tr.option(1e-3, "final / peak learning rate", tr.NON_NEGATIVE)
    eval_samples: int = tr.option(16, "samples per row of an ELBO estimate", tr.AT_LEAST_1)
    final_eval_repeats: int = tr.option(125, "final estimates", tr.AT_LEAST_1, trajectory=False)
    data: str | None = tr.option(None, "(N, D) .npy array instead of the digits", trajectory=False)
    out: str = tr.option("runs/linear_decoder", "output directory", trajectory=False)
    resume: bool = tr.option(False, "continue from OUT/checkpoint.npz", trajectory=False)
    no_progress: bool = tr.option(False, "no progress bar", trajectory=False)

    def __post_init__(self) -> None:
        tr.check(self)
        if self.grad_estimator not in (allowed := ESTIMATORS[self.objective]):
            raise ValueError(f"--objective {self.objective} takes --grad-estimator in {allowed}")

    def training_bound(self) -> Objective:
        """The training objective (STL with the Monte Carlo KL)."""
        if self.objective == "iwae":
            return jelbo.IWAE(self.num_samples, grad_estimator=self.grad_estimator)
        kl = "mc" if self.grad_estimator == "stl" else "analytic"
        return jelbo.ELBO(self.num_samples, kl=kl, grad_estimator=self.grad_estimator)


@functools.partial(jax.jit, static_argnames=("optimizer", "batch_size"))
def run_epoch(
    params: Params, opt_state: optax.OptState, std: Standardizer, key: Array, x: Array,
    objective: Objective, optimizer: optax.GradientTransformation, batch_size: int,
) -> tuple[Params, optax.OptState, Array]:  # fmt: skip
    """One pass over ``x`` in shuffled minibatches, an optax step on each (a ``lax.scan``);
    returns ``(params, opt_state, each minibatch's average bound)``."""
    perm_key, step_key = jax.random.split(key)
    steps = x.shape[0] // batch_size
    order = jax.random.permutation(perm_key, x.shape[0])[: steps * batch_size]

    def step(
        carry: tuple[Params, optax.OptState], inputs: tuple[Array, Array]
    ) -> tuple[Any, Array]:
        (params, opt_state), (i, batch) = carry, inputs
        batch_key = jax.random.fold_in(step_key, i)
        loss = lambda p: -linear.bound(objective, p, std, batch_key, batch).value.mean()
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), -value

    batches = (jnp.arange(steps), x[order].reshape(steps, batch_size, -1))
    (params, opt_state), values = jax.lax.scan(step, (params, opt_state), batches)
    return params, opt_state, values


def train(
    config: Config, x_train: np.ndarray, x_test: np.ndarray | None, key: Array,
    out: Path | None = None, on_epoch_end: Callable[[tr.TrainState], Any] | None = None,
) -> tuple[tr.TrainState, Standardizer]:  # fmt: skip
    """Trains ``config.epochs`` epochs; returns ``(tr.TrainState, linear.Standardizer)``.
    Records per epoch jelbo's ELBO and the exact log-likelihood of both splits, and writes
    ``out/checkpoint.npz`` (with ``out``); ``on_epoch_end(state)`` is called after it."""
    n, d = x_train.shape
    batch_size = min(config.batch_size, n)
    std = linear.standardizer(x_train, jnp.float32)
    steps = config.epochs * (n // batch_size)
    optimizer = tr.adam(config.lr, config.warmup_fraction, config.final_lr_fraction, steps)
    init_key, key = jax.random.split(key)
    params = linear.init_params(init_key, d, config.latent_dim)
    state = tr.TrainState(
        params, optimizer.init(params), key, 0, dict.fromkeys(report.CURVES, np.zeros(0))
    )
    checkpoint, ident = out and Path(out) / CHECKPOINT, tr.fingerprint(config, x_train)
    if checkpoint and config.resume:
        state = tr.resume(checkpoint, state, ident)
    x_fit, x_eval = linear.as_input(x_train), linear.as_input(x_train, x_test)
    objective, elbo = config.training_bound(), jelbo.ELBO(config.eval_samples)
    with tqdm(
        total=config.epochs, initial=state.epoch, unit="epoch", disable=config.no_progress
    ) as bar:
        while state.epoch < config.epochs:
            key, epoch_key, eval_key = jax.random.split(state.key, 3)
            params, opt_state, values = run_epoch(
                *state[:2], std, epoch_key, x_fit, objective, optimizer, batch_size
            )
            estimate = linear.estimates(elbo, params, std, eval_key, x_eval).value[0]
            row = report.curves(values, estimate, linear.export(params, std), x_train, x_test)
            history = {k: np.append(v, row[k]) for k, v in state.history.items()}
            state = tr.TrainState(params, opt_state, key, state.epoch + 1, history)
            if checkpoint:
                tr.save_checkpoint(checkpoint, state, ident)
            bar.update(1)
            bar.set_postfix({k: f"{row[k]:.2f}" for k in report.CURVES[:3]}, refresh=False)
            if on_epoch_end:
                on_epoch_end(state)
    return state, std


def main(
    argv: Sequence[str] | None = None, *, on_epoch_end: Callable[[tr.TrainState], Any] | None = None
) -> dict[str, Any]:
    """Runs the command line ``argv`` (default ``sys.argv[1:]``); returns ``summary.json``."""
    start = time.perf_counter()
    config = tr.parse(Config, argv, (__doc__ or "").split("\n\n")[0])
    x = linear.load_data(config.data)
    if config.latent_dim >= x.shape[1]:
        raise SystemExit(f"--latent-dim must be < D = {x.shape[1]}")
    split_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    x_train, x_test = tr.split_rows(split_key, x, config.test_fraction)
    (out := Path(config.out)).mkdir(parents=True, exist_ok=True)
    state, std = train(config, x_train, x_test, train_key, out, on_epoch_end)

    # The comparison: jelbo's final ELBO (R = final_eval_repeats estimates) and the exact ELBO
    # must lie below the exact log-likelihood of the fit, and that below the PPCA optimum.
    x_eval = linear.as_input(x_train, x_test)  # the train rows, then the test rows
    elbo, repeats = jelbo.ELBO(config.eval_samples), config.final_eval_repeats
    final = linear.estimates(elbo, state.params, std, eval_key, x_eval, repeats)
    model, optimum = linear.export(state.params, std), ppca.fit(x_train, config.latent_dim)
    summary = {
        "latent_dim": config.latent_dim,
        **report.compare(final, model, optimum, x_train, x_test),
        "steps": state.epoch * (len(x_train) // min(config.batch_size, len(x_train))),
        "epochs": state.epoch,
        "elbo_samples": config.eval_samples * repeats,
        "data": config.data or "sklearn.datasets.load_digits",
        "config": tr.trajectory(config),
    }
    tr.save_npz(out / "params.npz", model)
    report.plot(out / FIGURE, state.history, summary, model, x_test)
    summary["seconds"] = time.perf_counter() - start
    tr.save_json(out / "summary.json", summary)
    report.show(summary, out)
    return summary


if __name__ == "__main__":
    main()
