r"""The classic textbook ELBO recipe that jelbo started from, vectorized in JAX.

Same function names, arguments and numbers as the NumPy recipe (a Python loop over
samples), but every function is pure, takes an explicit key where it draws, and works
under ``jit``/``vmap``/``grad``. Two differences: results are JAX scalars (not Python
floats), and :func:`reparameterize` takes a ``key`` first and returns one stacked array.

.. warning::
    :func:`compute_elbo`'s reconstruction term is the recipe's **unnormalized** unit-variance
    Gaussian log-likelihood :math:`-\tfrac12\sum_i (x_i - \mathrm{decoder}(z)_i)^2`: it drops
    the constant :math:`-\tfrac D2\log 2\pi`, so its "ELBO" is not a bound on
    :math:`\log p(x)`. Use :class:`jelbo.ELBO` with a normalized likelihood for that.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jelbo import _checks, _random
from jelbo._typing import Array, ArrayLike

__all__ = ["compute_elbo", "gaussian_log_prob", "kl_divergence_gaussians", "reparameterize"]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(x: ArrayLike, mean: ArrayLike, log_var: ArrayLike) -> Array:
    r"""Elementwise Gaussian log-density with log-variance :math:`v`.

    :math:`\log\mathcal N(x; \mu, e^{v}) = -\tfrac12(\log 2\pi + v + (x-\mu)^2 e^{-v})`.

    Not summed: the result has the broadcast shape of the inputs.
    """
    x, mean, log_var = jnp.asarray(x), jnp.asarray(mean), jnp.asarray(log_var)
    return -0.5 * (_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var))


def kl_divergence_gaussians(
    mu_q: ArrayLike, logvar_q: ArrayLike, mu_p: ArrayLike = 0.0, logvar_p: ArrayLike = 0.0
) -> Array:
    r"""Diagonal-Gaussian :math:`\mathrm{KL}(q\|p)` summed over **all** elements (a scalar).

    .. math::
        \tfrac12\sum_i \Big(v^p_i - v^q_i + e^{v^q_i - v^p_i}
        + (\mu^q_i - \mu^p_i)^2 e^{-v^p_i} - 1\Big)
    """
    mu_q, logvar_q = jnp.asarray(mu_q), jnp.asarray(logvar_q)
    mu_p, logvar_p = jnp.asarray(mu_p), jnp.asarray(logvar_p)
    terms = logvar_p - logvar_q + jnp.exp(logvar_q - logvar_p)
    terms = terms + jnp.square(mu_q - mu_p) * jnp.exp(-logvar_p) - 1.0
    return 0.5 * jnp.sum(terms)


def compute_elbo(
    x: ArrayLike,
    z_samples: ArrayLike,
    mu_q: ArrayLike,
    logvar_q: ArrayLike,
    decoder_fn: Callable[[Array], Array],
    mu_p: ArrayLike = 0.0,
    logvar_p: ArrayLike = 0.0,
) -> tuple[Array, Array, Array]:
    r"""The recipe's ELBO: ``recon - kl`` with an unnormalized reconstruction term.

    .. math::
        \mathrm{recon} = \frac1S\sum_{s=1}^S -\tfrac12\sum_i (x_i - \mathrm{decoder}(z_s)_i)^2,
        \qquad \mathrm{kl} = \texttt{kl\_divergence\_gaussians}(\mu_q, v_q, \mu_p, v_p).

    ``recon`` omits :math:`-\tfrac D2\log 2\pi` (see the module warning).

    Args:
        x: one datapoint, any shape that ``decoder_fn`` outputs.
        z_samples: samples of shape ``(S, K)`` (``S`` >= 1).
        mu_q, logvar_q: parameters of q, shape ``(K,)``.
        decoder_fn: maps one ``z`` of shape ``(K,)`` to the mean of ``x``; vmapped over ``S``.
        mu_p, logvar_p: prior parameters (default standard normal).

    Returns:
        ``(elbo, recon, kl)`` as JAX scalars.
    """
    z_samples = jnp.asarray(z_samples)
    if z_samples.ndim != 2 or z_samples.shape[0] < 1:
        raise ValueError(f"`z_samples` must have shape (S, K) with S >= 1; got {z_samples.shape}.")
    x = jnp.asarray(x)
    recon_per_sample = jax.vmap(lambda z: -0.5 * jnp.sum(jnp.square(x - decoder_fn(z))))(z_samples)
    recon = jnp.mean(recon_per_sample)
    kl = kl_divergence_gaussians(mu_q, logvar_q, mu_p, logvar_p)
    return recon - kl, recon, kl


def reparameterize(key: Array, mu: ArrayLike, logvar: ArrayLike, n_samples: int = 1) -> Array:
    r"""Draws :math:`z_s = \mu + e^{v/2}\odot\epsilon_s`, :math:`\epsilon_s\sim\mathcal N(0, I)`.

    Returns an array of shape ``(n_samples, *mu.shape)`` in ``mu``'s floating dtype.
    """
    _checks.check_key(key)
    n_samples = _checks.check_positive_int(n_samples, "n_samples")
    mu, logvar = jnp.asarray(mu), jnp.asarray(logvar)
    dtype = jnp.result_type(float, mu, logvar)
    shape = (n_samples, *np.broadcast_shapes(mu.shape, logvar.shape))
    eps = _random.normal(key, shape, dtype)
    return mu + jnp.exp(0.5 * logvar) * eps
