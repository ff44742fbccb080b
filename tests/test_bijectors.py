"""Tests of jelbo.bijectors: round trips at random and extreme points, log-det-Jacobians
against ``slogdet`` of ``jax.jacfwd`` of the forward map (onto the free coordinates for the
simplex and Cholesky maps), forward maps against independent NumPy implementations of
Stan's transforms, both dtypes, jit/vmap/grad, hypothesis round trips, errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tol
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jelbo import bijectors as B

# name -> (bijector, unconstrained event size)
BIJECTORS = {
    "identity": (B.Identity(), 3),
    "exp": (B.Exp(), 3),
    "softplus": (B.Softplus(), 3),
    "sigmoid": (B.Sigmoid(jnp.array([-1.0, 0.0, 2.0]), jnp.array([2.0, 1e-3, 50.0])), 3),
    "affine": (B.Affine(jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, -3.0, 0.25])), 3),
    "chain": (B.Chain([B.Affine(-1.0, 2.0), B.Exp(), B.Affine(0.0, 0.5)]), 3),
    "stick_breaking": (B.StickBreaking(), 3),
    "ordered": (B.Ordered(), 4),
    "positive_ordered": (B.PositiveOrdered(), 4),
    "fill_scale_tril": (B.FillScaleTriL(), 6),
    "corr_cholesky": (B.CorrCholesky(), 6),
}

# Extreme inputs whose images are representable in float32 (and so round-trip there).
EXTREME = {
    "identity": [[-1e30, 0.0, 1e30]],
    "exp": [[-80.0, 0.0, 80.0]],
    "softplus": [[-80.0, 1e-30, 80.0], [-30.0, 40.0, 1e30]],
    # Large positive x saturates y onto `high` in float32; those are tested through y.
    "sigmoid": [[-8.0, -80.0, -8.0], [3.0, -40.0, 4.0]],
    "affine": [[-1e30, 0.0, 1e30]],
    "chain": [[-40.0, 1e-30, 40.0]],
    "stick_breaking": [[-40.0, 40.0, -40.0], [40.0, -40.0, 40.0], [-80.0, -80.0, -80.0]],
    "ordered": [[0.0, -30.0, -30.0, 30.0], [5.0, 20.0, 20.0, 20.0]],
    "positive_ordered": [[-80.0, -80.0, -80.0, 30.0], [30.0, 30.0, 29.0, 28.0]],
    "fill_scale_tril": [[-80.0, 1e6, 80.0, -1e6, 0.0, -30.0]],
    "corr_cholesky": [[20.0, -20.0, 6.0, 30.0, 1e-3, -8.0], [-9.0, 0.0, 9.0, 0.0, 0.0, 0.0]],
}
NAMES = list(BIJECTORS)


def free_coords(name, y):
    """The coordinates the log-det-Jacobian is taken onto."""
    if name == "stick_breaking":
        return y[..., :-1]
    if name in ("fill_scale_tril", "corr_cholesky"):
        k = y.shape[-1]
        rows, cols = np.tril_indices(k, 0 if name == "fill_scale_tril" else -1)
        return y[..., rows, cols]
    return y


def jacobian_log_det(name, b, x):
    """float64 slogdet of jacfwd of the forward map onto the free coordinates, per row."""
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    f = lambda v: free_coords(name, B.forward(b, v))
    return np.array([np.linalg.slogdet(np.asarray(jax.jacfwd(f)(jnp.asarray(r))))[1] for r in x])


def cast(b, dtype):
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), b)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_log_det_against_jacobian(name, dtype, rng):
    b, n = BIJECTORS[name]
    b = cast(b, dtype)
    x = jnp.asarray(rng.normal(scale=1.5, size=(2, n)), dtype)
    y = B.forward(b, x)
    assert y.dtype == dtype
    assert y.shape == (2, *b.forward_shape((n,)))
    np.testing.assert_allclose(B.inverse(b, y), x, **tol(dtype))
    ldj = B.forward_log_det_jacobian(b, x)
    assert ldj.shape == (2,) and ldj.dtype == dtype
    reference = jacobian_log_det(name, cast(b, np.float64), x)
    np.testing.assert_allclose(ldj, reference, **tol(dtype))
    np.testing.assert_allclose(B.inverse_log_det_jacobian(b, y), -reference, **tol(dtype))
    # methods are the free functions, and forward_and_log_det is the pair
    np.testing.assert_array_equal(b.forward(x), y)
    np.testing.assert_array_equal(b.inverse_log_det_jacobian(y), B.inverse_log_det_jacobian(b, y))
    y2, ldj2 = B.forward_and_log_det(b, x)
    np.testing.assert_allclose(y2, y, **tol(dtype))
    np.testing.assert_allclose(ldj2, ldj, **tol(dtype))
    assert ldj2.dtype == dtype and b.forward_and_log_det(x)[1].shape == (2,)


@pytest.mark.parametrize("name", NAMES)
def test_extreme_points(name, dtype):
    b, _ = BIJECTORS[name]
    b = cast(b, dtype)
    x = jnp.asarray(EXTREME[name], dtype)
    y = B.forward(b, x)
    assert np.all(np.isfinite(y))
    back = B.inverse(b, y)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(back, x, rtol=rtol, atol=rtol)
    ldj = B.forward_log_det_jacobian(b, x)
    assert np.all(np.isfinite(ldj))
    np.testing.assert_allclose(-B.inverse_log_det_jacobian(b, y), ldj, rtol=rtol, atol=rtol)
    # The float64 Jacobian saturates (e.g. 1 - tanh(30)^2 == 0) where the stable forms do not:
    # compare where it is finite, to the digits it keeps (1 - tanh(9)^2 loses 8 of them).
    reference = jacobian_log_det(name, cast(b, np.float64), x)
    ok = np.isfinite(reference)
    assert ok.any()
    np.testing.assert_allclose(np.asarray(ldj)[ok], reference[ok], rtol=max(rtol, 1e-8))
    grads = jax.grad(lambda v: jnp.sum(B.forward_log_det_jacobian(b, v)))(x)
    assert np.all(np.isfinite(grads))


def test_sigmoid_round_trips_next_to_both_bounds(dtype):
    b = B.Sigmoid(jnp.asarray(-2.0, dtype), jnp.asarray(3.0, dtype))
    eps = np.finfo(dtype).eps
    y = jnp.asarray([-2.0 + 8 * eps, 3.0 - 8 * eps, 0.5], dtype)
    np.testing.assert_allclose(B.forward(b, B.inverse(b, y)), y, rtol=eps, atol=0)
    ldj = B.inverse_log_det_jacobian(b, y)
    assert np.isfinite(ldj)
    x = jnp.asarray([-1e4, 1e4, 0.0], dtype)  # saturated: finite log-det and gradients
    assert np.isfinite(B.forward_log_det_jacobian(b, x))
    assert np.all(np.isfinite(jax.grad(lambda v: B.forward_log_det_jacobian(b, v))(x)))


# --- independent references for the structured maps ------------------------------------------


def stan_simplex(x):
    """Stan's stick-breaking transform, written as in the reference manual (loop)."""
    k = len(x) + 1
    y, stick = np.zeros(k), 1.0
    for i in range(k - 1):
        z = 1.0 / (1.0 + math.exp(-(x[i] - math.log(k - 1 - i))))
        y[i] = stick * z
        stick -= y[i]
    y[-1] = stick
    return y


