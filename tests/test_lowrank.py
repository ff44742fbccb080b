"""Tests of jelbo.LowRankMultivariateNormal against the explicit covariance F Fᵀ + diag(d)
(scipy.stats.multivariate_normal, NumPy KL formulas), both dtypes, jit/vmap/grad, no K × K
intermediate in log_prob/sample/entropy, and its KL pairs in both directions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import tol

import jelbo

K, R = 4, 2


def random_lowrank(rng, batch=(2,), dtype=np.float64, shift=0.0):
    loc = rng.normal(size=(*batch, K)) + shift
    factor = rng.normal(scale=0.8, size=(*batch, K, R))
    diag = rng.uniform(0.2, 1.5, (*batch, K))
    d = jelbo.LowRankMultivariateNormal(*(jnp.asarray(v, dtype) for v in (loc, factor, diag)))
    f, dg = (np.asarray(v, dtype).astype(float) for v in (factor, diag))
    cov = f @ np.swapaxes(f, -1, -2) + dg[..., None] * np.eye(K)
    return d, np.asarray(loc, dtype).astype(float), cov


def kl_np(mq, cq, mp, cp):
    inv = np.linalg.inv(cp)
    delta = mp - mq
    return 0.5 * (
        np.trace(inv @ cq)
        + delta @ inv @ delta
        - len(mq)
        + np.linalg.slogdet(cp)[1]
        - np.linalg.slogdet(cq)[1]
    )


def test_against_explicit_covariance(dtype, maybe_jit, rng):
    d, loc, cov = random_lowrank(rng, dtype=dtype)
    assert d.batch_shape == (2,) and d.event_shape == (K,) and d.rank == R
    x = jnp.asarray(rng.normal(size=(3, 2, K)), dtype)
    lp = maybe_jit(jelbo.log_prob)(d, x)
    assert lp.shape == (3, 2) and lp.dtype == dtype
    for b in range(2):
        ref = scipy.stats.multivariate_normal(loc[b], cov[b])
        np.testing.assert_allclose(lp[:, b], ref.logpdf(np.asarray(x[:, b], float)), **tol(dtype))
        np.testing.assert_allclose(maybe_jit(jelbo.entropy)(d)[b], ref.entropy(), **tol(dtype))
    np.testing.assert_allclose(d.mean(), loc, **tol(dtype))
    np.testing.assert_allclose(d.covariance(), cov, **tol(dtype))
    np.testing.assert_allclose(d.variance(), np.diagonal(cov, 0, -2, -1), **tol(dtype))
    np.testing.assert_allclose(d.log_det_covariance(), np.linalg.slogdet(cov)[1], **tol(dtype))


def test_samples_and_gradients(rng):
    d, loc, cov = random_lowrank(rng, batch=())
    draws = np.asarray(jelbo.sample(jax.random.key(0), d, (40000,)))
    assert draws.shape == (40000, K)
    se = np.sqrt(np.diag(cov) / 40000)
    assert np.all(np.abs(draws.mean(0) - loc) < 5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.06)

    def loss(params):
        q = jelbo.LowRankMultivariateNormal.from_unconstrained(**params)
        z = jelbo.sample(jax.random.key(1), q, (8,))
        return jnp.mean(q.log_prob(z)) + q.entropy()

    params = d.to_unconstrained()
    np.testing.assert_allclose(
        jelbo.LowRankMultivariateNormal.from_unconstrained(**params).cov_diag, d.cov_diag
    )
    grads = jax.jit(jax.grad(loss))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    # vmap over a batch of distributions == the batched distribution
    db, _, _ = random_lowrank(rng, batch=(3,))
    x = jnp.asarray(rng.normal(size=(3, K)))
    np.testing.assert_allclose(jax.vmap(jelbo.log_prob)(db, x), db.log_prob(x), rtol=1e-12)


def test_no_k_by_k_intermediates():
    k, r = 64, 3
    d = jelbo.LowRankMultivariateNormal(jnp.zeros(k), jnp.ones((k, r)), jnp.ones(k))

    for fn, args in (
        (jelbo.log_prob, (d, jnp.zeros(k))),
        (jelbo.entropy, (d,)),
        (lambda key, d: jelbo.sample(key, d, (2,)), (jax.random.key(0), d)),
    ):
        text = str(jax.make_jaxpr(fn)(*args))  # every intermediate, nested jaxprs too
        assert f"{k},{r}]" in text and f"{k},{k}]" not in text


PAIRS = ["lowrank-lowrank", "lowrank-normal", "normal-lowrank", "lowrank-mvn", "mvn-lowrank"]


@pytest.mark.parametrize("pair", PAIRS)
def test_kl(pair, dtype, rng):
    def make(kind, shift):
        if kind == "lowrank":
            return random_lowrank(rng, dtype=dtype, shift=shift)
        if kind == "normal":
            loc = rng.normal(size=(2, K)) + shift
            scale = rng.uniform(0.5, 1.5, (2, K))
            d = jelbo.Normal(jnp.asarray(loc, dtype), jnp.asarray(scale, dtype))
            s = np.asarray(scale, dtype).astype(float)
            return d, np.asarray(loc, dtype).astype(float), s[..., None] ** 2 * np.eye(K)
        loc = rng.normal(size=(2, K)) + shift
        tril = np.tril(rng.normal(scale=0.5, size=(2, K, K)), -1) + np.eye(K) * rng.uniform(
            0.5, 1.5, (2, K, 1)
        )
        d = jelbo.MultivariateNormalTriL(jnp.asarray(loc, dtype), jnp.asarray(tril, dtype))
        t = np.asarray(tril, dtype).astype(float)
        return d, np.asarray(loc, dtype).astype(float), t @ np.swapaxes(t, -1, -2)

    kind_q, kind_p = pair.split("-")
    q, mq, cq = make(kind_q, 0.0)
    p, mp, cp = make(kind_p, 0.7)
    kl = jax.jit(jelbo.kl_divergence)(q, p)
    assert kl.shape == (2,) and kl.dtype == dtype
    expected = [kl_np(mq[b], cq[b], mp[b], cp[b]) for b in range(2)]
    np.testing.assert_allclose(kl, expected, rtol=1e-4 if dtype == np.float32 else 1e-10)
    # KL(q || q) == 0
    np.testing.assert_allclose(
        jelbo.kl_divergence(q, q), 0.0, atol=1e-4 if dtype == np.float32 else 1e-10
    )


def test_errors():
    with pytest.raises(ValueError, match=r"`cov_factor` \(3, 2\)"):
        jelbo.LowRankMultivariateNormal(jnp.zeros(4), jnp.zeros((3, 2)), jnp.ones(4))
    with pytest.raises(ValueError, match="`cov_diag` \\(3,\\) must end in K = 4"):
        jelbo.LowRankMultivariateNormal(jnp.zeros(4), jnp.zeros((4, 2)), jnp.ones(3))
