"""Tests of jelbo.continuous (Beta, Gamma, Dirichlet, Kumaraswamy, ContinuousBernoulli) and
their closed-form KL divergences.

References are independent of the implementation: scipy.stats densities and entropies,
mpmath at 40 digits for the closed forms jelbo evaluates differently (the continuous
Bernoulli normalizer from quadrature of e^{lambda x}, Kumaraswamy's density and moments),
scipy/mpmath quadrature for the KLs, and the implicit-function derivative of the Gamma CDF
(mpmath) for the pathwise gradients. Parameters are rounded to the dtype under test before
the float64 reference is computed. Monte Carlo checks use fixed keys and a tolerance of
N_SIGMA standard errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
import scipy.integrate
import scipy.special as sps
import scipy.stats
from conftest import tol

import jelbo

N_SIGMA = 5
mp.mp.dps = 40


def as_dtype(params, dtype):
    """``(jax params in dtype, float64 numpy params holding the same rounded values)``."""
    rounded = {k: np.asarray(v, dtype) for k, v in params.items()}
    return (
        {k: jnp.asarray(v) for k, v in rounded.items()},
        {k: v.astype(np.float64) for k, v in rounded.items()},
    )


def assert_close_scaled(actual, expected, scale, dtype):
    """``|actual - expected| <= rtol * scale`` elementwise, ``scale`` the magnitude of the
    terms the value is a sum of (float32 can do no better than its rounding of them)."""
    actual, expected, scale = np.broadcast_arrays(np.asarray(actual, np.float64), expected, scale)
    rtol = {np.dtype(np.float32): 5e-6, np.dtype(np.float64): 1e-12}[np.dtype(dtype)]
    err = np.abs(actual - expected)
    bound = rtol * np.maximum(scale, 1.0)
    assert np.all(err <= bound), f"max err/bound {np.max(err / bound):.3g}\n{actual}\n{expected}"


# --- log-densities against independent references, moderate and extreme parameters --------

BETA_PARAMS = {
    "concentration1": [[2.0, 0.5, 1e-3, 1.0, 40.0, 1e4, 3.0]],
    "concentration0": [[3.0, 0.7, 1e-3, 1.0, 9.5, 2e4, 1e-2]],
}
BETA_X = [[0.3, 0.9, 1e-6, 0.5, 0.8, 0.333, 0.999999]]


def test_beta_log_prob_matches_scipy(dtype, maybe_jit):
    params, ref = as_dtype(BETA_PARAMS, dtype)
    x = np.asarray(BETA_X, dtype)
    dist = jelbo.Beta(**params)
    out = maybe_jit(lambda d, x: d._log_prob_elementwise(x))(dist, x)
    a, b, x64 = ref["concentration1"], ref["concentration0"], x.astype(np.float64)
    expected = scipy.stats.beta.logpdf(x64, a, b)
    scale = (
        np.abs((a - 1) * np.log(x64)) + np.abs((b - 1) * np.log1p(-x64)) + np.abs(sps.betaln(a, b))
    )
    assert out.dtype == dtype
    assert_close_scaled(out, expected, scale, dtype)
    total = maybe_jit(jelbo.log_prob)(dist, x)
    assert total.shape == (1,)
    assert_close_scaled(total, expected.sum(-1), scale.sum(-1), dtype)


GAMMA_PARAMS = {
    "concentration": [[2.0, 0.5, 1e-3, 1.0, 30.0, 1e5, 7.0]],
    "rate": [[3.0, 0.7, 1.0, 1e-3, 1e3, 1e5, 1.0]],
}
GAMMA_X = [[0.5, 2.0, 1e-30, 1e3, 0.03, 1.0001, 7.0]]


def test_gamma_log_prob_matches_scipy(dtype, maybe_jit):
    params, ref = as_dtype(GAMMA_PARAMS, dtype)
    x = np.asarray(GAMMA_X, dtype)
    out = maybe_jit(jelbo.log_prob)(jelbo.Gamma(**params), x)
    a, r, x64 = ref["concentration"], ref["rate"], x.astype(np.float64)
    expected = scipy.stats.gamma.logpdf(x64, a, scale=1.0 / r)
    scale = np.abs(a * np.log(r)) + np.abs((a - 1) * np.log(x64)) + r * x64 + np.abs(sps.gammaln(a))
    assert out.dtype == dtype and out.shape == (1,)
    assert_close_scaled(out, expected.sum(-1), scale.sum(-1), dtype)


DIRICHLET_ALPHA = [[2.0, 0.5, 3.0], [1e-3, 1.0, 5.0], [1e4, 2e4, 0.5], [1.0, 1.0, 1.0]]
DIRICHLET_X = [[0.2, 0.3, 0.5], [1e-8, 0.4, 0.6 - 1e-8], [0.3, 0.7 - 1e-6, 1e-6], [0.1, 0.1, 0.8]]


def test_dirichlet_log_prob_matches_scipy(dtype, maybe_jit):
    params, ref = as_dtype({"concentration": DIRICHLET_ALPHA}, dtype)
    x = np.asarray(DIRICHLET_X, np.float64)
    x = x / x.sum(-1, keepdims=True)
    dist = jelbo.Dirichlet(**params)
    assert dist.batch_shape == (4,) and dist.event_shape == (3,)
    out = maybe_jit(jelbo.log_prob)(dist, x.astype(dtype))
    x64 = x.astype(dtype).astype(np.float64)
    alphas = ref["concentration"]
    # scipy needs sum(x) == 1 to its own tolerance: evaluate its formula on the float64 x.
    expected = [
        scipy.stats.dirichlet.logpdf(xi / xi.sum(), ai) for ai, xi in zip(alphas, x64, strict=True)
    ]
    expected = np.array(expected) + np.sum(
        (alphas - 1) * (np.log(x64) - np.log(x64 / x64.sum(-1, keepdims=True))), -1
    )
    scale = np.sum(np.abs((alphas - 1) * np.log(x64)) + np.abs(sps.gammaln(alphas)), -1)
    assert out.dtype == dtype
    assert_close_scaled(out, expected, scale, dtype)


def mp_cb_log_normalizer(lam):
    """log of the quadrature of e^{lam x} over [0, 1], at 40 digits."""
    lam = mp.mpf(lam)
    return mp.log(mp.quad(lambda t: mp.exp(lam * t), [0, 1]))


CB_LOGITS = [-500.0, -30.0, -1.0, -0.6, -1e-3, -1e-8, 0.0, 1e-8, 1e-3, 0.49, 0.51, 1.0, 30.0, 500.0]


def test_continuous_bernoulli_log_prob_matches_mpmath(dtype, maybe_jit):
    params, ref = as_dtype({"logits": [CB_LOGITS]}, dtype)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(1, len(CB_LOGITS))).astype(dtype)
    x[0, :2] = [0.0, 1.0]
    dist = jelbo.ContinuousBernoulli(**params)
    elementwise = maybe_jit(lambda d, x: d._log_prob_elementwise(x))(dist, x)
    lam, x64 = ref["logits"][0], x.astype(np.float64)[0]
    expected = np.array(
        [
            float(mp.mpf(lv) * mp.mpf(v) - mp_cb_log_normalizer(lv))
            for lv, v in zip(lam, x64, strict=True)
        ]
    )
    assert_close_scaled(elementwise[0], expected, np.abs(lam), dtype)
    np.testing.assert_allclose(
        maybe_jit(jelbo.log_prob)(dist, x),
        [expected.sum()],
        rtol=tol(dtype)["rtol"],
        atol=1e-3 if dtype == np.float32 else 1e-9,
    )


def mp_kumaraswamy_log_prob(a, b, x):
    a, b, x = mp.mpf(a), mp.mpf(b), mp.mpf(x)
    return mp.log(a * b) + (a - 1) * mp.log(x) + (b - 1) * mp.log(1 - x**a)


def test_kumaraswamy_log_prob_matches_mpmath(dtype, maybe_jit):
    params, ref = as_dtype(
        {
            "concentration1": [[2.0, 0.5, 1e-2, 50.0, 1.0, 3.0]],
            "concentration0": [[3.0, 0.7, 2.0, 1e3, 1.0, 1e-2]],
        },
        dtype,
    )
    x = np.asarray([[0.4, 0.9, 1e-6, 0.95, 0.5, 1 - 1e-4]], dtype)
    dist = jelbo.Kumaraswamy(**params)
    out = maybe_jit(lambda d, x: d._log_prob_elementwise(x))(dist, x)
    a, b, x64 = ref["concentration1"][0], ref["concentration0"][0], x.astype(np.float64)[0]
    expected = np.array([float(mp_kumaraswamy_log_prob(*v)) for v in zip(a, b, x64, strict=True)])
    scale = (
        np.abs(np.log(a * b))
        + np.abs((a - 1) * np.log(x64))
        + np.abs((b - 1) * np.log(-np.expm1(a * np.log(x64))))
    )
    assert_close_scaled(out[0], expected, scale, dtype)


def test_log_prob_of_values_on_the_boundary():
    # a = 1 (or b = 1) makes (a-1) log x vanish even at x = 0: finite, with finite gradients.
    x = jnp.array([0.0, 1.0])

    @jax.jit
    def values(a):
        beta = jelbo.Beta(a, jnp.array([3.0, 1.0])).log_prob(x)
        return beta, jax.grad(lambda t: jelbo.Beta(t, jnp.array([3.0, 1.0])).log_prob(x))(a)

    log_p, grad = values(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(log_p, np.log(3.0) + np.log(2.0), rtol=1e-12)
    assert np.all(np.isfinite(grad))
    dirichlet = jax.jit(jelbo.log_prob)(jelbo.Dirichlet(jnp.ones(3)), jnp.array([0.0, 0.5, 0.5]))
    np.testing.assert_allclose(dirichlet, np.log(2.0), rtol=1e-12)


# --- entropy, mean, variance, mode ----------------------------------------------------------


@jax.jit
def summaries(dist):
    """Entropy (summed over the event), mean, variance, covariance and mode, in one compile."""
    return {
        "entropy": dist.entropy(),
        "mean": dist.mean(),
        "variance": dist.variance(),
        "covariance": dist.covariance(),
        "mode": dist.mode(),
    }


def test_beta_gamma_dirichlet_summaries_match_scipy():
    a = np.array([[2.0, 0.5, 1e-2, 40.0, 1e4]])
    b = np.array([[3.0, 0.7, 2.0, 9.5, 3e4]])
    out = summaries(jelbo.Beta(jnp.asarray(a), jnp.asarray(b)))
    ref = scipy.stats.beta(a, b)
    np.testing.assert_allclose(out["entropy"], ref.entropy().sum(-1), rtol=1e-11)
    np.testing.assert_allclose(out["mean"], ref.mean(), rtol=1e-13)
    np.testing.assert_allclose(out["variance"], ref.var(), rtol=1e-12)
    np.testing.assert_allclose(out["covariance"][0], np.diag(ref.var()[0]), rtol=1e-12)
    interior = np.array([0, 3, 4])
    mode = np.asarray(out["mode"])[0]
    np.testing.assert_allclose(mode[interior], ((a - 1) / (a + b - 2))[0, interior], rtol=1e-13)
    assert mode[2] == 0.0 and np.isnan(mode[1])

    rate = np.array([[3.0, 0.7, 1.0, 1e-3, 2.0]])
    out = summaries(jelbo.Gamma(jnp.asarray(a), jnp.asarray(rate)))
    ref = scipy.stats.gamma(a, scale=1 / rate)
    np.testing.assert_allclose(out["entropy"], ref.entropy().sum(-1), rtol=1e-11)
    np.testing.assert_allclose(out["mean"], ref.mean(), rtol=1e-13)
    np.testing.assert_allclose(out["variance"], ref.var(), rtol=1e-13)
    np.testing.assert_allclose(out["mode"], np.maximum(a - 1, 0) / rate, rtol=1e-13)

    alpha = np.array([[2.0, 0.5, 3.0], [1e-3, 1.0, 5.0], [1e4, 2e4, 3.5]])
    out = summaries(jelbo.Dirichlet(jnp.asarray(alpha)))
    for i, ai in enumerate(alpha):
        ref = scipy.stats.dirichlet(ai)
        np.testing.assert_allclose(out["entropy"][i], ref.entropy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(out["mean"][i], ref.mean(), rtol=1e-13)
        np.testing.assert_allclose(out["variance"][i], ref.var(), rtol=1e-12)
        np.testing.assert_allclose(out["covariance"][i], ref.cov(), rtol=1e-12, atol=1e-300)
    mode = np.asarray(out["mode"])
    np.testing.assert_allclose(mode[2], (alpha[2] - 1) / (alpha[2].sum() - 3), rtol=1e-13)
    assert np.all(np.isnan(mode[:2]))


def test_kumaraswamy_summaries_match_mpmath():
    a = np.array([2.0, 0.5, 1e-2, 50.0, 3.0])
    b = np.array([3.0, 0.7, 2.0, 1e3, 1.0])
    # Event size 1, so that the entropy is per element.
    out = summaries(jelbo.Kumaraswamy(jnp.asarray(a)[:, None], jnp.asarray(b)[:, None]))
    mean, var, mode = (np.asarray(out[k])[:, 0] for k in ("mean", "variance", "mode"))
    ent = np.asarray(out["entropy"])

    def moment(ai, bi, n):  # E[x^n] by quadrature of the mpmath density
        ai, bi = mp.mpf(ai), mp.mpf(bi)
        pdf = lambda x: ai * bi * x ** (ai - 1 + n) * (1 - x**ai) ** (bi - 1)
        return mp.quad(pdf, [0, mp.mpf(1) / 2, 1])

    def entropy(ai, bi):
        ai, bi = mp.mpf(ai), mp.mpf(bi)
        f = lambda x: (
            -mp.exp(mp_kumaraswamy_log_prob(ai, bi, x)) * mp_kumaraswamy_log_prob(ai, bi, x)
        )
        return mp.quad(f, [0, mp.mpf(1) / 2, 1])

    sel = [0, 1, 3, 4]  # a = 1e-2 piles its mass at 0 beyond what quadrature resolves
    m1 = np.array([float(moment(a[i], b[i], 1)) for i in sel])
    m2 = np.array([float(moment(a[i], b[i], 2)) for i in sel])
    np.testing.assert_allclose(mean[sel], m1, rtol=1e-12)
    np.testing.assert_allclose(var[sel], m2 - m1**2, rtol=1e-9)
    h = np.array([float(entropy(a[i], b[i])) for i in sel])
    np.testing.assert_allclose(ent[sel], h, rtol=1e-9)
    np.testing.assert_allclose(
        mode[[0, 3, 4]], ((a - 1) / (a * b - 1))[[0, 3, 4]] ** (1 / a[[0, 3, 4]]), rtol=1e-13
    )
    assert np.isnan(mode[1])


def test_continuous_bernoulli_summaries_match_mpmath(dtype):
    params, ref = as_dtype({"logits": CB_LOGITS}, dtype)
    dist = jelbo.ContinuousBernoulli(**params)
    mean, var, ent = jax.jit(lambda d: (d.mean(), d.variance(), d._entropy_elementwise()))(dist)
    m_ref, v_ref, h_ref = [], [], []
    for lam in ref["logits"]:
        lam = mp.mpf(lam)
        z = mp.quad(lambda t, lam=lam: mp.exp(lam * t), [0, 1])
        m = mp.quad(lambda t, lam=lam: t * mp.exp(lam * t), [0, 1]) / z
        m2 = mp.quad(lambda t, lam=lam: t * t * mp.exp(lam * t), [0, 1]) / z
        m_ref.append(float(m))
        v_ref.append(float(m2 - m * m))
        h_ref.append(float(mp.log(z) - lam * m))
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(mean, m_ref, rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(var, v_ref, rtol=50 * rtol, atol=1e-30)
    np.testing.assert_allclose(ent, h_ref, rtol=50 * rtol, atol=rtol * 1e-2)
    np.testing.assert_array_equal(dist.mode(), (np.asarray(CB_LOGITS) > 0).astype(dtype))
    assert mean.dtype == dtype


# --- sampling: moments, dtypes, extremes ----------------------------------------------------

N_DRAWS = 20_000


def moment_dists(dtype=np.float64):
    return {
        "beta": jelbo.Beta(jnp.array([2.0, 0.3, 40.0], dtype), jnp.array([3.0, 0.5, 2.0], dtype)),
        "gamma": jelbo.Gamma(jnp.array([2.0, 0.3, 40.0], dtype), jnp.array([3.0, 0.5, 2.0], dtype)),
        "kumaraswamy": jelbo.Kumaraswamy(
            jnp.array([2.0, 0.3, 5.0], dtype), jnp.array([3.0, 0.5, 2.0], dtype)
        ),
        "cb": jelbo.ContinuousBernoulli(logits=jnp.array([-3.0, 1e-5, 0.8], dtype)),
        "dirichlet": jelbo.Dirichlet(jnp.array([[2.0, 0.3, 4.0], [40.0, 1.0, 0.5]], dtype)),
    }


@pytest.mark.parametrize("family", ["beta", "gamma", "kumaraswamy", "cb", "dirichlet"])
def test_sample_moments_within_standard_errors(family):
    dist = moment_dists()[family]
    x = np.asarray(jax.jit(lambda k, d: d.sample(k, N_DRAWS))(jax.random.key(3), dist))
    assert x.shape == (N_DRAWS, *dist.batch_shape, *dist.event_shape)
    mean, var = np.asarray(dist.mean()), np.asarray(dist.variance())
    se_mean = np.sqrt(var / N_DRAWS)
    assert np.all(np.abs(x.mean(0) - mean) <= N_SIGMA * se_mean), (x.mean(0), mean)
    sq = (x - mean) ** 2
    se_var = sq.std(0) / math.sqrt(N_DRAWS)
    assert np.all(np.abs(sq.mean(0) - var) <= N_SIGMA * se_var), (sq.mean(0), var)
    if family in ("beta", "kumaraswamy", "cb", "dirichlet"):
        assert np.all((x >= 0) & (x <= 1))
    if family == "dirichlet":
        np.testing.assert_allclose(x.sum(-1), 1.0, rtol=1e-12)


def test_float32_draws_keep_their_dtype_and_stay_finite_at_extremes():
    tiny, huge = 1e-3, 1e5
    dists = [
        jelbo.Beta(
            jnp.array([tiny, huge, 1.0], np.float32), jnp.array([tiny, huge, tiny], np.float32)
        ),
        jelbo.Gamma(
            jnp.array([tiny, huge, 0.5], np.float32), jnp.array([1.0, 1.0, 1e4], np.float32)
        ),
        jelbo.Kumaraswamy(
            jnp.array([tiny, huge, 1.0], np.float32), jnp.array([huge, tiny, 1.0], np.float32)
        ),
        jelbo.ContinuousBernoulli(logits=jnp.array([-1e4, 0.0, 1e-7, 1e4], np.float32)),
        jelbo.Dirichlet(jnp.array([[tiny, tiny, tiny], [huge, 1.0, tiny]], np.float32)),
    ]
    draws = jax.jit(lambda k, ds: [d.sample(k, 256) for d in ds])(jax.random.key(0), dists)
    for dist, x in zip(dists, draws, strict=True):
        assert x.dtype == np.float32, type(dist).__name__
        assert np.all(np.isfinite(x)) and np.all(x >= 0), type(dist).__name__
    np.testing.assert_allclose(draws[-1].sum(-1), 1.0, rtol=1e-6)
    cb = np.asarray(draws[3])
    assert cb[:, 0].max() < 1e-2 and cb[:, 3].min() > 1 - 1e-2


# --- reparameterized gradients ---------------------------------------------------------------


def per_draw_gradients(make, theta, f, n, seed=7):
    """Per-draw gradients d f(z_s(theta)) / d theta, shape (n, *theta.shape): ``theta`` is
    tiled along a new leading batch axis of n independent copies, so one gradient of the
    summed f gives every draw's own gradient."""
    tiled = jnp.broadcast_to(theta, (n, *jnp.shape(theta)))
    loss = lambda t: jnp.sum(f(make(t).sample(jax.random.key(seed))))
    return np.asarray(jax.jit(jax.grad(loss))(tiled))


