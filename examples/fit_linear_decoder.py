r"""Fit a linear VAE (probabilistic PCA) with optax and jelbo, and prove it reached the optimum.

Model, for data :math:`x\in\mathbb R^D` (by default scikit-learn's 8×8 handwritten digits,
raw pixel values 0–16, :math:`D = 64`) and latents :math:`z\in\mathbb R^K`:

.. math::
    p(z) = \mathcal N(0, I_K), \qquad
    p(x\mid z) = \mathcal N(Wz + b,\ \sigma^2 I_D), \qquad
    q(z\mid x) = \mathcal N\big(Ax + a,\ \mathrm{diag}(\mathrm{softplus}(Cx + c))\big),

with :math:`\sigma^2 = \mathrm{softplus}(\rho)` learned. Training maximizes the average
ELBO (``jelbo.elbo``) or IWAE bound (``jelbo.iwae_bound``) over minibatches with
``optax.adam`` under a warmup + cosine learning-rate schedule.

Why this model: its marginal :math:`p(x) = \mathcal N(x;\, b,\, WW^\top + \sigma^2 I)` is
exact, and its maximum-likelihood solution is known in closed form (Tipping & Bishop 1999,
see ``examples/ppca.py``, plain NumPy, independent of jelbo). With a diagonal encoder the
ELBO can be tight at that optimum, where :math:`W` has orthogonal columns and the exact
posterior is diagonal (Lucas et al. 2019). So at the end we print, per datapoint in nats,
the final train ELBO (jelbo's Monte Carlo estimate with many samples, and the exact value in
closed form), the exact log-likelihood of the fitted parameters, and the closed-form PPCA
optimum; ``ELBO <= log-likelihood <= optimum`` must hold and the gap
``optimum − ELBO`` should be small (below 0.1 nats with the defaults).

Parameterization: the trained parameters live in standardized units — with the training
mean :math:`\mu` and one global scale :math:`s` (root mean pixel variance), the model is
evaluated with :math:`W = s\tilde W`, :math:`b = \mu + s\tilde b`,
:math:`\sigma^2 = s^2\,\mathrm{softplus}(\tilde\rho)`, and the encoder reads
:math:`(x-\mu)/s`. This is the same model under a fixed affine reparameterization (it
amounts to the data-dependent initialization :math:`b = \mu` and to giving Adam parameters
of order one), and ``params.npz`` stores it in the raw units of the formulas above.

Outputs in ``--out`` (default ``runs/linear_decoder``): ``params.npz`` (``W``, ``b``,
``sigma2``, ``A``, ``a``, ``C``, ``c``), ``summary.json``, ``fit_linear_decoder.png`` (the
ELBO curves against the optimum, and test digits beside their reconstructions) and
``checkpoint.npz``, written atomically after every epoch; ``--resume`` continues from it
and ends bit-identical to an uninterrupted run.

Run: ``python examples/fit_linear_decoder.py [--latent-dim 2] [--epochs ...] [--resume]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jelbo

if str(Path(__file__).resolve().parent) not in sys.path:  # when imported from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppca  # the closed-form reference, next to this file

Array = jax.Array
Params = dict[str, Array]

OBJECTIVES = ("elbo", "iwae")
GRAD_ESTIMATORS = {"elbo": ("reparam", "stl"), "iwae": ("reparam", "dreg")}
HISTORY_FIELDS = (
    "train_objective",
    "train_elbo",
    "test_elbo",
    "train_log_likelihood",
    "test_log_likelihood",
)
CHECKPOINT = "checkpoint.npz"
FIGURE = "fit_linear_decoder.png"
DTYPE = np.float32
_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(0.5413...) = 1


@dataclasses.dataclass(frozen=True)
class Config:
    """Every option of the example; the defaults are the command-line defaults.

    Attributes:
        latent_dim: :math:`K`.
        epochs: passes over the training rows.
        batch_size: rows per minibatch (the last incomplete minibatch of an epoch is
            dropped; the rows are reshuffled every epoch).
        lr: peak learning rate of the warmup + cosine schedule.
        num_samples: Monte Carlo samples per datapoint in the training objective.
        objective: ``"elbo"`` or ``"iwae"``.
        grad_estimator: ``"reparam"`` or ``"stl"`` (ELBO; STL uses the Monte Carlo KL),
            ``"reparam"`` or ``"dreg"`` (IWAE).
        seed: seeds the train/test split, the initialization and all sampling.
        test_fraction: fraction of rows held out; 0 trains on all rows.
        data: optional path of an ``(N, D)`` ``.npy`` array to use instead of the digits.
        out: output directory.
        resume: continue from ``out/checkpoint.npz`` if it exists.
        warmup_fraction: fraction of the steps spent warming the learning rate up from 0.
        final_lr_fraction: the cosine schedule ends at ``lr * final_lr_fraction``.
        eval_samples: samples per datapoint for the per-epoch ELBO curves.
        final_eval_repeats: the final ELBO averages this many independent estimates of
            ``eval_samples`` samples per datapoint each (their spread gives its standard
            error).
    """

    latent_dim: int = 2
    epochs: int = 150
    batch_size: int = 128
    lr: float = 0.1
    num_samples: int = 1
    objective: str = "elbo"
    grad_estimator: str = "reparam"
    seed: int = 0
    test_fraction: float = 0.2
    data: str | None = None
    out: str = "runs/linear_decoder"
    resume: bool = False
    warmup_fraction: float = 0.02
    final_lr_fraction: float = 1e-3
    eval_samples: int = 16
    final_eval_repeats: int = 125

    def trajectory(self) -> dict[str, Any]:
        """The options that determine the training trajectory (must match on ``--resume``)."""
        skip = {"data", "out", "resume", "final_eval_repeats"}  # the data are hashed instead
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


class Standardizer(NamedTuple):
    """A fixed affine map :math:`\\tilde x = (x - \\mu)/s` of the training data.

    Attributes:
        mean: ``(D,)`` training mean :math:`\\mu`.
        scale: scalar :math:`s`, the root mean per-dimension variance of the training rows.
    """

    mean: Array
    scale: Array


class TrainState(NamedTuple):
    """Everything the training loop carries from epoch to epoch (what a checkpoint holds).

    Attributes:
        params: the parameters, in standardized units (see the module docstring).
        opt_state: optax state.
        key: PRNG key for the remaining epochs.
        epoch: number of completed epochs.
        history: per-epoch curves, ``{field: (epoch,) float64 array}`` for
            :data:`HISTORY_FIELDS`.
    """

    params: Params
    opt_state: optax.OptState
    key: Array
    epoch: int
    history: dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Data


def load_data(path: str | None = None) -> np.ndarray:
    """The ``(N, D)`` data as float64: ``path`` (a ``.npy`` file) or the sklearn digits.

    Args:
        path: optional ``.npy`` file holding a 2-D finite array; ``None`` loads
            ``sklearn.datasets.load_digits`` (1797 × 64, raw pixel values 0–16).

    Raises:
        ValueError: if the array is not 2-D, is empty or has non-finite entries.
    """
    if path is None:
        from sklearn.datasets import load_digits

        x = load_digits().data
    else:
        x = np.load(path, allow_pickle=False)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"the data must be an (N, D) array with N, D >= 2; got {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("the data contain NaN or inf.")
    return x


def split_data(
    key: Array, x: np.ndarray, test_fraction: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """A random train/test split of the rows of ``x``, drawn with ``key``.

    Args:
        key: PRNG key.
        x: ``(N, D)`` data.
        test_fraction: in ``[0, 1)``; ``round(test_fraction * N)`` rows go to the test set.

    Returns:
        ``(train, test)``; ``test`` is ``None`` when no rows are held out.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in [0, 1); got {test_fraction}.")
    n = x.shape[0]
    n_test = round(test_fraction * n)
    if n_test == 0:
        return x, None
    if n - n_test < 2:
        raise ValueError(f"test_fraction={test_fraction} leaves fewer than 2 training rows.")
    perm = np.asarray(jax.random.permutation(key, n))
    return x[np.sort(perm[n_test:])], x[np.sort(perm[:n_test])]


