"""Tests of jelbo.spherical: PowerSpherical, HypersphericalUniform and the KL between them.

References: the normalizer by quadrature of :math:`(1+\\mu^\\top x)^\\kappa` (over the angle
for d = 2, over the cosine for d = 3, where the surface measure is :math:`2\\pi\\,dt`), the
log-density against mpmath at 30 digits, the entropy and KL against Monte Carlo, and the
reparameterized gradient against the derivative of the exact
:math:`\\mathbb E[\\mu^\\top x] = \\kappa/(d-1+\\kappa)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.integrate
from conftest import tol

import jelbo

N_SIGMA = 5  # Monte Carlo tolerance, in standard errors
N = 20_000  # Monte Carlo draws; one shared jitted sampler (jax.random.beta is slow to compile)


@jax.jit
def draw(dist, key):
    return dist.sample(key, (N,))


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def power_spherical_ref(mu, kappa, x):
    """log p(x) from the paper's normalizer, in mpmath."""
    mpmath.mp.dps = 30
    d = len(mu)
    kappa = mpmath.mpf(float(kappa))
    a, b = (d - 1) / mpmath.mpf(2) + kappa, (d - 1) / mpmath.mpf(2)
    log_c = -(
        (a + b) * mpmath.log(2)
        + b * mpmath.log(mpmath.pi)
        + mpmath.loggamma(a)
        - mpmath.loggamma(a + b)
    )
    t = mpmath.fsum(mpmath.mpf(float(m)) * mpmath.mpf(float(v)) for m, v in zip(mu, x, strict=True))
    return float(log_c + kappa * mpmath.log1p(t))


def test_log_prob_matches_mpmath(dtype, maybe_jit, rng):
    mu = unit(rng.normal(size=(3, 4)))
    kappa = np.array([0.0, 2.5, 3e4])
    x = unit(rng.normal(size=(3, 4)) + 2 * mu)
    dist = jelbo.PowerSpherical(mu.astype(dtype), kappa.astype(dtype))
    assert dist.batch_shape == (3,) and dist.event_shape == (4,)
    out = maybe_jit(jelbo.log_prob)(dist, x.astype(dtype))
    assert out.dtype == dtype
    ref = [power_spherical_ref(mu[i], kappa[i], x[i]) for i in range(3)]
    # float32: the inputs are rounded; κ log(1 + μᵀx) at κ = 3e4 amplifies that rounding.
    rtol = 1e-10 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(out, ref, rtol=rtol)


@pytest.mark.parametrize("kappa", [0.0, 1.3, 50.0])
def test_density_integrates_to_one(kappa):
    log_prob2 = jax.jit(jelbo.PowerSpherical(unit([0.6, -0.8]), kappa).log_prob)
    log_prob3 = jax.jit(jelbo.PowerSpherical(unit([0.0, 0.0, 1.0]), kappa).log_prob)
    # d = 2: over the angle. d = 3: the density depends on t = μᵀx only; dA = 2π dt.
    circle = lambda th: np.exp(float(log_prob2(jnp.array([np.cos(th), np.sin(th)]))))
    total2 = scipy.integrate.quad(circle, 0, 2 * np.pi, points=[np.arctan2(0.8, -0.6)], limit=200)[
        0
    ]
    sphere = lambda t: 2 * np.pi * np.exp(float(log_prob3(jnp.array([np.sqrt(1 - t * t), 0.0, t]))))
    total3 = scipy.integrate.quad(sphere, -1, 1, limit=200)[0]
    np.testing.assert_allclose([total2, total3], [1.0, 1.0], rtol=1e-9)


@pytest.mark.parametrize("d,dtype", [(3, np.float64), (5, np.float32)])
def test_samples_unit_norm_mean_resultant_and_entropy(d, dtype):
    mu = unit(np.arange(1, d + 1, dtype=np.float64)).astype(dtype)
    kappa = np.array([0.5, 8.0], dtype)
    dist = jelbo.PowerSpherical(mu, kappa)
    n = N
    x = draw(dist, jax.random.key(d))
    assert x.shape == (n, 2, d) and x.dtype == dtype
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(x, np.float64), axis=-1), 1.0, atol=10 * np.finfo(dtype).eps
    )
    t = np.asarray(x, np.float64) @ np.asarray(mu, np.float64)
    exact = kappa / (d - 1 + kappa)
    np.testing.assert_array_less(np.abs(t.mean(0) - exact), N_SIGMA * t.std(0) / np.sqrt(n))
    np.testing.assert_allclose(dist.mean(), exact[:, None] * mu[None], **tol(dtype))
    # Off-mean directions are isotropic: E[x] = E[t] μ.
    np.testing.assert_array_less(
        np.abs(np.asarray(x, np.float64).mean(0) - exact[:, None] * mu), 0.02
    )
    # Entropy (closed form) against -E[log p(x)] by Monte Carlo.
    log_p = np.asarray(jax.jit(dist.log_prob)(x), np.float64)
    mc, se = -log_p.mean(0), log_p.std(0) / np.sqrt(n)
    np.testing.assert_array_less(
        np.abs(np.asarray(dist.entropy(), np.float64) - mc), N_SIGMA * se + 1e-5
    )


