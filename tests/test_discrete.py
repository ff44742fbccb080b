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
    x = jax.jit(lambda k: jelbo.OneHotCategorical(logits=logits).sample(k, (n, 1)))(
        jax.random.key(0)
    )
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
        jelbo.kl_divergence(
            jelbo.OneHotCategorical(logits=a), jelbo.OneHotCategorical(logits=np.zeros(3))
        )


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


# --- keyword parameterizations: computed in the parameter given -------------------------------


def _mp(fn, *columns, dps=50):
    with mpmath.workdps(dps):
        return np.array(
            [float(fn(*(mpmath.mpf(float(v)) for v in row))) for row in zip(*columns, strict=True)]
        )


def _rel(values, ref, floor=0.0):
    values = np.asarray(values, np.float64)
    assert np.all(np.isfinite(values)), values
    return float(np.max(np.abs(values - ref) / np.maximum(np.abs(ref), floor)))


# probabilities down to 1e-300 and up to 1 - 2^-52, where a round trip through the logits loses
P = np.array([1e-300, 1e-30, 1e-8, 0.1, 0.5, 0.9, 1 - 1e-8, 1 - 2.0**-52])


def test_bernoulli_probs_log_prob_entropy_and_gradients_against_mpmath():
    p, x = np.repeat(P, 2), np.tile([0.0, 1.0], len(P))
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(
        lambda p, x: jelbo.Bernoulli(probs=p).log_prob(x))))  # fmt: skip
    values, grads = value_and_grad(jnp.asarray(p), jnp.asarray(x))
    ref = _mp(lambda p, x: x * mpmath.log(p) + (1 - x) * mpmath.log1p(-p), p, x)
    assert _rel(values, ref, floor=1e-300) <= 2e-16 * 4
    # d/dp [x log p + (1 - x) log(1 - p)] = x/p - (1 - x)/(1 - p), exactly
    grad_ref = _mp(lambda p, x: x / p - (1 - x) / (1 - p), p, x)
    assert _rel(grads, grad_ref) <= 4e-16
    entropy = jax.jit(jax.vmap(lambda p: jelbo.Bernoulli(probs=p).entropy()))(jnp.asarray(P))
    ref = _mp(lambda p: -(p * mpmath.log(p) + (1 - p) * mpmath.log1p(-p)), P)
    assert _rel(entropy, ref, floor=1e-300) <= 1e-15
    dist = jelbo.Bernoulli(probs=jnp.asarray(P))
    np.testing.assert_array_equal(dist.mean(), P)  # exactly what was given
    np.testing.assert_array_equal(dist.mode(), P > 0.5)
    # deterministic coordinates: 0 log 0 = 0, with finite gradients
    edge = jelbo.Bernoulli(probs=jnp.array([0.0, 1.0]))
    np.testing.assert_array_equal(edge.log_prob(jnp.array([0.0, 1.0])), 0.0)
    assert edge.log_prob(jnp.array([1.0, 1.0])) == -np.inf
    np.testing.assert_array_equal(edge.entropy(), 0.0)
    g = jax.grad(lambda p: jelbo.Bernoulli(probs=p).log_prob(jnp.array([0.0, 1.0])))(
        jnp.array([0.0, 1.0])
    )
    np.testing.assert_array_equal(g, [-1.0, 1.0])


def test_logit_of_probs_is_accurate_and_samples_follow_probs(dtype):
    logits = jelbo.Bernoulli(probs=jnp.asarray(P)).logits
    ref = _mp(lambda p: mpmath.log(p) - mpmath.log1p(-p), P)
    assert _rel(logits, ref, floor=1e-300) <= 4e-16
    near_half = 0.5 + np.array([1e-12, -1e-9, 1e-4])
    assert _rel(jelbo.Bernoulli(probs=jnp.asarray(near_half)).logits,
                _mp(lambda p: mpmath.log(p / (1 - p)), near_half)) <= 1e-15  # fmt: skip
    p = jnp.asarray([0.1, 0.5, 0.93], dtype)
    draws = jelbo.Bernoulli(probs=p).sample(jax.random.key(0), (20000,))
    assert draws.dtype == dtype
    np.testing.assert_allclose(draws.mean(0), p, atol=5 * np.sqrt(0.25 / 20000))


