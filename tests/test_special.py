"""jelbo._special against mpmath at 40 digits (references computed here, independently).

Grids are small and each function is evaluated in one jitted, vectorized call per dtype.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np

import jelbo
from jelbo import _special

mp.mp.dps = 40
EPS32 = float(np.finfo(np.float32).eps)

GRID = np.geomspace(1e-3, 1e10, 14)  # 1e-3 ... 1e10, one point per decade
A, B = (v.ravel() for v in np.meshgrid(GRID, np.concatenate([GRID, [0.5, 1.0, 2.0, 7.9]])))


def _mpf(x) -> mp.mpf:
    return mp.mpf(float(x))


def _ref(fn, *args) -> np.ndarray:
    return np.array([float(fn(*map(_mpf, vals))) for vals in zip(*args, strict=True)])


def _rel_err(value, ref, floor: float = 1e-300) -> np.ndarray:
    value = np.asarray(value, np.float64)
    return np.abs(value - ref) / np.maximum(np.abs(ref), floor)


def _lbeta2(a, b):
    return mp.loggamma(a) + mp.loggamma(b) - mp.loggamma(a + b)


@functools.cache
def _betaln_refs(dtype) -> tuple[np.ndarray, ...]:
    a, b = A.astype(dtype), B.astype(dtype)
    value = _ref(_lbeta2, a, b)
    da = _ref(lambda x, y: mp.digamma(x) - mp.digamma(x + y), a, b)
    db = _ref(lambda x, y: mp.digamma(y) - mp.digamma(x + y), a, b)
    lgamma_min = _ref(mp.loggamma, np.minimum(a, b))
    return a, b, value, da, db, lgamma_min


_betaln_and_grad = jax.jit(
    jax.vmap(jax.value_and_grad(lambda a, b: _special.betaln(a, b), argnums=(0, 1)))
)


def test_betaln_against_mpmath(dtype):
    a, b, ref, da, db, lgamma_min = _betaln_refs(dtype)
    value, (ga, gb) = _betaln_and_grad(a, b)
    assert value.dtype == dtype
    if dtype == np.float64:
        # relative 1e-14 (absolute 1e-14 where log B crosses 0, e.g. B(1, 1) = 1)
        err = np.abs(np.asarray(value) - ref) / np.maximum(np.abs(ref), 1.0)
        assert err.max() <= 1e-14, (err.max(), a[err.argmax()], b[err.argmax()])
        for grad, want in ((ga, da), (gb, db)):
            assert np.all(np.isfinite(grad))
            assert _rel_err(grad, want).max() <= 1e-12
    else:
        # float32: a few ulps of the largest term, log B(x, y) ~ lgamma(x) - x log(y) for
        # x = min(a, b) << y (those two can cancel, which float32 cannot resolve).
        scale = np.maximum.reduce([np.abs(ref), np.abs(lgamma_min), np.ones_like(ref)])
        err = np.abs(np.asarray(value, np.float64) - ref) / scale
        assert err.max() <= 8 * EPS32, err.max() / EPS32
        assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))


def test_betaln_is_symmetric_and_matches_lbeta():
    @jax.jit
    def three(a, b):
        return _special.betaln(a, b), _special.betaln(b, a), _special.lbeta(jnp.stack([a, b], -1))

    ab, ba, lbeta = three(A, B)
    np.testing.assert_array_equal(ab, ba)
    np.testing.assert_allclose(lbeta, ab, rtol=2e-14, atol=1e-14)


def test_lbeta_against_mpmath():
    # Three concentrations spanning the range, including one huge next to tiny ones.
    alpha = np.stack([A, B, np.full_like(A, 3.0)], axis=-1)
    ref = _ref(lambda x, y, z: mp.loggamma(x) + mp.loggamma(y) + mp.loggamma(z)
               - mp.loggamma(x + y + z), A, B, alpha[:, 2])  # fmt: skip
    grads = np.stack(
        [
            _ref(lambda x, y, z: mp.digamma(x) - mp.digamma(x + y + z), A, B, alpha[:, 2]),
            _ref(lambda x, y, z: mp.digamma(y) - mp.digamma(x + y + z), A, B, alpha[:, 2]),
            _ref(lambda x, y, z: mp.digamma(z) - mp.digamma(x + y + z), A, B, alpha[:, 2]),
        ],
        axis=-1,
    )
    value, grad = jax.jit(jax.vmap(jax.value_and_grad(_special.lbeta)))(alpha)
    err = np.abs(np.asarray(value) - ref) / np.maximum(np.abs(ref), 1.0)
    assert err.max() <= 1e-13
    assert np.all(np.isfinite(grad))
    gerr = np.abs(np.asarray(grad) - grads) / np.maximum(np.abs(grads), 1e-3)
    assert gerr.max() <= 1e-11

    # one term: log Gamma(a) - log Gamma(a) = 0 exactly; `axis` is honoured.
    @jax.jit  # one program (eagerly, each operation would compile on its own)
    def one_term_and_axis(grid, alpha_t):
        return _special.lbeta(grid[:, None]), _special.lbeta(alpha_t, axis=0)

    one_term, along_axis = one_term_and_axis(jnp.asarray(GRID), jnp.asarray(alpha.T))
    np.testing.assert_array_equal(one_term, 0.0)
    np.testing.assert_allclose(along_axis, value, rtol=1e-15, atol=1e-15)


Y = np.concatenate([np.geomspace(1e-3, 1e10, 40), [1.0, 1.4616321449683623, 2.0, 7.999, 8.0]])


def test_log_gamma_difference_family_against_mpmath():
    xs, ys = (v.ravel() for v in np.meshgrid([1e-3, 0.5, 3.0, 100.0], Y))
    ref_lgd = _ref(lambda a, y: mp.loggamma(y) - mp.loggamma(a + y), xs, ys)
    ref_excess = _ref(lambda a, y: mp.loggamma(y + a) - mp.loggamma(y) - a * mp.log(y), xs, ys)
    ref_dgd = _ref(lambda a, y: mp.digamma(y) - mp.digamma(a + y), xs, ys)
    ref_d2 = _ref(lambda a, y: mp.psi(1, y) - mp.psi(1, a + y), xs, ys)

    @jax.jit
    def all_four(x, y):
        d2 = jax.vmap(jax.grad(_special.digamma_difference, argnums=1))(x, y)
        return (
            _special.log_gamma_difference(x, y),
            _special.log_gamma_ratio_excess(x, y),
            _special.digamma_difference(x, y),
            d2,
        )

    lgd, excess, dgd, d2 = all_four(xs, ys)
    # log Gamma(y) - log Gamma(x + y) ~ -x psi(y) vanishes at psi(1.4616) = 0: floor x there.
    assert _rel_err(lgd, ref_lgd, floor=xs).max() <= 2e-14
    # The excess vanishes like x^2/(2y) and keeps relative precision while it does.
    assert _rel_err(excess, ref_excess).max() <= 1e-13
    assert _rel_err(dgd, ref_dgd).max() <= 1e-13
    assert _rel_err(d2, ref_d2).max() <= 1e-11

    x32, y32 = xs.astype(np.float32), ys.astype(np.float32)
    lgd32 = np.asarray(jax.jit(_special.log_gamma_difference)(x32, y32))
    ref32 = _ref(lambda a, y: mp.loggamma(y) - mp.loggamma(a + y), x32, y32)
    assert lgd32.dtype == np.float32
    assert (_rel_err(lgd32, ref32, floor=1.0) <= 8 * EPS32).all()


def test_lgamma_correction_against_mpmath(dtype):
    x = np.concatenate([np.geomspace(1e-3, 1e10, 30), [7.999, 8.0, 8.001]]).astype(dtype)
    ref = _ref(lambda v: mp.loggamma(v) - (v - 0.5) * mp.log(v) + v - mp.log(2 * mp.pi) / 2, x)
    value = jax.jit(_special.lgamma_correction)(x)
    tol = 1e-14 if dtype == np.float64 else 16 * EPS32
    # relative where delta ~ 1/(12x) is small; below 8 the error is that of lgamma itself.
    err = np.abs(np.asarray(value, np.float64) - ref) / np.where(x >= 8, np.abs(ref), 10.0)
    assert err.max() <= tol


def test_xlogy_zero_times_log_zero():
    # d/dx (x log y) = log y also at x = 0 (a concentration of exactly 1): only the corner
    # x = y = 0 has the 0 log 0 = 0 convention, with zero gradients (jelbo 0.2 zeroed the
    # x-partial wherever x == 0: Beta(1, b).log_prob's a-gradient lacked its log x term).
    x = jnp.array([0.0, 0.0, 0.5, 2.0])
    y = jnp.array([0.0, 3.0, 0.25, 1.0])
    np.testing.assert_allclose(_special.xlogy(x, y), [0.0, 0.0, 0.5 * np.log(0.25), 0.0])
    gx, gy = jax.vmap(jax.grad(_special.xlogy, argnums=(0, 1)))(x, y)
    np.testing.assert_allclose(gx, [0.0, np.log(3.0), np.log(0.25), 0.0])
    np.testing.assert_allclose(gy, [0.0, 0.0, 2.0, 2.0])


def test_xlog1py_and_xlog_keep_the_coefficient_gradient_at_zero():
    x = jnp.array([0.0, 0.0, 0.5])
    y = jnp.array([-1.0, -0.5, 2.0])
    np.testing.assert_allclose(_special.xlog1py(x, y), [0.0, 0.0, 0.5 * np.log(3.0)])
    gx, gy = jax.vmap(jax.grad(_special.xlog1py, argnums=(0, 1)))(x, y)
    np.testing.assert_allclose(gx, [0.0, np.log(0.5), np.log(3.0)])
    np.testing.assert_allclose(gy, [0.0, 0.0, 0.5 / 3.0])
    log_y = jnp.array([-jnp.inf, -2.0, -jnp.inf])
    x = jnp.array([0.0, 0.0, 1.0])
    np.testing.assert_array_equal(_special.xlog(x, log_y), [0.0, 0.0, -np.inf])
    gx, gl = jax.vmap(jax.grad(_special.xlog, argnums=(0, 1)))(x[:2], log_y[:2])
    np.testing.assert_array_equal(gx, [0.0, -2.0])
    np.testing.assert_array_equal(gl, [0.0, 0.0])


def test_gamma_entropy_against_mpmath(dtype):
    c = np.geomspace(1e-3, 1e12, 16).astype(dtype)
    ref = _ref(lambda v: v + mp.loggamma(v) + (1 - v) * mp.digamma(v), c)
    value, grad = jax.jit(jax.vmap(jax.value_and_grad(_special.gamma_entropy)))(c)
    ref_grad = _ref(lambda v: 1 + (1 - v) * mp.psi(1, v), c)
    assert value.dtype == dtype
    tol = 1e-14 if dtype == np.float64 else 16 * EPS32
    assert _rel_err(value, ref, floor=1.0).max() <= tol
    assert _rel_err(grad, ref_grad).max() <= (1e-12 if dtype == np.float64 else 1e-5)


def test_log_softmax_gradient_keeps_relative_precision_for_a_dominant_category(dtype):
    # d log p_0 / d a_0 = 1 - p_0 = sum of the others: formed without 1 - p_0 (which rounds
    # to 0 in float32 at logits (30, 0, 0)).
    a = jnp.asarray([30.0, 0.0, 0.0], dtype)
    grad = jax.grad(lambda v: _special.log_softmax(v)[0])(a)
    others = 2 * np.exp(-30.0) / (1 + 2 * np.exp(-30.0))
    np.testing.assert_allclose(grad[0], others, rtol=1e-13 if dtype == np.float64 else 1e-6)


def test_squared_standardize_gradient_is_zero_at_the_mean_for_an_underflowed_scale():
    x = jnp.float32(0.25)
    # scale e^-90 is 0 in float32: z = 0 at x == loc, and so is the derivative of z^2.
    grads = jax.grad(_special.squared_standardize, argnums=(0, 1, 2))(x, x, jnp.float32(0.0))
    assert all(float(g) == 0.0 for g in grads)


def test_squared_standardize_second_derivatives_at_the_mean():
    """At x == loc with a positive scale, the Hessian of z^2 = ((x - loc)/scale)^2 is the
    exact one: d2/dx2 = d2/dloc2 = 2/scale^2, d2/dx dloc = -2/scale^2, and the scale's second
    derivative 0 (z = 0). A `where` on z == 0 once zeroed it (Normal.log_prob's Hessian at its
    mean was 0, not -1/scale^2: a Laplace fit or Newton step starting at the prior mean)."""
    x, loc, scale = jnp.float64(0.25), jnp.float64(0.25), jnp.float64(2.0)
    h = jax.hessian(_special.squared_standardize, argnums=(0, 1, 2))(x, loc, scale)
    expected = [[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(np.array(h, dtype=np.float64), expected, rtol=1e-15, atol=0)
    hess = jax.hessian(lambda v: jelbo.Normal(jnp.zeros(2), 2.0 * jnp.ones(2)).log_prob(v))
    np.testing.assert_allclose(hess(jnp.array([0.0, 1.0])), -0.25 * np.eye(2), rtol=1e-15)


def test_log_gamma_bregman_against_mpmath():
    """R(x, y) = lgamma(y + x) - lgamma(y) - x psi(y) >= 0, also tiny (x small against y) and
    for negative x down to x + y = 1e-3; its gradient is (psi(y + x) - psi(y), psi(y + x) -
    psi(y) - x psi'(y))."""
    ys = np.array([1e-3, 0.3, 2.5, 7.9, 8.0, 30.0, 1e3, 1e6])
    fractions = np.array([-0.999, -0.5, -1e-3, 1e-6, 1e-3, 0.5, 3.0, 100.0])
    ys, fr = (v.ravel() for v in np.meshgrid(ys, fractions))
    xs = np.where(fr < 0, fr * ys, fr)  # negative steps relative to y, positive absolute
    value_ref = _ref(lambda x, y: mp.loggamma(y + x) - mp.loggamma(y) - x * mp.digamma(y), xs, ys)
    dx_ref = _ref(lambda x, y: mp.digamma(y + x) - mp.digamma(y), xs, ys)
    dy_ref = _ref(lambda x, y: mp.digamma(y + x) - mp.digamma(y) - x * mp.psi(1, y), xs, ys)
    value, (dx, dy) = jax.jit(
        jax.vmap(jax.value_and_grad(_special.log_gamma_bregman, argnums=(0, 1)))
    )(xs, ys)
    assert np.all(np.asarray(value) >= 0)
    # The two parts (each ~ x/(2y), accurate to ~1e-13 relative, ~1e-11 near y = 8) cancel to
    # ~ x^2/(2y): relative error <= 1e-12 + 5e-11/|x| (measured 3.5e-5 at x = 1e-6, y = 8;
    # 2.6e-11 at x = 1e-3; < 1e-14 for |x| >= 0.5).
    rel = _rel_err(value, value_ref)
    assert np.all(rel <= 1e-12 + 5e-11 / np.abs(xs))
    assert np.all(_rel_err(dx, dx_ref) <= 1e-10 + 1e-14 / np.abs(xs))
    assert np.abs(np.asarray(dy) - dy_ref).max() <= 1e-10 * np.abs(dy_ref).max()
