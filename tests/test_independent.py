"""jelbo.Independent: batch axes reinterpreted as event axes, and its KL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import tol

import jelbo

B, N, C = 3, 2, 4


def _normals(rng, dtype, shift=0.0):
    loc = jnp.asarray(rng.normal(size=(B, N)) + shift, dtype)
    scale = jnp.asarray(rng.uniform(0.5, 2.0, (B, N)), dtype)
    return jelbo.Normal(loc[..., None], scale[..., None]), loc, scale


def test_shapes_log_prob_entropy_and_moments(dtype, rng, maybe_jit):
    base, loc, scale = _normals(rng, dtype)  # batch (B, N), event (1,)
    ind = jelbo.Independent(base, 1)
    assert ind.batch_shape == (B,) and ind.event_shape == (N, 1)
    assert ind.is_reparameterized and ind.dtype == dtype and ind.support == jelbo.constraints.real
    x = jnp.asarray(rng.normal(size=(5, B, N, 1)), dtype)
    expected = scipy.stats.norm(np.asarray(loc, np.float64), np.asarray(scale, np.float64))
    lp = maybe_jit(jelbo.log_prob)(ind, x)
    assert lp.shape == (5, B) and lp.dtype == dtype
    np.testing.assert_allclose(
        lp, expected.logpdf(np.asarray(x, np.float64)[..., 0]).sum(-1), **tol(dtype)
    )
    np.testing.assert_allclose(ind.entropy(), expected.entropy().sum(-1), **tol(dtype))
    np.testing.assert_allclose(ind.mean(), base.mean())
    np.testing.assert_allclose(ind.variance(), base.variance())
    np.testing.assert_allclose(ind.mode(), base.mode())
    draws = ind.sample(jax.random.key(0), (7,))
    np.testing.assert_array_equal(draws, base.sample(jax.random.key(0), (7,)))  # delegates
    z, log_q = jelbo.sample_and_log_prob(jax.random.key(1), ind, (2,))
    np.testing.assert_allclose(log_q, jelbo.log_prob(ind, z), **tol(dtype))
    # no reinterpreted axis: the base itself
    same = jelbo.Independent(base, 0)
    assert same.batch_shape == base.batch_shape and same.event_shape == base.event_shape
    np.testing.assert_allclose(same.log_prob(x), base.log_prob(x), **tol(dtype))
    np.testing.assert_allclose(same.covariance(), base.covariance())
    with pytest.raises(NotImplementedError, match="Independent has no closed-form covariance"):
        ind.covariance()
    # two reinterpreted axes, and nesting
    whole = jelbo.Independent(base, 2)
    assert whole.batch_shape == () and whole.event_shape == (B, N, 1)
    nested = jelbo.Independent(jelbo.Independent(base, 1), 1)
    np.testing.assert_allclose(whole.log_prob(x), nested.log_prob(x), **tol(dtype))


def test_several_relaxed_categoricals_per_datapoint_in_an_objective():
    # The use case of the issue: logits (B, N, C); q must have the data's batch shape (B,).
    logits = jax.random.normal(jax.random.key(0), (B, N, C))
    q = jelbo.RelaxedOneHotCategorical(0.5, logits=logits)
    prior = jelbo.RelaxedOneHotCategorical(0.5, logits=jnp.zeros((N, C)))
    data = jnp.ones((B, 6))

    def log_lik(z, x):
        return -jnp.sum((x - jnp.sum(z)) ** 2)

    objective = jelbo.ELBO(num_samples=3, kl="mc")
    with pytest.raises(ValueError, match=r"jelbo.Independent\(q, 1\) has batch shape \(3,\)"):
        objective(jax.random.key(1), q, log_lik, prior, data)
    q_ind, prior_ind = jelbo.Independent(q, 1), jelbo.Independent(prior, 1)

    @jax.jit
    def loss(logits, key):
        q = jelbo.Independent(jelbo.RelaxedOneHotCategorical(0.5, logits=logits), 1)
        return -jnp.mean(objective(key, q, log_lik, prior_ind, data).value)

    value, grad = jax.value_and_grad(loss)(logits, jax.random.key(2))
    assert np.isfinite(value) and grad.shape == logits.shape and np.all(np.isfinite(grad))
    bound = objective(jax.random.key(2), q_ind, log_lik, prior_ind, data)
    np.testing.assert_allclose(-jnp.mean(bound.value), value, rtol=1e-5)
    assert bound.value.shape == (B,)


def test_kl_is_the_sum_of_the_bases_kls(dtype, rng):
    q, _, _ = _normals(rng, dtype)
    p, _, _ = _normals(rng, dtype, shift=0.5)
    kl = jax.jit(jelbo.kl_divergence)(jelbo.Independent(q, 1), jelbo.Independent(p, 1))
    assert kl.shape == (B,)
    np.testing.assert_allclose(kl, jnp.sum(jelbo.kl_divergence(q, p), -1), **tol(dtype))
    # against a Monte Carlo estimate from the same pair
    mc = jelbo.mc_kl(jax.random.key(0), jelbo.Independent(q, 1), jelbo.Independent(p, 1),
                     num_samples=20000)  # fmt: skip
    np.testing.assert_allclose(mc, kl, atol=0.1)
    # a prior with fewer batch axes broadcasts
    p1 = jelbo.Independent(jelbo.Normal(jnp.zeros((N, 1), dtype), 1.0), 1)
    np.testing.assert_allclose(
        jelbo.kl_divergence(jelbo.Independent(q, 1), p1),
        jnp.sum(jelbo.kl_divergence(q, jelbo.Normal(jnp.zeros((N, 1), dtype), 1.0)), -1),
        **tol(dtype),
    )
    with pytest.raises(ValueError, match="same reinterpreted_batch_ndims"):
        base = jelbo.Normal(jnp.zeros((2, 3, 1)), 1.0)  # batch (2, 3), event (1,)
        jelbo.kl_divergence(  # both of event (2, 3, 1), reinterpreted differently
            jelbo.Independent(base, 2), jelbo.Independent(jelbo.Independent(base, 1), 1)
        )


def test_bad_arguments_raise_clearly():
    base = jelbo.Normal(jnp.zeros((B, N)), 1.0)  # batch (B,), event (N,)
    with pytest.raises(
        ValueError, match=r"`reinterpreted_batch_ndims`=2 exceeds .* batch shape \(3,\)"
    ):
        jelbo.Independent(base, 2)
    with pytest.raises(TypeError, match="Python int >= 0"):
        jelbo.Independent(base, -1)
    with pytest.raises(TypeError, match="`base` must be a jelbo distribution"):
        jelbo.Independent(jnp.zeros(3), 1)
    with pytest.raises(ValueError, match="trailing"):
        jelbo.Independent(base, 1).log_prob(jnp.zeros(N))


def test_pytree_vmap_and_parameter_checks():
    ind = jelbo.Independent(jelbo.Normal(jnp.zeros((B, N)), jnp.ones((B, N))), 1)
    leaves, tree = jax.tree_util.tree_flatten(ind)
    assert (
        len(leaves) == 2
        and jax.tree_util.tree_unflatten(tree, leaves).reinterpreted_batch_ndims == 1
    )
    lp = jax.vmap(lambda d: d.log_prob(jnp.zeros((B, N))))(
        jelbo.Independent(jelbo.Normal(jnp.zeros((4, B, N)), jnp.ones((4, B, N))), 1)
    )
    assert lp.shape == (4,)  # each: batch (), event (B, N)
    np.testing.assert_allclose(lp, ind.log_prob(jnp.zeros((B, N))))
    bad = jelbo.Independent(jelbo.Normal(jnp.zeros((B, N)), -jnp.ones((B, N))), 1)
    with pytest.raises(ValueError, match=r"Independent `base.scale` must be > 0"):
        jelbo.check_parameters(bad)