def stan_corr_cholesky(x, k):
    """Stan's cholesky_corr_constrain: row-by-row with the remaining squared norm."""
    z = np.tanh(np.asarray(x))
    L, pos = np.zeros((k, k)), 0
    L[0, 0] = 1.0
    for i in range(1, k):
        sum_sq = 0.0
        for j in range(i):
            L[i, j] = z[pos] * math.sqrt(1.0 - sum_sq)
            sum_sq += L[i, j] ** 2
            pos += 1
        L[i, i] = math.sqrt(1.0 - sum_sq)
    return L


def test_structured_maps_against_stan_loops(rng):
    x = rng.normal(size=4)
    np.testing.assert_allclose(B.forward(B.StickBreaking(), x), stan_simplex(x), rtol=1e-13)
    np.testing.assert_allclose(B.forward(B.StickBreaking(), np.zeros(4)), np.full(5, 0.2))
    x = rng.normal(size=6)
    L = B.forward(B.CorrCholesky(), x)
    np.testing.assert_allclose(L, stan_corr_cholesky(x, 4), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jnp.diagonal(L @ L.T), np.ones(4), rtol=1e-14)
    x = rng.normal(size=6)
    expected = np.zeros((3, 3))
    expected[np.tril_indices(3)] = x
    expected[np.diag_indices(3)] = np.log1p(np.exp(np.diag(expected)))
    np.testing.assert_allclose(B.forward(B.FillScaleTriL(), x), expected, rtol=1e-14)
    x = rng.normal(size=4)
    np.testing.assert_allclose(
        B.forward(B.Ordered(), x), np.cumsum(np.r_[x[0], np.exp(x[1:])]), rtol=1e-14
    )
    np.testing.assert_allclose(B.forward(B.PositiveOrdered(), x), np.cumsum(np.exp(x)), rtol=1e-14)


