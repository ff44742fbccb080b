"""``jelbo.fit``'s shared pieces (argument checks, evaluation counting, diagnostics) and
Pathfinder: exact answers on Gaussian targets, a non-Gaussian target against quadrature,
counted evaluations against a counter inside the log density, and one posteriordb model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jelbo
from jelbo.fit import _common

# --- the shared pieces ----------------------------------------------------------------------


def _std_normal(z):
    return -0.5 * jnp.sum(z * z)


def test_check_problem_accepts_and_returns_init(dtype):
    z0 = _common.check_problem("f", jax.random.key(0), _std_normal, jnp.zeros(3, dtype))
    assert z0.shape == (3,) and z0.dtype == dtype


@pytest.mark.parametrize(
    ("key", "log_joint", "init", "error", "match"),
    [
        (0, _std_normal, np.zeros(3), TypeError, "f: `key` must be a PRNG key"),
        (jax.random.split(jax.random.key(0)), _std_normal, np.zeros(3), TypeError, r"shape \(2,\)"),
        (jax.random.key(0), "no", np.zeros(3), TypeError, "`log_joint` must be a function"),
        (jax.random.key(0), _std_normal, np.zeros((2, 3)), ValueError, r"shape \(2, 3\)"),
        (jax.random.key(0), _std_normal, np.zeros(0), ValueError, r"D >= 1; got shape \(0,\)"),
        (jax.random.key(0), _std_normal, np.zeros(3, np.int32), TypeError, r"floating.*int32\[3\]"),
        (jax.random.key(0), lambda z: z, np.zeros(3), ValueError, r"returned \(3,\)"),
        (jax.random.key(0), lambda z: (z > 0).all(), np.zeros(3), TypeError, "floating scalar"),
    ],
)
def test_check_problem_errors(key, log_joint, init, error, match):
    with pytest.raises(error, match=match):
        _common.check_problem("f", key, log_joint, init)


def test_counted_log_joint_counts_points_and_maps_nan_to_minus_inf():
    model = _common.CountedLogJoint(lambda z: jnp.where(z[0] > 5, jnp.nan, _std_normal(z)))
    count = _common.zero_count()
    v, count = model.value(jnp.ones(2), count)
    _, g, count = model.value_and_grad(jnp.ones(2), count)
    vs, count = model.values(jnp.array([[1.0, 1.0], [6.0, 0.0], [0.0, 0.0]]), count)
    _, gs, count = model.values_and_grads(jnp.zeros((4, 2)), count)
    h, count = model.hessian(jnp.zeros(2), count)
    assert int(count) == 1 + 1 + 3 + 4 + 2
    np.testing.assert_allclose(v, -1.0)
    np.testing.assert_allclose(g, -np.ones(2))
    np.testing.assert_array_equal(vs, [-1.0, -np.inf, 0.0])
    np.testing.assert_allclose(h, -np.eye(2))
    assert gs.shape == (4, 2)


def test_counted_log_joint_keeps_float32_under_x64():
    model = _common.CountedLogJoint(lambda z: jnp.sum(z.astype(jnp.float64)))
    v, _ = model.value(jnp.ones(2, jnp.float32), _common.zero_count())
    assert v.dtype == jnp.float32


def test_diagnose_is_the_elbo_and_psis_of_the_same_draws(dtype):
    loc = np.array([0.5, -1.0])
    tril = np.array([[1.2, 0.0], [0.3, 0.7]])
    q = jelbo.MultivariateNormalTriL(jnp.asarray(loc, dtype), jnp.asarray(tril, dtype))
    target = stats.multivariate_normal(np.zeros(2), np.array([[1.0, 0.5], [0.5, 2.0]]))

    def log_joint(z):
        prec = jnp.asarray(np.linalg.inv(target.cov), z.dtype)
        return -0.5 * z @ prec @ z + 1.5

    d = jax.jit(lambda k: _common.diagnose(k, q, log_joint, num_draws=300))(jax.random.key(1))
    draws = np.asarray(d.draws, np.float64)
    assert d.draws.shape == (300, 2) and d.draws.dtype == dtype and d.num_evals == 300
    log_q = stats.multivariate_normal(loc, tril @ tril.T).logpdf(draws)
    log_p = target.logpdf(draws) - target.logpdf(np.zeros(2)) + 1.5
    log_w = log_p - log_q
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(d.log_weights, log_w, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(d.bound.value, log_w.mean(), rtol=rtol)
    np.testing.assert_allclose(d.bound.expected_log_likelihood, log_p.mean(), rtol=rtol)
    np.testing.assert_allclose(d.bound.kl, log_q.mean(), rtol=rtol)
    np.testing.assert_allclose(d.bound.stderr, log_w.std(ddof=1) / np.sqrt(300), rtol=10 * rtol)
    _, k = jelbo.psis(jnp.asarray(log_w))
    np.testing.assert_allclose(d.pareto_k, k, rtol=100 * rtol, atol=100 * rtol)
    np.testing.assert_allclose(jax.nn.logsumexp(d.smoothed_log_weights), 0.0, atol=rtol)