def fit_standardizer(x: np.ndarray) -> Standardizer:
    r"""The training mean and :math:`s = \sqrt{\operatorname{tr}(S)/D}` (1 if that is 0)."""
    mean = x.mean(axis=0)
    scale = math.sqrt(float(np.mean(x.var(axis=0))))
    return Standardizer(jnp.asarray(mean, DTYPE), jnp.asarray(scale if scale > 0 else 1.0, DTYPE))


# ---------------------------------------------------------------------------------------------
# Model


@functools.partial(jax.jit, static_argnames=("data_dim", "latent_dim"))
def init_params(key: Array, data_dim: int, latent_dim: int) -> Params:
    r"""Initial parameters in standardized units.

    :math:`\tilde b = 0` (so :math:`b` is the training mean), :math:`\sigma^2 = s^2` (the
    mean data variance), :math:`\tilde W \sim \mathcal N(0, 0.1^2)`, encoder means
    :math:`\tilde A \sim \mathcal N(0, 0.01^2)`, :math:`a = 0`, and encoder variances 1
    (:math:`\tilde C = 0`, :math:`\mathrm{softplus}(c) = 1`).

    Args:
        key: PRNG key.
        data_dim: :math:`D`.
        latent_dim: :math:`K`.
    """
    w_key, a_key = jax.random.split(key)
    d, k = data_dim, latent_dim
    return {
        "W": 0.1 * jax.random.normal(w_key, (d, k), DTYPE),
        "b": jnp.zeros(d, DTYPE),
        "rho": jnp.asarray(_SOFTPLUS_INV_1, DTYPE),
        "A": 0.01 * jax.random.normal(a_key, (k, d), DTYPE),
        "a": jnp.zeros(k, DTYPE),
        "C": jnp.zeros((k, d), DTYPE),
        "c": jnp.full(k, _SOFTPLUS_INV_1, DTYPE),
    }