# --- transformations ------------------------------------------------------------------------


def test_jit_vmap_grad_and_traced_parameters(rng):
    x = jnp.asarray(rng.normal(size=(5, 6)))
    for name in ("stick_breaking", "fill_scale_tril", "corr_cholesky", "sigmoid"):
        b, n = BIJECTORS[name]
        xs = x[:, :n]
        fwd = jax.jit(B.forward)
        np.testing.assert_allclose(fwd(b, xs), B.forward(b, xs), rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(
            jax.vmap(B.forward_log_det_jacobian, (None, 0))(b, xs),
            B.forward_log_det_jacobian(b, xs),
            rtol=1e-13,
        )
        g = jax.grad(lambda v, b=b: jnp.sum(B.forward_log_det_jacobian(b, v)))(xs)
        assert np.all(np.isfinite(g))

    # Sigmoid's bounds are traced leaves: differentiate through them under jit.
    def f(low, high):
        b = B.Sigmoid(low, high)
        return jnp.sum(B.forward(b, x[:, :3])) + jnp.sum(B.forward_log_det_jacobian(b, x[:, :3]))

    g_low, g_high = jax.jit(jax.grad(f, argnums=(0, 1)))(-1.0, 2.0)
    eps = 1e-6
    np.testing.assert_allclose(g_low, (f(-1.0 + eps, 2.0) - f(-1.0 - eps, 2.0)) / 2 / eps, 1e-6)
    np.testing.assert_allclose(g_high, (f(-1.0, 2.0 + eps) - f(-1.0, 2.0 - eps)) / 2 / eps, 1e-6)
    # bijectors are pytrees: vmap over a batch of parameters
    lows = jnp.linspace(-3.0, 0.0, 5)
    out = jax.vmap(lambda lo, v: B.forward(B.Sigmoid(lo, 1.0), v))(lows, x[:, :3])
    np.testing.assert_allclose(out, B.forward(B.Sigmoid(lows[:, None], 1.0), x[:, :3]))
    assert jax.tree.leaves(B.Chain([B.Exp(), B.Affine(1.0, 2.0)])) == [1.0, 2.0]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(NAMES),
    hnp.arrays(np.float64, 6, elements=st.floats(-30.0, 30.0, allow_nan=False)),
)
def test_round_trip_property(name, values):
    b, n = BIJECTORS[name]
    if name in ("ordered", "positive_ordered"):
        # cumulative sums of e^x lose e^-x against e^x (cancellation in the inverse's diff)
        values = values / 6.0
    elif name == "sigmoid":
        # y next to `high` is stored to eps * high, so x = logit(...) to eps * e^x
        values = values / 2.0
    x = jnp.asarray(values[:n])
    y = B.forward(b, x)
    np.testing.assert_allclose(B.inverse(b, y), x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        B.inverse_log_det_jacobian(b, y), -B.forward_log_det_jacobian(b, x), rtol=1e-9, atol=1e-8
    )


