"""Tests of jelbo._gamma: the vectorized Marsaglia–Tsang gamma sampler against
``scipy.stats.gamma`` (KS tests on log z, so that tiny concentrations are covered too)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from jelbo import _gamma

ALPHAS = np.array([1e-3, 0.2, 0.9, 1.0, 3.7, 250.0])


def log_gamma_cdf(alpha):
    """CDF of log z, z ~ Gamma(alpha, 1): P(alpha, e^v), the regularized lower gamma; for
    e^v < 1e-9 its leading term e^(alpha v) / Gamma(alpha + 1) (relative error < 1e-9)."""

    def cdf(v):
        small = v < -20.7
        tail = np.exp(alpha * np.where(small, v, 0.0) - scipy.special.gammaln(alpha + 1))
        return np.where(small, tail, scipy.special.gammainc(alpha, np.exp(np.where(small, 0.0, v))))

    return cdf


@pytest.fixture(scope="module")
def draws():
    # One compiled draw per dtype; the concentrations broadcast against the last axis.
    fn = jax.jit(lambda key, a: _gamma.loggamma(key, a, (8000, len(ALPHAS)), a.dtype))
    return {
        dt: np.asarray(fn(jax.random.key(0), jnp.asarray(ALPHAS, dt)))
        for dt in (np.float32, np.float64)
    }


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_log_gamma_draws_pass_ks_tests(draws, dt):
    x = draws[dt]
    assert x.dtype == dt and x.shape == (8000, len(ALPHAS)) and np.all(np.isfinite(x))
    for j, alpha in enumerate(ALPHAS):
        assert scipy.stats.kstest(x[:, j].astype(np.float64), log_gamma_cdf(alpha)).pvalue > 1e-3, (
            alpha
        )


def test_rejection_fallback_loop_is_exact(monkeypatch):
    # With one proposal up front, ~5% of the elements at alpha = 1 go through the while loop.
    monkeypatch.setattr(_gamma, "ROUNDS", 1)
    x = jax.jit(lambda k: _gamma.loggamma(k, jnp.array([1.0, 0.5]), (10_000, 2), jnp.float64))(
        jax.random.key(1)
    )
    for j, alpha in enumerate((1.0, 0.5)):
        assert scipy.stats.kstest(np.asarray(x[:, j]), log_gamma_cdf(alpha)).pvalue > 1e-3


def test_vmap_over_keys_and_no_gradient():
    keys = jax.random.split(jax.random.key(2), 3)
    x = jax.vmap(lambda k: _gamma.loggamma(k, 2.0, (5,), jnp.float32))(keys)
    assert x.shape == (3, 5) and not np.allclose(x[0], x[1])
    g = jax.grad(lambda a: jnp.sum(_gamma.loggamma(keys[0], a, (5,), jnp.float64)))(2.0)
    assert g == 0.0
    np.testing.assert_allclose(
        _gamma.gamma(keys[0], 2.0, (5,), jnp.float32), np.exp(x[0]), rtol=1e-6
    )