def test_bernoulli_probs_kl_keeps_relative_precision():
    q = np.array([0.3, 0.3, 1e-10, 0.999999, 0.2, 0.0, 1.0, 0.5])
    p = np.array([0.3 + 1e-9, 0.7, 2e-10, 0.999998, 1e-300, 0.4, 0.4, 0.5])
    # scalar pairs (a vector of probabilities is one event, whose KL is the sum)
    kl = jax.jit(jax.vmap(lambda q, p: jelbo.kl_divergence(
        jelbo.Bernoulli(probs=q), jelbo.Bernoulli(probs=p))))(q, p)  # fmt: skip
    ref = _mp(
        lambda q, p: (0 if q == 0 else q * mpmath.log(q / p))
        + (0 if q == 1 else (1 - q) * mpmath.log((1 - q) / (1 - p))),
        q, p, dps=80,
    )  # fmt: skip
    assert _rel(kl, ref, floor=1e-300) <= 1e-14
    assert kl[-1] == 0.0
    # mixed parameterizations go through the logits; KL to a certain outcome is infinite
    mixed = jax.vmap(lambda q, p: jelbo.kl_divergence(
        jelbo.Bernoulli(probs=q), jelbo.Bernoulli(logits=jnp.log(p / (1 - p))))
    )(q[:2], p[:2])  # fmt: skip
    np.testing.assert_allclose(mixed, ref[:2], rtol=1e-6)
    assert jelbo.kl_divergence(jelbo.Bernoulli(probs=0.5), jelbo.Bernoulli(probs=1.0)) == np.inf
    grad = jax.grad(
        lambda q: jelbo.kl_divergence(jelbo.Bernoulli(probs=q), jelbo.Bernoulli(probs=0.4))
    )
    np.testing.assert_allclose(grad(0.3), np.log(0.3 / 0.4) - np.log(0.7 / 0.6), rtol=1e-13)


def test_poisson_rate_log_prob_kl_and_gradients_against_mpmath():
    rate = np.array([1e-8, 0.5, 3.0, 3.0, 40.0, 1e6, 1e6, 2.5e8])
    x = np.array([0.0, 1.0, 3.0, 0.0, 35.0, 1e6, 999000.0, 2.5e8 + 1e4])
    log_prob = jax.vmap(jax.value_and_grad(lambda r, x: jelbo.Poisson(rate=r).log_prob(x)))
    values, grads = jax.jit(log_prob)(jnp.asarray(rate), jnp.asarray(x))
    ref = _mp(lambda r, x: x * mpmath.log(r) - r - mpmath.loggamma(x + 1), rate, x)
    # 1e-13 up to rate 1e6; at rate 2.5e8 (terms of 5e9 cancelling to -10.8) 2e-11 absolute
    assert _rel(values[:-1], ref[:-1], floor=1.0) <= 1e-13
    assert _rel(values[-1:], ref[-1:], floor=1.0) <= 1e-11
    # d/d rate = x / rate - 1: errors relative to the size of its two terms
    grad_ref = _mp(lambda r, x: x / r - 1, rate, x)
    scale = x / rate + 1
    assert np.max(np.abs(np.asarray(grads) - grad_ref) / scale) <= 1e-13
    dist = jelbo.Poisson(rate=jnp.asarray(rate))
    np.testing.assert_array_equal(dist.mean(), rate)
    np.testing.assert_array_equal(dist.variance(), rate)
    np.testing.assert_allclose(dist.log_rate, np.log(rate), rtol=1e-15)
    # a zero rate: all mass at 0
    np.testing.assert_array_equal(
        jelbo.Poisson(rate=0.0).log_prob(jnp.array([0.0, 1.0])), [0.0, -np.inf]
    )
    # KL from rates, to full relative precision also for close rates
    rq = np.array([3.0, 3.0, 1e-6, 50.0, 0.0])
    rp = np.array([3.0 * (1 + 1e-9), 0.1, 2e-6, 49.0, 2.0])
    kl = jax.jit(jax.vmap(lambda a, b: jelbo.kl_divergence(
        jelbo.Poisson(rate=a), jelbo.Poisson(rate=b))))(rq, rp)  # fmt: skip
    ref = _mp(lambda a, b: (a * mpmath.log(a / b) if a else 0) - a + b, rq, rp, dps=80)
    assert _rel(kl, ref, floor=1e-300) <= 1e-14
    mixed = jax.vmap(lambda a, b: jelbo.kl_divergence(
        jelbo.Poisson(rate=a), jelbo.Poisson(log_rate=jnp.log(b))))(rq[1:4], rp[1:4])  # fmt: skip
    np.testing.assert_allclose(mixed, ref[1:4], rtol=1e-9)