def test_covariance_against_samples():
    mu = unit([1.0, -2.0, 0.5])
    dist = jelbo.PowerSpherical(mu, 3.0)
    x = np.asarray(draw(dist, jax.random.key(9)))
    np.testing.assert_allclose(np.cov(x.T), dist.covariance(), atol=0.015)
    np.testing.assert_allclose(dist.variance(), np.diag(dist.covariance()), rtol=1e-12)
    np.testing.assert_allclose(
        np.trace(dist.covariance()) + np.sum(dist.mean() ** 2), 1.0, rtol=1e-12
    )


def test_reparameterized_gradient_matches_exact_derivative():
    # E[μᵀx] = κ/(d-1+κ): its κ-derivative is (d-1)/(d-1+κ)²; the tangential gradient of
    # E[aᵀx] = E[t] aᵀμ with respect to μ is E[t] (I - μμᵀ) a. Per-sample derivatives
    # (forward mode) give the Monte Carlo standard errors.
    d, kappa, n = 4, 2.0, 20_000
    mu = jnp.asarray(unit([0.5, -1.0, 2.0, 0.3]))
    a = np.array([1.0, 0.5, -0.3, 2.0])

    def per_sample(kappa, mu):
        return jelbo.PowerSpherical(mu, kappa).sample(jax.random.key(11), (n,))

    dz_dkappa, dz_dmu = jax.jit(jax.jacfwd(per_sample, (0, 1)))(kappa, mu)  # (n, d), (n, d, d)
    dt = np.asarray(dz_dkappa) @ np.asarray(mu)
    exact = (d - 1) / (d - 1 + kappa) ** 2
    assert abs(dt.mean() - exact) < N_SIGMA * dt.std() / np.sqrt(n)
    projector = np.eye(d) - np.outer(mu, mu)
    grads = np.einsum("nij,i->nj", np.asarray(dz_dmu), a) @ projector  # per-sample, tangential
    exact_mu = kappa / (d - 1 + kappa) * projector @ a
    np.testing.assert_array_less(
        np.abs(grads.mean(0) - exact_mu), N_SIGMA * grads.std(0) / np.sqrt(n) + 1e-12
    )


def test_mean_direction_e1_and_antipodal():
    # μ = e₁ needs no reflection; μ = -e₁ is the largest reflection: both exact on average.
    for sign in (1.0, -1.0):
        mu = jnp.array([sign, 0.0, 0.0])
        x = draw(jelbo.PowerSpherical(mu, 5.0), jax.random.key(1))
        assert np.all(np.isfinite(x))
        np.testing.assert_allclose(np.mean(np.asarray(x) @ np.asarray(mu)), 5.0 / 7.0, atol=0.02)


def test_uniform_and_kl():
    for d in (3, 7):
        uniform = jelbo.HypersphericalUniform(d)
        log_area = float(
            mpmath.log(2 * mpmath.pi ** (mpmath.mpf(d) / 2) / mpmath.gamma(mpmath.mpf(d) / 2))
        )
        np.testing.assert_allclose(uniform.entropy(), log_area, rtol=1e-14)
        np.testing.assert_allclose(uniform.log_prob(jnp.eye(d)), -log_area, rtol=1e-14)
        x = draw(uniform, jax.random.key(d))
        np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, rtol=1e-12)
        np.testing.assert_array_less(np.abs(np.mean(x, 0)), N_SIGMA / np.sqrt(N))
    # dim is static aux data, not a traced leaf.
    assert jax.tree_util.tree_leaves(jelbo.HypersphericalUniform(3)) == []
    assert jax.jit(lambda u: u.sample(jax.random.key(0), (2,)))(
        jelbo.HypersphericalUniform(5)
    ).shape == (2, 5)
    with pytest.raises(ValueError, match="dim"):
        jelbo.HypersphericalUniform(1)
    # KL(PowerSpherical || uniform) in closed form against Monte Carlo, and 0 at κ = 0.
    mu = unit(np.arange(1, 4, dtype=np.float64))  # as in the sampling test: one compile
    q = jelbo.PowerSpherical(mu, np.array([4.0, 0.0]))
    p = jelbo.HypersphericalUniform(3)
    kl = jelbo.kl_divergence(q, p)
    z = draw(q, jax.random.key(3))
    terms = np.asarray(jax.jit(lambda z: q.log_prob(z) - p.log_prob(z))(z))
    np.testing.assert_array_less(
        np.abs(kl - terms.mean(0)), N_SIGMA * terms.std(0) / np.sqrt(N) + 1e-12
    )
    np.testing.assert_allclose(kl[1], 0.0, atol=1e-14)
    # Large κ: finite, accurate KL and gradient (the normalizer's log-gamma difference).
    g = jax.jit(jax.grad(lambda k: jelbo.kl_divergence(jelbo.PowerSpherical(mu, k), p)))(1e6)
    assert np.isfinite(g) and 0 < g < 1e-5 * 2


