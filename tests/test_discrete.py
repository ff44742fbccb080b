"""Tests of jelbo.discrete (OneHotCategorical, NegativeBinomial) and their KL.

References: ``scipy.special.log_softmax`` and ``scipy.stats.entropy`` for the one-hot
categorical; for the negative binomial mpmath at 40 digits (the log-pmf) and
``scipy.stats.nbinom`` (moments, sampling frequencies, and the log-pmf where scipy is
accurate); scipy's ``p`` is the probability of a *failure* in jelbo's convention:
``nbinom(n=r, p=sigmoid(-logits))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.special
import scipy.stats
from conftest import tol

import jelbo

N_SIGMA = 5  # Monte Carlo tolerance, in standard errors


# --- OneHotCategorical ---------------------------------------------------------------------


def test_one_hot_log_prob_entropy_moments_match_scipy(dtype, maybe_jit, rng):
    logits = rng.normal(0, 2, (2, 5)).astype(dtype)
    dist = jelbo.OneHotCategorical(logits=logits)
    assert dist.batch_shape == (2,) and dist.event_shape == (5,)
    x = np.eye(5, dtype=dtype)[[1, 4]]
    log_p = scipy.special.log_softmax(logits.astype(np.float64), -1)
    out = maybe_jit(jelbo.log_prob)(dist, x)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, [log_p[0, 1], log_p[1, 4]], **tol(dtype))
    p = np.exp(log_p)
    np.testing.assert_allclose(dist.entropy(), scipy.stats.entropy(p, axis=-1), **tol(dtype))
    np.testing.assert_allclose(dist.mean(), p, **tol(dtype))
    np.testing.assert_allclose(dist.variance(), p * (1 - p), **tol(dtype))
    cov = np.stack([np.diag(pi) - np.outer(pi, pi) for pi in p])
    np.testing.assert_allclose(dist.covariance(), cov, **tol(dtype))
    np.testing.assert_array_equal(dist.mode(), np.eye(5)[np.argmax(logits, -1)])


def test_one_hot_samples_are_one_hot_floats_with_the_right_frequencies(dtype):
    logits = jnp.array([0.5, -1.0, 1.5, 0.0], dtype)
    n = 20_000
    x = jax.jit(lambda k: jelbo.OneHotCategorical(logits=logits).sample(k, (n, 1)))(jax.random.key(0))
    assert x.shape == (n, 1, 4) and x.dtype == dtype
    np.testing.assert_array_equal(np.sum(x, -1), 1.0)
    p = np.asarray(jax.nn.softmax(logits.astype(np.float64)))
    freq = np.mean(np.asarray(x[:, 0], np.float64), 0)
    np.testing.assert_array_less(np.abs(freq - p), N_SIGMA * np.sqrt(p * (1 - p) / n))


def test_one_hot_masked_logits_and_kl():
    # -inf logits: 0 log 0 = 0 in log_prob, entropy and KL, with finite gradients.
    q_logits = jnp.array([0.3, -jnp.inf, 1.2, -0.5])
    p_logits = jnp.array([0.0, 2.0, -1.0, -jnp.inf])
    q = jelbo.OneHotCategorical(logits=q_logits)
    p = jelbo.OneHotCategorical(logits=p_logits)
    eye = jnp.eye(4)
    assert q.log_prob(eye[1]) == -np.inf and np.isfinite(q.log_prob(eye[0]))
    qp = scipy.special.softmax(np.array([0.3, 1.2, -0.5]))
    np.testing.assert_allclose(q.entropy(), scipy.stats.entropy(qp), rtol=1e-14)
    # q puts mass where p has none: +inf. Mask that category in q too: finite, and equal to
    # the KL over the common support.
    assert jelbo.kl_divergence(q, p) == np.inf
    q2_logits = q_logits.at[3].set(-jnp.inf)
    kl = jelbo.kl_divergence(jelbo.OneHotCategorical(logits=q2_logits), p)
    q2 = scipy.special.softmax(np.array([0.3, 1.2]))
    p2 = scipy.special.softmax(np.array([0.0, 2.0, -1.0]))[[0, 2]]
    np.testing.assert_allclose(kl, np.sum(q2 * np.log(q2 / p2)), rtol=1e-13)

    def loss(a, b):
        q, p = jelbo.OneHotCategorical(logits=a), jelbo.OneHotCategorical(logits=b)
        return jelbo.kl_divergence(q, p) + q.entropy() + q.log_prob(eye[0]) + p.log_prob(eye[1])

    grads = jax.jit(jax.grad(loss, (0, 1)))(q2_logits, p_logits)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_one_hot_kl_matches_explicit_sum(dtype, rng):
    a = rng.normal(0, 2, (3, 4)).astype(dtype)
    b = rng.normal(0, 2, (4,)).astype(dtype)  # one prior for the batch
    kl = jelbo.kl_divergence(jelbo.OneHotCategorical(logits=a), jelbo.OneHotCategorical(logits=b))
    qp = scipy.special.softmax(a.astype(np.float64), -1)
    pp = scipy.special.softmax(b.astype(np.float64), -1)
    np.testing.assert_allclose(kl, np.sum(qp * np.log(qp / pp), -1), **tol(dtype))
    with pytest.raises(ValueError, match="event shape"):
        jelbo.kl_divergence(jelbo.OneHotCategorical(logits=a), jelbo.OneHotCategorical(logits=np.zeros(3)))


# --- NegativeBinomial ----------------------------------------------------------------------


def nb_log_pmf_ref(k, r, a):
    """log C(k+r-1, k) + k log σ(a) + r log σ(-a) in mpmath at 40 digits."""
    mpmath.mp.dps = 40
    k, r, a = (mpmath.mpf(float(v)) for v in (k, r, a))
    log_sigmoid = lambda t: -mpmath.log1p(mpmath.exp(-t))
    return float(
        mpmath.loggamma(k + r)
        - mpmath.loggamma(r)
        - mpmath.loggamma(k + 1)
        + k * log_sigmoid(a)
        + r * log_sigmoid(-a)
    )


# Large counts, large and tiny total counts, saturated logits.
NB_K = np.array([0.0, 3.0, 17.0, 1e3, 1e6, 0.0, 250.0, 2.0])
NB_R = np.array([2.5, 0.3, 40.0, 1e4, 3.0, 1e3, 0.01, 1e5])
NB_A = np.array([-0.7, 1.5, -25.0, 0.1, 12.0, 30.0, -3.0, -14.0])


def test_negative_binomial_log_prob_matches_scipy(dtype, maybe_jit):
    k, r, a = (v.astype(dtype) for v in (NB_K, NB_R, NB_A))
    dist = jelbo.NegativeBinomial(r[:, None], logits=a[:, None])  # batch (8,), event (1,)
    out = maybe_jit(jelbo.log_prob)(dist, k[:, None])
    assert out.dtype == dtype
    k64, r64, a64 = (v.astype(np.float64) for v in (k, r, a))
    ref = np.array([nb_log_pmf_ref(*args) for args in zip(k64, r64, a64, strict=True)])
    # scipy agrees where it is accurate (it loses digits once 1 - p rounds, e.g. a = -25).
    scipy_ref = scipy.stats.nbinom.logpmf(k64, r64, scipy.special.expit(-a64))
    np.testing.assert_allclose(scipy_ref[:2], ref[:2], rtol=1e-12)
    if dtype == np.float64:
        np.testing.assert_allclose(out, ref, rtol=1e-13)
    else:
        # float32: a few ulps of the largest term of the sum (no cancellation beyond it).
        terms = (
            np.abs(k64 * scipy.special.log_expit(a64))
            + np.abs(r64 * scipy.special.log_expit(-a64))
            + np.abs(scipy.special.betaln(k64 + 1, r64))
        )
        np.testing.assert_array_less(
            np.abs(np.asarray(out, np.float64) - ref), 8 * np.finfo(np.float32).eps * (terms + 1)
        )


def test_negative_binomial_support_moments_and_gradients():
    dist = jelbo.NegativeBinomial(3.0, logits=jnp.array([0.2, 0.2, 0.2]))
    out = jax.vmap(lambda v: dist.log_prob(jnp.full(3, v)))(jnp.array([-1.0, 2.5, 4.0]))
    assert out[0] == -np.inf and out[1] == -np.inf and np.isfinite(out[2])
    r, a = 3.5, 0.7
    nb = scipy.stats.nbinom(r, scipy.special.expit(-a))
    dist = jelbo.NegativeBinomial(jnp.asarray(r), logits=jnp.array([a]))
    np.testing.assert_allclose(dist.mean(), [nb.mean()], rtol=1e-13)
    np.testing.assert_allclose(dist.variance(), [nb.var()], rtol=1e-13)
    ks = np.arange(200)
    assert dist.mode()[0] == ks[np.argmax(nb.pmf(ks))]
    # Finite gradients at large counts and saturated logits.
    grad = jax.jit(
        jax.grad(lambda r, a: jnp.sum(jelbo.NegativeBinomial(r, logits=a).log_prob(NB_K)), (0, 1))
    )
    assert all(np.all(np.isfinite(g)) for g in grad(jnp.asarray(NB_R), jnp.asarray(NB_A)))


def test_negative_binomial_samples(dtype):
    r, a = 3.5, 0.7
    n = 40_000
    dist = jelbo.NegativeBinomial(jnp.asarray(r, dtype), logits=jnp.array([a, -2.0], dtype))
    x = jax.jit(lambda k: dist.sample(k, (n,)))(jax.random.key(1))
    assert x.shape == (n, 2) and x.dtype == dtype
    x = np.asarray(x, np.float64)
    assert np.all(x == np.floor(x)) and np.all(x >= 0)
    for j, aj in enumerate((a, -2.0)):
        nb = scipy.stats.nbinom(r, scipy.special.expit(-aj))
        assert abs(x[:, j].mean() - nb.mean()) < N_SIGMA * nb.std() / np.sqrt(n)
        # The frequencies of the first few counts.
        p = nb.pmf(np.arange(4))
        freq = np.array([np.mean(x[:, j] == v) for v in range(4)])
        np.testing.assert_array_less(np.abs(freq - p), N_SIGMA * np.sqrt(p * (1 - p) / n) + 1e-12)
