"""Tests of jelbo.mixture.MixtureSameFamily against explicit mixtures built from scipy.stats,
and as a prior (Gaussian mixture, VampPrior) in ``jelbo.ELBO(kl="mc")``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from conftest import tol

import jelbo

N_SIGMA = 5  # Monte Carlo tolerance, in standard errors


def gmm(rng, batch, k, d, dtype):
    logits = rng.normal(size=batch + (k,)).astype(dtype)
    loc = rng.normal(0, 2, batch + (k, d)).astype(dtype)
    scale = rng.uniform(0.5, 1.5, batch + (k, d)).astype(dtype)
    return jelbo.MixtureSameFamily(logits, jelbo.Normal(loc, scale)), (logits, loc, scale)


def gmm_log_pdf_ref(logits, loc, scale, x):
    """log Σ_k w_k Π_d N(x_d; loc_kd, scale_kd) for one mixture, from scipy, at the points
    ``x`` ``(..., d)``."""
    log_w = scipy.special.log_softmax(logits.astype(np.float64))
    comp = scipy.stats.norm.logpdf(x[..., None, :], loc, scale).sum(-1)
    return scipy.special.logsumexp(log_w + comp, axis=-1)


def test_gaussian_mixture_log_prob_matches_scipy(dtype, maybe_jit, rng):
    dist, (logits, loc, scale) = gmm(rng, (2,), 3, 4, dtype)
    assert dist.batch_shape == (2,) and dist.event_shape == (4,) and dist.num_components == 3
    x = rng.normal(0, 2, (5, 2, 4)).astype(dtype)
    out = maybe_jit(jelbo.log_prob)(dist, x)
    assert out.shape == (5, 2) and out.dtype == dtype
    ref = [
        [gmm_log_pdf_ref(logits[b], loc[b], scale[b], x[s, b]) for b in range(2)] for s in range(5)
    ]
    np.testing.assert_allclose(out, ref, **tol(dtype))


def test_mixture_of_full_rank_gaussians_and_of_categoricals(rng):
    logits = np.array([0.2, -1.0, 0.5])
    loc = rng.normal(size=(3, 2))
    tril = np.tril(rng.normal(size=(3, 2, 2)), -1) + np.eye(2) * rng.uniform(0.5, 1.5, (3, 1, 2))
    dist = jelbo.MixtureSameFamily(logits, jelbo.MultivariateNormalTriL(loc, tril))
    x = rng.normal(size=(4, 2))
    w = scipy.special.softmax(logits)
    ref = np.log(
        sum(
            w[k] * scipy.stats.multivariate_normal(loc[k], tril[k] @ tril[k].T).pdf(x)
            for k in range(3)
        )
    )
    # Scalar events: a mixture of categoricals is a categorical with the mixed probabilities.
    cat_logits = rng.normal(size=(3, 5))
    mix = jelbo.MixtureSameFamily(logits, jelbo.Categorical(logits=cat_logits))
    assert mix.event_shape == () and mix.batch_shape == ()
    probs = w @ scipy.special.softmax(cat_logits, -1)
    # one compiled program (eagerly, each operation compiles on its own; eager is tested above)
    mvn_log_prob, cat_log_prob = jax.jit(lambda: (dist.log_prob(x), mix.log_prob(jnp.arange(5))))()
    np.testing.assert_allclose(mvn_log_prob, ref, rtol=1e-12)
    np.testing.assert_allclose(cat_log_prob, np.log(probs), rtol=1e-12)


def test_mixture_sample_mean_variance(dtype, rng):
    dist, (logits, loc, scale) = gmm(rng, (), 3, 2, dtype)
    w = scipy.special.softmax(logits.astype(np.float64))[:, None]
    mean = np.sum(w * loc, 0)
    var = np.sum(w * (scale.astype(np.float64) ** 2 + loc**2), 0) - mean**2
    np.testing.assert_allclose(dist.mean(), mean, **tol(dtype))
    np.testing.assert_allclose(dist.variance(), var, **tol(dtype))
    n = 40_000
    x = jax.jit(lambda k: dist.sample(k, (n,)))(jax.random.key(0))
    assert x.shape == (n, 2) and x.dtype == dtype
    x = np.asarray(x, np.float64)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), N_SIGMA * np.sqrt(var / n))
    # Var of the sample variance ≈ (m4 - var²)/n; 0.05 relative is > 5 standard errors here.
    np.testing.assert_allclose(x.var(0), var, rtol=0.05)
    # The sampling distribution of one coordinate against the mixture's CDF.
    w1 = w[:, 0]
    cdf = lambda v: np.sum(w1 * scipy.stats.norm.cdf(v[:, None], loc[:, 0], scale[:, 0]), -1)
    assert scipy.stats.kstest(x[:, 0], cdf).pvalue > 1e-3


def test_mixture_is_not_reparameterized_and_checks_shapes(rng):
    dist, _ = gmm(rng, (3,), 2, 2, np.float64)
    assert not dist.is_reparameterized
    g = jax.jit(jax.grad(lambda d: jnp.sum(d.sample(jax.random.key(0), (2,)))))(dist)
    assert all(np.all(v == 0) for v in jax.tree_util.tree_leaves(g))
    with pytest.raises(ValueError, match="cannot be reparameterized"):
        jelbo.ELBO()(jax.random.key(0), dist, lambda z, x: 0.0, dist, jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match="mixture_logits"):
        jelbo.MixtureSameFamily(jnp.zeros(3), jelbo.Normal(jnp.zeros((2, 4)), 1.0))
    with pytest.raises(TypeError, match="components"):
        jelbo.MixtureSameFamily(jnp.zeros(3), jnp.zeros((3, 4)))
    leaves = jax.tree_util.tree_leaves(dist)
    assert len(leaves) == 3 and "Normal" in repr(dist)
    vmapped, batched = jax.jit(
        lambda d, x: (jax.vmap(lambda d, x: d.log_prob(x))(d, x), d.log_prob(x))
    )(dist, jnp.zeros((3, 2)))
    np.testing.assert_allclose(vmapped, batched, rtol=1e-14)


def test_gmm_prior_and_vamp_prior_with_monte_carlo_kl(rng):
    # A batch of Gaussian posteriors against a GMM prior and against a VampPrior whose
    # components are the encoder's outputs at learned pseudo-inputs; kl="mc" needs only the
    # prior's log_prob. The ELBO's KL term is checked against an independent numpy estimate
    # of KL(q || prior) with scipy densities, and gradients reach the prior's parameters.
    B, D, K, X = 3, 2, 4, 5
    q = jelbo.Normal(jnp.asarray(rng.normal(size=(B, D))), jnp.asarray(rng.uniform(0.5, 1, (B, D))))
    enc_w = jnp.asarray(rng.normal(size=(X, 2 * D)) * 0.5)
    pseudo = jnp.asarray(rng.normal(size=(K, X)))

    def vamp_prior(pseudo, enc_w):
        out = pseudo @ enc_w
        return jelbo.MixtureSameFamily(jnp.zeros(K), jelbo.Normal(out[:, :D], jnp.exp(out[:, D:])))

    gmm_prior, (logits, loc, scale) = gmm(rng, (), K, D, np.float64)
    data = jnp.zeros((B, 1))
    ll = lambda z, x: -0.5 * jnp.sum(z**2)
    n = 20_000

    @jax.jit
    def kl_term(prior, key):
        return jelbo.ELBO(num_samples=n, kl="mc")(key, q, ll, prior, data).kl

    z = np.asarray(q.loc)[None] + np.asarray(q.scale)[None] * rng.normal(size=(n, B, D))
    log_q = scipy.stats.norm.logpdf(z, np.asarray(q.loc), np.asarray(q.scale)).sum(-1)
    vp = vamp_prior(pseudo, enc_w)
    vp_loc, vp_scale = np.asarray(vp.components.loc), np.asarray(vp.components.scale)
    for prior, (pl, ploc, pscale) in [
        (gmm_prior, (logits, loc, scale)),
        (vp, (np.zeros(K), vp_loc, vp_scale)),
    ]:
        log_p = gmm_log_pdf_ref(pl, ploc, pscale, z[:2000])  # (2000, B)
        terms = log_q[:2000] - log_p
        kl = kl_term(prior, jax.random.key(1))
        assert kl.shape == (B,)
        np.testing.assert_array_less(
            np.abs(kl - terms.mean(0)), N_SIGMA * terms.std(0) / np.sqrt(2000)
        )

    grads = jax.jit(
        jax.grad(
            lambda p, w: jnp.sum(
                jelbo.ELBO(num_samples=4, kl="mc")(
                    jax.random.key(2), q, ll, vamp_prior(p, w), data
                ).value
            ),
            (0, 1),
        )
    )(pseudo, enc_w)
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in grads)