def decoder(params: Params, std: Standardizer) -> tuple[Array, Array, Array]:
    r"""The decoder in raw units: :math:`W = s\tilde W`, :math:`b = \mu + s\tilde b`,
    :math:`\sigma^2 = s^2\,\mathrm{softplus}(\tilde\rho)`.

    Returns:
        ``(W (D, K), b (D,), sigma2 ())``.
    """
    W = std.scale * params["W"]
    b = std.mean + std.scale * params["b"]
    sigma2 = std.scale**2 * jax.nn.softplus(params["rho"])
    return W, b, sigma2


def encoder(params: Params, std: Standardizer, x: Array) -> jelbo.Normal:
    r"""The amortized posterior
    :math:`q(z\mid x) = \mathcal N(\tilde A\tilde x + a,
    \mathrm{diag}(\mathrm{softplus}(\tilde C\tilde x + c)))` with
    :math:`\tilde x = (x-\mu)/s`; batch shape ``x.shape[:-1]``, event shape ``(K,)``."""
    h = (x - std.mean) / std.scale
    loc = h @ params["A"].T + params["a"]
    var = jax.nn.softplus(h @ params["C"].T + params["c"])
    return jelbo.Normal(loc, jnp.sqrt(var))


def make_log_likelihood(W: Array, b: Array, sigma2: Array) -> Callable[[Array, Array], Array]:
    r"""``log_likelihood(z, x)`` :math:`= \log\mathcal N(x;\, Wz + b,\, \sigma^2 I)` for ONE
    latent ``z`` ``(K,)`` and ONE datapoint ``x`` ``(D,)``, as jelbo expects."""
    scale = jnp.sqrt(sigma2)

    def log_likelihood(z: Array, x: Array) -> Array:
        return jelbo.log_prob(jelbo.Normal(W @ z + b, scale), x)

    return log_likelihood


def make_objective(
    objective: str = "elbo", grad_estimator: str = "reparam", num_samples: int = 1
) -> jelbo.ELBO | jelbo.IWAE:
    """The jelbo objective for the command-line options (STL uses the Monte Carlo KL)."""
    if objective == "elbo":
        kl = "mc" if grad_estimator == "stl" else "analytic"
        return jelbo.ELBO(num_samples, kl=kl, grad_estimator=grad_estimator)
    return jelbo.IWAE(num_samples, grad_estimator=grad_estimator)


def bound(
    params: Params,
    std: Standardizer,
    key: Array,
    x: Array,
    *,
    objective: str = "elbo",
    grad_estimator: str = "reparam",
    num_samples: int = 1,
) -> jelbo.Bound:
    r"""The per-datapoint bound on :math:`\log p(x)` (raw units), fields ``x.shape[:-1]``.

    ``objective="elbo"``: :math:`\mathbb E_q[\log p(x\mid z)] - \mathrm{KL}(q\|p)` by
    :class:`jelbo.ELBO` (analytic KL, or the Monte Carlo KL for ``grad_estimator="stl"``);
    ``"iwae"``: :math:`\log\frac1S\sum_s p(x, z_s)/q(z_s\mid x)` by :class:`jelbo.IWAE`.
    Returns the :class:`jelbo.Bound` (value and Monte Carlo standard error per datapoint).
    """
    q = encoder(params, std, x)
    k = params["A"].shape[0]
    prior = jelbo.Normal(jnp.zeros(k, x.dtype), jnp.ones(k, x.dtype))
    log_likelihood = make_log_likelihood(*decoder(params, std))
    chosen = make_objective(objective, grad_estimator, num_samples)
    return chosen(key, q, log_likelihood, prior, x)


def export_params(params: Params, std: Standardizer) -> dict[str, np.ndarray]:
    r"""The fitted model in the raw units of the module docstring, as float64 NumPy arrays.

    :math:`A = \tilde A/s`, :math:`a = \tilde a - \tilde A\mu/s` (and the same for
    :math:`C, c`), so that :math:`q(z\mid x) = \mathcal N(Ax + a,
    \mathrm{diag}(\mathrm{softplus}(Cx + c)))` and :math:`p(x) = \mathcal N(b, WW^\top +
    \sigma^2 I)`.

    Returns:
        ``{"W": (D, K), "b": (D,), "sigma2": (), "A": (K, D), "a": (K,), "C": (K, D),
        "c": (K,)}``.
    """
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    mean, scale = np.asarray(std.mean, np.float64), float(std.scale)
    return {
        "W": scale * p["W"],
        "b": mean + scale * p["b"],
        "sigma2": np.asarray(scale**2 * np.logaddexp(0.0, p["rho"])),
        "A": p["A"] / scale,
        "a": p["a"] - p["A"] @ mean / scale,
        "C": p["C"] / scale,
        "c": p["c"] - p["C"] @ mean / scale,
    }


