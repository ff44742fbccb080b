"""Tests of jelbo.score: elbo(grad_estimator="score") and iwae_bound(grad_estimator="vimco").

The reference models have discrete latents small enough to enumerate: three binary latents
(8 configurations) or one 4-way categorical, with a Gaussian likelihood
x | z ~ N(W emb(z) + b, I) and a learned prior. The exact ELBO, the exact expected IWAE_K
bound (a sum over all joint configurations of the K samples) and their gradients (jax.grad
of the enumeration) are computed here from log_sigmoid/log_softmax, independently of
jelbo's sampling and log_prob.

Monte Carlo tolerance: the mean of N gradient draws must match the exact gradient within
5 standard errors in every coordinate (each draw is one jax.grad of the surrogate on its own
key; draws are vmapped over keys). The tests also check that the band is narrow enough to
reject an estimator with zero q-gradient, so they can fail.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import USES_0_1_BOUNDS

import jelbo
from jelbo import score

pytestmark = USES_0_1_BOUNDS  # some tests go through the 0.1 functions

B, D = 2, 4
N_BITS, N_CATS = 3, 4
Z_TOL = 5.0


# --- the enumerable models ------------------------------------------------------------------


class Model:
    """Discrete-latent model with exact (enumerated) ELBO and IWAE bounds."""

    def __init__(self, family: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.family = family
        width = N_BITS if family == "bernoulli" else N_CATS
        self.params = {
            "q": jnp.asarray(rng.normal(size=(B, width))),
            "prior": jnp.asarray(0.5 * rng.normal(size=width)),
            "W": jnp.asarray(rng.normal(size=(D, width))),
            "b": jnp.asarray(0.3 * rng.normal(size=D)),
        }
        self.x = jnp.asarray(rng.normal(size=(B, D)) + 0.5)
        if family == "bernoulli":
            self.configs = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=N_BITS)))
        else:
            self.configs = jnp.arange(N_CATS)

    # jelbo's view of the model
    def dists(self, params):
        cls = jelbo.Bernoulli if self.family == "bernoulli" else jelbo.Categorical
        return cls(params["q"]), cls(params["prior"])

    def embed(self, z):
        if self.family == "bernoulli":
            return z
        return jax.nn.one_hot(z, N_CATS, dtype=jnp.float64)

    def log_likelihood(self, params):
        def log_lik(z, x):
            r = x - params["W"] @ self.embed(z) - params["b"]
            return -0.5 * jnp.sum(r * r) - 0.5 * D * math.log(2 * math.pi)

        return log_lik

    # exact quantities by enumeration, written without jelbo
    def _log_mass(self, logits):
        """log-mass of every configuration, ``(..., n_configs)``."""
        if self.family == "bernoulli":
            z = self.configs
            return jnp.sum(
                z * jax.nn.log_sigmoid(logits[..., None, :])
                + (1 - z) * jax.nn.log_sigmoid(-logits[..., None, :]),
                axis=-1,
            )
        return jax.nn.log_softmax(logits, axis=-1)

    def terms(self, params):
        """``(log q, log p(z), log p(x|z))`` for every datapoint and configuration."""
        log_q = self._log_mass(params["q"])  # (B, n)
        log_p = jnp.broadcast_to(self._log_mass(params["prior"]), log_q.shape)
        emb = jax.vmap(self.embed)(self.configs)  # (n, width)
        mean = emb @ params["W"].T + params["b"]  # (n, D)
        r = self.x[:, None, :] - mean[None]
        log_lik = -0.5 * jnp.sum(r * r, -1) - 0.5 * D * math.log(2 * math.pi)
        return log_q, log_p, log_lik

    def exact_elbo(self, params, beta=1.0):
        log_q, log_p, log_lik = self.terms(params)
        return jnp.sum(jnp.exp(log_q) * (log_lik - beta * (log_q - log_p)))

    def exact_iwae(self, params, k):
        log_q, log_p, log_lik = self.terms(params)
        log_w = log_lik + log_p - log_q
        n = log_q.shape[-1]
        idx = jnp.asarray(list(itertools.product(range(n), repeat=k)))  # (n^k, k)
        bound = jax.nn.logsumexp(log_w[:, idx], axis=-1) - math.log(k)
        prob = jnp.exp(jnp.sum(log_q[:, idx], axis=-1))
        return jnp.sum(prob * bound)


def _bound(model, objective):
    """``f(key, params)``: the summed bound of ``objective`` (score or VIMCO) on ``model``."""

    def bound(key, params):
        q, prior = model.dists(params)
        return jnp.sum(objective(key, q, model.log_likelihood(params), prior, model.x).value)

    return bound


def _draws(bound, params, n, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.jit(jax.vmap(lambda k: jax.grad(bound, argnums=1)(k, params)))(keys)


def _assert_unbiased(draws, exact, check_power=True):
    n = jax.tree_util.tree_leaves(draws)[0].shape[0]
    for name, g in draws.items():
        g = np.asarray(g)
        se = g.std(axis=0, ddof=1) / math.sqrt(n)
        err = np.abs(g.mean(axis=0) - np.asarray(exact[name]))
        assert np.all(err <= Z_TOL * se + 1e-10), (name, err, se)
    if not check_power:
        return
    # Power: the band excludes zero for q's parameters (a missing score term would fail).
    se_q = np.asarray(draws["q"]).std(axis=0, ddof=1) / math.sqrt(n)
    assert np.max(np.abs(exact["q"]) / se_q) > 2 * Z_TOL


def _plain_score_iwae(model, k):
    """IWAE with the plain score-function gradient (no control variate), for comparison."""

    def bound(key, params):
        q, prior = model.dists(params)
        z = jax.lax.stop_gradient(jelbo.sample(key, q, (k,)))  # (k, B, ...)
        ll = jax.vmap(jax.vmap(model.log_likelihood(params)), in_axes=(0, None))(z, model.x)
        log_q, log_p = jelbo.log_prob(q, z), jelbo.log_prob(prior, z)
        log_w = jnp.moveaxis(ll + log_p - log_q, 0, -1)
        surrogate = score.iwae_surrogate(log_w, jnp.moveaxis(log_q, 0, -1), control_variate="none")
        return jnp.sum(surrogate)

    return bound


def _expected_log_lik(model):
    """E_q[log p(x|z)] per datapoint: a near-optimal single-sample baseline."""
    log_q, _, log_lik = model.terms(model.params)
    return jnp.sum(jnp.exp(log_q) * log_lik, axis=-1)


N_DRAWS = 5000  # per case; the 5-SE band excludes a zero q-gradient by a factor 5 to 30

ELBO, IWAE = jelbo.ELBO, jelbo.IWAE

# name: (family, the objective as a function of the model)
CASES = {
    "analytic-loo": ("bernoulli", lambda m: ELBO(4, kl="analytic", grad_estimator="score")),
    "mc-loo": ("bernoulli", lambda m: ELBO(4, kl="mc", grad_estimator="score")),
    "mc-plain": ("bernoulli", lambda m: ELBO(4, kl="mc", grad_estimator="score", baseline=0.0)),
    "mc-single-beta": ("bernoulli", lambda m: ELBO(1, kl="mc", grad_estimator="score", beta=0.5)),
    "analytic-single": ("bernoulli", lambda m: ELBO(1, grad_estimator="score")),
    "analytic-single-baseline": (
        "bernoulli",
        lambda m: ELBO(1, grad_estimator="score", baseline=_expected_log_lik(m)),
    ),
    "categorical-mc-loo": ("categorical", lambda m: ELBO(5, kl="mc", grad_estimator="score")),
    "vimco": ("bernoulli", lambda m: IWAE(4, grad_estimator="vimco")),
    # the IWAE bound, with its gradient replaced by the plain score function (_plain_score_iwae)
    "iwae-plain-score": ("bernoulli", lambda m: IWAE(4)),
}


@functools.cache
def _all_cases():
    """``{case: (draws, exact gradient)}``, computed once: all cases go through ONE jit, as
    compiling the samplers dominates the cost of these tests."""
    bounds, exact_bounds, params = {}, {}, {}
    for name, (family, make_objective) in CASES.items():
        model = Model(family)
        objective = make_objective(model)
        params[name] = model.params
        if isinstance(objective, ELBO):
            bounds[name] = _bound(model, objective)
            beta = objective.beta
            exact_bounds[name] = lambda p, model=model, beta=beta: model.exact_elbo(p, beta)
        else:
            k = objective.num_samples
            plain = name == "iwae-plain-score"
            bounds[name] = _plain_score_iwae(model, k) if plain else _bound(model, objective)
            exact_bounds[name] = lambda p, model=model, k=k: model.exact_iwae(p, k)

    @jax.jit
    def compute(keys, params):
        draws = {
            name: jax.vmap(lambda key, b=bound, p=params[name]: jax.grad(b, argnums=1)(key, p))(
                keys
            )
            for name, bound in bounds.items()
        }
        exact = {name: jax.grad(f)(params[name]) for name, f in exact_bounds.items()}
        return draws, exact

    draws, exact = compute(jax.random.split(jax.random.key(0), N_DRAWS), params)
    return {name: (draws[name], exact[name]) for name in CASES}


def _case(name):
    return _all_cases()[name]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_is_unbiased(case):
    draws, exact = _case(case)
    # The plain score-function IWAE gradient is only the reference for the variance test:
    # too noisy for the power check at this number of draws.
    _assert_unbiased(draws, exact, check_power=case != "iwae-plain-score")
    if "vimco" in case:
        # ... and it is the IWAE gradient, not the ELBO's: the test tells them apart.
        model = Model(CASES[case][0])
        elbo_grad = jax.jit(jax.grad(model.exact_elbo))(model.params)
        se = np.asarray(draws["q"]).std(axis=0, ddof=1) / math.sqrt(N_DRAWS)
        gap = np.abs(np.asarray(elbo_grad["q"]) - np.mean(draws["q"], 0)) / se
        assert np.max(gap) > Z_TOL


@pytest.mark.slow
def test_score_on_reparameterizable_q_matches_reparam_in_expectation():
    rng = np.random.default_rng(1)
    W, x = jnp.asarray(rng.normal(size=(D, 2))), jnp.asarray(rng.normal(size=(B, D)))
    loc, log_scale = jnp.asarray(rng.normal(size=(B, 2))), jnp.asarray(-0.3 * np.ones((B, 2)))
    prior = jelbo.Normal(jnp.zeros(2), jnp.ones(2))
    ll = lambda z, x: -0.5 * jnp.sum((x - W @ z) ** 2)

    def grads(key):
        def bound(params, grad_estimator):
            q = jelbo.Normal(params[0], jnp.exp(params[1]))
            terms = jelbo.elbo(key, q, ll, prior, x, num_samples=4, grad_estimator=grad_estimator)
            return jnp.sum(terms.elbo)

        params = (loc, log_scale)
        return jax.grad(bound)(params, "score"), jax.grad(bound)(params, "reparam")

    keys = jax.random.split(jax.random.key(2), N_DRAWS)
    score_draws, reparam_draws = jax.jit(jax.vmap(grads))(keys)
    for a, b in zip(score_draws, reparam_draws, strict=True):
        se = np.hypot(np.std(a, 0), np.std(b, 0)) / math.sqrt(N_DRAWS)
        np.testing.assert_array_less(np.abs(np.mean(a, 0) - np.mean(b, 0)), Z_TOL * se)
        # Only the score path is used: its variance is far larger than the pathwise one.
        assert np.sum(np.var(a, 0)) > 3 * np.sum(np.var(b, 0))


# --- variance reduction -----------------------------------------------------------------------


def _total_q_variance(case):
    return float(np.sum(np.var(np.asarray(_case(case)[0]["q"]), axis=0)))


# Ratios of the total variance of q's gradient over the cases' 5000 fixed keys, measured on
# this model: leave-one-out / plain score (S = 4, kl="mc") 0.19; VIMCO / plain score-function
# IWAE (K = 4) 0.016; single sample with baseline E_q[log p(x|z)] / none 0.13. Asserted with
# a margin of about 2x.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("low", "plain", "max_ratio"),
    [
        ("mc-loo", "mc-plain", 0.35),
        ("vimco", "iwae-plain-score", 0.04),
        ("analytic-single-baseline", "analytic-single", 0.25),
    ],
)
def test_control_variates_reduce_variance(low, plain, max_ratio):
    ratio = _total_q_variance(low) / _total_q_variance(plain)
    assert ratio < max_ratio, ratio


# --- values -------------------------------------------------------------------------------------


def _reference_samples(key, q, s):
    """The samples jelbo draws: one key per sample, ``sample(keys[s], q)``."""
    return jax.vmap(lambda k: jelbo.sample(k, q))(jax.random.split(key, s))  # (S, B, ...)


@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
def test_values_are_the_bounds(family):
    model = Model(family)
    q, prior = model.dists(model.params)
    ll = model.log_likelihood(model.params)
    s, beta = 6, 0.7

    @jax.jit
    def check(key):
        z = _reference_samples(key, q, s)
        log_lik = jax.vmap(jax.vmap(ll), in_axes=(0, None))(z, model.x)  # (S, B)
        log_ratio = jelbo.log_prob(q, z) - jelbo.log_prob(prior, z)
        out = {"iwae": jax.nn.logsumexp(log_lik - log_ratio, axis=0) - math.log(s)}
        out["vimco"] = jelbo.iwae_bound(
            key, q, ll, prior, model.x, num_samples=s, grad_estimator="vimco"
        )
        for kl in ("analytic", "mc"):
            kl_ref = jelbo.kl_divergence(q, prior) if kl == "analytic" else log_ratio.mean(0)
            out[f"{kl}-reference"] = (log_lik.mean(0), kl_ref)
            for i, baseline in enumerate((None, jnp.array([1.0, -2.0]))):
                out[f"{kl}-{i}"] = jelbo.elbo(
                    key,
                    q,
                    ll,
                    prior,
                    model.x,
                    num_samples=s,
                    kl=kl,
                    grad_estimator="score",
                    beta=beta,
                    baseline=baseline,
                )
        return out

    out = check(jax.random.key(5))
    np.testing.assert_allclose(out["vimco"], out["iwae"], rtol=1e-12)
    for kl in ("analytic", "mc"):
        expected, kl_ref = out[f"{kl}-reference"]
        for i in range(2):
            terms = out[f"{kl}-{i}"]
            np.testing.assert_allclose(terms.expected_log_likelihood, expected, rtol=1e-12)
            np.testing.assert_allclose(terms.kl, kl_ref, rtol=1e-12)
            np.testing.assert_allclose(terms.elbo, expected - beta * kl_ref, rtol=1e-12)


def test_values_match_pathwise_estimators_on_a_gaussian_q():
    rng = np.random.default_rng(2)
    q = jelbo.Normal(jnp.asarray(rng.normal(size=(B, 2))), jnp.full((B, 2), 0.8))
    prior = jelbo.Normal(jnp.zeros(2), jnp.ones(2))
    W, x = jnp.asarray(rng.normal(size=(D, 2))), jnp.asarray(rng.normal(size=(B, D)))
    ll = lambda z, x: -0.5 * jnp.sum((x - W @ z) ** 2)

    @jax.jit
    def pairs(key):
        out = []
        for kl in ("analytic", "mc"):
            a = jelbo.elbo(key, q, ll, prior, x, num_samples=5, kl=kl, grad_estimator="score")
            b = jelbo.elbo(key, q, ll, prior, x, num_samples=5, kl=kl)
            out += list(zip(a, b, strict=True))
        a = jelbo.iwae_bound(key, q, ll, prior, x, num_samples=5, grad_estimator="vimco")
        return [*out, (a, jelbo.iwae_bound(key, q, ll, prior, x, num_samples=5))]

    for u, v in pairs(jax.random.key(7)):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_chunked_equals_unchunked_in_value_and_gradient():
    model = Model("bernoulli")
    objectives = {
        "score-mc": ELBO(7, kl="mc", grad_estimator="score"),
        "vimco": IWAE(7, grad_estimator="vimco"),
    }

    @jax.jit
    def both(key, params):
        out = {}
        for name, objective in objectives.items():
            for chunk in (None, 3):
                bound = _bound(model, dataclasses.replace(objective, sample_chunk_size=chunk))
                out[f"{name}-{chunk}"] = jax.value_and_grad(bound, argnums=1)(key, params)
        return out

    out = both(jax.random.key(8), model.params)
    for name in objectives:
        whole = jax.tree_util.tree_leaves(out[f"{name}-None"])
        chunked = jax.tree_util.tree_leaves(out[f"{name}-3"])
        for u, v in zip(whole, chunked, strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_learned_baseline_gets_the_least_squares_gradient():
    model = Model("bernoulli")
    q, prior = model.dists(model.params)
    ll = model.log_likelihood(model.params)
    s, beta = 4, 0.5

    @jax.jit
    def check(key, c):
        def elbo_of(c, kl):
            terms = jelbo.elbo(
                key,
                q,
                ll,
                prior,
                model.x,
                num_samples=s,
                kl=kl,
                grad_estimator="score",
                baseline=c,
                beta=beta,
            )
            return jnp.sum(terms.elbo)

        z = _reference_samples(key, q, s)
        log_lik = jax.vmap(jax.vmap(ll), in_axes=(0, None))(z, model.x)
        log_ratio = jelbo.log_prob(q, z) - jelbo.log_prob(prior, z)
        signals = {"analytic": log_lik, "mc": log_lik - beta * log_ratio}
        # d/dc of -1/2 mean_s (f_s - c)^2 = mean_s (f_s - c): the baseline regresses on f.
        return [(jax.grad(elbo_of)(c, kl), jnp.mean(f, 0) - c) for kl, f in signals.items()]

    for got, expected in check(jax.random.key(9), jnp.array([-3.0, -8.0])):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


# --- the helpers --------------------------------------------------------------------------------


def test_score_term_is_zero_valued_with_the_score_gradient():
    a = jnp.array([0.3, -1.2])
    signal = jnp.array([2.0, -5.0])
    log_q = lambda a: jax.nn.log_sigmoid(a)
    value = score.score_term(signal, log_q(a))
    np.testing.assert_array_equal(value, 0.0)
    grad = jax.grad(lambda a: jnp.sum(score.score_term(signal * a, log_q(a))))(a)
    np.testing.assert_allclose(grad, signal * a * jax.nn.sigmoid(-a), rtol=1e-12)


def test_leave_one_out_mean():
    v = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    expected = np.stack(
        [np.mean(np.delete(np.asarray(v), s, axis=-1), axis=-1) for s in range(5)], -1
    )
    np.testing.assert_allclose(score.leave_one_out_mean(v), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        score.leave_one_out_mean(jnp.zeros((3, 1)))


@pytest.mark.parametrize(
    "log_w",
    [
        np.random.default_rng(1).normal(size=(2, 6)) * 3,
        np.array([[0.0, -1000.0, -2000.0, 5.0]]),  # one weight dominates, others underflow
        np.array([[700.0, 700.0]]),
    ],
)
def test_vimco_leave_one_out_bounds_match_the_definition(log_w):
    k = log_w.shape[-1]
    expected = np.empty_like(log_w)
    for j in range(k):
        others = np.delete(log_w, j, axis=-1)
        geometric = others.mean(-1, keepdims=True)
        replaced = np.concatenate([others, geometric], axis=-1)
        m = replaced.max(-1, keepdims=True)
        expected[..., j] = (m + np.log(np.exp(replaced - m).sum(-1, keepdims=True)))[..., 0]
    expected -= math.log(k)
    got = jax.jit(score.vimco_leave_one_out_bounds)(jnp.asarray(log_w))
    assert bool(jnp.all(jnp.isfinite(got)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
@pytest.mark.parametrize(
    "call",
    [
        lambda k, q, ll, p, x: jelbo.elbo(k, q, ll, p, x),
        lambda k, q, ll, p, x: jelbo.elbo(
            k, q, ll, p, x, num_samples=2, kl="mc", grad_estimator="stl"
        ),
        lambda k, q, ll, p, x: jelbo.iwae_bound(k, q, ll, p, x, num_samples=2),
        lambda k, q, ll, p, x: jelbo.iwae_bound(
            k, q, ll, p, x, num_samples=2, grad_estimator="dreg"
        ),
        lambda k, q, ll, p, x: jelbo.renyi_bound(k, q, ll, p, x, alpha=0.5, num_samples=2),
    ],
    ids=["elbo-reparam", "elbo-stl", "iwae-reparam", "iwae-dreg", "renyi"],
)
def test_pathwise_estimators_on_discrete_q_name_the_ones_that_work(family, call):
    model = Model(family)
    q, prior = model.dists(model.params)
    name = type(q).__name__
    with pytest.raises(ValueError, match=rf"{name} cannot be reparameterized.*'score'.*'vimco'"):
        call(jax.random.key(0), q, model.log_likelihood(model.params), prior, model.x)


def test_option_errors():
    model = Model("bernoulli")
    q, prior = model.dists(model.params)
    ll, x, key = model.log_likelihood(model.params), model.x, jax.random.key(0)
    with pytest.raises(ValueError, match=r"num_samples >= 2.*num_samples=1"):
        jelbo.iwae_bound(key, q, ll, prior, x, num_samples=1, grad_estimator="vimco")
    with pytest.raises(ValueError, match=r"baseline.*grad_estimator='score'"):
        normal_q = jelbo.Normal(jnp.zeros((B, 2)), jnp.ones((B, 2)))
        normal_p = jelbo.Normal(jnp.zeros(2), jnp.ones(2))
        jelbo.elbo(key, normal_q, lambda z, x: -jnp.sum(z**2), normal_p, x, baseline=0.0)
    with pytest.raises(ValueError, match=r"baseline.*\(3,\).*\(2,\)"):
        jelbo.elbo(key, q, ll, prior, x, grad_estimator="score", baseline=jnp.zeros(3))
    with pytest.raises(ValueError, match="grad_estimator"):
        jelbo.elbo(key, q, ll, prior, x, num_samples=2, grad_estimator="vimco")
    with pytest.raises(ValueError, match="grad_estimator"):
        jelbo.iwae_bound(key, q, ll, prior, x, num_samples=2, grad_estimator="score")
