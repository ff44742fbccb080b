"""Tests of jelbo.compat, the deprecated 0.1 functions jelbo.elbo, jelbo.iwae_bound and
jelbo.renyi_bound (which keep their numbers and warn), and of the gradient estimators they
reach.

The reference model is probabilistic PCA, p(z) = N(0, I), p(x|z) = N(Wz + b, s2 I), where
log p(x) = log N(x; b, WWᵀ + s2 I) and the exact posterior N(m(x), S) are known in closed
form (computed here in NumPy/SciPy, independently of jelbo).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tol
from hypothesis import given, settings
from hypothesis import strategies as st
from support import USES_0_1_BOUNDS, linear, ppca

import jelbo

pytestmark = USES_0_1_BOUNDS

K, D, B = 2, 4, 3


class PPCA:
    """A linear-Gaussian model with NumPy float64 references for its exact quantities."""

    def __init__(self, seed: int = 0, k: int = K, d: int = D, n: int = B):
        r = np.random.default_rng(seed)
        self.W = r.normal(size=(d, k))
        self.b = r.normal(size=d)
        self.s2 = 0.5
        self.x = r.normal(size=(n, d)) * 2.0
        self.k = k

    def log_marginal(self) -> np.ndarray:
        return ppca.log_marginal(self.x, self.W, self.b, self.s2)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact posterior mean (n, k) and covariance (k, k)."""
        return ppca.posterior(self.x, self.W, self.b, self.s2)

    def expected_log_lik(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        """E_q[log p(x|z)] for a diagonal q = N(mean, diag(var)), in closed form."""
        return ppca.exact_elbo(self.x, self.W, self.b, self.s2, mean, var)[1]

    def log_likelihood(self, dtype, W=None):
        W = jnp.asarray(self.W, dtype) if W is None else W
        b, s2 = jnp.asarray(self.b, dtype), jnp.asarray(self.s2, dtype)
        return linear.log_likelihood(W, b, s2)  # the examples' decoder

    def exact_q(self, dtype) -> jelbo.MultivariateNormalTriL:
        mean, cov = self.posterior()
        tril = np.broadcast_to(np.linalg.cholesky(cov), (len(mean), self.k, self.k))
        return jelbo.MultivariateNormalTriL(jnp.asarray(mean, dtype), jnp.asarray(tril, dtype))

    def poor_q(self, dtype, shift: float = 0.7, var: float = 0.3) -> jelbo.Normal:
        mean, _ = self.posterior()
        return jelbo.Normal(
            jnp.asarray(mean + shift, dtype), jnp.full(mean.shape, math.sqrt(var), dtype)
        )

    def data(self, dtype):
        return jnp.asarray(self.x, dtype)

    def problem(self, dtype, q: str):
        """``(q, log_likelihood, prior, data)`` with the exact or a poorer posterior."""
        posterior = self.exact_q(dtype) if q == "exact" else self.poor_q(dtype)
        return posterior, self.log_likelihood(dtype), std_prior(dtype, self.k), self.data(dtype)


def std_prior(dtype, k: int = K) -> jelbo.Normal:
    return jelbo.Normal(jnp.zeros(k, dtype), jnp.ones(k, dtype))


@pytest.fixture
def model():
    return PPCA()


def _keys(n: int, seed: int = 0):
    return jax.random.split(jax.random.key(seed), n)


# --- exactness at the true posterior -------------------------------------------------------


@pytest.mark.parametrize(
    "bound",
    [
        lambda k, q, ll, p, x: jelbo.elbo(k, q, ll, p, x, num_samples=5, kl="mc").elbo,
        lambda k, q, ll, p, x: jelbo.iwae_bound(k, q, ll, p, x, num_samples=5),
        lambda k, q, ll, p, x: jelbo.renyi_bound(k, q, ll, p, x, alpha=0.5, num_samples=5),
        lambda k, q, ll, p, x: jelbo.iwae_bound(
            k, q, ll, p, x, num_samples=5, grad_estimator="dreg"
        ),
    ],
    ids=["elbo-mc", "iwae", "renyi", "iwae-dreg"],
)
def test_bounds_equal_log_marginal_at_exact_posterior(model, dtype, maybe_jit, bound):
    q, ll, prior, x = model.problem(dtype, "exact")
    values = maybe_jit(jax.vmap(lambda k: bound(k, q, ll, prior, x)))(_keys(4))
    assert values.dtype == dtype and values.shape == (4, B)
    expected = np.broadcast_to(model.log_marginal(), (4, B))
    # Every log-weight equals log p(x) exactly in math; in floats it is a sum of O(10) terms.
    np.testing.assert_allclose(
        values, expected, rtol=0, atol=5e-5 if dtype == np.float32 else 1e-10
    )


def test_analytic_elbo_at_exact_posterior_within_mc_error(model):
    q, ll, prior, x = model.problem(np.float64, "exact")
    terms = jax.jit(lambda k: jelbo.elbo(k, q, ll, prior, x, num_samples=20_000))(jax.random.key(1))
    per_sample = jax.jit(jax.vmap(lambda k: jelbo.elbo(k, q, ll, prior, x).elbo))(_keys(2000, 7))
    se = np.std(per_sample, axis=0) / math.sqrt(20_000)
    np.testing.assert_allclose(terms.elbo, model.log_marginal(), atol=5 * se.max())


def test_analytic_elbo_matches_closed_form_for_poor_q(model):
    q = model.poor_q(np.float64)
    ll, prior, x = model.log_likelihood(np.float64), std_prior(np.float64), model.data(np.float64)
    n = 50_000

    @jax.jit  # one program (eagerly, each operation would compile on its own)
    def terms_and_single_draws(key, keys):
        terms = jelbo.elbo(key, q, ll, prior, x, num_samples=n)
        single = jax.vmap(lambda k: jelbo.elbo(k, q, ll, prior, x).expected_log_likelihood)(keys)
        return terms, single

    terms, single = terms_and_single_draws(jax.random.key(3), _keys(4000, 5))
    mean, var = np.asarray(q.loc), np.asarray(q.scale) ** 2
    _, exact_ell, exact_kl = ppca.exact_elbo(model.x, model.W, model.b, model.s2, mean, var)
    se = np.std(single, axis=0) / math.sqrt(n)
    np.testing.assert_allclose(terms.kl, exact_kl, rtol=1e-12)
    np.testing.assert_allclose(terms.expected_log_likelihood, exact_ell, atol=5 * se.max())
    np.testing.assert_allclose(terms.elbo, exact_ell - exact_kl, atol=5 * se.max())


def test_mc_and_analytic_kl_agree_in_expectation(model):
    q, ll, prior, x = model.problem(np.float64, "poor")
    mc, analytic = jax.jit(
        lambda key: (
            jelbo.elbo(key, q, ll, prior, x, num_samples=100_000, kl="mc"),
            jelbo.kl_divergence(q, prior),
        )
    )(jax.random.key(0))
    np.testing.assert_allclose(mc.kl, analytic, atol=0.02)


# --- ordering of the bounds -----------------------------------------------------------------


def test_elbo_le_iwae_le_log_marginal_and_iwae_monotone_in_k(model):
    q, ll, prior, x = model.problem(np.float64, "poor")
    reps = 400
    means, ses = [], []
    for k in (1, 4, 16, 64):
        f = jax.jit(
            jax.vmap(lambda key, k=k: jelbo.iwae_bound(key, q, ll, prior, x, num_samples=k))
        )
        v = f(_keys(reps, k))
        means.append(np.mean(v, axis=0))
        ses.append(np.std(v, axis=0) / math.sqrt(reps))
    means, ses = np.array(means), np.array(ses)
    elbo_exact = model.expected_log_lik(np.asarray(q.loc), np.asarray(q.scale) ** 2) - np.asarray(
        jelbo.kl_divergence(q, prior)
    )
    log_px = model.log_marginal()
    assert np.all(elbo_exact <= means[0] + 4 * ses[0])
    assert np.all(np.diff(means, axis=0) >= -4 * np.hypot(ses[1:], ses[:-1]))
    assert np.all(means[-1] <= log_px + 4 * ses[-1])
    # The gap must really close with K for this q (a test that could fail).
    assert np.all(means[-1] - means[0] > 10 * ses[0])


@jax.jit
def _elbo_draws(loc, log_var, W, b, x, keys):
    q = jelbo.Normal.from_log_var(loc, log_var)
    ll = linear.log_likelihood(W, b, jnp.asarray(0.5, W.dtype))
    draw = lambda k: jelbo.elbo(k, q, ll, std_prior(np.float64), x, num_samples=64).elbo
    return jax.vmap(draw)(keys)


@settings(max_examples=25, deadline=None)
@given(
    shift=st.floats(-2.0, 2.0),
    log_var=st.floats(-3.0, 1.5),
    seed=st.integers(0, 2**16),
)
def test_elbo_never_exceeds_log_marginal(shift, log_var, seed):
    model = PPCA(seed % 7)
    mean, _ = model.posterior()
    assert model.s2 == 0.5
    samples = _elbo_draws(
        mean + shift, np.full(mean.shape, log_var), model.W, model.b, model.x, _keys(64, seed)
    )
    est = np.mean(samples, axis=0)
    se = np.std(samples, axis=0) / 8.0
    assert np.all(est <= model.log_marginal() + 5 * se + 1e-9)


# --- gradient estimators --------------------------------------------------------------------


# Each low-variance estimator (an objective) and the plain estimator of the same bound.
LOW_AND_PLAIN = {
    "stl": (jelbo.ELBO(kl="mc", grad_estimator="stl"), jelbo.ELBO(kl="mc")),
    "dreg": (jelbo.IWAE(1, grad_estimator="dreg"), jelbo.IWAE(1)),
}


def _with_samples(objective, num_samples, ll, prior, x):
    objective = dataclasses.replace(objective, num_samples=num_samples)
    return lambda k, q: objective(k, q, ll, prior, x).value


def _q_grads(bound, q, n_keys=3):
    return jax.jit(jax.vmap(lambda k: jax.grad(lambda q: jnp.sum(bound(k, q)))(q)))(
        _keys(n_keys, 11)
    )


@pytest.mark.parametrize("estimator", ["stl", "dreg"])
def test_low_variance_gradients_vanish_at_exact_posterior(model, dtype, estimator):
    q, ll, prior, x = model.problem(dtype, "exact")

    low, plain = (_q_grads(_with_samples(o, 4, ll, prior, x), q) for o in LOW_AND_PLAIN[estimator])
    atol = 1e-4 if dtype == np.float32 else 1e-10
    for leaf in jax.tree_util.tree_leaves(low):
        np.testing.assert_allclose(leaf, 0.0, atol=atol)
    # The plain estimator is not zero there: the test above can fail.
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(plain)) > 1e-2


