"""Tests of jelbo.classic against an independent NumPy version of the classic recipe.

The reference below is written from the math, looping over samples the way the recipe does:
``recon`` is the mean over samples of ``-0.5 * sum((x - decoder(z))**2)`` (an unnormalized
unit-variance Gaussian log-likelihood), ``kl`` is the diagonal-Gaussian KL summed over every
element, and ``elbo = recon - kl``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tol

from jelbo import classic

K, D = 3, 5  # latent and data dimensions
N_SIGMA = 5  # Monte Carlo tolerance, in standard errors


# --- the NumPy reference -------------------------------------------------------------------


def np_gaussian_log_prob(x, mean, log_var):
    """Elementwise log N(x; mean, e^v) = -½(log 2π + v + (x − mean)² / e^v), v = log_var."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 / np.exp(log_var))


def np_kl_gaussians(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    """Σ_i KL(N(μq_i, σq_i²) ‖ N(μp_i, σp_i²)) = Σ_i log(σp/σq) + (σq² + (μq − μp)²)/(2σp²) − ½."""
    var_q, var_p = np.exp(logvar_q), np.exp(logvar_p)
    per_element = 0.5 * (logvar_p - logvar_q) + (var_q + (mu_q - mu_p) ** 2) / (2 * var_p) - 0.5
    return float(
        np.sum(
            np.broadcast_to(per_element, np.broadcast_shapes(np.shape(mu_q), np.shape(logvar_q)))
        )
    )


def np_compute_elbo(x, z_samples, mu_q, logvar_q, decoder_fn, mu_p=0.0, logvar_p=0.0):
    recon = 0.0
    for z in z_samples:  # one sample at a time, as in the recipe
        recon += -0.5 * np.sum((x - decoder_fn(z)) ** 2)
    recon /= len(z_samples)
    kl = np_kl_gaussians(mu_q, logvar_q, mu_p, logvar_p)
    return recon - kl, recon, kl


def decoders(rng):
    """The same affine-tanh decoder in NumPy (float64) and JAX."""
    w, b = rng.normal(size=(D, K)), rng.normal(size=D)
    return (lambda z: np.tanh(w @ z + b)), (
        lambda z: jnp.tanh(jnp.asarray(w, z.dtype) @ z + b.astype(z.dtype))
    )


def cast(dtype, *arrays):
    """Arrays rounded to ``dtype`` (for jelbo) and the same values in float64 (for NumPy)."""
    rounded = [np.asarray(a, dtype) for a in arrays]
    return [jnp.asarray(a) for a in rounded], [a.astype(np.float64) for a in rounded]


# --- gaussian_log_prob ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "shapes", [((D,), (D,), (D,)), ((4, D), (D,), ()), ((4, 1), (1, D), (4, D))], ids=str
)
def test_gaussian_log_prob_matches_numpy(shapes, dtype, maybe_jit, rng):
    x_shape, mean_shape, lv_shape = shapes
    (x, mean, lv), (x64, mean64, lv64) = cast(
        dtype,
        rng.normal(size=x_shape) * 2,
        rng.normal(size=mean_shape) + 0.5,
        rng.uniform(-2, 2, lv_shape),
    )
    out = maybe_jit(classic.gaussian_log_prob)(x, mean, lv)
    assert out.shape == np.broadcast_shapes(*shapes)  # elementwise, not summed
    assert out.dtype == dtype
    np.testing.assert_allclose(out, np_gaussian_log_prob(x64, mean64, lv64), **tol(dtype))


# --- kl_divergence_gaussians ---------------------------------------------------------------


def test_kl_divergence_gaussians_matches_numpy(dtype, maybe_jit, rng):
    (mu_q, lv_q, mu_p, lv_p), ref = cast(
        dtype,
        rng.normal(size=K) + 0.4,
        rng.uniform(-2, 1, K),
        rng.normal(size=K) - 0.3,
        rng.uniform(-1, 2, K),
    )
    out = maybe_jit(classic.kl_divergence_gaussians)(mu_q, lv_q, mu_p, lv_p)
    assert out.shape == () and out.dtype == dtype
    np.testing.assert_allclose(out, np_kl_gaussians(*ref), **tol(dtype))


def test_kl_divergence_gaussians_default_prior_is_standard_normal(dtype, rng):
    (mu_q, lv_q), (mu64, lv64) = cast(dtype, rng.normal(size=K), rng.uniform(-2, 2, K))
    np.testing.assert_allclose(
        classic.kl_divergence_gaussians(mu_q, lv_q),
        np_kl_gaussians(mu64, lv64, 0.0, 0.0),
        **tol(dtype),
    )