def assert_mc_gradient(grads, expected, what):
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(grads.shape[0])
    z = np.abs(mean - expected) / se
    assert np.all(z <= N_SIGMA), f"{what}: {z.max():.2f} SE off\n{mean}\n{expected}"


def test_gamma_and_beta_reparameterized_gradients_match_exact_derivatives():
    # Gamma(alpha, 2): d/d alpha E[log z] = psi'(alpha) (the implicit gradient, not merely
    # the 1/rate scaling).
    alpha = jnp.array([0.3, 2.0, 40.0])
    grads = per_draw_gradients(lambda a: jelbo.Gamma(a, 2.0), alpha, jnp.log, 10_000)
    assert_mc_gradient(grads, sps.polygamma(1, np.asarray(alpha)), "Gamma dE[log z]/da")
    # Beta(a, b): d/da E[x] = b/(a+b)^2 and d/db E[x] = -a/(a+b)^2, from one set of draws.
    a, b = np.array([0.3, 2.0, 40.0]), np.array([0.5, 3.0, 2.0])
    grads = per_draw_gradients(
        lambda t: jelbo.Beta(t[..., 0, :], t[..., 1, :]), jnp.asarray([a, b]), lambda x: x, 10_000
    )
    assert_mc_gradient(grads[:, 0], b / (a + b) ** 2, "Beta dE[x]/da")
    assert_mc_gradient(grads[:, 1], -a / (a + b) ** 2, "Beta dE[x]/db")