def exact_quantities(model: dict[str, np.ndarray], x: np.ndarray) -> dict[str, float]:
    """Exact (closed-form, float64 NumPy) average ELBO and log-likelihood of ``x``.

    Args:
        model: raw-unit parameters from :func:`export_params`.
        x: ``(N, D)`` data.

    Returns:
        ``{"elbo": ..., "log_likelihood": ...}`` per datapoint, nats.
    """
    W, b, sigma2 = model["W"], model["b"], float(model["sigma2"])
    mean = x @ model["A"].T + model["a"]
    var = np.logaddexp(0.0, x @ model["C"].T + model["c"])
    elbo = ppca.exact_elbo(x, W, b, sigma2, mean, var)[0]
    return {
        "elbo": float(np.mean(elbo)),
        "log_likelihood": float(np.mean(ppca.log_marginal(x, W, b, sigma2))),
    }


# ---------------------------------------------------------------------------------------------
# Training


class StepSettings(NamedTuple):
    """The static (hashable) options of the compiled train step.

    Attributes:
        objective, grad_estimator, num_samples, lr, warmup_fraction, final_lr_fraction: as
            in :class:`Config`.
        total_steps: length of the learning-rate schedule.
    """

    objective: str
    grad_estimator: str
    num_samples: int
    lr: float
    warmup_fraction: float
    final_lr_fraction: float
    total_steps: int

    @classmethod
    def from_config(cls, config: Config, total_steps: int) -> StepSettings:
        """The settings of ``config`` for a run of ``total_steps`` steps."""
        return cls(
            config.objective,
            config.grad_estimator,
            config.num_samples,
            config.lr,
            config.warmup_fraction,
            config.final_lr_fraction,
            total_steps,
        )


def make_optimizer(settings: StepSettings) -> optax.GradientTransformation:
    """Adam under a linear warmup from 0 to ``lr`` over the first ``warmup_fraction`` of the
    steps, then a cosine decay to ``lr * final_lr_fraction`` at ``total_steps``."""
    warmup = max(1, round(settings.warmup_fraction * settings.total_steps))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=settings.lr,
        warmup_steps=warmup,
        decay_steps=max(settings.total_steps, warmup + 1),
        end_value=settings.lr * settings.final_lr_fraction,
    )
    return optax.adam(schedule)


@functools.partial(jax.jit, static_argnames="settings")
def init_opt_state(params: Params, *, settings: StepSettings) -> optax.OptState:
    """The optimizer's initial state for ``params``."""
    return make_optimizer(settings).init(params)


def loss(
    params: Params, std: Standardizer, key: Array, x: Array, *, settings: StepSettings
) -> Array:
    r"""Minibatch loss :math:`-\frac1B\sum_{n\in\text{batch}}\mathcal L(x_n)` with the bound
    :math:`\mathcal L` of :func:`bound` (``settings.objective``, ``settings.grad_estimator``,
    ``settings.num_samples`` samples per datapoint)."""
    values = bound(
        params,
        std,
        key,
        x,
        objective=settings.objective,
        grad_estimator=settings.grad_estimator,
        num_samples=settings.num_samples,
    ).value
    return -jnp.mean(values)


@functools.partial(jax.jit, static_argnames="settings")
def train_step(
    params: Params,
    opt_state: optax.OptState,
    std: Standardizer,
    key: Array,
    batches: Array,
    i: Array,
    *,
    settings: StepSettings,
) -> tuple[Params, optax.OptState, Array]:
    """One jit-compiled step: value and gradient of :func:`loss`, then an optax update.

    Trains on minibatch ``batches[i]`` with the key ``fold_in(key, i)``; the learning rate
    follows the schedule of :func:`make_optimizer` (its step count lives in ``opt_state``).

    Returns:
        ``(params, opt_state, objective)``, ``objective`` being the minibatch's average bound
        (nats per datapoint) before the update.
    """
    value, grads = jax.value_and_grad(loss)(
        params, std, jax.random.fold_in(key, i), batches[i], settings=settings
    )
    updates, opt_state = make_optimizer(settings).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, -value


@functools.partial(jax.jit, static_argnames="batch_size")
def shuffle(key: Array, x: Array, batch_size: int) -> Array:
    """A random permutation of the rows of ``x`` cut into ``N // batch_size`` minibatches
    (the remainder is dropped), shape ``(N // batch_size, batch_size, D)``."""
    steps = x.shape[0] // batch_size
    perm = jax.random.permutation(key, x.shape[0])[: steps * batch_size]
    return x[perm].reshape(steps, batch_size, x.shape[-1])


@jax.jit
def split3(key: Array) -> tuple[Array, Array, Array]:
    """``jax.random.split(key, 3)`` as a tuple of three keys (compiled once)."""
    keys = jax.random.split(key, 3)
    return keys[0], keys[1], keys[2]


@functools.partial(jax.jit, static_argnames="num_samples")
def evaluate_elbo(
    params: Params, std: Standardizer, key: Array, x: Array, repeat: Array, *, num_samples: int
) -> jelbo.Bound:
    """jelbo's per-datapoint ELBO (analytic KL) of every row of ``x``: a Bound of ``(N,)``.

    Jit-compiled (once per ``num_samples`` and shape); uses ``num_samples`` samples per
    datapoint and the key ``fold_in(key, repeat)``, so that different ``repeat`` values give
    independent estimates.
    """
    key = jax.random.fold_in(key, repeat)
    return bound(params, std, key, x, num_samples=num_samples)