def test_categorical_probs_log_prob_entropy_kl_and_gradients(dtype):
    probs = jnp.asarray([[0.2, 0.3, 0.5], [0.0, 0.25, 0.75]], dtype)
    cat = jelbo.Categorical(probs=probs)
    assert cat.batch_shape == (2,) and cat.num_categories == 3
    np.testing.assert_allclose(cat.log_prob(jnp.array([2, 1])), np.log([0.5, 0.25]), **tol(dtype))
    assert cat.log_prob(jnp.array([0, 0]))[1] == -np.inf  # a probability 0
    p64 = np.asarray(probs, np.float64)
    np.testing.assert_allclose(
        cat.entropy(), -np.sum(scipy.special.xlogy(p64, p64), -1), **tol(dtype)
    )
    np.testing.assert_array_equal(cat.probs, probs)
    np.testing.assert_allclose(cat.logits, np.log(p64), **tol(dtype))
    np.testing.assert_array_equal(cat.mode(), [2, 2])
    grad = jax.grad(lambda p: jelbo.Categorical(probs=p).log_prob(jnp.array(2)))(probs[0])
    np.testing.assert_allclose(grad, [0.0, 0.0, 2.0], **tol(dtype))  # d log p_2 / d p = e_2 / p_2
    other = jelbo.Categorical(logits=jnp.asarray([[0.1, -0.4, 0.3], [1.0, 0.0, -1.0]], dtype))
    log_r = scipy.special.log_softmax(np.asarray(other.logits, np.float64), -1)
    expected = np.sum(np.where(p64 > 0, p64 * (np.log(np.where(p64 > 0, p64, 1)) - log_r), 0), -1)
    np.testing.assert_allclose(jelbo.kl_divergence(cat, other), expected, **tol(dtype))
    np.testing.assert_allclose(
        jelbo.kl_divergence(other, cat)[0],
        np.sum(np.exp(log_r[0]) * (log_r[0] - np.log(p64[0]))),
        **tol(dtype),
    )
    assert jelbo.kl_divergence(other, cat)[1] == np.inf  # cat gives probability 0
    one_hot = jelbo.OneHotCategorical(probs=probs)
    np.testing.assert_array_equal(one_hot.mean(), probs)
    draws = one_hot.sample(jax.random.key(0), (4000,))
    np.testing.assert_allclose(draws.mean(0), probs, atol=5 * 0.5 / np.sqrt(4000))


def test_negative_binomial_probs_log_prob_and_gradient(dtype):
    r, p = 2.5, np.array([1e-6, 0.3, 0.9, 0.999])
    p = np.asarray(np.asarray(p, dtype), np.float64)  # the references at the p given
    k = np.array([0.0, 3.0, 20.0, 4000.0])
    # a batch of four scalar distributions (a vector parameter would be one event, summed)
    dist = jelbo.NegativeBinomial(r, probs=jnp.asarray(p, dtype)[:, None])
    ref = scipy.stats.nbinom(r, 1 - p).logpmf(k)
    # -log B(1, r) - log r = 0 at k = 0 is left with a few ulp of |log r| (absolute)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(k, dtype)[:, None]), ref,
                               rtol=2e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-15)  # fmt: skip
    grad = jax.vmap(jax.grad(lambda p, k: jelbo.NegativeBinomial(r, probs=p).log_prob(k)))(
        jnp.asarray(p), jnp.asarray(k)
    )
    np.testing.assert_allclose(grad, k / p - r / (1 - p), rtol=1e-12)  # d/dp, exactly
    np.testing.assert_allclose(
        dist.mean()[:, 0], r * p / (1 - p), rtol=2e-6 if dtype == np.float32 else 1e-14
    )
    logits = jelbo.NegativeBinomial(r, logits=jnp.log(p / (1 - p))[:, None])
    np.testing.assert_allclose(logits.log_prob(jnp.asarray(k)[:, None]), ref, rtol=1e-9, atol=1e-15)


def test_issue19_bernoulli_kl_with_one_saturated_logit():
    # Issue 19, defect 4: KL(Bernoulli(logits=785.9) || Bernoulli(logits=b)) in float64 was
    # NaN (sigma(-785.9) = 0 times e^(785.9 - b) = inf), and so was its gradient. mpmath:
    # KL = sigma(a)(log sigma(a) - log sigma(b)) + sigma(-a)(log sigma(-a) - log sigma(-b)).
    mpmath.mp.dps = 50

    def ref(a, b):
        ls = lambda v: -mpmath.log1p(mpmath.exp(-v))
        sa, sna = mpmath.exp(ls(a)), mpmath.exp(ls(-a))
        return sa * (ls(a) - ls(b)) + sna * (ls(-a) - ls(-b))

    def kl(a, b):
        return jelbo.kl_divergence(jelbo.Bernoulli(logits=a), jelbo.Bernoulli(logits=b))

    for a, b in [(785.9, 38.9), (785.9, -38.9), (-785.9, 38.9), (1e4, 1.0)]:
        value = kl(jnp.asarray([a]), jnp.asarray([b]))
        want = float(ref(mpmath.mpf(a), mpmath.mpf(b)))
        np.testing.assert_allclose(value, want, rtol=1e-12)
        ga, gb = jax.grad(kl, argnums=(0, 1))(jnp.float64(a), jnp.float64(b))
        assert np.isfinite(ga) and np.isfinite(gb), (a, b, ga, gb)
        # d/db = sigma(b) - sigma(a)
        gb_ref = float(1 / (1 + mpmath.exp(-mpmath.mpf(b))) - 1 / (1 + mpmath.exp(-mpmath.mpf(a))))
        np.testing.assert_allclose(gb, gb_ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(kl(785.9, 38.9), 1.2763e-17, rtol=1e-4)
