"""Tests of jelbo.transformed: LogNormal against scipy.stats.lognorm (log-density, moments,
mode, entropy, samples), Transformed densities against change-of-variables formulas written
in NumPy and against numerical integration, the KL rule, reparameterization, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from conftest import tol

import jelbo
from jelbo import bijectors as B


def lognormal_params(rng, dtype, shape=(2, 3)):
    loc = rng.normal(size=shape)
    scale = rng.uniform(0.3, 1.5, shape)
    return jnp.asarray(loc, dtype), jnp.asarray(scale, dtype)


def test_lognormal_against_scipy(dtype, maybe_jit, rng):
    loc, scale = lognormal_params(rng, dtype)
    ref = scipy.stats.lognorm(s=np.asarray(scale, np.float64), scale=np.exp(np.asarray(loc, float)))
    d = jelbo.LogNormal(loc, scale)
    assert d.batch_shape == (2,) and d.event_shape == (3,) and d.is_reparameterized
    y = jnp.asarray(rng.lognormal(size=(4, 2, 3)), dtype)
    lp = maybe_jit(jelbo.log_prob)(d, y)
    assert lp.shape == (4, 2) and lp.dtype == dtype
    np.testing.assert_allclose(lp, ref.logpdf(np.asarray(y, float)).sum(-1), **tol(dtype))
    np.testing.assert_allclose(maybe_jit(jelbo.entropy)(d), ref.entropy().sum(-1), **tol(dtype))
    np.testing.assert_allclose(d.mean(), ref.mean(), **tol(dtype))
    np.testing.assert_allclose(d.variance(), ref.var(), **tol(dtype))
    s2 = np.asarray(scale, float) ** 2
    np.testing.assert_allclose(d.mode(), np.exp(np.asarray(loc, float) - s2), **tol(dtype))
    # extreme: tiny and huge values, finite log-density and gradient
    y = jnp.asarray([1e-30, 1.0, 1e30], dtype)
    d1 = jelbo.LogNormal(jnp.zeros(3, dtype), jnp.full(3, 20.0, dtype))
    ref1 = scipy.stats.lognorm(s=20.0)
    np.testing.assert_allclose(
        d1.log_prob(y), ref1.logpdf(np.asarray(y, float)).sum(), **tol(dtype)
    )
    assert np.all(np.isfinite(jax.grad(lambda v: d1.log_prob(v))(y)))


def test_lognormal_samples_and_reparameterization(rng):
    loc, scale = lognormal_params(rng, np.float64, (3,))
    d = jelbo.LogNormal(loc, scale)
    draws = np.asarray(jelbo.sample(jax.random.key(0), d, (20000,)))
    for i in range(3):
        ref = scipy.stats.lognorm(s=float(scale[i]), scale=float(np.exp(loc[i])))
        assert scipy.stats.kstest(draws[:, i], ref.cdf).pvalue > 1e-3

    def mean_of_samples(loc):
        return jnp.mean(jelbo.sample(jax.random.key(1), jelbo.LogNormal(loc, scale), (4000,)))

    # d/dloc E[y] = E[y]/3 per coordinate: the pathwise gradient, within Monte Carlo error
    grad = jax.grad(mean_of_samples)(loc)
    expected = np.exp(np.asarray(loc) + 0.5 * np.asarray(scale) ** 2) / 3
    np.testing.assert_allclose(grad, expected, rtol=0.1)


def test_transformed_density_by_change_of_variables(dtype, rng):
    loc = jnp.asarray(rng.normal(size=(2, 3)), dtype)
    scale = jnp.asarray(rng.uniform(0.5, 1.5, (2, 3)), dtype)
    d = jelbo.Transformed(jelbo.Normal(loc, scale), B.Softplus())
    y = jnp.asarray(rng.uniform(0.1, 3.0, (2, 3)), dtype)
    y64 = np.asarray(y, float)
    x = np.log(np.expm1(y64))  # softplus^-1, and |dx/dy| = e^y / (e^y - 1)
    expected = scipy.stats.norm.logpdf(x, np.asarray(loc, float), np.asarray(scale, float))
    expected = (expected + y64 - np.log(np.expm1(y64))).sum(-1)
    np.testing.assert_allclose(jelbo.log_prob(d, y), expected, **tol(dtype))
    # batch shape from the bijector's parameters too; event shape from the bijector
    d = jelbo.Transformed(jelbo.Normal(jnp.zeros(2), 1.0), B.Sigmoid(jnp.zeros((4, 1)), 1.0))
    assert d.batch_shape == (4,) and d.event_shape == (2,)
    simplex = jelbo.Transformed(jelbo.Normal(jnp.zeros((5, 2)), 1.0), B.StickBreaking())
    assert simplex.batch_shape == (5,) and simplex.event_shape == (3,)
    draws = simplex.sample(jax.random.key(0), (7,))
    assert draws.shape == (7, 5, 3)
    np.testing.assert_allclose(draws.sum(-1), 1.0, rtol=1e-6)


def test_transformed_normalizes():
    """A Normal through Sigmoid(-1, 2) integrates to one on (-1, 2) (scipy quad)."""
    d = jelbo.Transformed(jelbo.Normal(jnp.array([0.3]), 0.8), B.Sigmoid(-1.0, 2.0))
    f = jax.jit(lambda y: jnp.exp(d.log_prob(jnp.reshape(y, (1,)))))
    total, _ = scipy.integrate.quad(lambda y: float(f(y)), -1.0, 2.0, epsabs=1e-12)
    np.testing.assert_allclose(total, 1.0, rtol=1e-8)


def test_entropy_where_exact(dtype, rng):
    loc = jnp.asarray(rng.normal(size=3), dtype)
    scale = jnp.asarray(rng.uniform(0.5, 1.5, 3), dtype)
    shift, a = jnp.asarray([1.0, -2.0, 0.5], dtype), jnp.asarray([2.0, -0.5, 3.0], dtype)
    d = jelbo.Transformed(jelbo.Normal(loc, scale), B.Affine(shift, a))
    expected = scipy.stats.norm(0.0, np.abs(np.asarray(a * scale, float))).entropy().sum()
    np.testing.assert_allclose(d.entropy(), expected, **tol(dtype))
    with pytest.raises(NotImplementedError, match="kl='mc'"):
        jelbo.Transformed(jelbo.Normal(loc, scale), B.Softplus()).entropy()


def test_kl_rule(dtype, rng):
    lq, sq = lognormal_params(rng, dtype)
    lp, sp = lognormal_params(rng, dtype, (3,))
    q, p = jelbo.LogNormal(lq, sq), jelbo.LogNormal(lp, sp)
    expected = jelbo.kl_divergence(jelbo.Normal(lq, sq), jelbo.Normal(lp, sp))
    np.testing.assert_allclose(jax.jit(jelbo.kl_divergence)(q, p), expected, **tol(dtype))
    # against numerical integration of the definition, one coordinate
    qs = scipy.stats.lognorm(s=float(sq[0, 0]), scale=float(np.exp(lq[0, 0])))
    ps = scipy.stats.lognorm(s=float(sp[0]), scale=float(np.exp(lp[0])))
    kl_00, _ = scipy.integrate.quad(
        lambda y: qs.pdf(y) * (qs.logpdf(y) - ps.logpdf(y)), 0, np.inf, epsabs=1e-12
    )
    single = jelbo.kl_divergence(
        jelbo.LogNormal(lq[0, :1], sq[0, :1]), jelbo.LogNormal(lp[:1], sp[:1])
    )
    np.testing.assert_allclose(single, kl_00, rtol=1e-5 if dtype == np.float32 else 1e-8)
    # a Transformed with an equal bijector and a LogNormal share the rule
    t = jelbo.Transformed(jelbo.Normal(lp, sp), B.Exp())
    np.testing.assert_allclose(jelbo.kl_divergence(q, t), expected, **tol(dtype))
    with pytest.raises(NotImplementedError, match=r"same bijector.*kl='mc'"):
        jelbo.kl_divergence(q, jelbo.Transformed(jelbo.Normal(lp, sp), B.Softplus()))

    # traced bijector parameters: the same object passes, equal-valued copies do not
    @jax.jit
    def kl_same(low):
        b = B.Sigmoid(low, 1.0)
        return jelbo.kl_divergence(
            jelbo.Transformed(jelbo.Normal(lq, sq), b), jelbo.Transformed(jelbo.Normal(lp, sp), b)
        )

    np.testing.assert_allclose(kl_same(jnp.asarray(-1.0, dtype)), expected, **tol(dtype))


def test_elbo_with_transformed_q_and_reparameterization_flag():
    q = jelbo.LogNormal(jnp.zeros(2), jnp.ones(2))
    prior = jelbo.LogNormal(jnp.zeros(2), 2.0 * jnp.ones(2))
    bound = jelbo.ELBO(num_samples=4)(jax.random.key(0), q, lambda z: -jnp.sum(z), prior)
    assert bound.value.shape == () and np.isfinite(bound.value)
    assert not jelbo.Transformed(
        jelbo.Bernoulli(logits=jnp.zeros(2)), B.Identity()
    ).is_reparameterized
    with pytest.raises(ValueError, match=r"K\(K\+1\)/2 for some K; got 2"):
        jelbo.Transformed(jelbo.Normal(jnp.zeros(2), 1.0), B.FillScaleTriL())
    with pytest.raises(ValueError, match=r"1 axis\(es\), but the base Categorical"):
        jelbo.Transformed(jelbo.Categorical(logits=jnp.zeros(3)), B.Exp())
    with pytest.raises(TypeError, match="`bijector` must be a jelbo bijector"):
        jelbo.Transformed(jelbo.Normal(jnp.zeros(2), 1.0), jnp.exp)


# --- the sample-and-log-density path: no inverse for q's own draws --------------------------


@jax.custom_jvp
def _known_inverse(y, x, scale):
    """``x`` in value (it is ``(y - shift) / scale``); the inverse's derivative dy / scale."""
    del y, scale
    return x