def test_dirichlet_reparameterized_gradient_matches_exact_derivative():
    alpha = np.array([0.5, 2.0, 4.0])
    weights = jnp.array([1.0, -2.0, 0.5])  # d/d alpha_j E[w . x], E[x] = alpha/alpha0
    grads = per_draw_gradients(
        lambda t: jelbo.Dirichlet(t), jnp.asarray(alpha), lambda x: x @ weights, 10_000
    )
    a0 = alpha.sum()
    jac = (np.eye(3) * a0 - alpha[:, None]) / a0**2  # d E[x_i] / d alpha_j
    assert_mc_gradient(grads, np.asarray(weights) @ jac, "Dirichlet")


def test_kumaraswamy_and_cb_reparameterized_gradients_match_exact_derivatives():
    a, b = np.array([0.5, 2.0, 5.0]), np.array([0.7, 3.0, 2.0])
    mean = lambda ai, bi: bi * mp.beta(1 + 1 / ai, bi)
    exp_a = [
        float(mp.diff(lambda t, bi=bi: mean(t, mp.mpf(bi)), mp.mpf(ai)))
        for ai, bi in zip(a, b, strict=True)
    ]
    exp_b = [
        float(mp.diff(lambda t, ai=ai: mean(mp.mpf(ai), t), mp.mpf(bi)))
        for ai, bi in zip(a, b, strict=True)
    ]
    grads = per_draw_gradients(
        lambda t: jelbo.Kumaraswamy(t, jnp.asarray(b)), jnp.asarray(a), lambda x: x, 10_000
    )
    assert_mc_gradient(grads, exp_a, "Kumaraswamy dE[x]/da")
    grads = per_draw_gradients(
        lambda t: jelbo.Kumaraswamy(jnp.asarray(a), t), jnp.asarray(b), lambda x: x, 10_000
    )
    assert_mc_gradient(grads, exp_b, "Kumaraswamy dE[x]/db")
    # d/d lambda E[x] = Var[x] for the continuous Bernoulli (an exponential family).
    lam = jnp.array([-3.0, 1e-6, 0.7, 20.0])
    grads = per_draw_gradients(
        lambda t: jelbo.ContinuousBernoulli(logits=t), lam, lambda x: x, 10_000
    )
    assert_mc_gradient(
        grads, np.asarray(jelbo.ContinuousBernoulli(logits=lam).variance()), "CB dE[x]/dlambda"
    )


