"""Tests of jelbo.LKJCholesky: log_prob against NumPyro's LKJCholesky and the dim=2 closed
form (a scaled Beta), samples against the known Beta marginals of the correlations (KS
tests), the CorrCholesky pairing, both dtypes, jit/vmap/grad, errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import tol
from numpyro.distributions import LKJCholesky as NumPyroLKJCholesky

import jelbo
from jelbo import bijectors as B

ETA = np.array([0.3, 1.0, 2.5, 50.0])


@functools.cache
def _numpyro_reference(dim):
    """``(L, log_prob)``: valid factors ``(3, 4, dim, dim)`` and NumPyro's float64 log_prob
    (the same for both dtypes; compiled, as eagerly every operation compiles on its own)."""
    x = np.random.default_rng(0).normal(size=(3, 4, dim * (dim - 1) // 2))
    L = np.asarray(jax.jit(lambda x: B.forward(B.CorrCholesky(), x))(x))
    # float64 factors for NumPyro (it masks float32-rounded ones as off the support)
    return L, np.asarray(jax.jit(NumPyroLKJCholesky(dim, ETA).log_prob)(L))


@pytest.mark.parametrize("dim", [2, 4])
def test_log_prob_against_numpyro(dim, dtype):
    L, expected = _numpyro_reference(dim)
    d = jelbo.LKJCholesky(dim, jnp.asarray(ETA, dtype))
    assert d.batch_shape == (4,) and d.event_shape == (dim, dim)
    lp = jax.jit(jelbo.log_prob)(d, jnp.asarray(L, dtype))
    assert lp.shape == (3, 4) and lp.dtype == dtype
    np.testing.assert_allclose(jelbo.log_prob(d, jnp.asarray(L, dtype)), lp, **tol(dtype))
    np.testing.assert_allclose(lp, expected, **tol(dtype))


def test_dim_two_closed_form(dtype):
    # L = [[1, 0], [r, sqrt(1 - r^2)]] with r = 2 x - 1, x ~ Beta(eta, eta)
    r = np.array([-0.999, -0.5, 0.0, 0.3, 0.99])
    L = np.zeros((5, 2, 2))
    L[:, 0, 0], L[:, 1, 0], L[:, 1, 1] = 1.0, r, np.sqrt(1 - r**2)
    for eta in (0.5, 1.0, 7.0, 1e3):
        d = jelbo.LKJCholesky(2, jnp.asarray(eta, dtype))
        expected = scipy.stats.beta(eta, eta).logpdf((r + 1) / 2) - np.log(2)
        np.testing.assert_allclose(
            d.log_prob(jnp.asarray(L, dtype)), expected, rtol=1e-5 if dtype == np.float32 else 1e-11
        )


_sample = jax.jit(jelbo.sample, static_argnums=2)  # compiled: eagerly, each operation compiles


def test_samples_match_beta_marginals():
    # Each correlation of an LKJ(eta) K x K matrix is 2 Beta(b, b) - 1, b = eta - 1 + K/2.
    for dim, eta in ((2, 0.7), (3, 2.0)):
        L = np.asarray(_sample(jax.random.key(dim), jelbo.LKJCholesky(dim, eta), (4000,)))
        assert L.shape == (4000, dim, dim)
        corr = L @ np.swapaxes(L, -1, -2)
        np.testing.assert_allclose(np.diagonal(corr, 0, -2, -1), 1.0, rtol=1e-12)
        assert np.all(np.diagonal(np.asarray(L), 0, -2, -1) > 0)
        b = eta - 1 + dim / 2
        marginal = scipy.stats.beta(b, b, loc=-1, scale=2)
        for i, j in ((1, 0), (dim - 1, dim - 2)):
            assert scipy.stats.kstest(corr[:, i, j], marginal.cdf).pvalue > 1e-3


def test_through_corr_cholesky_jit_vmap_grad():
    """log_prob of L equals that of CorrCholesky(CorrCholesky^-1(L)); the concentration
    gradient matches central differences; vmap over concentrations == batch."""
    dim = 3
    d = jelbo.LKJCholesky(dim, 2.0)
    L = _sample(jax.random.key(0), d, (4000,))[:5]  # the program of the marginals test

    @jax.jit
    def checks(L):
        u = B.inverse(B.CorrCholesky(), L)
        via_u = jax.vmap(lambda v: d.log_prob(B.forward(B.CorrCholesky(), v)))(u)
        total = lambda e: jnp.sum(jelbo.LKJCholesky(dim, e).log_prob(L))
        eps = 1e-6
        numeric = (total(2.0 + eps) - total(2.0 - eps)) / (2 * eps)
        batched = jax.vmap(lambda e: jelbo.LKJCholesky(dim, e).log_prob(L[0]))(
            jnp.array([1.0, 2.0])
        )
        return via_u, d.log_prob(L), jax.grad(total)(2.0), numeric, batched

    via_u, direct, grad, numeric, batched = checks(L)
    np.testing.assert_allclose(via_u, direct, rtol=1e-10)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6)
    np.testing.assert_allclose(batched[1], direct[0], rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="`dim` must be a Python int >= 2"):
        jelbo.LKJCholesky(1, 1.0)
    with pytest.raises(ValueError, match=r"trailing \(event\) axes must be \(3, 3\)"):
        jelbo.LKJCholesky(3, 1.0).log_prob(jnp.eye(2))