@_known_inverse.defjvp
def _known_inverse_jvp(primals, tangents):
    _, x, scale = primals
    return x, tangents[0] / scale


class NoInverseAffine(B.Bijector):
    """``shift + scale * x`` whose inverse raises; ``_inverse_given`` knows the draw."""

    elementwise = True
    shift: jax.Array
    scale: jax.Array

    def _forward(self, x):
        return self.shift + self.scale * x

    def _inverse(self, y):
        raise AssertionError("the inverse ran")

    def _forward_log_det_jacobian(self, x):
        return jnp.sum(jnp.broadcast_to(jnp.log(jnp.abs(self.scale)), x.shape), axis=-1)

    def _inverse_given(self, y, x):
        return _known_inverse(y, jnp.broadcast_to(x, y.shape), self.scale)


class OldPath(jelbo.Transformed):
    """A Transformed that takes jelbo 0.2's path: sample, then log_prob (with an inverse)."""

    def _sample_and_log_prob(self, key, sample_shape):
        return jelbo.Distribution._sample_and_log_prob(self, key, sample_shape)

    def _sample_and_stopped_log_prob(self, key, sample_shape):
        return jelbo.Distribution._sample_and_stopped_log_prob(self, key, sample_shape)


def _q_pair(params):
    loc, scale, shift, s = params
    base = jelbo.Normal(loc, scale)
    return (
        jelbo.Transformed(base, NoInverseAffine(shift, s)),
        OldPath(base, B.Chain([B.Affine(shift, s)])),
    )