def mp_implicit_dz_dalpha(alpha, z):
    """dz/dalpha at fixed CDF value: -d_alpha P(alpha, z) / p(z), at 40 digits."""
    alpha, z = mp.mpf(alpha), mp.mpf(z)
    d_cdf = mp.diff(lambda t: mp.gammainc(t, 0, z, regularized=True), alpha)
    density = mp.exp((alpha - 1) * mp.log(z) - z - mp.loggamma(alpha))
    return -d_cdf / density


def test_gamma_pathwise_gradient_matches_implicit_derivative_down_to_tiny_concentrations():
    # Pathwise dz/dalpha of individual draws, including alpha = 0.01 where log z ~ -100
    # (the left-tail branch of the implicit gradient), against mpmath.
    alpha = jnp.array([0.01, 0.05, 0.7, 3.0, 50.0])
    keys = jax.random.split(jax.random.key(11), 3)
    draw = jax.jit(jax.vmap(lambda k, a: jelbo.Gamma(a, 1.0).sample(k), in_axes=(0, None)))
    z = np.asarray(draw(keys, alpha))
    grad = jax.jit(
        jax.vmap(jax.jacfwd(lambda a, k: jelbo.Gamma(a, 1.0).sample(k)), in_axes=(None, 0))
    )
    dz = np.asarray(jax.vmap(jnp.diag)(grad(alpha, keys)))
    expected = np.array(
        [
            [
                float(mp_implicit_dz_dalpha(a, zi))
                for a, zi in zip(np.asarray(alpha), row, strict=True)
            ]
            for row in z
        ]
    )
    np.testing.assert_allclose(dz, expected, rtol=1e-7)