def test_same_bijector():
    assert B.same_bijector(B.Exp(), B.Exp())
    assert not B.same_bijector(B.Exp(), B.Softplus())
    assert B.same_bijector(B.Sigmoid(0.0, 2.0), B.Sigmoid(0.0, 2.0))
    assert not B.same_bijector(B.Sigmoid(0.0, 2.0), B.Sigmoid(0.0, 3.0))
    assert not B.same_bijector(B.Sigmoid(jnp.zeros(2), 1.0), B.Sigmoid(jnp.zeros(3), 1.0))

    @jax.jit
    def traced(low):
        b = B.Sigmoid(low, 1.0)
        return B.same_bijector(b, b), B.same_bijector(b, B.Sigmoid(low + 0.0, 1.0))

    same, other = traced(0.0)
    assert same and not other


def test_errors():
    with pytest.raises(ValueError, match=r"K\(K\+1\)/2.*got 4"):
        B.forward(B.FillScaleTriL(), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"K\(K-1\)/2.*got 2"):
        B.forward(B.CorrCholesky(), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"\(K, K\) matrix.*\(3, 2\)"):
        B.inverse(B.CorrCholesky(), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 1 axis"):
        B.forward_log_det_jacobian(B.Exp(), jnp.asarray(1.0))
    np.testing.assert_allclose(B.forward(B.Exp(), 0.0), 1.0)  # elementwise maps take scalars
    with pytest.raises(TypeError, match="bijector"):
        B.forward(jnp.sin, jnp.zeros(2))
    with pytest.raises(TypeError, match="forward_and_log_det: `b` must be a jelbo bijector"):
        B.forward_and_log_det(jnp.sin, jnp.zeros(2))
    with pytest.raises(ValueError, match="at least 1 axis"):
        B.forward_and_log_det(B.Exp(), jnp.asarray(1.0))
    with pytest.raises(TypeError, match=r"bijectors\[1\]"):
        B.Chain([B.Exp(), jnp.exp])
    with pytest.raises(ValueError, match="K >= 2"):
        B.inverse(B.StickBreaking(), jnp.ones(1))


def test_chain_composes_forward_and_log_det_in_one_pass():
    calls = []

    class Spy(B.Affine):
        def _forward(self, x):
            calls.append("forward")
            return super()._forward(x)

        def _forward_and_log_det(self, x):
            calls.append("pair")
            return super()._forward_and_log_det(x)

    chain = B.Chain([Spy(1.0, 2.0), B.Exp(), Spy(0.0, 0.5)])
    x = jnp.array([[0.1, -0.3], [1.0, 2.0]])
    y, ldj = B.forward_and_log_det(chain, x)
    assert calls == ["pair", "forward", "pair", "forward"]  # each link once, no re-run
    np.testing.assert_allclose(y, B.forward(chain, x), rtol=1e-15)
    np.testing.assert_allclose(ldj, B.forward_log_det_jacobian(chain, x), rtol=1e-15)
    empty_y, empty_ldj = B.forward_and_log_det(B.Chain([]), x)
    np.testing.assert_array_equal(empty_y, x)
    np.testing.assert_array_equal(empty_ldj, jnp.zeros(2))
    # the known-inverse hook: each link gets its own known input (defaults invert)
    np.testing.assert_allclose(chain._inverse_given(y, x), x, rtol=1e-14)
    assert B.Chain([])._inverse_given(y, x) is y