def test_shape_errors():
    with pytest.raises(ValueError, match="mean_direction"):
        jelbo.PowerSpherical(jnp.ones((2, 1)), 1.0)
    with pytest.raises(ValueError, match="concentration"):
        jelbo.PowerSpherical(jnp.ones((2, 3)), jnp.ones(3))


def test_entropy_and_variance_gradients_near_kappa_zero_in_float32():
    # dH/dkappa = -kappa (psi'(alpha) - psi'(alpha + beta)) is formed directly (as the
    # difference of two O(1) terms it was 13% off at kappa = 1e-6), and Var(t) minus the
    # tangent variance as -kappa 4 alpha beta / (s^2 (s+1) (d-1)).
    mu = jnp.asarray([0.6, 0.8, 0.0], jnp.float32)

    def entropy(k, dtype):
        return jelbo.PowerSpherical(mu.astype(dtype), jnp.asarray(k, dtype)).entropy()

    for kappa in (1e-6, 1e-3):
        g32 = jax.grad(entropy)(jnp.float32(kappa), jnp.float32)
        g64 = jax.grad(entropy)(np.float64(np.float32(kappa)), jnp.float64)
        np.testing.assert_allclose(g32, g64, rtol=1e-4)
    jac32 = jax.jacrev(lambda m: jelbo.PowerSpherical(m, jnp.float32(1e-6)).variance())(mu)
    jac64 = jax.jacrev(lambda m: jelbo.PowerSpherical(m, 1e-6).variance())(mu.astype(np.float64))
    np.testing.assert_allclose(jac32, jac64, rtol=1e-4, atol=1e-12)


def test_issue19_kappa_gradient_at_kappa_zero():
    # Issue 19, defect 2: d/dkappa PowerSpherical(mu, kappa).log_prob(x) at kappa = 0 was
    # 0.307 (a `where` on kappa dropped the kappa log(1 + mu.x) term's derivative). With
    # alpha = (d-1)/2 + kappa, beta = (d-1)/2, log C = -(alpha+beta) log 2 - beta log pi
    # - lgamma(alpha) + lgamma(alpha+beta), so d log p/d kappa = -log 2 - psi(alpha)
    # + psi(alpha + beta) + log(1 + mu.x) (mpmath, 30 digits).
    mpmath.mp.dps = 30
    mu = jnp.asarray([0.6, 0.8, 0.0])
    x = jnp.asarray([0.0, 1.0, 0.0])

    def ref(kappa):
        alpha, beta = 1 + mpmath.mpf(kappa), mpmath.mpf(1)
        t = 1 + mpmath.mpf(0.8)
        return float(-mpmath.log(2) - mpmath.digamma(alpha) + mpmath.digamma(alpha + beta)
                     + mpmath.log(t))  # fmt: skip

    grad = jax.grad(lambda k: jelbo.PowerSpherical(mu, k).log_prob(x))
    for kappa in (0.0, 1e-6, 0.5):
        np.testing.assert_allclose(grad(jnp.float64(kappa)), ref(kappa), rtol=1e-12)
    np.testing.assert_allclose(grad(0.0), 0.8946, atol=1e-4)  # 0.307 in jelbo 0.2


def test_issue19_kl_to_the_uniform_keeps_float32():
    # Issue 19, defect 3: the parameterless HypersphericalUniform's constant promoted the
    # float32 KL to float64 when x64 is enabled.
    for dtype in (jnp.float32, jnp.float64):
        q = jelbo.PowerSpherical(jnp.asarray([0.6, 0.8, 0.0], dtype), jnp.asarray(2.5, dtype))
        kl = jelbo.kl_divergence(q, jelbo.HypersphericalUniform(3))
        assert kl.dtype == dtype
        assert jax.jit(jelbo.kl_divergence)(q, jelbo.HypersphericalUniform(3)).dtype == dtype