def run_epoch(
    params: Params,
    opt_state: optax.OptState,
    std: Standardizer,
    key: Array,
    x: Array,
    batch_size: int,
    settings: StepSettings,
) -> tuple[Params, optax.OptState, np.ndarray]:
    """One pass over ``x`` in minibatches of a random permutation drawn with ``key``.

    Returns:
        ``(params, opt_state, objectives)`` with the per-step minibatch objectives ``(steps,)``.
    """
    shuffle_key, step_key, _ = split3(key)
    batches = shuffle(shuffle_key, x, batch_size)
    objectives = []
    for i in range(batches.shape[0]):
        params, opt_state, value = train_step(
            params, opt_state, std, step_key, batches, i, settings=settings
        )
        objectives.append(value)
    return params, opt_state, np.array([np.asarray(v) for v in objectives])


def init_state(key: Array, data_dim: int, latent_dim: int, settings: StepSettings) -> TrainState:
    """The state before the first epoch (``key`` seeds the initialization and the training)."""
    init_key, train_key, _ = split3(key)
    params = init_params(init_key, data_dim=data_dim, latent_dim=latent_dim)
    history = {field: np.zeros(0) for field in HISTORY_FIELDS}
    return TrainState(params, init_opt_state(params, settings=settings), train_key, 0, history)


