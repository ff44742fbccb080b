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
    g_k = jax.grad(lambda x: jelbo.psis(x)[1])(lw)
    g_norm = jax.grad(lambda x: jax.nn.logsumexp(jelbo.psis(x)[0]))(lw)
    assert np.all(np.isfinite(g_k)) and np.all(np.isfinite(g_norm))
    lw[7] = np.nan
    assert np.isnan(jelbo.psis(lw)[1])
    assert np.isnan(jelbo.psis(lw[:10])[1])


def test_bad_input():
    with pytest.raises(ValueError, match="log_weights"):
        jelbo.psis(1.0)
    with pytest.raises(ValueError, match="axis"):
        jelbo.psis(np.zeros((3, 40)), axis=2)