def test_gradients_are_finite_at_extreme_concentrations():
    tiny, huge = 1e-3, 1e4

    def loss(t):
        beta = jelbo.Beta(t, t[::-1])
        dirichlet = jelbo.Dirichlet(t)
        x = beta.sample(jax.random.key(0), 8)
        y = dirichlet.sample(jax.random.key(1), 8)
        x = jnp.clip(x, jnp.finfo(x.dtype).tiny, 1 - jnp.finfo(x.dtype).eps)
        return jnp.sum(jnp.log(x)) + jnp.sum(y * jnp.arange(3.0))

    t = jnp.array([tiny, 1.0, huge], np.float32)  # float32: the narrower range
    assert np.all(np.isfinite(jax.jit(jax.grad(loss))(t)))


# --- KL divergences ----------------------------------------------------------------------


def quad_kl(logpdf_q, logpdf_p, lo, hi, points=None):
    """KL(q||p) by scipy quadrature of q (log q - log p) over (lo, hi)."""
    f = lambda x: math.exp(logpdf_q(x)) * (logpdf_q(x) - logpdf_p(x))
    value, _ = scipy.integrate.quad(f, lo, hi, points=points, limit=500, epsabs=1e-13, epsrel=1e-11)
    return value


def test_beta_gamma_cb_kls_match_quadrature(dtype):
    rtol = 1e-8 if dtype == np.float64 else 2e-5
    aq, bq = [2.0, 0.6, 30.0, 1.0], [3.0, 0.8, 12.0, 1.0]
    ap, bp = [1.5, 1.2, 25.0, 1.0], [0.9, 2.0, 15.0, 1.0]
    pq, rp = as_dtype({"a": aq, "b": bq}, dtype), as_dtype({"a": ap, "b": bp}, dtype)
    lq, lp = (
        as_dtype({"l": [-30.0, -1e-6, 0.4, 3.0, 0.0]}, dtype),
        as_dtype({"l": [2.0, 1e-3, 0.5, -5.0, 0.0]}, dtype),
    )

    @jax.jit  # one program (eagerly, each operation would compile on its own)
    def kls(pq, rp, lq, lp):
        beta = jelbo.kl_divergence(
            jelbo.Beta(pq["a"][None], pq["b"][None]), jelbo.Beta(rp["a"], rp["b"])
        )
        gamma = jelbo.kl_divergence(jelbo.Gamma(pq["a"], pq["b"]), jelbo.Gamma(rp["a"], rp["b"]))
        cb = jelbo.kl_divergence(
            jelbo.ContinuousBernoulli(logits=lq["l"]), jelbo.ContinuousBernoulli(logits=lp["l"])
        )
        return beta, gamma, cb

    kl, gamma_kl, cb_kl = kls(pq[0], rp[0], lq[0], lp[0])
    ref = [
        quad_kl(
            lambda x, a1=a1, b1=b1: scipy.stats.beta.logpdf(x, a1, b1),
            lambda x, a2=a2, b2=b2: scipy.stats.beta.logpdf(x, a2, b2),
            0,
            1,
        )
        for a1, b1, a2, b2 in zip(pq[1]["a"], pq[1]["b"], rp[1]["a"], rp[1]["b"], strict=True)
    ]
    assert kl.shape == (1,) and kl.dtype == dtype
    np.testing.assert_allclose(kl, [sum(ref)], rtol=rtol)
    assert abs(ref[3]) == 0.0  # Beta(1,1) || Beta(1,1)

    ref = [
        quad_kl(
            lambda x, a1=a1, r1=r1: scipy.stats.gamma.logpdf(x, a1, scale=1 / r1),
            lambda x, a2=a2, r2=r2: scipy.stats.gamma.logpdf(x, a2, scale=1 / r2),
            0,
            np.inf,
        )
        for a1, r1, a2, r2 in zip(pq[1]["a"], pq[1]["b"], rp[1]["a"], rp[1]["b"], strict=True)
    ]
    np.testing.assert_allclose(gamma_kl, sum(ref), rtol=rtol)

    def cb(lam):  # the log-density; its mpmath normalizer computed once, not at every point
        log_normalizer = float(mp_cb_log_normalizer(lam))
        return lambda x: lam * x - log_normalizer

    ref = [quad_kl(cb(l1), cb(l2), 0, 1) for l1, l2 in zip(lq[1]["l"], lp[1]["l"], strict=True)]
    np.testing.assert_allclose(cb_kl, sum(ref), rtol=rtol, atol=1e-12)


