"""Monte Carlo diagnostics shared by the bounds and the posterior summaries.

All reduce over the LAST axis (the samples) and pass no gradient (they are diagnostics).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jelbo._typing import Array


def mean_stderr(values: Array) -> Array:
    r"""Standard error :math:`\mathrm{sd}(f)/\sqrt S` of the mean over the last axis.

    ``nan`` for one sample (no spread to estimate it from).
    """
    values = jax.lax.stop_gradient(values)
    n = values.shape[-1]
    if n < 2:
        return jnp.full(values.shape[:-1], jnp.nan, values.dtype)
    centered = values - jnp.mean(values, axis=-1, keepdims=True)
    # A Python float: the int (n - 1) * n overflows int32 from ~46,000 samples.
    return jnp.sqrt(jnp.sum(centered * centered, axis=-1) / (float(n - 1) * n))


def log_mean_stderr(log_v: Array) -> Array:
    r"""Delta-method standard error of :math:`\log\frac1K\sum_k v_k` from :math:`\log v_k`.

    :math:`\mathrm{Var}[\log\bar v] \approx \mathrm{Var}[\bar v]/\bar v^2 = s_v^2/(K\bar v^2)`
    with the unbiased sample variance :math:`s_v^2`; in terms of the normalized weights
    :math:`\tilde v_k = v_k/\sum_j v_j` this is :math:`(K\sum_k\tilde v_k^2 - 1)/(K-1)`,
    computed without overflow. ``nan`` for one sample.
    """
    log_v = jax.lax.stop_gradient(log_v)
    k = log_v.shape[-1]
    if k < 2:
        return jnp.full(log_v.shape[:-1], jnp.nan, log_v.dtype)
    normalized = jax.nn.softmax(log_v, axis=-1)
    variance = (float(k) * jnp.sum(normalized * normalized, axis=-1) - 1.0) / float(k - 1)
    return jnp.sqrt(jnp.maximum(variance, 0.0))


def ess(log_w: Array) -> Array:
    r"""Effective sample size :math:`1/\sum_k\tilde w_k^2` of the normalized weights."""
    normalized = jax.nn.softmax(jax.lax.stop_gradient(log_w), axis=-1)
    return 1.0 / jnp.sum(normalized * normalized, axis=-1)