@pytest.mark.parametrize(
    "objective",
    [
        jelbo.ELBO(num_samples=3, kl="mc"),
        jelbo.ELBO(num_samples=3, kl="mc", grad_estimator="stl"),
        jelbo.IWAE(3),
        jelbo.IWAE(3, "dreg"),
        jelbo.Renyi(0.5, 3),
    ],
    ids=["elbo-mc", "elbo-stl", "iwae", "iwae-dreg", "renyi"],
)
@pytest.mark.parametrize("with_prior", [True, False], ids=["prior", "log-joint"])
def test_objectives_run_no_inverse_for_a_transformed_q(objective, with_prior, rng):
    # Same values and gradients (q's parameters and the model's) as the 0.2 path that
    # inverts every draw, with a bijector whose inverse raises.
    params = (
        jnp.asarray(rng.normal(size=(2, 3))),
        jnp.asarray(rng.uniform(0.5, 1.5, (2, 3))),
        jnp.asarray(rng.normal(size=3)),
        jnp.asarray(rng.uniform(0.5, 2.0, 3)),
    )
    w = jnp.asarray(rng.normal(size=3))
    prior = jelbo.Normal(jnp.zeros(3), 2.0) if with_prior else None

    def value(params, w, which):
        q = _q_pair(params)[which]
        ll = lambda z, x: -0.5 * jnp.sum((x - w * z) ** 2)
        return jnp.sum(objective(jax.random.key(3), q, ll, prior, jnp.ones((2, 3))).value)

    new = jax.jit(jax.value_and_grad(value, (0, 1)), static_argnums=2)
    (v_new, g_new), (v_old, g_old) = new(params, w, 0), new(params, w, 1)
    np.testing.assert_allclose(v_new, v_old, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(g_new), jax.tree.leaves(g_old), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_sample_and_log_prob_of_transformed_matches_log_prob(dtype, rng):
    base = jelbo.Normal(jnp.asarray(rng.normal(size=(2, 3)), dtype), jnp.ones(3, dtype))
    for bijector in (B.Exp(), B.Softplus(), B.Chain([B.Affine(1.0, 2.0), B.Sigmoid()])):
        q = jelbo.Transformed(base, bijector)
        y, log_q = jelbo.sample_and_log_prob(jax.random.key(0), q, (4,))
        assert y.shape == (4, 2, 3) and log_q.shape == (4, 2) and log_q.dtype == dtype
        np.testing.assert_array_equal(y, jelbo.sample(jax.random.key(0), q, (4,)))
        np.testing.assert_allclose(log_q, q.log_prob(y), **tol(dtype))
    # mc_kl and posterior_summary draw through the same path
    q = jelbo.Transformed(base, NoInverseAffine(jnp.zeros(3, dtype), 2.0 * jnp.ones(3, dtype)))
    assert jelbo.mc_kl(
        jax.random.key(1), q, jelbo.Normal(jnp.zeros(3), 3.0), num_samples=2
    ).shape == (2,)