def test_kl_divergence_gaussians_sums_over_all_elements(rng):
    (mu_q, lv_q), (mu64, lv64) = cast(
        np.float64, rng.normal(size=(4, K)), rng.uniform(-2, 2, (4, K))
    )
    out = classic.kl_divergence_gaussians(mu_q, lv_q)
    assert out.shape == ()
    np.testing.assert_allclose(out, np_kl_gaussians(mu64, lv64), **tol(np.float64))


# --- compute_elbo --------------------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [1, 3, 17])
def test_compute_elbo_matches_numpy_loop(n_samples, dtype, maybe_jit, rng):
    dec_np, dec_jax = decoders(rng)
    arrays, ref = cast(
        dtype,
        rng.normal(size=D),
        rng.normal(size=(n_samples, K)),
        rng.normal(size=K) + 0.2,
        rng.uniform(-2, 1, K),
        rng.normal(size=K) - 0.5,
        rng.uniform(-1, 1, K),
    )
    out = maybe_jit(lambda *a: classic.compute_elbo(*a[:4], dec_jax, *a[4:]))(*arrays)
    x64, z64, mu64, lv64, mp64, lp64 = ref
    expected = np_compute_elbo(x64, z64, mu64, lv64, dec_np, mp64, lp64)
    for name, got, want in zip(("elbo", "recon", "kl"), out, expected, strict=True):
        assert got.shape == () and got.dtype == dtype, name
        np.testing.assert_allclose(got, want, **tol(dtype), err_msg=name)


def test_compute_elbo_default_prior(rng):
    dec_np, dec_jax = decoders(rng)
    arrays, ref = cast(
        np.float64,
        rng.normal(size=D),
        rng.normal(size=(4, K)),
        rng.normal(size=K),
        rng.uniform(-1, 1, K),
    )
    out = classic.compute_elbo(*arrays, dec_jax)
    np.testing.assert_allclose(out, np_compute_elbo(*ref, dec_np), **tol(np.float64))


def test_compute_elbo_reconstruction_is_unnormalized():
    # A perfect reconstruction gives recon == 0 exactly: no -D/2 log(2π) constant.
    x = jnp.arange(D, dtype=jnp.float64)
    _, recon, _ = classic.compute_elbo(
        x, jnp.zeros((2, K)), jnp.zeros(K), jnp.zeros(K), lambda z: x
    )
    assert float(recon) == 0.0


@pytest.mark.parametrize("shape", [(K,), (1, 2, K)], ids=str)
def test_compute_elbo_rejects_z_samples_not_2d(shape):
    with pytest.raises(ValueError, match=r"`z_samples`.*\(S, K\)"):
        classic.compute_elbo(
            jnp.zeros(D), jnp.zeros(shape), jnp.zeros(K), jnp.zeros(K), lambda z: z
        )


def test_compute_elbo_gradient_matches_analytic(rng):
    # With a linear decoder W z and z = mu + exp(lv/2) eps, the ELBO is quadratic in mu:
    # d recon/d mu = mean_s Wᵀ(x − W z_s), d kl/d mu = (mu − mu_p) / exp(lv_p).
    w = rng.normal(size=(D, K))
    x, mu, lv, eps = (
        rng.normal(size=D),
        rng.normal(size=K),
        rng.uniform(-1, 1, K),
        rng.normal(size=(6, K)),
    )
    mu_p, lv_p = rng.normal(size=K), rng.uniform(-1, 1, K)

    def elbo(mu):
        z = mu + jnp.exp(0.5 * lv) * eps
        return classic.compute_elbo(x, z, mu, lv, lambda z: jnp.asarray(w) @ z, mu_p, lv_p)[0]

    z = mu + np.exp(0.5 * lv) * eps
    expected = np.mean((x - z @ w.T) @ w, axis=0) - (mu - mu_p) / np.exp(lv_p)
    np.testing.assert_allclose(jax.grad(elbo)(jnp.asarray(mu)), expected, **tol(np.float64))
    np.testing.assert_allclose(
        jax.jit(jax.grad(elbo))(jnp.asarray(mu)), expected, **tol(np.float64)
    )


# --- reparameterize ------------------------------------------------------------------------