def test_kls_of_identical_distributions_are_zero_and_gradients_finite():
    a = jnp.array([1e-3, 0.5, 3.0, 1e4])

    @jax.jit
    def kls(t):
        return [
            jelbo.kl_divergence(q, q)
            for q in (
                jelbo.Beta(t, t[::-1]),
                jelbo.Gamma(t, t[::-1]),
                jelbo.ContinuousBernoulli(logits=jnp.log(t)),
                jelbo.Dirichlet(t),
            )
        ]

    for kl in kls(a):
        np.testing.assert_allclose(kl, 0.0, atol=1e-9)
    g = jax.jit(
        jax.grad(
            lambda t: (
                jelbo.kl_divergence(jelbo.Beta(t, 2.0 * t), jelbo.Beta(a, a))
                + jelbo.kl_divergence(jelbo.Dirichlet(t), jelbo.Dirichlet(a))
            )
        )
    )(a * 1.5)
    assert np.all(np.isfinite(g))


def test_dirichlet_kl_matches_monte_carlo():
    rng = np.random.default_rng(5)
    aq = np.array([[2.0, 0.5, 3.0], [30.0, 10.0, 1.0]])
    ap = np.array([[1.0, 1.0, 1.0], [20.0, 15.0, 2.0]])
    kl = jax.jit(lambda aq, ap: jelbo.kl_divergence(jelbo.Dirichlet(aq), jelbo.Dirichlet(ap)))(
        jnp.asarray(aq), jnp.asarray(ap)
    )
    for i in range(2):
        x = rng.dirichlet(aq[i], size=200_000).T
        x = np.clip(x, 1e-300, None)
        x = x / x.sum(0)
        ratio = scipy.stats.dirichlet.logpdf(x, aq[i]) - scipy.stats.dirichlet.logpdf(x, ap[i])
        se = ratio.std() / math.sqrt(ratio.size)
        assert abs(kl[i] - ratio.mean()) <= N_SIGMA * se, (kl[i], ratio.mean(), se)


def mp_kumaraswamy_beta_kl(a, b, alpha, beta):
    """KL(Kumaraswamy(a, b) || Beta(alpha, beta)) by mpmath quadrature in v = 1 - x^a
    (v ~ Beta(b, 1), so the density is b v^(b-1) and x = (1-v)^(1/a)), at 40 digits."""
    a, b, alpha, beta = (mp.mpf(t) for t in (a, b, alpha, beta))

    def integrand(v):
        x = (1 - v) ** (1 / a)
        log_q = mp.log(a * b) + (a - 1) * mp.log(x) + (b - 1) * mp.log(v)
        log_p = (alpha - 1) * mp.log(x) + (beta - 1) * mp.log(1 - x) - mp.log(mp.beta(alpha, beta))
        return b * v ** (b - 1) * (log_q - log_p)

    return mp.quad(integrand, [0, mp.mpf(1) / 100, mp.mpf(1) / 2, 1])