def save_checkpoint(path: str | os.PathLike, state: TrainState, fingerprint: dict) -> None:
    """Writes ``state`` to ``path`` atomically: a temporary file in the same directory,
    flushed to disk, then ``os.replace``'d over ``path``. A crash leaves the old or the new
    checkpoint, never a torn one.

    Args:
        path: checkpoint file (``.npz``).
        state: the training state.
        fingerprint: JSON-serializable description of the run (options and data), checked on
            resume.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "epoch": np.asarray(state.epoch, np.int64),
        "key": np.asarray(jax.random.key_data(state.key)),
        "fingerprint": np.asarray(json.dumps(fingerprint, sort_keys=True)),
    }
    arrays.update({f"params/{k}": np.asarray(v) for k, v in state.params.items()})
    leaves = jax.tree_util.tree_leaves(state.opt_state)
    arrays.update({f"opt_state/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    arrays.update({f"history/{k}": np.asarray(v) for k, v in state.history.items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, template: TrainState, fingerprint: dict) -> TrainState:
    """Reads a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: checkpoint file.
        template: a freshly initialized state; gives the pytree structure and dtypes.
        fingerprint: must equal the one saved, so that the resumed run is the same run.

    Raises:
        ValueError: if the checkpoint belongs to a run with other options or data.
    """
    with np.load(path, allow_pickle=False) as f:
        saved = json.loads(str(f["fingerprint"]))
        if saved != fingerprint:
            diff = {
                k: (saved.get(k), fingerprint.get(k))
                for k in sorted(set(saved) | set(fingerprint))
                if saved.get(k) != fingerprint.get(k)
            }
            raise ValueError(
                f"{path} was written by a run with other options or data "
                f"(saved, now): {diff}. Resume with the same options, or start afresh "
                "without --resume."
            )
        params = {k: jnp.asarray(f[f"params/{k}"]) for k in template.params}
        leaves, treedef = jax.tree_util.tree_flatten(template.opt_state)
        opt_leaves = [jnp.asarray(f[f"opt_state/{i}"]) for i in range(len(leaves))]
        for new, old in zip(opt_leaves, leaves, strict=True):
            if new.shape != jnp.shape(old) or new.dtype != jnp.asarray(old).dtype:
                raise ValueError(f"{path}: optimizer state does not match this optimizer.")
        key = jax.random.wrap_key_data(jnp.asarray(f["key"]))
        history = {k: np.asarray(f[f"history/{k}"]) for k in HISTORY_FIELDS}
        epoch = int(f["epoch"])
    return TrainState(
        params, jax.tree_util.tree_unflatten(treedef, opt_leaves), key, epoch, history
    )


def fingerprint(config: Config, x_train: np.ndarray) -> dict:
    """The options and a hash of the training rows that identify a run (for ``--resume``)."""
    digest = hashlib.sha256(np.ascontiguousarray(x_train).tobytes()).hexdigest()
    return {**config.trajectory(), "train_shape": list(x_train.shape), "train_sha256": digest}


def train(
    config: Config,
    x_train: np.ndarray,
    x_test: np.ndarray | None,
    *,
    key: Array,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[TrainState], None] | None = None,
) -> tuple[TrainState, Standardizer]:
    """Trains for ``config.epochs`` epochs, checkpointing after each one.

    Per epoch: shuffle with a fresh key, take ``N // batch_size`` jit-compiled steps, then
    evaluate the train and test ELBO per datapoint (jelbo, ``config.eval_samples`` samples
    each, analytic KL) and the exact log-likelihoods, append them to the history and write
    the checkpoint. The PRNG key is split once per epoch and threaded through the state, so
    a run resumed from a checkpoint replays exactly the same computation.

    Args:
        config: the options.
        x_train: ``(N, D)`` training rows (float64 NumPy; trained in float32).
        x_test: held-out rows or ``None``.
        key: PRNG key for the initialization and the training.
        out_dir: where ``checkpoint.npz`` goes; ``None`` disables checkpointing.
        resume: start from ``out_dir/checkpoint.npz`` if it exists.
        progress: show a tqdm bar.
        on_epoch_end: called with the state after each epoch's checkpoint is written.

    Returns:
        ``(final state, standardizer)``.
    """
    from tqdm.auto import tqdm

    if config.objective not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {OBJECTIVES}; got {config.objective!r}.")
    if config.grad_estimator not in GRAD_ESTIMATORS[config.objective]:
        raise ValueError(
            f"objective={config.objective!r} takes grad_estimator in "
            f"{GRAD_ESTIMATORS[config.objective]}; got {config.grad_estimator!r}."
        )
    n, d = x_train.shape
    batch_size = min(config.batch_size, n)
    steps_per_epoch = n // batch_size
    settings = StepSettings.from_config(config, config.epochs * steps_per_epoch)
    std = fit_standardizer(x_train)
    x_fit = jnp.asarray(x_train, DTYPE)
    # Train and test rows in one array, so that one compiled evaluation serves both.
    x_eval = x_fit if x_test is None else jnp.asarray(np.concatenate([x_train, x_test]), DTYPE)

    state = init_state(key, d, config.latent_dim, settings)
    checkpoint = None if out_dir is None else Path(out_dir) / CHECKPOINT
    print_ = tqdm.write if progress else (lambda *_: None)
    ident = fingerprint(config, x_train)
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        if resume and checkpoint.exists():
            state = load_checkpoint(checkpoint, state, ident)
            print_(f"resuming from {checkpoint} after epoch {state.epoch}")
        elif resume:
            print_(f"no checkpoint at {checkpoint}; starting from scratch")

    bar = tqdm(
        total=config.epochs,
        initial=state.epoch,
        unit="epoch",
        disable=not progress,
        desc=f"K={config.latent_dim} {config.objective}",
    )
    with bar:
        while state.epoch < config.epochs:
            key, epoch_key, eval_key = split3(state.key)
            params, opt_state, objectives = run_epoch(
                state.params, state.opt_state, std, epoch_key, x_fit, batch_size, settings
            )
            bound = evaluate_elbo(params, std, eval_key, x_eval, 0, num_samples=config.eval_samples)
            elbos = np.asarray(bound.value, np.float64)
            elbos = {"train": elbos[:n], "test": elbos[n:]}
            model = export_params(params, std)
            row = {"train_objective": float(np.mean(objectives))}
            for split, x_split in (("train", x_train), ("test", x_test)):
                if x_split is None:
                    row[f"{split}_elbo"] = row[f"{split}_log_likelihood"] = math.nan
                    continue
                row[f"{split}_elbo"] = float(np.mean(elbos[split]))
                row[f"{split}_log_likelihood"] = exact_quantities(model, x_split)["log_likelihood"]
            history = {k: np.append(state.history[k], row[k]) for k in HISTORY_FIELDS}
            state = TrainState(params, opt_state, key, state.epoch + 1, history)
            if checkpoint is not None:
                save_checkpoint(checkpoint, state, ident)
            bar.update(1)
            bar.set_postfix(
                objective=f"{row['train_objective']:.2f}",
                train_elbo=f"{row['train_elbo']:.2f}",
                test_elbo=f"{row['test_elbo']:.2f}",
                refresh=False,
            )
            if on_epoch_end is not None:
                on_epoch_end(state)
    return state, std


# ---------------------------------------------------------------------------------------------
# Evaluation and outputs


def summarize(
    config: Config,
    state: TrainState,
    std: Standardizer,
    x_train: np.ndarray,
    x_test: np.ndarray | None,
    key: Array,
) -> dict[str, Any]:
    """The final numbers (per datapoint, nats) for ``summary.json``.

    The final ELBOs are jelbo's estimates from ``config.final_eval_repeats`` independent
    estimates of ``config.eval_samples`` samples per datapoint each (analytic KL);
    their standard error is the spread of the repeats over the square root of their number.
    Beside them: the exact ELBO and the exact log-likelihood (:mod:`ppca`, closed form) and
    the closed-form PPCA optimum of the training rows.
    """
    model = export_params(state.params, std)
    optimum = ppca.fit(x_train, config.latent_dim)
    n = x_train.shape[0]
    x_eval = x_train if x_test is None else np.concatenate([x_train, x_test])
    x_eval = jnp.asarray(x_eval, DTYPE)
    repeats, samples = config.final_eval_repeats, config.eval_samples
    # (repeats, N): independent estimates, eval_samples samples per datapoint each.
    bounds = [
        evaluate_elbo(state.params, std, key, x_eval, r, num_samples=samples)
        for r in range(repeats)
    ]
    per_row = np.stack([np.asarray(b.value) for b in bounds])
    # jelbo's own standard error of the mean over rows and repeats (independent estimates)
    per_row_se = np.stack([np.asarray(b.stderr, np.float64) for b in bounds])
    bound_se = math.sqrt(np.sum(per_row_se[:, :n] ** 2)) / (n * repeats)
    estimates = {"train": per_row[:, :n].mean(axis=1)}
    if x_test is not None:
        estimates["test"] = per_row[:, n:].mean(axis=1)

    def stderr(values: np.ndarray) -> float | None:
        return float(np.std(values, ddof=1) / math.sqrt(repeats)) if repeats > 1 else None

    exact_train = exact_quantities(model, x_train)
    elbo = float(np.mean(estimates["train"]))
    summary: dict[str, Any] = {
        "latent_dim": config.latent_dim,
        "n_train": int(x_train.shape[0]),
        "n_test": 0 if x_test is None else int(x_test.shape[0]),
        "train_elbo": elbo,
        "train_elbo_stderr": stderr(estimates["train"]),
        "train_elbo_bound_stderr": bound_se,
        "train_elbo_exact": exact_train["elbo"],
        "train_log_likelihood": exact_train["log_likelihood"],
        "test_elbo": None,
        "test_elbo_stderr": None,
        "test_elbo_exact": None,
        "test_log_likelihood": None,
        "ppca_optimum": optimum.max_log_likelihood,
        "gap": optimum.max_log_likelihood - elbo,
        "gap_exact": optimum.max_log_likelihood - exact_train["elbo"],
        "sigma2": float(model["sigma2"]),
        "ppca_sigma2": optimum.sigma2,
        "steps": state.epoch * (x_train.shape[0] // min(config.batch_size, x_train.shape[0])),
        "epochs": state.epoch,
        "elbo_samples": config.eval_samples * repeats,
        "data": config.data or "sklearn.datasets.load_digits",
        "config": config.trajectory(),
    }
    if x_test is not None:
        exact_test = exact_quantities(model, x_test)
        summary["test_elbo"] = float(np.mean(estimates["test"]))
        summary["test_elbo_stderr"] = stderr(estimates["test"])
        summary["test_elbo_exact"] = exact_test["elbo"]
        summary["test_log_likelihood"] = exact_test["log_likelihood"]
    return summary


def save_params(path: str | os.PathLike, model: dict[str, np.ndarray]) -> None:
    """Writes the raw-unit parameters to ``path`` (``.npz``), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **model)
    os.replace(tmp, path)


