"""PSIS against independent implementations (ArviZ's ``psislw``, NumPyro's
``psis_diagnostic`` k̂), its invariants and edge cases, and k̂ on weights with a known tail."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jelbo

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ArviZ announces its refactor on import
    import arviz as az
from numpyro.infer.importance import _psis_khat as numpyro_khat

# float32 PSIS vs the float64 references: k̂ and normalized weights agree to a few 1e-6
# (measured: <= 3.7e-6 and <= 3.9e-6 over the cases below).
REF_TOL = {np.dtype(np.float32): 3e-5, np.dtype(np.float64): 1e-11}


def _normalize(lw):
    lw = np.asarray(lw, np.float64)
    return np.exp(lw - np.logaddexp.reduce(lw, axis=-1, keepdims=True))


def _arviz(lw):
    smoothed, k = az.psislw(np.array(lw, np.float64), normalize=True)
    return np.exp(smoothed), np.asarray(k)


def _log_weights(rng, shape, scale):
    """Heavy-ish tailed log weights: normal plus a Student-t component."""
    return scale * (rng.normal(size=shape) + 0.3 * rng.standard_t(3, size=shape))


@pytest.mark.parametrize("num", [21, 3000])
def test_matches_arviz_and_numpyro(dtype, maybe_jit, rng, num):
    # Rows with light to very heavy tails (k̂ from ~0 to ~1.5).
    lw = np.stack([_log_weights(rng, num, s) for s in (0.3, 1.0, 3.0)])
    smoothed, k = maybe_jit(jelbo.psis)(jnp.asarray(lw, dtype))
    assert smoothed.dtype == dtype and k.dtype == dtype
    assert smoothed.shape == lw.shape and k.shape == (3,)
    ref_w, ref_k = _arviz(lw)
    atol = REF_TOL[np.dtype(dtype)]
    np.testing.assert_allclose(k, ref_k, rtol=0, atol=atol)
    np.testing.assert_allclose(k, [numpyro_khat(row.copy()) for row in lw], rtol=0, atol=atol)
    np.testing.assert_allclose(_normalize(smoothed), ref_w, rtol=0, atol=atol)
    # The smoothing changed something (not a vacuous comparison) and never exceeds the max.
    assert not np.allclose(_normalize(smoothed), _normalize(lw))
    assert np.all(np.asarray(smoothed).max(-1) <= lw.max(-1) + 1e-6 * np.abs(lw.max(-1)))


def test_axis_and_batch(rng):
    lw = _log_weights(rng, (2, 3, 200), 2.0)
    smoothed, k = jelbo.psis(lw)
    moved, k_moved = jelbo.psis(np.moveaxis(lw, -1, 1), axis=1)
    np.testing.assert_array_equal(np.moveaxis(moved, 1, -1), smoothed)
    np.testing.assert_array_equal(k_moved, k)
    rows = [jelbo.psis(lw[i, j]) for i in range(2) for j in range(3)]
    np.testing.assert_allclose(k.reshape(-1), [r[1] for r in rows], rtol=1e-13)
    vmapped = jax.vmap(jelbo.psis)(lw)
    np.testing.assert_allclose(vmapped[1], k, rtol=1e-13)
    np.testing.assert_allclose(vmapped[0], smoothed, rtol=1e-13)


def test_shift_invariance(rng):
    lw = _log_weights(rng, 500, 2.0)
    smoothed, k = jelbo.psis(lw)
    for shift in (-700.0, 35.0, 1e4):
        shifted, k_shifted = jelbo.psis(lw + shift)
        np.testing.assert_allclose(k_shifted, k, rtol=0, atol=1e-9)
        np.testing.assert_allclose(shifted - shift, smoothed, rtol=0, atol=1e-9)


@pytest.mark.parametrize("num_neg_inf", [30, 95, 96])
def test_neg_inf_weights_stay_zero(rng, num_neg_inf):
    # 95 of 100: the threshold is the dtype's tiny number, five finite weights are fitted;
    # 96: four are left, too few to fit (k̂ = inf), as in the references.
    lw = 2.0 * rng.normal(size=100)
    lw[rng.permutation(100)[:num_neg_inf]] = -np.inf
    smoothed, k = jelbo.psis(lw)
    np.testing.assert_array_equal(np.isneginf(smoothed), np.isneginf(lw))
    ref_w, ref_k = _arviz(lw)
    np.testing.assert_allclose(k, ref_k, atol=1e-11)
    assert np.isfinite(k) == (num_neg_inf < 96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPyro warns when the tail is too short
        assert numpyro_khat(lw.copy()) == pytest.approx(float(k), abs=1e-11)
    np.testing.assert_allclose(_normalize(smoothed), ref_w, atol=1e-11)
    everything = jelbo.psis(np.full(50, -np.inf))
    assert np.all(np.isneginf(everything[0])) and everything[1] == np.inf


def test_ties_at_the_threshold(rng):
    # Rounded weights: the tail threshold is tied, so fewer than M weights are fitted.
    lw = np.round(rng.normal(size=300), 0)
    smoothed, k = jelbo.psis(lw)
    ref_w, ref_k = _arviz(lw)
    np.testing.assert_allclose(k, ref_k, atol=1e-11)
    # Tied weights may swap smoothed values; compare them as sorted sets.
    np.testing.assert_allclose(np.sort(_normalize(smoothed)), np.sort(ref_w), atol=1e-12)


@pytest.mark.parametrize("num", [1, 2, 5, 20, 21])
def test_tiny_samples(rng, num):
    # M = ceil(min(S/5, 3 sqrt(S))) < 5 for S <= 20: no fit, k̂ = inf and the raw weights,
    # as NumPyro (with a warning) and ArviZ (k = inf, weights unsmoothed) return.
    lw = rng.normal(size=num)
    smoothed, k = jelbo.psis(lw)
    assert jelbo.psis_tail_length(num) == int(np.ceil(min(num / 5, 3 * np.sqrt(num))))
    if num <= 20:
        assert k == np.inf
        np.testing.assert_array_equal(smoothed, lw)
    else:
        assert np.isfinite(k)
    if num >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert numpyro_khat(lw.copy()) == pytest.approx(float(k), abs=1e-11)
        np.testing.assert_allclose(_arviz(lw)[1], k, atol=1e-11)


@pytest.mark.parametrize("xi", [0.2, 0.5, 0.9])
def test_khat_estimates_the_tail_index(xi):
    # w = U^(-xi) is exactly Pareto with tail index xi above any threshold. Over 64
    # replicates of S = 10,000 draws (M = 300), mean k̂ is within 0.05 of xi (measured over
    # 100 replicates: 0.2125, 0.4995, 0.8822 for xi = 0.2, 0.5, 0.9, sd of one k̂ 0.06-0.09;
    # the bias is the weak prior's pull towards 0.5 and the finite tail).
    u = jax.random.uniform(jax.random.key(0), (64, 10_000), jnp.float64, minval=1e-300)
    k = jax.jit(jelbo.psis)(-xi * jnp.log(u))[1]
    assert abs(float(jnp.mean(k)) - xi) < 0.05
    assert float(jnp.std(k)) < 0.12


def test_grad_and_nan(rng):
    lw = 2.0 * rng.normal(size=100)

    @jax.jit
    def grads(lw):
        g_k = jax.grad(lambda x: jelbo.psis(x)[1])(lw)
        return g_k, jax.grad(lambda x: jax.nn.logsumexp(jelbo.psis(x)[0]))(lw)

    g_k, g_norm = grads(lw)
    assert np.all(np.isfinite(g_k)) and np.all(np.isfinite(g_norm))
    lw[7] = np.nan
    assert np.isnan(jelbo.psis(lw)[1])
    assert np.isnan(jelbo.psis(lw[:10])[1])


def test_bad_input():
    with pytest.raises(ValueError, match="log_weights"):
        jelbo.psis(1.0)
    with pytest.raises(ValueError, match="axis"):
        jelbo.psis(np.zeros((3, 40)), axis=2)


# --- posterior_summary ---------------------------------------------------------------------

MU = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.8 * 0.5], [0.8 * 0.5, 0.25]])  # sds 1 and 0.5, correlation 0.8
LOG_Z = 3.0  # the log joint is LOG_Z + log N(z; MU, COV)


def _gaussian_log_joint(z):
    diff = z - MU
    prec = np.linalg.inv(COV)
    quad = diff @ jnp.asarray(prec, z.dtype) @ diff
    return LOG_Z - 0.5 * quad - 0.5 * np.log(np.linalg.det(2 * np.pi * COV))


def _gaussian_kl(m0, c0, m1, c1):
    """KL(N(m0, c0) || N(m1, c1)) in closed form (numpy, float64)."""
    inv = np.linalg.inv(c1)
    d = m1 - m0
    return 0.5 * (
        np.trace(inv @ c0) + d @ inv @ d - len(m0) + np.log(np.linalg.det(c1) / np.linalg.det(c0))
    )


def _fn(z):
    return {"z": z, "exp_z1": jnp.exp(z[1])}


def _summary(key, q, log_joint, **options):
    """``jelbo.posterior_summary``, compiled (eagerly, each operation compiles on its own)."""
    return jax.jit(lambda key, q: jelbo.posterior_summary(key, q, log_joint, **options))(key, q)


@pytest.fixture(scope="module")
def summary_fn():
    return jax.jit(
        lambda key, q: jelbo.posterior_summary(
            key, q, _gaussian_log_joint, num_samples=4000, fn=_fn
        )
    )


def test_posterior_summary_gaussian(summary_fn, dtype):
    # q: diagonal, means off by 0.3 sd, sds 1.2x the marginals (k̂ well below 0.7).
    q_loc = MU + np.array([0.3, -0.15])
    q_scale = np.array([1.2, 0.6])
    q = jelbo.Normal(jnp.asarray(q_loc, dtype), jnp.asarray(q_scale, dtype))
    s = summary_fn(jax.random.key(1), q)
    assert s.draws.shape == (4000, 2) and s.log_weights.shape == (4000,)
    assert s.draws.dtype == dtype and s.mean["z"].dtype == dtype
    assert float(s.pareto_k) < 0.5
    assert 1000 < float(s.ess) < 4000
    np.testing.assert_allclose(jax.nn.logsumexp(s.smoothed_log_weights), 0.0, atol=1e-5)
    # PSIS means and sds against the closed forms, within 4 Monte Carlo standard errors.
    np.testing.assert_array_less(np.abs(s.mean["z"] - MU), 4 * s.mcse["z"])
    exact_exp = np.exp(MU[1] + COV[1, 1] / 2)
    assert abs(float(s.mean["exp_z1"]) - exact_exp) < 4 * float(s.mcse["exp_z1"])
    np.testing.assert_allclose(s.sd["z"], np.sqrt(np.diag(COV)), rtol=0.05)
    # The raw means are q's (the reweighting moved them back by ~0.3 sd).
    np.testing.assert_array_less(np.abs(s.q_mean["z"] - q_loc), 4 * q_scale / np.sqrt(4000))
    np.testing.assert_allclose(s.q_sd["z"], q_scale, rtol=0.05)
    # ELBO = log Z - KL(q || p); the IWAE bound lies between it and log Z.
    exact_elbo = LOG_Z - _gaussian_kl(q_loc, np.diag(q_scale**2), MU, COV)
    assert abs(float(s.elbo.value) - exact_elbo) < 4 * float(s.elbo.stderr)
    assert float(s.elbo.value) < float(s.iwae.value) < LOG_Z + 4 * float(s.iwae.stderr)
    assert abs(float(s.iwae.value) - LOG_Z) < 4 * float(s.iwae.stderr)


def test_posterior_summary_stderrs_match_the_spread():
    # The reported standard errors agree with the spread over 300 independent summaries of
    # 1000 draws (measured over 400, two seeds: ratios spread / stderr 0.94-1.03; with 200
    # draws the PSIS mcse understated the spread by up to 9 %).
    q = jelbo.Normal(jnp.asarray(MU + np.array([0.3, -0.15])), jnp.asarray([1.2, 0.6]))
    run = jax.jit(
        jax.vmap(lambda key: jelbo.posterior_summary(key, q, _gaussian_log_joint, num_samples=1000))
    )
    s = run(jax.random.split(jax.random.key(2), 300))
    for estimate, stderr in [
        (s.elbo.value, s.elbo.stderr),
        (s.iwae.value, s.iwae.stderr),
        (s.mean[:, 0], s.mcse[:, 0]),
        (s.mean[:, 1], s.mcse[:, 1]),
    ]:
        ratio = float(jnp.std(estimate) / jnp.sqrt(jnp.mean(stderr**2)))
        assert 0.85 < ratio < 1.15, ratio


def test_posterior_summary_flags_a_bad_q():
    # q far too narrow: the tail of the weights is heavy, k̂ > 0.7 (do not trust q).
    q = jelbo.Normal(jnp.asarray(MU), jnp.asarray([0.15, 0.075]))
    s = _summary(jax.random.key(3), q, _gaussian_log_joint, num_samples=1000)
    assert float(s.pareto_k) > 0.7


def test_posterior_summary_zero_density_and_batch():
    # Target: a standard normal truncated to z > 0 (log joint -inf below); q = N(0.5, 1).
    def log_joint(z):
        return jnp.where(z[0] > 0, -0.5 * z[0] ** 2, -jnp.inf)

    q = jelbo.Normal(jnp.asarray([[0.5], [0.8]]), jnp.ones((2, 1)))  # batch (2,), event (1,)
    s = _summary(jax.random.key(4), q, log_joint, num_samples=4000)
    assert s.draws.shape == (4000, 2, 1) and s.pareto_k.shape == (2,)
    assert s.mean.shape == (2, 1) and s.elbo.value.shape == (2,) and s.iwae.ess.shape == (2,)
    zero = s.draws[..., 0] <= 0
    assert np.all(np.isneginf(s.smoothed_log_weights[zero]))
    exact = np.sqrt(2 / np.pi)  # mean of the half-normal
    np.testing.assert_array_less(np.abs(s.mean[:, 0] - exact), 4 * s.mcse[:, 0])
    assert np.all(s.pareto_k < 0.7)


def test_posterior_summary_bad_input():
    q = jelbo.Normal(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(ValueError, match="scalar"):
        jelbo.posterior_summary(jax.random.key(0), q, lambda z: z, num_samples=30)
    with pytest.raises(TypeError, match="`q`"):
        jelbo.posterior_summary(jax.random.key(0), "q", _gaussian_log_joint)
    with pytest.raises(TypeError, match="num_samples"):
        jelbo.posterior_summary(jax.random.key(0), q, _gaussian_log_joint, num_samples=30.0)


def test_posterior_summary_bounds_are_the_objectives():
    # Same key, same draws (one key per sample): the summary's bounds are jelbo.ELBO's and
    # jelbo.IWAE's with prior=None, field by field.
    q = jelbo.Normal(jnp.asarray(MU + np.array([0.3, -0.15])), jnp.asarray([1.2, 0.6]))
    key = jax.random.key(5)
    s = jelbo.posterior_summary(key, q, _gaussian_log_joint, num_samples=100)
    for mine, theirs in [
        (s.elbo, jelbo.ELBO(num_samples=100, kl="mc")(key, q, _gaussian_log_joint)),
        (s.iwae, jelbo.IWAE(num_samples=100)(key, q, _gaussian_log_joint)),
    ]:
        for a, b in zip(mine, theirs, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-12)


def test_posterior_summary_of_constrained_parameters():
    # mu ~ N(1, 0.5), tau ~ LogNormal(0, 0.3), fitted in the unconstrained space u = (mu,
    # log tau) of a ParameterSpace (the log-Jacobian makes log tau ~ N(0, 0.3)); fn maps the
    # draws to the constrained parameters. Exact: E[tau] = exp(0.045), sd[tau] =
    # E[tau] sqrt(exp(0.09) - 1).
    from jelbo.parameters import positive, real

    space = jelbo.ParameterSpace({"mu": real(), "tau": positive()})

    def log_joint(u):
        p, log_det = space.constrain(u)
        log_tau = jnp.log(p["tau"])
        return -0.5 * ((p["mu"] - 1.0) / 0.5) ** 2 - 0.5 * (log_tau / 0.3) ** 2 - log_tau + log_det

    q = jelbo.Normal(jnp.asarray([1.1, 0.05]), jnp.asarray([0.6, 0.35]))
    s = _summary(
        jax.random.key(6), q, log_joint, num_samples=4000, fn=lambda u: space.constrain(u)[0]
    )
    assert set(s.mean) == {"mu", "tau"} and s.values["tau"].shape == (4000,)
    assert float(s.pareto_k) < 0.7
    mean_tau = np.exp(0.045)
    assert abs(float(s.mean["mu"]) - 1.0) < 4 * float(s.mcse["mu"])
    assert abs(float(s.mean["tau"]) - mean_tau) < 4 * float(s.mcse["tau"])
    np.testing.assert_allclose(s.sd["tau"], mean_tau * np.sqrt(np.expm1(0.09)), rtol=0.05)