# The truncation: 63 exact terms plus the asymptotic tail (see jelbo/kl.py); the contract is
# 1e-6 relative for concentration0 in [1, 12], checked here on a grid of concentration1 up to
# 10 (and beyond the contract at b = 0.3 and 30).
KUMARASWAMY_GRID = [(a, b) for a in (0.1, 0.5, 1.0, 3.0, 10.0) for b in (1.0, 2.0, 5.0, 12.0)] + [
    (2.0, 0.3),
    (2.0, 30.0),
]


def test_kumaraswamy_beta_kl_matches_quadrature_to_1e_6():
    a, b = np.array(KUMARASWAMY_GRID).T
    alpha, beta = np.full_like(a, 0.7) + 0.3 * a, np.full_like(b, 2.5)
    kl = jax.jit(
        jax.vmap(
            lambda *t: jelbo.kl_divergence(
                jelbo.Kumaraswamy(t[0][None], t[1][None]), jelbo.Beta(t[2][None], t[3][None])
            )
        )
    )(*(jnp.asarray(v) for v in (a, b, alpha, beta)))
    ref = np.array([float(mp_kumaraswamy_beta_kl(*v)) for v in zip(a, b, alpha, beta, strict=True)])
    rel = np.abs(np.asarray(kl) - ref) / np.abs(ref)
    assert rel.max() <= 1e-6, (rel.max(), KUMARASWAMY_GRID[int(rel.argmax())])
    kl32 = jax.jit(lambda *t: jelbo.kl_divergence(jelbo.Kumaraswamy(*t[:2]), jelbo.Beta(*t[2:])))(
        *(jnp.asarray(v, np.float32) for v in (a, b, alpha, beta))
    )
    np.testing.assert_allclose(kl32, ref.sum(), rtol=2e-6)


def test_kumaraswamy_beta_kl_is_zero_where_the_families_coincide_and_has_exact_gradients():
    # Kumaraswamy(1, b) == Beta(1, b) and Kumaraswamy(a, 1) == Beta(a, 1).
    b = jnp.array([1.0, 2.5, 12.0])
    np.testing.assert_allclose(
        jelbo.kl_divergence(jelbo.Kumaraswamy(1.0, b), jelbo.Beta(1.0, b)), 0.0, atol=1e-12
    )
    np.testing.assert_allclose(
        jelbo.kl_divergence(jelbo.Kumaraswamy(b, 1.0), jelbo.Beta(b, 1.0)), 0.0, atol=1e-12
    )
    # Gradients in all four parameters against mpmath's derivative of the quadrature.
    point = (2.0, 3.0, 1.5, 2.5)
    grad = jax.grad(
        lambda t: jelbo.kl_divergence(jelbo.Kumaraswamy(t[0:1], t[1:2]), jelbo.Beta(t[2:3], t[3:4]))
    )(jnp.asarray(point))
    mp.mp.dps = 20
    try:
        expected = [
            float(
                mp.diff(
                    lambda s, i=i: mp_kumaraswamy_beta_kl(
                        *[s if j == i else point[j] for j in range(4)]
                    ),
                    mp.mpf(point[i]),
                )
            )
            for i in range(4)
        ]
    finally:
        mp.mp.dps = 40
    np.testing.assert_allclose(grad, expected, rtol=1e-8)


# --- transformations, pytrees and bad input ------------------------------------------------


def test_jit_vmap_grad_and_pytrees():
    alpha = jnp.array([[0.5, 2.0, 3.0], [1.5, 4.0, 0.2]])
    x = jnp.array([0.2, 0.3, 0.5])
    key = jax.random.key(0)
    dists = (
        jelbo.Dirichlet(alpha),
        jelbo.Beta(alpha, alpha[::-1]),
        jelbo.Gamma(alpha, 2.0 * jnp.ones_like(alpha)),
        jelbo.Kumaraswamy(alpha, 3.0 * jnp.ones_like(alpha)),
        jelbo.ContinuousBernoulli(logits=alpha - 1.0),
    )

    @jax.jit
    def everything(dists):
        out = []
        for dist in dists:
            batched = jelbo.log_prob(dist, x)
            mapped = jax.vmap(jelbo.log_prob, in_axes=(0, None))(dist, x)
            draws = jelbo.sample(key, dist, (2,))
            # (the Gamma-based samplers vmap through jax.random's own batching rule)
            mapped_draws = (
                jax.vmap(lambda d: jelbo.sample(key, d, (2,)))(dist)
                if isinstance(dist, (jelbo.Kumaraswamy, jelbo.ContinuousBernoulli))
                else None
            )
            loss = lambda d: jnp.sum(jelbo.log_prob(d, x) + jelbo.entropy(d))
            out.append((batched, mapped, draws, mapped_draws, jax.grad(loss)(dist)))
        return out

    for dist, (batched, mapped, draws, mapped_draws, grads) in zip(
        dists, everything(dists), strict=True
    ):
        name = type(dist).__name__
        np.testing.assert_allclose(mapped, batched, rtol=1e-13, err_msg=name)
        assert draws.shape == (2, *dist.batch_shape, *dist.event_shape), name
        if mapped_draws is not None:
            assert mapped_draws.shape == (
                dist.batch_shape[0],
                2,
                *dist.batch_shape[1:],
                *dist.event_shape,
            )
        assert type(grads) is type(dist), name
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)), name
    # eager draws equal jitted draws
    np.testing.assert_allclose(
        jelbo.sample(key, dists[1], (2,)), everything(dists)[1][2], rtol=1e-12
    )


