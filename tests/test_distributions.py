"""Tests of jelbo's distributions: log-densities, sampling, entropies, pytrees and bad input.

Every numeric reference is computed independently in NumPy/SciPy float64 from the same
parameter values (rounded to the dtype under test first, so only jelbo's arithmetic is
being measured). Monte Carlo checks use a fixed key and a tolerance of 5 standard errors.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from conftest import tol
from support import CLASSES, C, K, assert_within_se, make, mpmath_eval, random_tril, worst_rel_error

import jelbo

FACTORIZED = ["normal", "laplace", "studentt", "bernoulli", "poisson"]
FAMILIES = [*FACTORIZED, "categorical", "mvn"]
CONTINUOUS = ["normal", "laplace", "studentt", "mvn"]


# --- helpers -------------------------------------------------------------------------------


def event_shape(family):
    return () if family == "categorical" else (K,)


def random_x(family, rng, x_batch, dtype):
    """Values in the support of ``family`` with batch axes ``x_batch``, in ``dtype`` (int32
    indices for categorical)."""
    shape = (*x_batch, *event_shape(family))
    if family == "categorical":
        return rng.integers(0, C, size=shape).astype(np.int32)
    if family == "bernoulli":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if family == "poisson":
        return rng.poisson(3.0, size=shape).astype(dtype)
    return (2.0 * rng.normal(size=shape) + 0.3).astype(dtype)


def log_softmax_np(logits):
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def ref_log_prob(family, p, x):
    """float64 reference log-density summed over the event; ``x`` broadcasts against the batch."""
    x = np.asarray(x)
    if family == "categorical":
        log_p = log_softmax_np(p["logits"])
        out_shape = np.broadcast_shapes(x.shape, log_p.shape[:-1])
        log_p, x = np.broadcast_to(log_p, (*out_shape, C)), np.broadcast_to(x, out_shape)
        out = np.empty(out_shape)
        for idx in np.ndindex(out_shape):
            out[idx] = log_p[(*idx, x[idx])]
        return out
    if family == "mvn":
        out_shape = np.broadcast_shapes(
            x.shape[:-1], p["loc"].shape[:-1], p["scale_tril"].shape[:-2]
        )
        x = np.broadcast_to(x, (*out_shape, K))
        loc = np.broadcast_to(p["loc"], (*out_shape, K))
        tril = np.broadcast_to(p["scale_tril"], (*out_shape, K, K))
        out = np.empty(out_shape)
        for idx in np.ndindex(out_shape):
            cov = tril[idx] @ tril[idx].T
            out[idx] = scipy.stats.multivariate_normal(loc[idx], cov).logpdf(x[idx])
        return out
    x = x.astype(np.float64)
    if family == "normal":
        elementwise = scipy.stats.norm.logpdf(x, p["loc"], p["scale"])
    elif family == "laplace":
        elementwise = scipy.stats.laplace.logpdf(x, p["loc"], p["scale"])
    elif family == "studentt":
        elementwise = scipy.stats.t.logpdf(x, p["df"], p["loc"], p["scale"])
    elif family == "bernoulli":
        elementwise = scipy.stats.bernoulli.logpmf(x, scipy.special.expit(p["logits"]))
    elif family == "poisson":
        elementwise = scipy.stats.poisson.logpmf(x, np.exp(p["log_rate"]))
    return elementwise.sum(axis=-1)


def assert_close_sums(actual, terms, dtype):
    """``actual`` equals ``terms.sum(0)`` up to the rounding of a ``dtype`` sum of ``terms``."""
    atol = 10 * np.finfo(dtype).eps * np.abs(terms).sum(0).max()
    np.testing.assert_allclose(actual, terms.sum(0), rtol=tol(dtype)["rtol"], atol=atol)


# --- log_prob ------------------------------------------------------------------------------

# Eager evaluation compiles every primitive separately (about 8x the cost of one jit
# compile on CPU), so the eager/jit matrix uses one shape that exercises all the
# broadcasting at once: batch (2, 3) and x with an extra leading axis and a size-1 batch axis.
# The other numeric tests run under jax.jit.


@pytest.mark.parametrize("family", FAMILIES)
def test_log_prob_matches_scipy(family, dtype, maybe_jit, rng):
    dist, params = make(family, rng, (2, 3), dtype)
    x = random_x(family, rng, (5, 1, 3), dtype)
    out = maybe_jit(jelbo.log_prob)(dist, x)
    assert out.shape == (5, 2, 3)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_log_prob(family, params, x), **tol(dtype))


@pytest.mark.parametrize("family", FAMILIES)
def test_log_prob_without_batch_axes(family, dtype, rng):
    dist, params = make(family, rng, (), dtype)
    x = random_x(family, rng, (), dtype)
    out = jax.jit(jelbo.log_prob)(dist, x)
    assert out.shape == () and out.dtype == dtype
    np.testing.assert_allclose(out, ref_log_prob(family, params, x), **tol(dtype))


@pytest.mark.parametrize("family", ["normal", "laplace", "studentt"])
def test_log_prob_with_broadcasting_parameters(family, dtype, rng):
    # loc carries the batch (2,); the other parameters are shared across it, and x has no
    # batch axes: everything broadcasts to (2, K).
    _, params = make(family, rng, (), dtype)
    params["loc"] = rng.normal(size=(2, K)).astype(dtype).astype(np.float64)
    dist = CLASSES[family](**{k: jnp.asarray(v, dtype) for k, v in params.items()})
    assert dist.batch_shape == (2,) and dist.event_shape == (K,)
    x = random_x(family, rng, (), dtype)
    out = jax.jit(jelbo.log_prob)(dist, x)
    np.testing.assert_allclose(out, ref_log_prob(family, params, x), **tol(dtype))


def test_mvn_log_prob_with_batch_only_in_scale_tril(dtype, rng):
    # The batch comes from `scale_tril` alone and x has no batch axes.
    loc = rng.normal(size=K).astype(dtype)
    tril = random_tril(rng, (2,)).astype(dtype)
    dist = jelbo.MultivariateNormalTriL(jnp.asarray(loc), jnp.asarray(tril))
    x = random_x("mvn", rng, (), dtype)
    out = jax.jit(jelbo.log_prob)(dist, x)
    assert out.shape == (2,)
    expected = ref_log_prob("mvn", {"loc": loc.astype(float), "scale_tril": tril.astype(float)}, x)
    np.testing.assert_allclose(out, expected, **tol(dtype))


def test_mvn_reads_only_the_lower_triangle(rng):
    dist, params = make("mvn", rng, (2,), np.float64)
    garbage = np.triu(rng.normal(size=(2, K, K)), 1)
    dirty = jelbo.MultivariateNormalTriL(dist.loc, dist.scale_tril + garbage)
    x = random_x("mvn", rng, (2,), np.float64)
    np.testing.assert_allclose(
        jax.jit(jelbo.log_prob)(dirty, x), ref_log_prob("mvn", params, x), **tol(np.float64)
    )
    key = jax.random.key(0)
    np.testing.assert_array_equal(jelbo.sample(key, dirty), jelbo.sample(key, dist))
    entropy = jax.jit(jelbo.entropy)
    np.testing.assert_allclose(entropy(dirty), entropy(dist), **tol(np.float64))


def test_bernoulli_fractional_x_matches_formula(dtype, rng):
    dist, params = make("bernoulli", rng, (2,), dtype)
    x = rng.uniform(0.0, 1.0, size=(2, K)).astype(dtype)
    prob = 1.0 / (1.0 + np.exp(-params["logits"]))
    x64 = x.astype(np.float64)
    expected = np.sum(x64 * np.log(prob) + (1.0 - x64) * np.log(1.0 - prob), axis=-1)
    np.testing.assert_allclose(jax.jit(jelbo.log_prob)(dist, x), expected, **tol(dtype))


# --- sample --------------------------------------------------------------------------------
# Compiling a sampler costs far more than running it (3-4 s of CPU for the gamma-based
# Student-t and the Poisson samplers), so shapes and dtypes are checked with jax.eval_shape
# (which traces without compiling), the statistical tests share one set of draws per
# (family, dtype) with batch (2,), and the other sampling tests reuse those shapes (which
# hits JAX's compilation cache). Student-t and Poisson moments are checked in float64 only.

SAMPLE_KEY = 11
# Number of draws; the gamma- and Poisson-based samplers are slow, so they get fewer.
N_DRAWS = {"poisson": 40_000, "studentt": 40_000}


def n_draws(family):
    return N_DRAWS.get(family, 100_000)


@functools.cache
def mc_draws(family, dtype):
    """``(dist, params, draws)``: ``n_draws(family)`` draws of a batch-(2,) ``family``."""
    dist, params = make(family, np.random.default_rng(1), (2,), dtype)
    return dist, params, jelbo.sample(jax.random.key(SAMPLE_KEY), dist, (n_draws(family),))


def mc_draws64(family, dtype):
    """``mc_draws`` with the draws as a float64 NumPy array."""
    dist, params, z = mc_draws(family, dtype)
    return dist, params, np.asarray(z, np.float64)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 4)], ids=str)
def test_sample_shape_and_dtype(family, sample_shape, dtype, rng):
    dist, _ = make(family, rng, (2, 3), dtype)
    out = jax.eval_shape(lambda key: jelbo.sample(key, dist, sample_shape), jax.random.key(0))
    assert out.shape == (*sample_shape, 2, 3, *event_shape(family))
    if family == "categorical":
        assert jnp.issubdtype(out.dtype, jnp.integer)
    else:
        assert out.dtype == dtype


@pytest.mark.parametrize(
    "family, dtype",
    [
        (f, d)
        for f in FAMILIES
        for d in (np.float32, np.float64)
        if f not in N_DRAWS or d == np.float64
    ],
)
def test_drawn_samples_have_shape_and_dtype(family, dtype):
    _, _, z = mc_draws(family, dtype)
    assert z.shape == (n_draws(family), 2, *event_shape(family))
    if family == "categorical":
        assert jnp.issubdtype(z.dtype, jnp.integer)
        assert np.all((np.asarray(z) >= 0) & (np.asarray(z) < C))
    else:
        assert z.dtype == dtype


def test_sample_accepts_int_sample_shape_and_legacy_key(rng):
    dist, _ = make("normal", rng, (2,), np.float64)
    assert jelbo.sample(jax.random.PRNGKey(0), dist, 5).shape == (5, 2, K)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_key_same_samples_different_keys_different(family):
    dist, _, first = mc_draws64(family, np.float64)
    n = n_draws(family)
    again = np.asarray(jelbo.sample(jax.random.key(SAMPLE_KEY), dist, (n,)), np.float64)
    other = np.asarray(jelbo.sample(jax.random.key(SAMPLE_KEY + 1), dist, (n,)), np.float64)
    np.testing.assert_array_equal(again, first)
    if family in CONTINUOUS:
        assert np.mean(first != other) > 0.999
    else:
        assert np.mean(first != other) > 0.2


def test_normal_sample_moments(dtype):
    _, p, z = mc_draws64("normal", dtype)
    n = len(z)
    var = p["scale"] ** 2
    assert_within_se(z.mean(0), p["loc"], np.sqrt(var / n), "mean")
    assert_within_se(z.var(0), var, var * np.sqrt(2.0 / n), "variance")


def test_mvn_sample_mean_and_covariance(dtype):
    _, p, z = mc_draws64("mvn", dtype)
    n = len(z)
    for b in range(2):
        cov = p["scale_tril"][b] @ p["scale_tril"][b].T
        assert_within_se(z[:, b].mean(0), p["loc"][b], np.sqrt(np.diag(cov) / n), "mean")
        # Var of a sample covariance entry: (S_ii S_jj + S_ij^2) / n for Gaussians.
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
        assert_within_se(np.cov(z[:, b], rowvar=False), cov, se, "covariance")


def test_bernoulli_sample_frequency(dtype):
    _, p, z = mc_draws64("bernoulli", dtype)
    n = len(z)
    assert set(np.unique(z)) <= {0.0, 1.0}
    prob = scipy.special.expit(p["logits"])
    assert_within_se(z.mean(0), prob, np.sqrt(prob * (1 - prob) / n), "frequency")


def test_categorical_sample_frequencies(dtype):
    _, p, z = mc_draws64("categorical", dtype)
    n = len(z)
    freq = (z[..., None] == np.arange(C)).mean(axis=0)
    prob = np.exp(log_softmax_np(p["logits"]))
    assert_within_se(freq, prob, np.sqrt(prob * (1 - prob) / n), "frequencies")


def test_poisson_sample_mean_and_variance():
    _, p, z = mc_draws64("poisson", np.float64)
    n = len(z)
    assert np.all(z == np.round(z)) and np.all(z >= 0)
    rate = np.exp(p["log_rate"])
    assert_within_se(z.mean(0), rate, np.sqrt(rate / n), "mean")
    # Poisson: fourth central moment rate(1 + 3 rate), so Var[s^2] ~ (rate + 2 rate^2) / n.
    assert_within_se(z.var(0), rate, np.sqrt((rate + 2 * rate**2) / n), "variance")


@pytest.mark.parametrize(
    "family, dtype",
    [("laplace", np.float32), ("laplace", np.float64), ("studentt", np.float64)],
    ids=["laplace-f32", "laplace-f64", "studentt-f64"],
)
def test_heavy_tailed_samples_pass_ks_test(family, dtype):
    _, p, z = mc_draws64(family, dtype)
    for idx in np.ndindex(2, K):
        if family == "laplace":
            ref = scipy.stats.laplace(p["loc"][idx], p["scale"][idx])
        else:
            ref = scipy.stats.t(p["df"][idx], p["loc"][idx], p["scale"][idx])
        # At n = 4e4 the p = 1e-4 critical KS distance is 0.010: a ~4% scale error fails.
        assert scipy.stats.kstest(z[(slice(None), *idx)], ref.cdf).pvalue > 1e-4, idx


@pytest.mark.parametrize(
    "family, dtype",
    [(f, d) for f in ("normal", "laplace") for d in (np.float32, np.float64)]
    + [("studentt", np.float64)],
)
def test_factorized_sample_is_reparameterized(family, dtype):
    dist, _, z = mc_draws(family, dtype)
    w = jnp.asarray(np.random.default_rng(2).normal(size=z.shape), dtype)
    key = jax.random.key(SAMPLE_KEY)

    def weighted(loc, scale):
        new = dataclasses.replace(dist, loc=loc, scale=scale)
        return jnp.sum(w * jelbo.sample(key, new, (len(z),)))

    g_loc, g_scale = jax.grad(weighted, argnums=(0, 1))(dist.loc, dist.scale)
    eps = (np.asarray(z, np.float64) - np.asarray(dist.loc, np.float64)) / np.asarray(
        dist.scale, np.float64
    )
    w64 = np.asarray(w, np.float64)
    # z = loc + scale * eps: d(sum w z)/dloc = sum_s w_s, d/dscale = sum_s w_s eps_s.
    assert_close_sums(g_loc, w64, dtype)
    assert_close_sums(g_scale, w64 * eps, dtype)
    assert type(dist).is_reparameterized


def test_mvn_sample_is_reparameterized(dtype):
    dist, p, z = mc_draws("mvn", dtype)
    w = jnp.asarray(np.random.default_rng(2).normal(size=z.shape), dtype)
    key = jax.random.key(SAMPLE_KEY)

    def weighted(loc, tril):
        return jnp.sum(w * jelbo.sample(key, jelbo.MultivariateNormalTriL(loc, tril), (len(z),)))

    g_loc, g_tril = jax.grad(weighted, argnums=(0, 1))(dist.loc, dist.scale_tril)
    w64 = np.asarray(w, np.float64)
    eps = np.linalg.solve(p["scale_tril"], (np.asarray(z, np.float64) - p["loc"])[..., None])[
        ..., 0
    ]
    assert_close_sums(g_loc, w64, dtype)
    # z_i = loc_i + sum_{j<=i} L_ij eps_j, so d(sum w.z)/dL_ij = sum_s w_si eps_sj for j <= i.
    terms = w64[..., :, None] * eps[..., None, :] * np.tri(K)
    assert_close_sums(g_tril, terms, dtype)


@pytest.mark.parametrize("family", ["bernoulli", "poisson", "categorical"])
def test_discrete_families_are_not_reparameterized(family):
    assert not CLASSES[family].is_reparameterized


def test_vmap_sample_over_distributions_and_keys(rng):
    dist, _ = make("mvn", rng, (3,), np.float64)
    keys = jax.random.split(jax.random.key(0), 3)
    z = jax.vmap(lambda d, k: jelbo.sample(k, d, (2,)))(dist, keys)
    assert z.shape == (3, 2, K)
    for i in range(3):
        dist_i = jax.tree_util.tree_map(lambda v, i=i: v[i], dist)
        np.testing.assert_array_equal(z[i], jelbo.sample(keys[i], dist_i, (2,)))


# --- entropy -------------------------------------------------------------------------------


def ref_entropy(family, p):
    if family == "normal":
        return scipy.stats.norm(p["loc"], p["scale"]).entropy().sum(-1)
    if family == "laplace":
        return scipy.stats.laplace(p["loc"], p["scale"]).entropy().sum(-1)
    if family == "studentt":
        return scipy.stats.t(p["df"], p["loc"], p["scale"]).entropy().sum(-1)
    if family == "bernoulli":
        return scipy.stats.bernoulli(scipy.special.expit(p["logits"])).entropy().sum(-1)
    if family == "categorical":
        return scipy.stats.entropy(np.exp(log_softmax_np(p["logits"])), axis=-1)
    if family == "mvn":
        batch = p["loc"].shape[:-1]
        out = np.empty(batch)
        for idx in np.ndindex(batch):
            cov = p["scale_tril"][idx] @ p["scale_tril"][idx].T
            out[idx] = scipy.stats.multivariate_normal(p["loc"][idx], cov).entropy()
        return out
    raise ValueError(family)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "poisson"])
@pytest.mark.parametrize("batch", [(2, 3)], ids=str)
def test_entropy_matches_scipy(family, batch, dtype, rng):
    dist, params = make(family, rng, batch, dtype)
    out = jax.jit(jelbo.entropy)(dist)
    assert out.shape == batch and out.dtype == dtype
    np.testing.assert_allclose(out, ref_entropy(family, params), **tol(dtype))


def broadcast_batch(family, params, batch):
    """``params`` with every parameter broadcast to the batch shape ``batch``."""
    event_ndim = {"scale_tril": 2}
    return {
        k: np.broadcast_to(v, (*batch, *v.shape[v.ndim - event_ndim.get(k, 1) :]))
        for k, v in params.items()
    }


@pytest.mark.parametrize("family", ["normal", "laplace", "studentt", "mvn"])
def test_entropy_has_batch_shape_when_only_loc_is_batched(family, dtype, rng):
    # The entropy does not depend on loc, but it must still have the batch shape.
    _, params = make(family, rng, (), dtype)
    params["loc"] = rng.normal(size=(2, K)).astype(dtype).astype(np.float64)
    dist = CLASSES[family](**{k: jnp.asarray(v, dtype) for k, v in params.items()})
    out = jax.jit(jelbo.entropy)(dist)
    assert out.shape == (2,)
    expected = ref_entropy(family, broadcast_batch(family, params, (2,)))
    np.testing.assert_allclose(out, expected, **tol(dtype))


def test_poisson_entropy_raises_not_implemented(rng):
    dist, _ = make("poisson", rng, (), np.float64)
    with pytest.raises(NotImplementedError, match="Poisson"):
        jelbo.entropy(dist)


# --- pytree behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_tree_util_round_trip(family, rng):
    dist, params = make(family, rng, (2,), np.float64)
    leaves, treedef = jax.tree_util.tree_flatten(dist)
    assert len(leaves) == len(params)
    for leaf, value in zip(leaves, params.values(), strict=True):
        np.testing.assert_array_equal(leaf, value)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(rebuilt) is type(dist)
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, dist)
    assert type(doubled) is type(dist)
    for name, value in params.items():
        np.testing.assert_array_equal(getattr(rebuilt, name), value)
        np.testing.assert_array_equal(getattr(doubled, name), 2 * value)


@pytest.mark.parametrize("family", FAMILIES)
def test_distribution_passes_through_jit(family, rng):
    dist, params = make(family, rng, (2,), np.float64)
    out = jax.jit(lambda d: jax.tree_util.tree_map(lambda v: v + 1.0, d))(dist)
    assert type(out) is type(dist)
    assert out.batch_shape == dist.batch_shape and out.event_shape == dist.event_shape
    for name, value in params.items():
        np.testing.assert_allclose(getattr(out, name), value + 1.0, rtol=1e-15)


@pytest.mark.parametrize("family", FAMILIES)
def test_vmap_over_a_batch_of_distributions(family, dtype, rng):
    dist, params = make(family, rng, (4,), dtype)
    x = random_x(family, rng, (4,), dtype)
    out = jax.jit(jax.vmap(lambda d, v: jelbo.log_prob(d, v), in_axes=0))(dist, x)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, ref_log_prob(family, params, x), **tol(dtype))


def ref_log_prob_grads(family, p, x):
    """Analytic float64 gradients of sum(log_prob) w.r.t. each parameter."""
    if family == "normal":
        d, s = x - p["loc"], p["scale"]
        return {"loc": d / s**2, "scale": d**2 / s**3 - 1 / s}
    if family == "laplace":
        d, b = x - p["loc"], p["scale"]
        return {"loc": np.sign(d) / b, "scale": np.abs(d) / b**2 - 1 / b}
    if family == "studentt":
        nu, s = p["df"], p["scale"]
        t = (x - p["loc"]) / s
        digamma = scipy.special.digamma
        return {
            "df": 0.5 * (digamma((nu + 1) / 2) - digamma(nu / 2) - 1 / nu - np.log1p(t**2 / nu))
            + (nu + 1) * t**2 / (2 * nu * (nu + t**2)),
            "loc": (nu + 1) * t / (s * (nu + t**2)),
            "scale": -1 / s + (nu + 1) * t**2 / (s * (nu + t**2)),
        }
    if family == "bernoulli":
        return {"logits": x - scipy.special.expit(p["logits"])}
    if family == "poisson":
        return {"log_rate": x - np.exp(p["log_rate"])}
    if family == "categorical":
        return {"logits": (x[..., None] == np.arange(C)) - np.exp(log_softmax_np(p["logits"]))}
    if family == "mvn":
        grads = {"loc": np.empty_like(p["loc"]), "scale_tril": np.empty_like(p["scale_tril"])}
        for idx in np.ndindex(p["loc"].shape[:-1]):
            tril, d = p["scale_tril"][idx], x[idx] - p["loc"][idx]
            prec = np.linalg.inv(tril @ tril.T)
            grads["loc"][idx] = prec @ d
            # d/dL [-d' (LL')^-1 d / 2 - log det L] = P d d' P L - L^-T, on the lower triangle.
            grads["scale_tril"][idx] = np.tril(
                prec @ np.outer(d, d) @ prec @ tril - np.linalg.inv(tril).T
            )
        return grads
    raise ValueError(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_grad_wrt_distribution_is_a_distribution_of_gradients(family, dtype, rng):
    dist, params = make(family, rng, (2,), dtype)
    x = random_x(family, rng, (2,), dtype)
    grads = jax.jit(jax.grad(lambda d: jnp.sum(jelbo.log_prob(d, x))))(dist)
    assert type(grads) is type(dist)
    x_ref = x if family == "categorical" else x.astype(np.float64)
    expected = ref_log_prob_grads(family, params, x_ref)
    for name, value in expected.items():
        assert getattr(grads, name).dtype == dtype
        np.testing.assert_allclose(getattr(grads, name), value, **tol(dtype), err_msg=name)


# --- numerics at extreme parameters (float32) ----------------------------------------------


def test_normal_from_log_var_is_finite_for_extreme_log_variances():
    # Batch of 61 log-variances in [-30, 30] (event size 1), each scored at three x values.
    log_var = np.linspace(-30.0, 30.0, 61, dtype=np.float32)[:, None]
    loc = np.float32(0.3)
    x = np.asarray([0.3, 1.3, -2.2], np.float32)[:, None, None]

    @jax.jit
    def values_and_grads(loc, log_var):
        def total(loc, log_var):
            dist = jelbo.Normal.from_log_var(jnp.full((61, 1), loc), log_var)
            return jnp.sum(jelbo.log_prob(dist, x)), jelbo.log_prob(dist, x)

        return jax.grad(total, argnums=(0, 1), has_aux=True)(loc, log_var)

    (g_loc, g_lv), values = values_and_grads(loc, log_var)
    assert values.dtype == jnp.float32
    for arr in (values, g_loc, g_lv):
        assert bool(jnp.all(jnp.isfinite(arr)))
    # Values, not just finiteness: log p = -1/2 (log 2 pi + v + r^2 e^-v), r = x - loc,
    # d/dv = -1/2 + r^2 e^-v / 2.
    v, r2 = log_var.astype(np.float64), (x.astype(np.float64) - np.float64(loc)) ** 2
    expected = -0.5 * (np.log(2 * np.pi) + v + r2 * np.exp(-v))
    np.testing.assert_allclose(values, expected[..., 0], rtol=1e-5)
    np.testing.assert_allclose(g_lv, np.sum(-0.5 + 0.5 * r2 * np.exp(-v), axis=0), rtol=1e-5)


def test_bernoulli_is_finite_for_saturated_logits():
    # Batch of 161 logits in [-80, 80] (event size 1), each scored at x = 0, 1 and 0.5.
    logits = np.linspace(-80.0, 80.0, 161, dtype=np.float32)[:, None]
    x = np.asarray([0.0, 1.0, 0.5], np.float32)[:, None, None]

    @jax.jit
    def values_and_grads(logits):
        def total(logits):
            dist = jelbo.Bernoulli(logits=logits)
            return jnp.sum(jelbo.log_prob(dist, x)), (jelbo.log_prob(dist, x), jelbo.entropy(dist))

        grad, (values, ent) = jax.grad(total, has_aux=True)(logits)
        ent_grad = jax.grad(lambda a: jnp.sum(jelbo.entropy(jelbo.Bernoulli(logits=a))))(logits)
        return values, grad, ent, ent_grad

    for arr in values_and_grads(logits):
        assert arr.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(arr)))
    values, grads, ent, _ = values_and_grads(logits)
    a, x64 = logits.astype(np.float64), x.astype(np.float64)
    # log sigmoid(a) = -logaddexp(0, -a), computed independently in float64.
    expected = -(x64 * np.logaddexp(0, -a) + (1 - x64) * np.logaddexp(0, a))
    np.testing.assert_allclose(values, expected[..., 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads, np.sum(x64 - scipy.special.expit(a), axis=0), atol=1e-6)
    # H = -p log p - (1 - p) log(1 - p) in log space (1 - p rounds to 1 at |a| > 37).
    log_p, log_1mp = -np.logaddexp(0, -a[:, 0]), -np.logaddexp(0, a[:, 0])
    expected_entropy = -np.exp(log_p) * log_p - np.exp(log_1mp) * log_1mp
    np.testing.assert_allclose(ent, expected_entropy, rtol=1e-5, atol=1e-30)


# --- bad input -----------------------------------------------------------------------------


def test_log_prob_event_size_mismatch_names_shapes():
    dist = jelbo.Normal(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match=re.escape("(2, 4)") + ".*" + re.escape("(3,)")):
        jelbo.log_prob(dist, jnp.zeros((2, 4)))


def test_log_prob_x_batch_not_broadcasting_names_shapes():
    dist = jelbo.Normal(jnp.zeros((2, 3)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=re.escape("(5,)") + ".*" + re.escape("(2,)")):
        jelbo.log_prob(dist, jnp.zeros((5, 3)))


def test_log_prob_event_mismatch_raises_under_jit():
    dist = jelbo.MultivariateNormalTriL(jnp.zeros(3), jnp.eye(3))
    with pytest.raises(ValueError, match=re.escape("(2,)")):
        jax.jit(jelbo.log_prob)(dist, jnp.zeros(2))


def test_normal_non_broadcasting_parameters_raise_naming_both():
    with pytest.raises(ValueError, match=r"`loc` \(3,\).*`scale` \(4,\)"):
        jelbo.Normal(jnp.zeros(3), jnp.ones(4))


def test_studentt_non_broadcasting_parameters_raise():
    with pytest.raises(ValueError, match=r"`df` \(2, 3\)"):
        jelbo.StudentT(jnp.ones((2, 3)), jnp.zeros((3, 3)), jnp.ones(3))


@pytest.mark.parametrize(
    "loc_shape, tril_shape",
    [((3,), (3, 2)), ((3,), (2, 2)), ((3,), (3,)), ((), (1, 1)), ((2, 3), (4, 3, 3))],
    ids=str,
)
def test_mvn_bad_shapes_raise(loc_shape, tril_shape):
    with pytest.raises(ValueError, match="scale_tril"):
        jelbo.MultivariateNormalTriL(jnp.zeros(loc_shape), jnp.ones(tril_shape))


def test_categorical_float_values_raise_type_error():
    dist = jelbo.Categorical(logits=jnp.zeros((2, C)))
    with pytest.raises(TypeError, match="integer"):
        jelbo.log_prob(dist, jnp.asarray([0.0, 1.0]))


def test_categorical_scalar_logits_raise():
    with pytest.raises(ValueError, match="logits"):
        jelbo.Categorical(logits=jnp.asarray(0.0))


@pytest.mark.parametrize(
    "key",
    [0, np.float32(1.0), jnp.zeros(2), jnp.zeros(2, jnp.int32), jnp.zeros(3, jnp.uint32)],
    ids=["int", "float", "float-array", "int-array", "uint32-3"],
)
def test_sample_rejects_non_keys(key):
    dist = jelbo.Normal(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(TypeError, match="`key`"):
        jelbo.sample(key, dist)


def test_sample_rejects_a_batch_of_keys():
    dist = jelbo.Normal(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(TypeError, match=r"single PRNG key.*\(2,\)"):
        jelbo.sample(jax.random.split(jax.random.key(0)), dist)


def test_functions_reject_non_distributions():
    with pytest.raises(TypeError, match="`dist`"):
        jelbo.log_prob(jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(TypeError, match="`dist`"):
        jelbo.sample(jax.random.key(0), "normal")
    with pytest.raises(TypeError, match="`dist`"):
        jelbo.sample_and_log_prob(jax.random.key(0), "normal")
    with pytest.raises(TypeError, match="`dist`"):
        jelbo.distributions.sample_and_stopped_log_prob(jax.random.key(0), "normal")
    with pytest.raises(TypeError, match="key"):
        jelbo.sample_and_log_prob(0, jelbo.Normal(jnp.zeros(2), 1.0))
    with pytest.raises(TypeError, match="`dist`"):
        jelbo.entropy(None)


def test_static_field_is_aux_data_not_a_leaf():
    from jelbo.distributions import Factorized, static_field

    class Scaled(Factorized):
        loc: jax.Array
        power: int = static_field(default=2)

        def _log_prob_elementwise(self, x):
            return -((x - self.loc) ** self.power)

        def _sample(self, key, sample_shape):
            return jnp.broadcast_to(self.loc, sample_shape + self.param_shape)

    dist = Scaled(jnp.zeros(3), power=4)
    leaves, treedef = jax.tree_util.tree_flatten(dist)
    assert len(leaves) == 1 and dist.batch_shape == () and dist.event_shape == (3,)
    # The static value reaches the jitted function as a Python int (usable in shapes).
    out = jax.jit(lambda d: jnp.zeros(d.power) + d.log_prob(jnp.ones(3)))(dist)
    assert out.shape == (4,) and float(out[0]) == -3.0
    assert jax.tree_util.tree_unflatten(treedef, leaves).power == 4
    assert Scaled(jnp.zeros(3), power=3) is not None
    assert jax.tree_util.tree_structure(Scaled(jnp.zeros(3), power=3)) != treedef


# --- methods and moments (jelbo 0.2) -----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_methods_equal_the_free_functions(family, dtype):
    dist, _ = make(family, np.random.default_rng(3), (2,), dtype)
    x = jnp.asarray(random_x(family, np.random.default_rng(4), (2,), dtype))
    key = jax.random.key(5)

    @jax.jit
    def both(dist, x):
        pairs = [
            (dist.log_prob(x), jelbo.log_prob(dist, x)),
            (dist.sample(key, (4,)), jelbo.sample(key, dist, (4,))),
            (dist.sample(key, 4), jelbo.sample(key, dist, 4)),
        ]
        if family != "poisson":
            pairs.append((dist.entropy(), jelbo.entropy(dist)))
        return pairs

    for method, function in both(dist, x):
        np.testing.assert_array_equal(np.asarray(method), np.asarray(function))


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_and_log_prob_is_sample_then_log_prob(family, dtype):
    # The default hook: the same draws and densities as the two calls, the same gradients
    # for the reparameterized families; the stopped variant has the density's value with a
    # gradient that reaches the parameters only through the draws.
    dist, _ = make(family, np.random.default_rng(6), (2,), dtype)
    key = jax.random.key(7)
    x, log_p = jelbo.sample_and_log_prob(key, dist, (3,))
    np.testing.assert_array_equal(x, jelbo.sample(key, dist, (3,)))
    np.testing.assert_array_equal(log_p, jelbo.log_prob(dist, x))
    np.testing.assert_array_equal(dist.sample_and_log_prob(key, 3)[1], log_p)
    z, stopped = jelbo.distributions.sample_and_stopped_log_prob(key, dist, (3,))
    np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(stopped, log_p)
    if not dist.is_reparameterized:
        return

    def two_calls(d, stop):
        z = jelbo.sample(key, d, (3,))
        return jnp.sum(jelbo.log_prob(jax.lax.stop_gradient(d) if stop else d, z))

    one_call = lambda d: jnp.sum(jelbo.sample_and_log_prob(key, d, (3,))[1])
    stopped_call = lambda d: jnp.sum(
        jelbo.distributions.sample_and_stopped_log_prob(key, d, (3,))[1]
    )
    for ours, ref in [
        (one_call, lambda d: two_calls(d, False)),
        (stopped_call, lambda d: two_calls(d, True)),
    ]:
        for a, b in zip(
            jax.tree.leaves(jax.grad(ours)(dist)), jax.tree.leaves(jax.grad(ref)(dist)), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def ref_moments(family, p):
    """(mean, variance, mode) of ``family`` from scipy.stats, shape ``(*batch, *event)``."""
    if family == "normal":
        d = scipy.stats.norm(p["loc"], p["scale"])
        return d.mean(), d.var(), np.broadcast_to(p["loc"], d.mean().shape)
    if family == "laplace":
        d = scipy.stats.laplace(p["loc"], p["scale"])
        return d.mean(), d.var(), np.broadcast_to(p["loc"], d.mean().shape)
    if family == "studentt":
        d = scipy.stats.t(p["df"], p["loc"], p["scale"])
        return d.mean(), d.var(), np.broadcast_to(p["loc"], d.mean().shape)
    if family == "bernoulli":
        d = scipy.stats.bernoulli(scipy.special.expit(p["logits"]))
        return d.mean(), d.var(), (p["logits"] > 0).astype(float)
    if family == "poisson":
        rate = np.exp(p["log_rate"])
        d = scipy.stats.poisson(rate)
        return d.mean(), d.var(), np.floor(rate)
    if family == "mvn":
        cov = p["scale_tril"] @ np.swapaxes(p["scale_tril"], -1, -2)
        return p["loc"], np.diagonal(cov, axis1=-2, axis2=-1), p["loc"]
    raise ValueError(family)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "categorical"])
def test_moments_match_scipy(family, dtype):
    dist, p = make(family, np.random.default_rng(6), (2,), dtype)
    mean, variance, mode = ref_moments(family, p)
    got = jax.jit(lambda d: (d.mean(), d.variance(), d.stddev(), d.mode()))(dist)
    for value, ref in zip(got, (mean, variance, np.sqrt(variance), mode), strict=True):
        assert value.shape == (2, K)
        np.testing.assert_allclose(np.asarray(value, np.float64), ref, **tol(dtype))
    if family == "mvn":
        cov = p["scale_tril"] @ np.swapaxes(p["scale_tril"], -1, -2)
    else:  # independent coordinates: a diagonal covariance
        cov = variance[..., :, None] * np.eye(K)
    np.testing.assert_allclose(np.asarray(dist.covariance(), np.float64), cov, **tol(dtype))


def test_moments_broadcast_parameters_and_edge_cases():
    # A batch that comes from one parameter only is broadcast in every moment.
    normal = jelbo.Normal(jnp.zeros(K), jnp.ones((2, K)))
    assert normal.mean().shape == normal.mode().shape == normal.variance().shape == (2, K)
    mvn = jelbo.MultivariateNormalTriL(jnp.zeros(K), jnp.broadcast_to(jnp.eye(K), (2, K, K)))
    assert mvn.mean().shape == (2, K) and mvn.covariance().shape == (2, K, K)
    # Student-t: the mean is undefined for df <= 1: NaN (as NumPyro and TFP; scipy says inf);
    # the variance is infinite for 1 < df <= 2 and NaN for df <= 1 (as scipy).
    df = np.array([0.5, 1.5, 2.0, 3.0])
    t = jelbo.StudentT(jnp.asarray(df), 0.0, 2.0)
    np.testing.assert_array_equal(t.mean(), [np.nan, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(t.variance(), scipy.stats.t(df, 0.0, 2.0).var(), rtol=1e-12)
    # Categorical: the mode is the most probable index; no mean over unordered categories.
    cat = jelbo.Categorical(logits=jnp.asarray([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(cat.mode(), [1, 0])
    with pytest.raises(NotImplementedError, match="Categorical has no closed-form mean"):
        cat.mean()
    # Bernoulli ties (logit 0) go to 0; moments are finite at saturated logits.
    bern = jelbo.Bernoulli(logits=jnp.asarray([0.0, 1e4, -1e4]))
    np.testing.assert_array_equal(bern.mode(), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(bern.variance(), [0.25, 0.0, 0.0])


def test_moments_pass_through_grad_and_vmap():
    grad = jax.grad(lambda s: jnp.sum(jelbo.Normal(jnp.zeros(K), s).stddev()))(jnp.ones(K) * 2)
    np.testing.assert_allclose(grad, np.ones(K))
    locs = jnp.arange(6.0).reshape(2, K)
    means = jax.vmap(lambda loc: jelbo.Laplace(loc, 1.0).mean())(locs)
    np.testing.assert_array_equal(means, locs)


# --- the Distribution base ------------------------------------------------------------------


class Shifted(jelbo.Distribution):
    """A new family written the 0.2 way: annotated fields and the hooks, nothing else."""

    loc: jax.typing.ArrayLike
    is_reparameterized = True

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.loc)[:-1])

    @property
    def event_shape(self):
        return tuple(jnp.shape(self.loc)[-1:])

    def _log_prob(self, x):
        return jnp.sum(scipy_norm_logpdf(x - self.loc), axis=-1)

    def _sample(self, key, sample_shape):
        return self.loc + jax.random.normal(key, sample_shape + jnp.shape(self.loc))

    def _mean(self):
        return jnp.asarray(self.loc)


def scipy_norm_logpdf(x):
    return -0.5 * x * x - 0.5 * np.log(2 * np.pi)


def test_a_new_family_is_a_frozen_dataclass_and_a_pytree():
    dist = Shifted(jnp.ones((2, K)))
    assert dataclasses.is_dataclass(dist)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dist.loc = jnp.zeros(K)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del dist.loc
    leaves, treedef = jax.tree.flatten(dist)
    assert len(leaves) == 1 and isinstance(jax.tree.unflatten(treedef, leaves), Shifted)
    replaced = dataclasses.replace(dist, loc=jnp.zeros((2, K)))
    np.testing.assert_array_equal(replaced.mean(), np.zeros((2, K)))
    x = jnp.full((2, K), 0.5)
    np.testing.assert_allclose(
        jax.jit(lambda d: d.log_prob(x))(dist), K * scipy.stats.norm.logpdf(-0.5) * np.ones(2)
    )
    assert dist.sample(jax.random.key(0), 3).shape == (3, 2, K)
    with pytest.raises(NotImplementedError, match="Shifted has no closed-form entropy"):
        dist.entropy()
    with pytest.raises(ValueError, match="event"):
        dist.log_prob(jnp.zeros(K + 1))  # the free function's checks apply to methods


def test_missing_abstract_hooks_fail_at_instantiation():
    class NoShapes(jelbo.Distribution):
        loc: jax.typing.ArrayLike

        def _log_prob(self, x):
            return x

        def _sample(self, key, sample_shape):
            return self.loc

    with pytest.raises(TypeError, match=r"abstract.*batch_shape.*event_shape"):
        NoShapes(1.0)


def test_a_01_style_family_with_its_own_dataclass_decorator_still_works():
    """jelbo 0.1 families applied ``@dataclasses.dataclass(frozen=True)`` themselves and may
    have left out ``_sample`` (a prior that is never sampled): both keep working."""

    @dataclasses.dataclass(frozen=True)
    class Old(jelbo.Distribution):
        loc: jax.typing.ArrayLike
        batch_shape = Shifted.batch_shape  # the same hooks as above; no _sample
        event_shape = Shifted.event_shape
        _log_prob = Shifted._log_prob

    with pytest.warns(DeprecationWarning, match="Old does not implement _sample"):
        old = Old(jnp.zeros((2, K)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        old.loc = jnp.ones(K)  # type: ignore[misc]
    x = jnp.ones(K)
    np.testing.assert_allclose(
        jax.jit(jelbo.log_prob)(old, x), K * scipy.stats.norm.logpdf(1.0) * np.ones(2)
    )
    np.testing.assert_allclose(old.log_prob(x), jelbo.log_prob(old, x))
    assert jax.tree.leaves(jax.tree.map(lambda a: a + 1, old))[0].shape == (2, K)
    with pytest.raises(NotImplementedError, match="Old does not implement _sample"):
        old.sample(jax.random.key(0))
    # As a prior of the ELBO with the Monte Carlo KL: only its log_prob is needed.
    q = jelbo.Normal(jnp.zeros((2, K)), 1.0)
    bound = jelbo.ELBO(2, kl="mc")(jax.random.key(0), q, lambda z: -jnp.sum(z**2), old)
    assert bound.value.shape == (2,)


# --- numerics at the edges (issue 10); references from mpmath, written independently ----------

import mpmath as mp  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


_mp_eval = mpmath_eval


def _worst(values, ref, floor=1.0) -> float:
    return worst_rel_error(values, ref, floor)


_T_DF, _T_X = (v.ravel() for v in np.meshgrid([0.1, 0.5, 1.0, 3.5, 16.0, 1e3, 1e6, 1e8, 1e10],
                                              [0.0, 0.5, 3.0, 1e3]))  # fmt: skip


@jax.jit
def _student_t_terms(df, x):
    def log_prob(df, x):
        return jelbo.StudentT(df[None], 1.0, 2.0).log_prob(x[None])

    value, grads = jax.vmap(jax.value_and_grad(log_prob, argnums=(0, 1)))(df, x)
    entropy = jelbo.StudentT(df[:, None], 1.0, 2.0).entropy()
    return value, grads, entropy


def test_student_t_exact_from_df_tenth_to_1e10(dtype):
    # log p(x) with loc 1, scale 2 (t = (x - 1)/2) and its df- and x-derivatives; entropy.
    df, x = _T_DF.astype(dtype), (1.0 + 2.0 * _T_X).astype(dtype)

    def ref_log_prob(v, x):
        t = (x - 1) / 2
        return (mp.loggamma((v + 1) / 2) - mp.loggamma(v / 2) - mp.log(v * mp.pi) / 2
                - mp.log(2) - (v + 1) / 2 * mp.log1p(t * t / v))  # fmt: skip

    def ref_ddf(v, x):
        t2 = ((x - 1) / 2) ** 2
        return ((mp.digamma((v + 1) / 2) - mp.digamma(v / 2)) / 2 - 1 / (2 * v)
                - mp.log1p(t2 / v) / 2 + (v + 1) * t2 / (2 * v * (v + t2)))  # fmt: skip

    def ref_dx(v, x):
        t = (x - 1) / 2
        return -(v + 1) * t / (v + t * t) / 2

    def ref_entropy(v):
        h = v / 2
        return ((h + mp.mpf(0.5)) * (mp.digamma(h + mp.mpf(0.5)) - mp.digamma(h))
                + mp.log(v) / 2 + mp.log(mp.beta(h, mp.mpf(0.5))) + mp.log(2))  # fmt: skip

    value, (ddf, dx), entropy = _student_t_terms(df, x)
    assert value.dtype == entropy.dtype == dtype
    ref = _mp_eval(ref_log_prob, df, x)
    n_df = len(_T_DF) // 4  # the first row of the grid: every df once, at x = 1
    ref_h = _mp_eval(ref_entropy, df[:n_df])
    entropy = entropy[:n_df]
    if dtype == np.float64:
        assert _worst(value, ref) <= 1e-14
        assert _worst(entropy, ref_h) <= 1e-14
        # derivatives: relative, also where the df-derivative vanishes like 1/df^2
        assert _worst(ddf, _mp_eval(ref_ddf, df, x), floor=1e-300) <= 1e-12
        assert _worst(dx, _mp_eval(ref_dx, df, x), floor=1e-300) <= 1e-13
    else:
        # float32: within 4 ulps of the value (of 1 where |log p| < 1)
        assert _worst(value, ref) <= 4 * EPS32
        assert _worst(entropy, ref_h) <= 4 * EPS32
        assert np.all(np.isfinite(ddf)) and np.all(np.isfinite(dx))


def test_tiny_scales_have_exact_gradients(dtype):
    # d/dscale log N(x; 0, s) = (z^2 - 1)/s and d/db log Laplace(x; 0, b) = (|z| - 1)/b: exactly
    # 0 at x = scale; formed as (x/s)/s, not x/s^2 (which overflows for s = 1e-20 in float32).
    scale = jnp.asarray([1e-20, 1e-20, 1e-3], dtype)
    x = scale * jnp.asarray([1.0, 2.0, 2.0], dtype)

    @jax.jit
    def grads(scale, x):
        def normal(s, x):
            return jelbo.Normal(jnp.zeros(1, dtype), s[None]).log_prob(x[None])

        def laplace(s, x):
            return jelbo.Laplace(jnp.zeros(1, dtype), s[None]).log_prob(x[None])

        return jax.vmap(jax.grad(normal))(scale, x), jax.vmap(jax.grad(laplace))(scale, x)

    g_normal, g_laplace = grads(scale, x)
    rtol = 1e-14 if dtype == np.float64 else 4 * EPS32
    s = np.asarray(scale, np.float64)
    np.testing.assert_allclose(g_normal, [0.0, 3.0 / s[1], 3.0 / s[2]], rtol=rtol)
    np.testing.assert_allclose(g_laplace, [0.0, 1.0 / s[1], 1.0 / s[2]], rtol=rtol)


def test_normal_from_log_var_keeps_the_log_scale(dtype):
    # log_var = -180: scale e^-90 underflows to 0 in float32; the entropy and log-density
    # still use log_scale = -90 exactly.
    q = jelbo.Normal.from_log_var(jnp.zeros(1, dtype), jnp.full(1, -180.0, dtype))
    entropy = jax.jit(jelbo.entropy)(q)
    np.testing.assert_allclose(entropy, 0.5 + 0.5 * np.log(2 * np.pi) - 90.0, rtol=1e-6)
    np.testing.assert_allclose(q.log_prob(jnp.zeros(1, dtype)), 90.0 - 0.5 * np.log(2 * np.pi),
                               rtol=1e-6)  # fmt: skip
    assert "log_scale" in repr(q) and "log_scale" not in repr(jelbo.Normal(0.0, jnp.ones(1)))


def test_integer_parameters_are_promoted_everywhere():
    # Integer logits/locs behave as the same floats in every method (0.1 accepted them in
    # log_prob only).
    as_int = [
        jelbo.Categorical(logits=jnp.array([1, 2, 3])),
        jelbo.Bernoulli(logits=jnp.array([-2, 0, 3])),
        jelbo.Poisson(log_rate=jnp.array([0, 1, 2])),
        jelbo.Normal(jnp.array([0, 1]), jnp.array([1, 2])),
        jelbo.StudentT(jnp.array([3, 5]), jnp.array([0, 1]), 2),
    ]
    for dist in as_int:
        floats = jax.tree_util.tree_map(lambda v: jnp.asarray(v, float), dist)
        for leaf in jax.tree.leaves(dist):  # Python scalars stay weakly typed
            assert isinstance(leaf, int) or jnp.issubdtype(leaf.dtype, jnp.floating)
        if not isinstance(dist, jelbo.Poisson):  # no closed-form entropy
            np.testing.assert_array_equal(jelbo.entropy(dist), jelbo.entropy(floats))
        if not isinstance(dist, jelbo.StudentT):  # no closed-form KL
            np.testing.assert_array_equal(jelbo.kl_divergence(dist, floats), 0.0)
        x = jelbo.mode(dist) if hasattr(jelbo, "mode") else dist.mode()
        np.testing.assert_array_equal(dist.log_prob(x), floats.log_prob(x))


def test_discrete_values_outside_the_support_have_log_prob_minus_inf():
    cat = jelbo.Categorical(logits=jnp.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(
        cat.log_prob(jnp.array([-1, 3, 100])), -np.inf
    )  # no wrapped index: -1 is not the last category
    np.testing.assert_allclose(
        cat.log_prob(jnp.array([2])), scipy.special.log_softmax([0, 1, 2])[2]
    )
    pois = jelbo.Poisson(log_rate=jnp.zeros(1))
    lp = jax.vmap(pois.log_prob)(jnp.array([[-1.0], [1.5], [np.inf], [np.nan], [2.0]]))
    np.testing.assert_array_equal(lp[:4], -np.inf)
    np.testing.assert_allclose(lp[4], scipy.stats.poisson.logpmf(2, 1.0), rtol=1e-14)
    bern = jelbo.Bernoulli(logits=jnp.zeros(1))
    lp = jax.vmap(bern.log_prob)(jnp.array([[-0.5], [1.5], [np.nan], [0.25]]))
    np.testing.assert_array_equal(lp[:3], -np.inf)
    # fractional values in [0, 1] keep their 0.1 meaning (grey-level pixels)
    np.testing.assert_allclose(lp[3], np.log(0.5), rtol=1e-14)


def test_masked_and_saturated_discrete_parameters():
    logits = jnp.array([0.0, -jnp.inf, 1.0])
    h, grad = jax.value_and_grad(lambda a: jelbo.Categorical(logits=a).entropy())(logits)
    p = scipy.special.softmax([0.0, 1.0])
    np.testing.assert_allclose(h, -np.sum(p * np.log(p)), rtol=1e-14)
    assert grad[1] == 0.0 and np.all(np.isfinite(grad))
    # deterministic Bernoulli coordinates: 0 log 0 = 0
    bern = jelbo.Bernoulli(logits=jnp.array([jnp.inf, -jnp.inf, 0.0]))
    np.testing.assert_allclose(bern.entropy(), np.log(2.0), rtol=1e-14)
    np.testing.assert_allclose(bern.log_prob(jnp.array([1.0, 0.0, 1.0])), np.log(0.5))
    assert bern.log_prob(jnp.array([0.0, 0.0, 1.0])) == -np.inf


def test_poisson_log_prob_large_counts_against_mpmath():
    x = np.array([0.0, 1.0, 7.0, 8.0, 1e3, 1e5, 1e7, 1e7])
    eta = np.log(np.maximum(x, 0.5)) + np.array([0.3, -2.0, 1e-3, 0.0, 1e-3, -1e-4, 1e-3, 0.5])

    def ref(eta, x):
        return x * eta - mp.exp(eta) - mp.loggamma(x + 1)

    values, grad = jax.jit(jax.vmap(jax.value_and_grad(
        lambda e, x: jelbo.Poisson(log_rate=e[None]).log_prob(x[None]))))(eta, x)  # fmt: skip
    assert _worst(values, _mp_eval(ref, eta, x)) <= 1e-12
    assert _worst(grad, _mp_eval(lambda e, x: x - mp.exp(e), eta, x), floor=1.0) <= 1e-9


def test_poisson_samples_do_not_saturate_in_32_bit_mode():
    with jax.enable_x64(False):
        draws = jelbo.Poisson(log_rate=jnp.array([25.0, 2.0])).sample(jax.random.key(0), (400,))
        assert draws.dtype == jnp.float32
        draws = np.asarray(draws, np.float64)
    rate = np.exp(25.0)  # 7.2e10 > 2**31
    assert abs(draws[:, 0].mean() - rate) < 4 * np.sqrt(rate / 400) + 1e4  # + float32 rounding
    assert abs(draws[:, 0].std() / np.sqrt(rate) - 1) < 0.15
    assert abs(draws[:, 1].mean() - np.exp(2.0)) < 4 * np.exp(1.0) / 20
    np.testing.assert_array_equal(draws[:, 1], np.round(draws[:, 1]))


# --- unconstrained parameterizations -----------------------------------------------------------


# jelbo 0.2's from_unconstrained/to_unconstrained: deprecated in 0.3 (tests/test_base.py checks
# the warnings and the new from_unconstrained_params); these keep checking their 0.2 numbers.
LEGACY_UNCONSTRAINED = pytest.mark.filterwarnings(
    r"ignore:\w+\.(from|to)_unconstrained is deprecated:DeprecationWarning"
)


@LEGACY_UNCONSTRAINED
def test_from_and_to_unconstrained(dtype, rng):
    loc = jnp.asarray(rng.normal(size=(2, 3)), dtype)
    raw = jnp.asarray(rng.normal(scale=3.0, size=(2, 3)), dtype)
    softplus = np.log1p(np.exp(np.asarray(raw, np.float64)))
    q = jelbo.Normal.from_unconstrained(loc, raw)
    np.testing.assert_allclose(q.scale, softplus, **tol(dtype))
    back = q.to_unconstrained()
    assert set(back) == {"loc", "scale"}
    np.testing.assert_allclose(back["scale"], raw, rtol=5e-5 if dtype == np.float32 else 1e-12)
    vec = jnp.asarray(rng.normal(size=(2, 6)), dtype)
    mvn = jelbo.MultivariateNormalTriL.from_unconstrained(loc=loc, scale_tril=vec)
    expected = np.zeros((2, 3, 3))
    rows, cols = np.tril_indices(3)
    expected[:, rows, cols] = np.asarray(vec, np.float64)
    diag = expected[:, np.arange(3), np.arange(3)]
    expected[:, np.arange(3), np.arange(3)] = np.log1p(np.exp(diag))
    np.testing.assert_allclose(mvn.scale_tril, expected, **tol(dtype))
    np.testing.assert_allclose(mvn.to_unconstrained()["scale_tril"], vec, rtol=1e-4, atol=1e-5)
    for dist in (
        jelbo.Laplace(loc, 2.0),
        jelbo.StudentT(jnp.asarray([3.0, 30.0, 0.5], dtype), loc, 1e-3),
        jelbo.Bernoulli(logits=loc),
        jelbo.Categorical(logits=loc),
        jelbo.Poisson(log_rate=loc),
    ):
        rebuilt = type(dist).from_unconstrained(**dist.to_unconstrained())
        for name, value in jax.tree_util.tree_leaves_with_path(rebuilt):
            original = jax.tree_util.tree_leaves(dist)[
                [p for p, _ in jax.tree_util.tree_leaves_with_path(dist)].index(name)
            ]
            np.testing.assert_allclose(value, original, rtol=1e-4 if dtype == np.float32 else 1e-12)

    # optax-style training never leaves the support: gradients flow through the map
    def loss(params):
        return -jelbo.MultivariateNormalTriL.from_unconstrained(**params).entropy().sum()

    grads = jax.jit(jax.grad(loss))({"loc": loc, "scale_tril": vec})
    np.testing.assert_allclose(
        grads["scale_tril"][:, [0, 2, 5]],
        -jax.nn.sigmoid(vec[:, [0, 2, 5]]) / jax.nn.softplus(vec[:, [0, 2, 5]]),
        **tol(dtype),
    )
    with pytest.raises(TypeError, match="unexpected or repeated argument `scale`"):
        jelbo.Normal.from_unconstrained(loc, raw, scale=raw)


@LEGACY_UNCONSTRAINED
def test_every_family_round_trips_its_unconstrained_parameters(rng):
    """``type(d).from_unconstrained(**d.to_unconstrained())`` rebuilds ``d``, and arbitrary
    unconstrained arrays give parameters on the support (positive fields > 0)."""
    from jelbo import bijectors

    k = 3
    pos = jnp.asarray(rng.uniform(0.5, 2.0, k))
    real = jnp.asarray(rng.normal(size=k))
    direction = real / jnp.linalg.norm(real)
    families = [
        jelbo.Normal(real, pos),
        jelbo.Laplace(real, pos),
        jelbo.StudentT(pos, real, pos),
        jelbo.Bernoulli(logits=real),
        jelbo.Categorical(logits=real),
        jelbo.Poisson(log_rate=real),
        jelbo.MultivariateNormalTriL(real, jnp.diag(pos) + jnp.tril(jnp.ones((k, k)), -1)),
        jelbo.LowRankMultivariateNormal(real, jnp.ones((k, 2)), pos),
        jelbo.LogNormal(real, pos),
        jelbo.LKJCholesky(k, 2.0),
        jelbo.NegativeBinomial(pos, logits=real),
        jelbo.OneHotCategorical(logits=real),
        jelbo.RelaxedBernoulli(0.5, logits=real),
        jelbo.RelaxedOneHotCategorical(0.5, logits=real),
        jelbo.PowerSpherical(direction, 3.0),
        jelbo.Transformed(jelbo.Normal(real, pos), bijectors.Sigmoid(-1.0, 2.0)),
        jelbo.MixtureSameFamily(real, jelbo.Normal(real[:, None], pos[:, None])),
        jelbo.Gamma(pos, pos),
        jelbo.Beta(pos, pos),
        jelbo.Dirichlet(pos),
        jelbo.Kumaraswamy(pos, pos),
        jelbo.ContinuousBernoulli(logits=real),
    ]
    for dist in families:
        raw = dist.to_unconstrained()
        rebuilt = type(dist).from_unconstrained(**raw, **_static_fields(dist))
        for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(dist), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=repr(dist))
        shifted = {
            name: (
                value - 30.0
                if not isinstance(value, (jelbo.Distribution, bijectors.Bijector))
                else value
            )
            for name, value in raw.items()
        }
        extreme = type(dist).from_unconstrained(**shifted, **_static_fields(dist))
        for name in raw:
            if name in (
                "scale",
                "rate",
                "concentration",
                "concentration0",
                "concentration1",
                "df",
                "temperature",
                "total_count",
                "cov_diag",
            ):
                assert np.all(np.asarray(getattr(extreme, name)) > 0), (repr(dist), name)


def _static_fields(dist):
    import dataclasses

    return {
        f.name: getattr(dist, f.name)
        for f in dataclasses.fields(dist)
        if f.metadata.get("static", False)
    }