@pytest.mark.parametrize("estimator", ["stl", "dreg"])
def test_low_variance_gradients_are_unbiased(model, estimator):
    q, ll, prior, x = model.problem(np.float64, "poor")

    n, s = 20_000, 2 if estimator == "stl" else 4
    low, plain = (
        _q_grads(_with_samples(o, s, ll, prior, x), q, n) for o in LOW_AND_PLAIN[estimator]
    )
    for a, b in zip(jax.tree_util.tree_leaves(low), jax.tree_util.tree_leaves(plain), strict=True):
        se = np.hypot(np.std(a, 0), np.std(b, 0)) / math.sqrt(n)
        np.testing.assert_array_less(np.abs(np.mean(a, 0) - np.mean(b, 0)), 5 * se + 1e-12)
        # ... and they do reduce the variance here.
        assert np.sum(np.var(a, 0)) < np.sum(np.var(b, 0))


def test_dreg_model_gradient_equals_iwae_gradient(model):
    q, prior, x = model.poor_q(np.float64), std_prior(np.float64), model.data(np.float64)
    key = jax.random.key(4)

    def bound(W, grad_estimator):
        ll = model.log_likelihood(np.float64, W=W)
        return jnp.sum(
            jelbo.iwae_bound(key, q, ll, prior, x, num_samples=6, grad_estimator=grad_estimator)
        )

    @jax.jit  # one program (eagerly, each operation would compile on its own)
    def values_and_grads(W):
        return [jax.value_and_grad(bound)(W, estimator) for estimator in ("dreg", "reparam")]

    (dreg, dreg_grad), (reparam, reparam_grad) = values_and_grads(jnp.asarray(model.W))
    np.testing.assert_allclose(dreg_grad, reparam_grad, rtol=1e-10)
    np.testing.assert_allclose(dreg, reparam, rtol=1e-12)


