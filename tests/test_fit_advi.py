"""``jelbo.fit.advi``: near the exact answer on an ill-conditioned Gaussian and near the
closed-form ELBO optimum of a skewed target (Monte Carlo tolerances), its own stopping rule,
counted evaluations, and one posteriordb model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import (
    fit_posteriordb,
    ill_conditioned_gaussian,
    loggamma_target,
    standardized_errors,
)

import jelbo

GAUSS = ill_conditioned_gaussian()
SKEWED = loggamma_target()


@pytest.fixture(scope="module")
def gauss_fit():
    fit = jax.jit(lambda k, z0: jelbo.fit.advi(k, GAUSS, z0))
    return lambda dtype: fit(jax.random.key(0), jnp.zeros(GAUSS.dim, dtype))


def test_near_an_ill_conditioned_gaussian_and_counts_every_evaluation(gauss_fit, dtype):
    """From the Laplace start (exact here) the STL gradient is zero at the optimum, so the
    fit stays there up to Adam's jitter: within 0.05 sd and 10 % in covariance; it stops by
    its own rule after the three step-size decreases."""
    GAUSS.count = 0
    fit = gauss_fit(dtype)
    assert fit.q.loc.dtype == dtype and fit.bound.value.dtype == dtype
    mean, cov = GAUSS.exact()
    mean_err, cov_err = standardized_errors(fit.q, mean, cov)
    assert mean_err < 0.05 and cov_err < 0.1, (mean_err, cov_err)
    assert bool(fit.converged) and int(fit.info["num_decreases"]) == 3
    assert int(fit.num_evals) == GAUSS.count
    info = fit.info
    steps = int(fit.num_iters)
    assert steps % 100 == 0
    assert int(info["num_evals_algorithm"]) == int(info["num_evals_start"]) + 8 * steps
    trace = np.asarray(info["elbo_trace"])
    assert np.sum(np.isfinite(trace)) == steps // 100
    np.testing.assert_allclose(float(info["learning_rate"]), 0.1 / 4**3, rtol=1e-6)


def test_skewed_target_reaches_the_elbo_optimum():
    """The ELBO optimum of the log-gamma target is known in closed form (tests/support.py)."""
    fit = jax.jit(lambda k: jelbo.fit.advi(k, SKEWED, jnp.zeros(2)))(jax.random.key(1))
    assert bool(fit.converged)
    mean, cov = SKEWED.kl_optimum()
    mean_err, cov_err = standardized_errors(fit.q, mean, cov)
    assert mean_err < 0.05 and cov_err < 0.1, (mean_err, cov_err)


def test_from_init_eager_equals_jit_and_vmap_and_the_cap_says_not_converged():
    """start="init" (N(init, 0.1^2 I), no Laplace step), capped after two windows; eager,
    jitted and vmapped over keys give the same q."""

    def run(k, log_joint=SKEWED):
        return jelbo.fit.advi(
            k,
            log_joint,
            jnp.zeros(2),
            start="init",
            window=10,
            max_iters=15,
            num_draws=4,
            num_diagnostic_draws=32,
        )

    key = jax.random.key(2)
    jitted = jax.jit(run)(key)
    eager = run(key)
    np.testing.assert_allclose(eager.q.loc, jitted.q.loc, rtol=1e-9)
    np.testing.assert_allclose(eager.q.scale_tril, jitted.q.scale_tril, rtol=1e-9, atol=1e-12)
    # (vmapped: the target without its counter, which cannot run in a batched while_loop)
    batched = jax.jit(jax.vmap(lambda k: run(k, SKEWED.density)))(
        jnp.stack([jax.random.key(7), key])
    )
    np.testing.assert_allclose(batched.q.loc[1], jitted.q.loc, rtol=1e-9)
    np.testing.assert_allclose(batched.q.scale_tril[1], jitted.q.scale_tril, rtol=1e-9, atol=1e-12)
    assert not bool(jitted.converged)
    assert int(jitted.num_iters) == 20  # rounded up to whole windows
    assert int(jitted.num_evals) == 20 * 4 + 32
    assert int(jitted.info["num_evals_start"]) == 0


def test_non_finite_steps_are_skipped():
    """A log density that is NaN on part of the space: steps whose draws land there are
    skipped (their evaluations still count) and the fit stays finite."""

    def log_joint(z):
        return jnp.where(z[0] > 2.5, jnp.nan, -0.5 * jnp.sum(z * z))

    fit = jax.jit(lambda k: jelbo.fit.advi(k, log_joint, jnp.zeros(2), window=20, max_iters=200))(
        jax.random.key(3)
    )
    assert np.all(np.isfinite(fit.q.loc)) and np.all(np.isfinite(fit.q.scale_tril))
    np.testing.assert_allclose(fit.q.loc, 0.0, atol=0.1)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"num_draws": 1}, ValueError, "`num_draws` must be >= 2"),
        ({"window": 1}, ValueError, "`window` must be >= 2"),
        ({"learning_rate": 0.0}, ValueError, "`learning_rate` must be a number > 0"),
        ({"decay": 1.0}, ValueError, "`decay` must be a number > 1"),
        ({"num_decreases": -1}, ValueError, "`num_decreases` must be a Python int >= 0"),
        ({"max_iters": 0}, ValueError, "advi: `max_iters` must be >= 1"),
        ({"start": "mode"}, ValueError, "`start` must be one of"),
    ],
)
def test_bad_options_raise_naming_them(options, error, match):
    with pytest.raises(error, match=match):
        jelbo.fit.advi(jax.random.key(0), GAUSS, jnp.zeros(GAUSS.dim), **options)


@pytest.mark.parametrize(("init", "shape"), [((2, 4), r"\(2, 4\)"), ((), r"\(\)")])
def test_bad_init_raises_at_trace_time_naming_its_shape(init, shape):
    with pytest.raises(
        ValueError, match=r"advi: `init` must be one unconstrained vector.*" + shape
    ):
        jax.jit(lambda k: jelbo.fit.advi(k, GAUSS, jnp.zeros(init)))(jax.random.key(0))


def test_posteriordb_model_end_to_end():
    """gp_pois_regr (D = 3) at defaults against posteriordb's reference draws."""
    fit, r = fit_posteriordb(jelbo.fit.advi)
    assert bool(fit.converged) and int(fit.num_evals) < 40_000
    assert int(fit.num_evals) == r["external_evals"]
    assert r["mean_err"] < 0.1 and r["sd_err"] < np.log(1.1) and r["psis_mean_err"] < 0.1, r