def plot(
    path: str | os.PathLike,
    history: dict[str, np.ndarray],
    summary: dict[str, Any],
    model: dict[str, np.ndarray],
    x_test: np.ndarray | None,
    *,
    num_digits: int = 16,
) -> None:
    """Saves the figure: the ELBO curves against the closed-form optimum, and (with a test
    split whose rows are square images) test rows beside their reconstructions
    :math:`W\\,\\mathbb E_q[z] + b`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = model["b"].shape[0]
    side = math.isqrt(d)
    show_images = x_test is not None and side * side == d
    fig, axes = plt.subplots(
        1, 2 if show_images else 1, figsize=(12 if show_images else 7, 4.5), squeeze=False
    )
    ax = axes[0, 0]
    epochs = np.arange(1, len(history["train_elbo"]) + 1)
    optimum = summary["ppca_optimum"]
    ax.plot(epochs, history["train_elbo"], label="train ELBO (jelbo)")
    ax.plot(epochs, history["train_log_likelihood"], "--", label="train log-likelihood (exact)")
    if x_test is not None:
        ax.plot(epochs, history["test_elbo"], label="test ELBO (jelbo)")
    ax.axhline(optimum, color="k", lw=1, label=f"PPCA optimum (closed form) {optimum:.2f}")
    curves = [history["train_elbo"], history["train_log_likelihood"]]
    if x_test is not None:
        curves.append(history["test_elbo"])
    tail = np.concatenate([c[len(c) // 10 :] for c in curves])
    low = min(np.nanmin(tail), optimum) if tail.size else optimum - 10
    span = max(optimum - low, 0.5)
    ax.set_ylim(low - 0.1 * span, optimum + 0.1 * span)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.set_title(
        f"K={summary['latent_dim']}: final train ELBO {summary['train_elbo']:.2f}, "
        f"gap {summary['gap']:.3f} nats"
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    if show_images:
        rows = x_test[:num_digits]
        mean = rows @ model["A"].T + model["a"]
        recon = mean @ model["W"].T + model["b"]
        cols = 4
        nrows = math.ceil(len(rows) / cols)
        pad = 1
        tile = side + pad
        canvas = np.full((nrows * tile, cols * (2 * side + 2 * pad + pad)), np.nan)
        for i, (orig, rec) in enumerate(zip(rows, recon, strict=True)):
            r, c = divmod(i, cols)
            y, x = r * tile, c * (2 * side + 3 * pad)
            canvas[y : y + side, x : x + side] = orig.reshape(side, side)
            canvas[y : y + side, x + side + pad : x + 2 * side + pad] = rec.reshape(side, side)
        ax2 = axes[0, 1]
        ax2.imshow(canvas, cmap="gray_r", interpolation="nearest")
        ax2.set_axis_off()
        ax2.set_title("test digits (left) beside reconstructions W E_q[z] + b (right)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Config, bool]:
    """Parses the command line into a :class:`Config` and the ``--no-progress`` flag."""
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--latent-dim", type=int, default=defaults.latent_dim, help="K")
    add("--epochs", type=int, default=defaults.epochs)
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--lr", type=float, default=defaults.lr, help="peak learning rate")
    add("--num-samples", type=int, default=defaults.num_samples, help="samples per datapoint")
    add("--objective", choices=OBJECTIVES, default=defaults.objective)
    add(
        "--grad-estimator",
        choices=sorted({e for v in GRAD_ESTIMATORS.values() for e in v}),
        default=defaults.grad_estimator,
        help="elbo: reparam|stl, iwae: reparam|dreg",
    )
    add("--seed", type=int, default=defaults.seed)
    add("--test-fraction", type=float, default=defaults.test_fraction)
    add("--data", default=None, help="an (N, D) .npy array instead of the sklearn digits")
    add("--out", default=defaults.out, help="output directory")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    add("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.grad_estimator not in GRAD_ESTIMATORS[args.objective]:
        parser.error(
            f"--objective {args.objective} takes --grad-estimator in "
            f"{GRAD_ESTIMATORS[args.objective]}"
        )
    for name in ("latent_dim", "epochs", "batch_size", "num_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0.0 <= args.test_fraction < 1.0:
        parser.error("--test-fraction must be in [0, 1)")
    if not args.lr > 0.0:
        parser.error("--lr must be > 0")
    config = Config(
        latent_dim=args.latent_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        num_samples=args.num_samples,
        objective=args.objective,
        grad_estimator=args.grad_estimator,
        seed=args.seed,
        test_fraction=args.test_fraction,
        data=args.data,
        out=args.out,
        resume=args.resume,
    )
    return config, args.no_progress


def main(
    argv: Sequence[str] | None = None,
    *,
    on_epoch_end: Callable[[TrainState], None] | None = None,
) -> dict[str, Any]:
    """Runs the example from the command line (``argv``, default ``sys.argv[1:]``).

    Args:
        argv: command-line arguments.
        on_epoch_end: passed to :func:`train` (a hook, e.g. for tests that interrupt a run).

    Returns:
        The summary (also written to ``OUT/summary.json``).
    """
    start = time.perf_counter()
    config, no_progress = parse_args(argv)
    x = load_data(config.data)
    if config.latent_dim >= x.shape[1]:
        raise SystemExit(f"--latent-dim must be < D = {x.shape[1]}")
    split_key, train_key, eval_key = split3(jax.random.key(config.seed))
    x_train, x_test = split_data(split_key, x, config.test_fraction)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state, std = train(
        config,
        x_train,
        x_test,
        key=train_key,
        out_dir=out,
        resume=config.resume,
        progress=not no_progress,
        on_epoch_end=on_epoch_end,
    )
    summary = summarize(config, state, std, x_train, x_test, eval_key)
    model = export_params(state.params, std)
    save_params(out / "params.npz", model)
    plot(out / FIGURE, state.history, summary, model, x_test)
    summary["seconds"] = time.perf_counter() - start
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "summary.json")

    def fmt(value: float | None) -> str:
        return f"{'n/a':>10}" if value is None else f"{value:10.3f}"

    stderr, bound_se = summary["train_elbo_stderr"], summary["train_elbo_bound_stderr"]
    samples = f"jelbo, {summary['elbo_samples']} samples"
    print(
        f"\nK={config.latent_dim}, {summary['n_train']} train / {summary['n_test']} test rows, "
        f"{summary['steps']} steps, {summary['seconds']:.1f} s. Nats per datapoint:"
    )
    lines = [
        (f"train ELBO ({samples})", summary["train_elbo"]),
        ("train ELBO (exact, closed form)", summary["train_elbo_exact"]),
        ("train log-likelihood (exact)", summary["train_log_likelihood"]),
        ("PPCA optimum (closed form)", summary["ppca_optimum"]),
        ("gap = optimum − train ELBO", summary["gap"]),
        ("gap with the exact ELBO", summary["gap_exact"]),
        (f"test ELBO ({samples})", summary["test_elbo"]),
        ("test log-likelihood (exact)", summary["test_log_likelihood"]),
    ]
    for i, (label, value) in enumerate(lines):
        note = ""
        if i == 0:
            note = f" ± {bound_se:.4f} (Monte Carlo standard error, jelbo.Bound.stderr)"
            if stderr:
                note += f"; ± {stderr:.4f} from the spread of the repeats"
        print(f"  {label:<36}{fmt(value)}{note}")
    print(f"outputs in {out}/")
    return summary


if __name__ == "__main__":
    main()