# --- sampling layout, chunking, batching ----------------------------------------------------


@functools.cache
def _chunked_value_and_grad(objective, chunk):
    """Value and gradient (with respect to the poor q) of the sum of every field of
    ``objective``'s bound with ``sample_chunk_size=chunk``, on the PPCA model."""
    model = PPCA()
    ll, prior, x = model.log_likelihood(np.float64), std_prior(np.float64), model.data(np.float64)
    key = jax.random.key(2)

    def total(q):
        bound = dataclasses.replace(objective, sample_chunk_size=chunk)(key, q, ll, prior, x)
        return jnp.sum(jnp.asarray(jax.tree_util.tree_leaves(bound)))

    return jax.jit(jax.value_and_grad(total))(model.poor_q(np.float64))


@pytest.mark.parametrize(
    "objective",
    [
        jelbo.ELBO(7),
        jelbo.ELBO(7, kl="mc", grad_estimator="stl"),
        jelbo.IWAE(7),
        jelbo.IWAE(7, grad_estimator="dreg"),
        jelbo.Renyi(0.3, 7),
    ],
    ids=["elbo", "elbo-stl", "iwae", "iwae-dreg", "renyi"],
)
@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked_values_and_gradients(objective, chunk):
    v_ref, g_ref = _chunked_value_and_grad(objective, None)  # compiled once per objective
    v, g = _chunked_value_and_grad(objective, chunk)
    np.testing.assert_allclose(v, v_ref, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_batch_axes_and_data_pytree_match_a_python_loop(dtype):
    """A (2, 3) batch of posteriors with dict data, against an explicit loop over the draws."""
    r = np.random.default_rng(5)
    batch, k, d, s = (2, 3), 2, 3, 4
    q = jelbo.Normal(
        jnp.asarray(r.normal(size=batch + (k,)), dtype),
        jnp.asarray(r.uniform(0.5, 2, batch + (k,)), dtype),
    )
    prior = std_prior(dtype, k)
    data = {
        "x": jnp.asarray(r.normal(size=batch + (d,)), dtype),
        "w": jnp.asarray(r.uniform(size=batch), dtype),
    }
    A = jnp.asarray(r.normal(size=(d, k)), dtype)
    ll = lambda z, xs: xs["w"] * jnp.sum(jnp.sin(A @ z) * xs["x"]) + jnp.sum(z**3)
    key = jax.random.key(9)

    @jax.jit  # one program (eagerly, each operation would compile on its own)
    def bound_and_draws(key):
        got = jelbo.elbo(key, q, ll, prior, data, num_samples=s, kl="mc")
        keys = jax.random.split(key, s)
        return got, [jelbo.sample(keys[j], q) for j in range(s)]

    got, draws = bound_and_draws(key)
    assert got.elbo.shape == batch and got.elbo.dtype == dtype

    ll_one = jax.jit(ll)
    log_q_one = jax.jit(
        lambda loc, scale, z: jelbo.log_prob(jelbo.Normal(loc, scale), z) - jelbo.log_prob(prior, z)
    )
    expected_ll = np.zeros(batch)
    expected_kl = np.zeros(batch)
    for i in np.ndindex(*batch):
        for z in draws:
            point = {name: v[i] for name, v in data.items()}
            expected_ll[i] += float(ll_one(z[i], point)) / s
            expected_kl[i] += float(log_q_one(q.loc[i], q.scale[i], z[i])) / s
    np.testing.assert_allclose(got.expected_log_likelihood, expected_ll, **tol(dtype))
    np.testing.assert_allclose(got.kl, expected_kl, **tol(dtype))


def test_data_none_uses_log_likelihood_of_z_only(dtype):
    q = jelbo.Normal(jnp.ones((3, 2), dtype), jnp.full((3, 2), 0.5, dtype))
    prior = std_prior(dtype)
    terms = jax.jit(
        lambda key: jelbo.elbo(key, q, lambda z: -jnp.sum(z**2), prior, num_samples=50_000)
    )(jax.random.key(0))
    # E_q[-|z|²] = -Σ(μ² + σ²) = -2.5 per datapoint.
    np.testing.assert_allclose(terms.expected_log_likelihood, -2.5, atol=0.02)


def test_every_datapoint_and_sample_gets_its_own_noise():
    q = jelbo.Normal(jnp.zeros((4, 1)), jnp.ones((4, 1)))
    values = jax.jit(
        lambda key: jelbo.elbo(key, q, lambda z: z[0], std_prior(np.float64, 1), num_samples=1)
    )(jax.random.key(0))
    assert len(np.unique(np.asarray(values.expected_log_likelihood))) == 4


def test_one_prior_per_datapoint_broadcasts(model):
    q, ll, x = model.poor_q(np.float64), model.log_likelihood(np.float64), model.data(np.float64)
    priors = jelbo.Normal(jnp.zeros((B, K)), jnp.ones((B, K)))
    a, b = jax.jit(
        lambda key: [
            jelbo.elbo(key, q, ll, p, x, num_samples=3) for p in (priors, std_prior(np.float64))
        ]
    )(jax.random.key(0))
    np.testing.assert_allclose(a.elbo, b.elbo, rtol=1e-14)


# --- Renyi and beta -------------------------------------------------------------------------


def test_renyi_limits_are_iwae_and_mc_elbo(model, dtype):
    q, ll, prior, x = model.problem(dtype, "poor")

    @jax.jit  # one program (eagerly, each operation would compile on its own)
    def bounds(key):
        iwae = jelbo.iwae_bound(key, q, ll, prior, x, num_samples=8)
        elbo_mc = jelbo.elbo(key, q, ll, prior, x, num_samples=8, kl="mc").elbo
        renyi = [
            jelbo.renyi_bound(key, q, ll, prior, x, alpha=alpha, num_samples=8)
            for alpha in (0.0, 1.0, 1.0 + 1e-6)
        ]
        return iwae, elbo_mc, renyi

    iwae, elbo_mc, (renyi0, renyi1, near_one) = bounds(jax.random.key(6))
    np.testing.assert_allclose(renyi0, iwae, **tol(dtype))
    np.testing.assert_allclose(renyi1, elbo_mc, **tol(dtype))
    if dtype == np.float64:
        np.testing.assert_allclose(near_one, elbo_mc, rtol=1e-4)


def test_renyi_bound_decreases_in_alpha_for_fixed_samples(model):
    q, ll, prior, x = model.problem(np.float64, "poor")
    values = jax.jit(
        lambda key: [
            jelbo.renyi_bound(key, q, ll, prior, x, alpha=a, num_samples=16)
            for a in (0.0, 0.25, 0.5, 1.0, 2.0, 5.0)
        ]
    )(jax.random.key(0))
    assert np.all(np.diff(np.stack(values), axis=0) <= 1e-12)
    assert np.all(values[0] - values[-1] > 0.1)


def test_beta_weights_the_kl_and_may_be_traced(model):
    q, ll, prior, x = model.problem(np.float64, "poor")
    f = jax.jit(
        lambda beta: jelbo.elbo(jax.random.key(0), q, ll, prior, x, num_samples=2, beta=beta)
    )
    t = f(0.25)
    np.testing.assert_allclose(t.elbo, t.expected_log_likelihood - 0.25 * t.kl, rtol=1e-14)
    np.testing.assert_allclose(
        jax.grad(lambda b: jnp.sum(f(b).elbo))(0.25), -np.sum(t.kl), rtol=1e-12
    )


# --- transforms, dtypes, numerics -----------------------------------------------------------


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_jit_vmap_and_eager_agree(model, dtype, kl):
    q, ll, prior, x = model.problem(dtype, "poor")
    f = lambda k: jelbo.elbo(k, q, ll, prior, x, num_samples=3, kl=kl)
    keys = _keys(2, 1)
    eager = f(keys[1])
    jitted = jax.jit(f)(keys[1])
    mapped = jax.jit(jax.vmap(f))(keys)
    for a, b, c in zip(eager, jitted, mapped, strict=True):
        assert a.dtype == b.dtype == c.dtype == dtype
        np.testing.assert_allclose(a, b, **tol(dtype))
        np.testing.assert_allclose(c[1], a, **tol(dtype))


def test_vmap_over_datapoints_of_unbatched_q(model):
    """Users may also vmap jelbo over their own batch of single posteriors."""
    q, ll, prior, x = model.problem(np.float64, "poor")
    f = lambda k, loc, scale, xi: (
        jelbo.elbo(k, jelbo.Normal(loc, scale), ll, prior, xi, num_samples=3).elbo
    )
    keys = _keys(B, 3)
    got = jax.jit(jax.vmap(f))(keys, q.loc, q.scale, x)
    loop = [jax.jit(f)(keys[i], q.loc[i], q.scale[i], x[i]) for i in range(B)]
    np.testing.assert_allclose(got, np.array(loop), rtol=1e-12)


@pytest.mark.parametrize("log_var", [-30.0, 30.0])
@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_finite_values_and_gradients_at_extreme_log_variance_f32(log_var, kl):
    ll = lambda z, x: -0.5 * jnp.sum((x - z) ** 2)
    x = jnp.ones((2, 3), jnp.float32)

    def loss(loc, lv):
        q = jelbo.Normal.from_log_var(loc, lv)
        return jnp.sum(
            jelbo.elbo(
                jax.random.key(0), q, ll, std_prior(np.float32, 3), x, num_samples=2, kl=kl
            ).elbo
        )

    loc, lv = jnp.zeros((2, 3), jnp.float32), jnp.full((2, 3), log_var, jnp.float32)
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(loc, lv)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


# --- bad input ------------------------------------------------------------------------------


def _args(dtype=np.float64):
    m = PPCA()
    return (
        jax.random.key(0),
        m.poor_q(dtype),
        m.log_likelihood(dtype),
        std_prior(dtype),
        m.data(dtype),
    )


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            {"prior": jelbo.Normal(jnp.zeros(3), jnp.ones(3))},
            ValueError,
            r"event shape \(2,\).*event shape \(3,\)",
        ),
        (
            {"prior": jelbo.Normal(jnp.zeros((5, 2)), jnp.ones((5, 2)))},
            ValueError,
            r"prior.*\(5,\).*\(3,\)",
        ),
        ({"data": jnp.zeros((4, D))}, ValueError, r"data.*\(4, 4\).*\(3,\)"),
        ({"key": 0}, TypeError, "key"),
        ({"key": jnp.zeros(3)}, TypeError, r"key.*float"),
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_samples": 2.0}, TypeError, "num_samples"),
        ({"num_samples": True}, TypeError, "num_samples"),
        ({"kl": "exact"}, ValueError, "kl"),
        ({"grad_estimator": "magic"}, ValueError, "grad_estimator"),
        ({"kl": "analytic", "grad_estimator": "stl"}, ValueError, "stl"),
        ({"sample_chunk_size": 0}, ValueError, "sample_chunk_size"),
        ({"log_likelihood": lambda z, x: x - z.sum()}, ValueError, r"scalar.*\(4,\)"),
        ({"log_likelihood": "not a function"}, TypeError, "log_likelihood"),
    ],
)
def test_elbo_bad_input_raises_at_trace_time(change, error, match):
    key, q, ll, prior, x = _args()
    kwargs = {"key": key, "q": q, "log_likelihood": ll, "prior": prior, "data": x, "num_samples": 2}
    kwargs.update(change)
    with pytest.raises(error, match=match):
        jax.jit(lambda: jelbo.elbo(**kwargs)).lower()