def test_bad_input_raises_naming_the_argument():
    with pytest.raises(ValueError, match="concentration"):
        jelbo.Dirichlet(jnp.array(1.0))
    with pytest.raises(ValueError, match=r"concentration1.*concentration0"):
        jelbo.Beta(jnp.ones(3), jnp.ones(2))
    with pytest.raises(ValueError, match="event"):
        jelbo.log_prob(jelbo.Dirichlet(jnp.ones(3)), jnp.ones(2) / 2)
    with pytest.raises(ValueError, match="Event shapes differ"):
        jelbo.kl_divergence(jelbo.Dirichlet(jnp.ones(3)), jelbo.Dirichlet(jnp.ones(2)))


def test_float32_moment_gradients_do_not_overflow_at_huge_concentrations():
    # Var = m(1 - m)/(s + 1): the s^2 (s + 1) denominator's square overflowed float32 in the
    # quotient rule from s ~ 1e6 (the sweep found d Var_0/d alpha_1 with the wrong sign).
    alpha = jnp.full(3, 1e6, jnp.float32)
    jac = jax.jacrev(lambda a: jelbo.Dirichlet(a).variance())(alpha)
    ref = jax.jacrev(lambda a: jelbo.Dirichlet(a).variance())(alpha.astype(np.float64))
    # The diagonal nearly vanishes (8e-21, cancelling): absolute at 1e-4 of the largest.
    np.testing.assert_allclose(jac, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    assert np.all(np.asarray(jac)[~np.eye(3, dtype=bool)] < 0)
    # Beta(a, a): Var = 1/(4(2a + 1)), d/da = -1/(2(2a + 1)^2).
    grads = jax.grad(lambda a: jelbo.Beta(a, a).variance()[0])(jnp.full(1, 1e7, jnp.float32))
    np.testing.assert_allclose(grads, -0.5 / (2e7 + 1) ** 2, rtol=1e-4)


def test_continuous_bernoulli_probs_are_the_logits_they_stand_for(dtype):
    p = jnp.asarray([1e-6, 0.3, 0.5, 0.9], dtype)
    x = jnp.asarray([0.2, 0.5, 0.7, 0.99], dtype)
    # one coordinate per batch element (a (4, 1) parameter: batch (4,), event (1,))
    by_probs = jelbo.ContinuousBernoulli(probs=p[:, None])
    logits = np.log(np.asarray(p, np.float64)) - np.log1p(-np.asarray(p, np.float64))
    by_logits = jelbo.ContinuousBernoulli(logits=jnp.asarray(logits, dtype)[:, None])
    x = x[:, None]
    np.testing.assert_allclose(by_probs.log_prob(x), by_logits.log_prob(x), **tol(dtype))
    np.testing.assert_allclose(by_probs.mean(), by_logits.mean(), **tol(dtype))
    np.testing.assert_array_equal(by_probs.probs[:, 0], p)
    # torch's ContinuousBernoulli(probs=p): C(p) p^x (1-p)^(1-x), C(p) = 2 artanh(1-2p)/(1-2p)
    p64, x64 = np.asarray(p, np.float64), np.asarray(x[:, 0], np.float64)
    ref = x64 * np.log(p64) + (1 - x64) * np.log1p(-p64)
    ref = ref + np.log(np.where(p64 == 0.5, 2.0, 2 * np.arctanh(1 - 2 * p64) / (1 - 2 * p64)))
    np.testing.assert_allclose(
        by_probs.log_prob(x), ref, rtol=1e-4 if dtype == np.float32 else 1e-9
    )


def test_issue19_gradient_at_concentration_exactly_one_keeps_the_log_term():
    # Issue 19, defect 1: d/da of (a - 1) log x at a = 1 is log x; jelbo 0.2's xlogy zeroed
    # it (d/da Beta(1, 1).log_prob(0.5) was 1.0 instead of 0.30685). References: mpmath
    # derivatives of the log-densities at 30 digits; 0.9999 and 1.0001 must agree too.
    mp.mp.dps = 30

    def mp_grad(f, a):
        return float(mp.diff(f, mp.mpf(a)))

    cases = [  # (jelbo log-density in a, mpmath log-density in a)
        (
            lambda a: jelbo.Beta(a, 1.0).log_prob(0.5),
            lambda a: (a - 1) * mp.log(0.5) - mp.log(mp.beta(a, 1)),
        ),
        (
            lambda a: jelbo.Beta(a, 2.5).log_prob(0.25),
            lambda a: (a - 1) * mp.log(0.25) + 1.5 * mp.log(0.75) - mp.log(mp.beta(a, 2.5)),
        ),
        (
            lambda a: jelbo.Gamma(a, 2.0).log_prob(3.0),
            lambda a: a * mp.log(2) + (a - 1) * mp.log(3) - 6 - mp.loggamma(a),
        ),
        (
            lambda a: jelbo.Dirichlet(jnp.stack([a, 1.0, 1.0])).log_prob(
                jnp.asarray([0.2, 0.3, 0.5])
            ),
            lambda a: (a - 1) * mp.log(0.2) + mp.loggamma(a + 2) - mp.loggamma(a),
        ),
        (
            lambda a: jelbo.Kumaraswamy(a, 2.0).log_prob(0.5),
            lambda a: mp.log(a * 2) + (a - 1) * mp.log(0.5) + mp.log1p(-(mp.mpf(0.5) ** a)),
        ),
    ]
    for f, ref in cases:
        grad = jax.grad(f)
        for a in (1.0, 0.9999, 1.0001):
            np.testing.assert_allclose(grad(jnp.float64(a)), mp_grad(ref, a), rtol=1e-12)
    # the example of the issue
    np.testing.assert_allclose(jax.grad(cases[0][0])(1.0), 1 - math.log(2), rtol=1e-14)
