"""Tests of jelbo.relaxed: the binary and categorical Concrete (Gumbel-softmax) families.

References are independent: the log-densities are Maddison et al.'s product formulas
evaluated in mpmath at 30 digits directly in ``x`` (the library works in logit space), the
normalization is checked by quadrature, the samplers by a KS test against the closed-form
CDF of the binary Concrete, :math:`P(X \\le x) = \\sigma(\\lambda\\,\\mathrm{logit}(x) - a)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from conftest import tol

import jelbo

mpmath.mp.dps = 30
N_SIGMA = 5  # Monte Carlo tolerance, in standard errors


def concrete_binary_ref(temperature, logit, x):
    """log p(x), Maddison et al. (2017) eq. 21, in mpmath."""
    lam, alpha = mpmath.mpf(float(temperature)), mpmath.exp(mpmath.mpf(float(logit)))
    x = mpmath.mpf(float(x))
    num = lam * alpha * x ** (-lam - 1) * (1 - x) ** (-lam - 1)
    den = (alpha * x ** (-lam) + (1 - x) ** (-lam)) ** 2
    return float(mpmath.log(num / den))


def concrete_ref(temperature, logits, x):
    """log p(x) on the simplex, Maddison et al. (2017) eq. 3, in mpmath."""
    lam = mpmath.mpf(float(temperature))
    alphas = [mpmath.exp(mpmath.mpf(float(a))) for a in logits]
    xs = [mpmath.mpf(float(v)) for v in x]
    n = len(xs)
    den = sum(a * v ** (-lam) for a, v in zip(alphas, xs, strict=True))
    out = mpmath.factorial(n - 1) * lam ** (n - 1)
    for a, v in zip(alphas, xs, strict=True):
        out *= a * v ** (-lam - 1) / den
    return float(mpmath.log(out))


# --- RelaxedBernoulli ----------------------------------------------------------------------


def test_relaxed_bernoulli_log_prob_matches_mpmath(dtype, maybe_jit, rng):
    temperature = np.array([[0.3], [2.0]], dtype)  # broadcasts against logits (2, 4)
    logits = rng.normal(0, 3, (2, 4)).astype(dtype)
    x = rng.uniform(0.02, 0.98, (2, 4)).astype(dtype)
    dist = jelbo.RelaxedBernoulli(temperature, logits=logits)
    out = maybe_jit(jelbo.log_prob)(dist, x)
    assert out.shape == (2,) and out.dtype == dtype
    ref = [
        sum(concrete_binary_ref(temperature[i, 0], logits[i, k], x[i, k]) for k in range(4))
        for i in range(2)
    ]
    np.testing.assert_allclose(out, ref, rtol=1e-10 if dtype == np.float64 else 3e-6)


def test_relaxed_bernoulli_extremes():
    # Saturated logits and tiny temperatures: finite values and gradients in (0, 1); the
    # boundary values are clamped like the samples; outside [0, 1] the density is 0.
    logits = jnp.array([[-60.0], [60.0], [0.0], [5.0]])
    x = jnp.array([[1e-30], [1.0 - 1e-12], [0.0], [1.0]])
    log_prob = jax.jit(lambda a, t: jelbo.RelaxedBernoulli(t, logits=a).log_prob(x))
    out = log_prob(logits, 0.05)
    assert out.shape == (4,) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], concrete_binary_ref(0.05, -60.0, 1e-30), rtol=1e-12)
    grads = jax.jit(jax.grad(lambda a, t: jnp.sum(log_prob(a, t)), (0, 1)))(logits, 0.05)
    assert all(np.all(np.isfinite(g)) for g in grads)
    outside = jelbo.RelaxedBernoulli(1.0, logits=jnp.zeros(2)).log_prob(jnp.array([-0.1, 1.5]))
    assert outside == -np.inf


@pytest.mark.parametrize("temperature,logit", [(0.6, 1.5), (1.0, -2.0), (3.0, 0.5)])
def test_relaxed_bernoulli_integrates_to_one(temperature, logit):
    log_prob = jax.jit(jelbo.RelaxedBernoulli(temperature, logits=jnp.array([logit])).log_prob)

    # In logit space y, p(x) dx = p(x(y)) x (1 - x) dy: bounded, smooth integrand. (At
    # lower temperatures much of the mass lies at |y| > 37, where x rounds to 0 or 1 in
    # float64: the mpmath comparisons cover the density there.)
    def integrand(y):
        x = scipy.special.expit(y)
        return np.exp(float(log_prob(jnp.array([x]))) + np.log(x) + np.log1p(-x))

    # y = (a + L)/λ with L logistic: all but e^-40 of the mass lies in (a ± 40)/λ.
    low, high = (logit - 40) / temperature, (logit + 40) / temperature
    total, err = scipy.integrate.quad(integrand, low, high, points=[logit / temperature], limit=200)
    assert abs(total - 1.0) < 1e-8 and err < 1e-8


def test_relaxed_bernoulli_samples_pass_ks_test(dtype):
    temperature, logit = 0.6, -0.8
    dist = jelbo.RelaxedBernoulli(temperature, logits=jnp.array([logit], dtype))
    x = np.asarray(jax.jit(lambda k: dist.sample(k, (20_000,)))(jax.random.key(1)))[:, 0]
    assert x.dtype == dtype and np.all((x > 0) & (x < 1))
    cdf = lambda v: scipy.special.expit(temperature * scipy.special.logit(v) - logit)
    assert scipy.stats.kstest(x.astype(np.float64), cdf).pvalue > 1e-3


def test_relaxed_bernoulli_zero_temperature_limit():
    # P(x > 1/2) = sigmoid(a) at any temperature; at λ -> 0 the mass sits at 0 and 1.
    logits = jnp.array([-1.0, 0.3, 2.0])
    n = 20_000
    x = jelbo.RelaxedBernoulli(0.002, logits=logits).sample(jax.random.key(2), (n,))
    p = scipy.special.expit(np.asarray(logits))
    se = np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_less(np.abs(np.mean(x > 0.5, axis=0) - p), N_SIGMA * se)
    assert np.mean(np.minimum(x, 1 - x) < 1e-3) > 0.98


def test_relaxed_bernoulli_reparameterized_gradient():
    # d/da E[x] is finite and positive; E[x] by quadrature at the same point agrees.
    def mean_x(a, key):
        return jnp.mean(jelbo.RelaxedBernoulli(0.5, logits=a).sample(key, (50_000,)))

    a = jnp.array([0.4])
    g = jax.grad(mean_x)(a, jax.random.key(3))
    # Exact d/da E[x] by quadrature over the logistic noise: x = σ((a + L)/λ).
    f = lambda ell, da: scipy.special.expit((0.4 + da + ell) / 0.5) * scipy.stats.logistic.pdf(ell)
    h = 1e-5
    exact = (
        scipy.integrate.quad(f, -40, 40, args=(h,))[0]
        - scipy.integrate.quad(f, -40, 40, args=(-h,))[0]
    ) / (2 * h)
    assert jelbo.RelaxedBernoulli.is_reparameterized
    np.testing.assert_allclose(g[0], exact, rtol=2e-2)


# --- RelaxedOneHotCategorical --------------------------------------------------------------


def test_relaxed_one_hot_log_prob_matches_mpmath(dtype, maybe_jit, rng):
    temperature = np.array([0.5, 1.7], dtype)  # one per batch element
    logits = rng.normal(0, 2, (2, 4)).astype(dtype)
    x = rng.dirichlet(np.ones(4), 2).astype(dtype)
    dist = jelbo.RelaxedOneHotCategorical(temperature, logits=logits)
    assert dist.batch_shape == (2,) and dist.event_shape == (4,)
    out = maybe_jit(jelbo.log_prob)(dist, x)
    assert out.shape == (2,) and out.dtype == dtype
    ref = [concrete_ref(temperature[i], logits[i], x[i]) for i in range(2)]
    np.testing.assert_allclose(out, ref, rtol=1e-10 if dtype == np.float64 else 5e-6)


def test_relaxed_one_hot_with_two_categories_is_the_binary_concrete(rng):
    # The first coordinate of a 2-category Concrete is a binary Concrete with a = a1 - a2:
    # the same density (w.r.t. the first coordinate) and the same sampling distribution.
    logits = jnp.array([0.9, -0.4])
    cat = jelbo.RelaxedOneHotCategorical(0.8, logits=logits)
    binary = jelbo.RelaxedBernoulli(0.8, logits=logits[:1] - logits[1:])
    x = jnp.asarray(rng.uniform(0.01, 0.99, (5, 1)))
    np.testing.assert_allclose(
        cat.log_prob(jnp.concatenate([x, 1 - x], -1)), binary.log_prob(x), rtol=1e-12
    )
    draws = np.asarray(jax.jit(lambda k: cat.sample(k, (20_000,)))(jax.random.key(4)))[:, 0]
    cdf = lambda v: scipy.special.expit(0.8 * scipy.special.logit(v) - 1.3)
    assert scipy.stats.kstest(draws, cdf).pvalue > 1e-3


@pytest.mark.parametrize("temperature", [0.8, 2.0])
def test_relaxed_one_hot_integrates_to_one_on_the_3_simplex(temperature):
    dist = jelbo.RelaxedOneHotCategorical(temperature, logits=jnp.array([0.5, -1.0, 0.2]))
    log_prob = jax.jit(jax.vmap(dist.log_prob))

    # Gauss–Legendre on the triangle via the Duffy map x1 = u, x2 = (1 - u) v.
    nodes, weights = np.polynomial.legendre.leggauss(200)
    t, w = (nodes + 1) / 2, weights / 2
    u, v = np.meshgrid(t, t, indexing="ij")
    x1, x2 = u, (1 - u) * v
    x = np.stack([x1, x2, 1 - x1 - x2], -1).reshape(-1, 3)
    dens = np.exp(np.asarray(log_prob(jnp.asarray(x)))).reshape(u.shape)
    total = np.sum(w[:, None] * w[None, :] * dens * (1 - u))
    assert abs(total - 1.0) < 1e-3


def test_relaxed_one_hot_zero_temperature_and_argmax_frequencies():
    logits = jnp.array([1.0, 0.0, -0.5, -2.0])
    p = np.asarray(jax.nn.softmax(logits))
    n = 20_000
    x = np.asarray(
        jelbo.RelaxedOneHotCategorical(0.002, logits=logits).sample(jax.random.key(5), (n,))
    )
    freq = np.bincount(np.argmax(x, -1), minlength=4) / n
    np.testing.assert_array_less(np.abs(freq - p), N_SIGMA * np.sqrt(p * (1 - p) / n))
    assert np.mean(np.max(x, -1) > 1 - 1e-3) > 0.98
    np.testing.assert_allclose(np.sum(x, -1), 1.0, rtol=1e-12)


def test_straight_through_is_the_hard_one_hot_with_the_relaxed_gradient(dtype):
    logits = jnp.array([[0.3, -0.2, 1.1], [0.0, 0.5, -1.0]], dtype)
    temperature = jnp.asarray(0.7, dtype)
    w = jnp.array([1.0, -2.0, 0.5], dtype)
    key = jax.random.key(6)

    @functools.partial(jax.jit, static_argnums=1)
    def f(a, straight_through):
        dist = jelbo.RelaxedOneHotCategorical(
            temperature, logits=a, straight_through=straight_through
        )
        z = dist.sample(key, (3,))
        return jnp.sum(z * w), z

    _, hard = f(logits, True)
    _, relaxed = f(logits, False)
    expected = jax.nn.one_hot(jnp.argmax(relaxed, -1), 3, dtype=dtype)
    np.testing.assert_array_equal(hard, expected)
    assert hard.dtype == dtype
    g_st = jax.grad(lambda a: f(a, True)[0])(logits)
    g_relaxed = jax.grad(lambda a: f(a, False)[0])(logits)
    assert np.all(g_relaxed != 0)
    np.testing.assert_allclose(g_st, g_relaxed, **tol(dtype))
    # The flag is static aux data: one leaf per parameter, and it survives jit.
    dist = jelbo.RelaxedOneHotCategorical(temperature, logits=logits, straight_through=True)
    assert len(jax.tree_util.tree_leaves(dist)) == 2
    assert jax.jit(lambda d: d)(dist).straight_through is True
    with pytest.raises(TypeError, match="straight_through"):
        jelbo.RelaxedOneHotCategorical(temperature, logits=logits, straight_through=1)


def test_relaxed_one_hot_low_temperature_gradients_are_finite():
    logits = jnp.array([30.0, -30.0, 0.0])

    def loss(a, t):
        dist = jelbo.RelaxedOneHotCategorical(t, logits=a)
        z = dist.sample(jax.random.key(7), (64,))
        return jnp.mean(dist.log_prob(z)) + jnp.mean(z[:, 0])

    value, grads = jax.jit(jax.value_and_grad(loss, (0, 1)))(logits, 0.05)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_relaxed_shape_errors():
    with pytest.raises(ValueError, match="temperature"):
        jelbo.RelaxedOneHotCategorical(jnp.ones(3), logits=jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="temperature"):
        jelbo.RelaxedBernoulli(jnp.ones(3), logits=jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="categories"):
        jelbo.RelaxedOneHotCategorical(1.0, logits=jnp.asarray(0.0))


# --- keyword parameterizations --------------------------------------------------------------


def test_probs_are_the_logits_they_stand_for(dtype):
    p = jnp.asarray([0.1, 0.5, 0.97], dtype)
    x = jnp.asarray([0.3, 0.6, 0.999], dtype)
    by_probs = jelbo.RelaxedBernoulli(0.4, probs=p)
    by_logits = jelbo.RelaxedBernoulli(0.4, logits=jnp.log(p) - jnp.log1p(-p))
    np.testing.assert_allclose(by_probs.log_prob(x), by_logits.log_prob(x), **tol(dtype))
    np.testing.assert_array_equal(by_probs.probs, p)
    simplex = jnp.asarray([[0.2, 0.3, 0.5]], dtype)
    y = jnp.asarray([[0.1, 0.6, 0.3]], dtype)
    cat_p = jelbo.RelaxedOneHotCategorical(0.7, probs=simplex)
    cat_l = jelbo.RelaxedOneHotCategorical(0.7, logits=jnp.log(simplex))
    np.testing.assert_allclose(cat_p.log_prob(y), cat_l.log_prob(y), **tol(dtype))
    np.testing.assert_allclose(cat_l.probs, simplex, **tol(dtype))
    np.testing.assert_array_equal(cat_p.sample(jax.random.key(0)), cat_l.sample(jax.random.key(0)))
    # the gradient with respect to probs is the chain rule through log p
    g = jax.grad(lambda p: jelbo.RelaxedOneHotCategorical(0.7, probs=p).log_prob(y).sum())(simplex)
    g_logits = jax.grad(lambda a: jelbo.RelaxedOneHotCategorical(0.7, logits=a).log_prob(y).sum())(
        jnp.log(simplex)
    )
    np.testing.assert_allclose(g, g_logits / simplex, **tol(dtype))


# --- a straight-through q: refused where log q at its own samples is needed -------------------

C = 5
ST_LOGITS = jnp.asarray([0.8, -0.3, 0.1, 1.2, -1.0])


def _straight_through(batch=()):
    logits = jnp.broadcast_to(ST_LOGITS, (*batch, C))
    return jelbo.RelaxedOneHotCategorical(0.5, logits=logits, straight_through=True)


def _log_lik(z):
    return -jnp.sum((z - 0.2) ** 2)


@pytest.mark.parametrize(
    "objective",
    [
        jelbo.ELBO(num_samples=2, kl="mc"),
        jelbo.ELBO(num_samples=2, kl="mc", grad_estimator="stl"),
        jelbo.ELBO(num_samples=2, grad_estimator="score"),
        jelbo.IWAE(num_samples=2),
        jelbo.IWAE(num_samples=2, grad_estimator="vimco"),
        jelbo.Renyi(0.5, num_samples=2),
    ],
    ids=["elbo-mc", "stl", "score", "iwae", "vimco", "renyi"],
)
def test_straight_through_q_is_refused_by_estimators_of_log_q_at_its_samples(objective):
    prior = jelbo.OneHotCategorical(logits=jnp.zeros(C))
    pairs = [
        (_straight_through(), prior),
        (
            jelbo.Independent(_straight_through((2,)), 1),
            jelbo.Independent(jelbo.OneHotCategorical(logits=jnp.zeros((2, C))), 1),
        ),
    ]
    for q, p in pairs:
        with pytest.raises(
            ValueError, match=r"straight-through.*kl='analytic' with a OneHotCategorical"
        ):
            objective(jax.random.key(0), q, _log_lik, p)
    with pytest.raises(ValueError, match="straight-through"):
        jelbo.mc_kl(jax.random.key(0), _straight_through(), prior, num_samples=4)
    with pytest.raises(ValueError, match="straight-through"):
        jelbo.sample_and_log_prob(jax.random.key(0), _straight_through())


def test_straight_through_kl_is_the_categorical_kl_of_its_one_hot_samples():
    q = _straight_through()
    p = jelbo.OneHotCategorical(logits=jnp.asarray([0.0, 0.5, -0.5, 0.0, 0.2]))
    kl = jelbo.kl_divergence(q, p)
    expected = jelbo.kl_divergence(jelbo.OneHotCategorical(logits=ST_LOGITS), p)
    np.testing.assert_allclose(kl, expected, rtol=1e-14)
    # It estimates a KL: the law of the hard samples is OneHotCategorical(q.logits), so the
    # categorical log-mass ratio averaged over them converges to it (5 standard errors).
    n = 40000
    hard = q.sample(jax.random.key(3), (n,))
    np.testing.assert_array_equal(jnp.sum(hard, -1), 1.0)
    ratio = jelbo.OneHotCategorical(logits=ST_LOGITS).log_prob(hard) - p.log_prob(hard)
    assert abs(float(ratio.mean()) - float(kl)) < 5 * float(ratio.std()) / np.sqrt(n)
    # 0.2's "KL" (the relaxed density at the hard samples) estimated something else entirely
    relaxed_p = jelbo.RelaxedOneHotCategorical(0.5, logits=p.logits)
    mixed = q.log_prob(hard) - relaxed_p.log_prob(hard)
    assert abs(float(mixed.mean()) - float(kl)) > 0.5
    # and a straight-through prior: the same one-hot law
    st_prior = jelbo.RelaxedOneHotCategorical(0.5, logits=p.logits, straight_through=True)
    np.testing.assert_allclose(jelbo.kl_divergence(q, st_prior), expected, rtol=1e-14)
    # in the ELBO with kl="analytic": the discrete model's bound, the straight-through gradient
    bound, grad = jax.value_and_grad(
        lambda a: (
            jelbo.ELBO(num_samples=4)(
                jax.random.key(0),
                jelbo.RelaxedOneHotCategorical(0.5, logits=a, straight_through=True),
                _log_lik,
                p,
            ).value
        )
    )(ST_LOGITS)
    assert np.isfinite(bound) and np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_relaxed_samples_have_no_closed_form_kl():
    relaxed = jelbo.RelaxedOneHotCategorical(0.5, logits=ST_LOGITS)
    for p in (jelbo.OneHotCategorical(logits=ST_LOGITS), relaxed):
        with pytest.raises(NotImplementedError, match="use kl='mc'"):
            jelbo.kl_divergence(relaxed, p)
    with pytest.raises(NotImplementedError, match="straight-through prior"):
        jelbo.kl_divergence(_straight_through(), relaxed)