def test_unknown_analytic_kl_pair_points_to_mc():
    key, _, _, _, x = _args()
    q = jelbo.StudentT(4.0, jnp.zeros((B, K)), jnp.ones((B, K)))
    prior = jelbo.StudentT(3.0, jnp.zeros(K), jnp.ones(K))
    ll = lambda z, x: -jnp.sum(z**2)
    with pytest.raises(NotImplementedError, match=r"StudentT.*register_kl.*kl='mc'"):
        jax.eval_shape(lambda key: jelbo.elbo(key, q, ll, prior, x), key)  # at trace time
    assert jax.jit(lambda key: jelbo.elbo(key, q, ll, prior, x, kl="mc"))(key).elbo.shape == (B,)


def test_non_reparameterizable_q_is_rejected_for_pathwise_estimators():
    key, _, _, _, x = _args()
    q = jelbo.Bernoulli(logits=jnp.zeros((B, K)))
    prior = jelbo.Bernoulli(logits=jnp.zeros(K))
    with pytest.raises(ValueError, match="Bernoulli"):
        jelbo.elbo(key, q, lambda z, x: -jnp.sum(z), prior, x)
    with pytest.raises(ValueError, match="Bernoulli"):
        jelbo.iwae_bound(
            key, q, lambda z, x: -jnp.sum(z), prior, x, num_samples=2, grad_estimator="dreg"
        )


