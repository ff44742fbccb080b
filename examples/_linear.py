r"""The linear VAE (probabilistic PCA) of the examples and the tests: one model, one set of names.

For data :math:`x\in\mathbb R^D` and latents :math:`z\in\mathbb R^K`:

.. math::
    p(z) = \mathcal N(0, I_K), \qquad
    p(x\mid z) = \mathcal N(Wz + b,\ \sigma^2 I_D), \qquad
    q(z\mid x) = \mathcal N\big(Ax + a,\ \mathrm{diag}(\mathrm{softplus}(Cx + c))\big).

The parameters (``"W", "b", "rho", "A", "a", "C", "c"``) live in standardized units: with a
fixed affine map :math:`\tilde x = (x-\mu)/s` of the data (:class:`Standardizer`; the
training mean and the root mean pixel variance, :func:`standardizer`), the model is evaluated
with :math:`W = s\tilde W`, :math:`b = \mu + s\tilde b`,
:math:`\sigma^2 = s^2\,\mathrm{softplus}(\tilde\rho)`, and the encoder reads :math:`\tilde x`.
This is the same model under a fixed reparameterization (it amounts to the initialization
:math:`b = \mu` and gives Adam parameters of order one); :func:`export` returns the raw
units of the formulas above, and :func:`exact` the closed-form ELBO and log-likelihood of
them (``ppca.py``, plain NumPy, independent of jelbo).

Used by ``fit_linear_decoder.py``, ``sharded_training.py``, ``bench/sharding_check.py`` and
the tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import ppca

import jelbo

Array = jax.Array
Params = dict[str, Array]

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(0.5413...) = 1


class Standardizer(NamedTuple):
    r"""A fixed affine map :math:`\tilde x = (x - \mu)/s` of the data.

    Attributes:
        mean: ``(D,)`` mean :math:`\mu`.
        scale: scalar :math:`s`.
    """

    mean: Array
    scale: Array


def load_data(path: str | None = None) -> np.ndarray:
    """The ``(N, D)`` data as float64: ``path`` (a ``.npy`` file) or the sklearn digits.

    Args:
        path: optional ``.npy`` file holding a 2-D finite array; ``None`` loads
            ``sklearn.datasets.load_digits`` (1797 × 64, raw pixel values 0–16).

    Raises:
        ValueError: if the array is not 2-D with N, D >= 2, or has non-finite entries.
    """
    if path is None:
        from sklearn.datasets import load_digits

        x = load_digits(return_X_y=True)[0]
    else:
        x = np.load(path, allow_pickle=False)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"the data must be an (N, D) array with N, D >= 2; got {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("the data contain NaN or inf.")
    return x


def as_input(*parts: np.ndarray | None, dtype: Any = jnp.float32) -> Array:
    """The rows of the given arrays (``None`` skipped), one after the other, as a ``dtype``
    JAX array: the examples train and evaluate in float32."""
    return jnp.asarray(np.concatenate([p for p in parts if p is not None]), dtype)


def standardizer(x: np.ndarray, dtype: Any = None) -> Standardizer:
    r"""The mean of the rows of ``x`` and :math:`s = \sqrt{\operatorname{tr}(S)/D}` (1 if 0),
    computed in float64 and returned in ``dtype`` (default: ``x``'s)."""
    x64 = np.asarray(x, np.float64)
    dtype = np.asarray(x).dtype if dtype is None else dtype
    scale = math.sqrt(float(np.mean(x64.var(axis=0))))
    return Standardizer(
        jnp.asarray(x64.mean(axis=0), dtype), jnp.asarray(scale if scale > 0 else 1.0, dtype)
    )


@functools.partial(jax.jit, static_argnames=("data_dim", "latent_dim", "dtype"))
def init_params(key: Array, data_dim: int, latent_dim: int, dtype: Any = jnp.float32) -> Params:
    r"""Initial parameters in standardized units.

    :math:`\tilde b = 0` (so :math:`b = \mu`), :math:`\sigma^2 = s^2`,
    :math:`\tilde W \sim \mathcal N(0, 0.1^2)`, :math:`\tilde A \sim \mathcal N(0, 0.01^2)`,
    :math:`a = 0`, and encoder variances 1 (:math:`\tilde C = 0`,
    :math:`\mathrm{softplus}(c) = 1`).

    Args:
        key: PRNG key.
        data_dim: :math:`D`.
        latent_dim: :math:`K`.
        dtype: floating dtype of the parameters.
    """
    w_key, a_key = jax.random.split(key)
    d, k = data_dim, latent_dim
    return {
        "W": 0.1 * jax.random.normal(w_key, (d, k), dtype),
        "b": jnp.zeros(d, dtype),
        "rho": jnp.asarray(_SOFTPLUS_INV_1, dtype),
        "A": 0.01 * jax.random.normal(a_key, (k, d), dtype),
        "a": jnp.zeros(k, dtype),
        "C": jnp.zeros((k, d), dtype),
        "c": jnp.full(k, _SOFTPLUS_INV_1, dtype),
    }


def decoder(params: Params, std: Standardizer) -> tuple[Array, Array, Array]:
    """The decoder in raw units: ``(W (D, K), b (D,), sigma2 ())``."""
    W = std.scale * params["W"]
    b = std.mean + std.scale * params["b"]
    sigma2 = std.scale**2 * jax.nn.softplus(params["rho"])
    return W, b, sigma2


def encoder(params: Params, std: Standardizer, x: Array) -> jelbo.Normal:
    r"""The amortized posterior :math:`q(z\mid x)`: batch shape ``x.shape[:-1]``, event
    ``(K,)``."""
    h = (x - std.mean) / std.scale
    var = jax.nn.softplus(h @ params["C"].T + params["c"])
    return jelbo.Normal(h @ params["A"].T + params["a"], jnp.sqrt(var))


def log_likelihood(W: Array, b: Array, sigma2: Array) -> Callable[[Array, Array], Array]:
    r"""``log_likelihood(z, x)`` :math:`= \log\mathcal N(x;\, Wz + b,\, \sigma^2 I)` for ONE
    latent ``z`` ``(K,)`` and ONE datapoint ``x`` ``(D,)``, as jelbo expects."""
    scale = jnp.sqrt(sigma2)
    return lambda z, x: jelbo.log_prob(jelbo.Normal(W @ z + b, scale), x)


def bound(objective: Any, params: Params, std: Standardizer, key: Array, x: Array) -> jelbo.Bound:
    """``objective`` (a :class:`jelbo.ELBO`, :class:`jelbo.IWAE`, ...) of every row of ``x``:
    a :class:`jelbo.Bound` whose fields have shape ``x.shape[:-1]`` (nats, raw units)."""
    k = params["a"].shape[-1]
    prior = jelbo.Normal(jnp.zeros(k, x.dtype), jnp.ones(k, x.dtype))
    q = encoder(params, std, x)
    return objective(key, q, log_likelihood(*decoder(params, std)), prior, x)


@functools.partial(jax.jit, static_argnames="repeats")
def estimates(
    objective: Any, params: Params, std: Standardizer, key: Array, x: Array, repeats: int = 1
) -> jelbo.Bound:
    """``repeats`` independent :func:`bound`\\ s of every row of ``x`` (keys
    ``fold_in(key, r)``, evaluated one after the other): fields ``(repeats, *x.shape[:-1])``."""
    return jax.lax.map(
        lambda r: bound(objective, params, std, jax.random.fold_in(key, r), x), jnp.arange(repeats)
    )


def export(params: Params, std: Standardizer) -> dict[str, np.ndarray]:
    r"""The model in raw units, float64 NumPy: ``W (D, K)``, ``b (D,)``, ``sigma2 ()``,
    ``A (K, D)``, ``a (K,)``, ``C (K, D)``, ``c (K,)`` (:math:`A = \tilde A/s`,
    :math:`a = \tilde a - \tilde A\mu/s`, the same for :math:`C, c`)."""
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


def exact(model: dict[str, np.ndarray], x: np.ndarray) -> dict[str, float]:
    """The exact (closed-form, float64) average ELBO and log-likelihood per row of ``x``.

    Args:
        model: raw-unit parameters from :func:`export`.
        x: ``(N, D)`` data.

    Returns:
        ``{"elbo": ..., "log_likelihood": ...}``, nats per datapoint.
    """
    W, b, sigma2 = model["W"], model["b"], float(model["sigma2"])
    mean = x @ model["A"].T + model["a"]
    var = np.logaddexp(0.0, x @ model["C"].T + model["c"])
    return {
        "elbo": float(np.mean(ppca.exact_elbo(x, W, b, sigma2, mean, var)[0])),
        "log_likelihood": float(np.mean(ppca.log_marginal(x, W, b, sigma2))),
    }