# Shapes and dtypes are checked with jax.eval_shape (traced, not compiled: compiling a sampler
# per shape is the expensive part); test_reparameterize_moments runs the real thing.


@pytest.mark.parametrize(
    "mu_shape, lv_shape, n_samples, expected",
    [((K,), (K,), 1, (1, K)), ((4, K), (4, K), 3, (3, 4, K)), ((4, 1), (K,), 5, (5, 4, K))],
    ids=["K", "4xK", "broadcast"],
)
def test_reparameterize_shape_and_dtype(mu_shape, lv_shape, n_samples, expected, dtype):
    mu, lv = jnp.zeros(mu_shape, dtype), jnp.zeros(lv_shape, dtype)
    out = jax.eval_shape(
        lambda key: classic.reparameterize(key, mu, lv, n_samples), jax.random.key(0)
    )
    assert out.shape == expected
    assert out.dtype == dtype


def test_reparameterize_default_is_one_sample():
    out = jax.eval_shape(
        lambda key: classic.reparameterize(key, jnp.zeros(K), jnp.zeros(K)), jax.random.key(0)
    )
    assert out.shape == (1, K)


def test_reparameterize_moments(dtype, rng):
    n = 200_000
    (mu, lv), (mu64, lv64) = cast(dtype, rng.normal(size=(2, K)), rng.uniform(-2, 2, (2, K)))
    z = np.asarray(classic.reparameterize(jax.random.key(1), mu, lv, n), np.float64)
    var = np.exp(lv64)
    assert z.shape == (n, 2, K)
    assert np.all(np.abs(z.mean(0) - mu64) <= N_SIGMA * np.sqrt(var / n))
    assert np.all(np.abs(z.var(0) - var) <= N_SIGMA * var * np.sqrt(2 / n))


def test_reparameterize_is_differentiable_in_mu_and_logvar(rng):
    # z_s = mu + exp(lv/2) eps_s, so for weights w: d(Σ w z)/dmu = Σ_s w_s and
    # d(Σ w z)/dlv = Σ_s w_s ½ exp(lv/2) eps_s = Σ_s w_s ½ (z_s − mu).
    mu, lv = jnp.asarray(rng.normal(size=K)), jnp.asarray(rng.uniform(-1, 1, K))
    w = rng.normal(size=(5, K))
    key = jax.random.key(2)
    z = np.asarray(classic.reparameterize(key, mu, lv, 5))
    weighted = lambda m, v: jnp.sum(w * classic.reparameterize(key, m, v, 5))
    g_mu, g_lv = jax.grad(weighted, argnums=(0, 1))(mu, lv)
    np.testing.assert_allclose(g_mu, w.sum(0), **tol(np.float64))
    np.testing.assert_allclose(g_lv, (w * 0.5 * (z - np.asarray(mu))).sum(0), **tol(np.float64))


def test_reparameterize_key_determinism():
    mu, lv = jnp.zeros(K), jnp.zeros(K)
    key_a, key_b = jax.random.split(jax.random.key(3))
    a1 = classic.reparameterize(key_a, mu, lv, 5)
    a2 = classic.reparameterize(key_a, mu, lv, 5)
    b = classic.reparameterize(key_b, mu, lv, 5)
    np.testing.assert_array_equal(a1, a2)
    assert np.all(np.asarray(a1) != np.asarray(b))


def test_reparameterize_under_jit_matches_eager():
    mu, lv = jnp.arange(K, dtype=jnp.float64), jnp.full(K, -0.5)
    key = jax.random.key(4)
    jitted = jax.jit(classic.reparameterize, static_argnums=3)(key, mu, lv, 5)
    # Same draws; XLA may fuse mu + sigma * eps differently, hence a float tolerance.
    np.testing.assert_allclose(jitted, classic.reparameterize(key, mu, lv, 5), **tol(np.float64))


@pytest.mark.parametrize(
    "n_samples, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_reparameterize_rejects_bad_n_samples(n_samples, error):
    with pytest.raises(error, match="`n_samples`"):
        classic.reparameterize(jax.random.key(0), jnp.zeros(K), jnp.zeros(K), n_samples)


@pytest.mark.parametrize("key", [0, jnp.zeros(2)], ids=["int", "float-array"])
def test_reparameterize_rejects_non_keys(key):
    with pytest.raises(TypeError, match="`key`"):
        classic.reparameterize(key, jnp.zeros(K), jnp.zeros(K), 2)