@pytest.mark.parametrize(
    ("alpha", "error"),
    [(-0.5, ValueError), (math.inf, ValueError), (math.nan, ValueError), ("1", TypeError)],
)
def test_renyi_alpha_out_of_range(alpha, error):
    key, q, ll, prior, x = _args()
    with pytest.raises(error, match="alpha"):
        jelbo.renyi_bound(key, q, ll, prior, x, alpha=alpha, num_samples=2)


def test_iwae_requires_num_samples_and_known_estimator():
    key, q, ll, prior, x = _args()
    with pytest.raises(ValueError, match="grad_estimator"):
        jelbo.iwae_bound(key, q, ll, prior, x, num_samples=2, grad_estimator="stl")
    with pytest.raises(TypeError):
        jelbo.iwae_bound(key, q, ll, prior, x)  # num_samples is required


@pytest.mark.filterwarnings("error")
def test_the_0_1_functions_warn_and_name_the_replacement():
    key, q = jax.random.key(0), jelbo.Normal(jnp.zeros(2), 1.0)
    ll, prior = (lambda z: -jnp.sum(z**2)), jelbo.Normal(jnp.zeros(2), 2.0)
    calls = {
        "jelbo.ELBO": lambda: jelbo.elbo(key, q, ll, prior, num_samples=2),
        "jelbo.IWAE": lambda: jelbo.iwae_bound(key, q, ll, prior, num_samples=2),
        "jelbo.Renyi": lambda: jelbo.renyi_bound(key, q, ll, prior, alpha=0.5, num_samples=2),
    }
    for instead, call in calls.items():
        with pytest.warns(DeprecationWarning, match=f"deprecated since jelbo 0.3.*{instead}"):
            out = call()
        assert np.all(np.isfinite(jax.tree_util.tree_leaves(out)))
    # ...and the same numbers as the objectives
    with pytest.warns(DeprecationWarning):
        terms = jelbo.elbo(key, q, ll, prior, num_samples=2)
    bound = jelbo.ELBO(num_samples=2)(key, q, ll, prior)
    assert isinstance(terms, jelbo.compat.ELBOTerms)
    np.testing.assert_array_equal(terms.elbo, bound.value)
    np.testing.assert_array_equal(terms.kl, bound.kl)
