"""Tests of jelbo.flows: the rational-quadratic spline and the masked flows (MAF, IAF,
coupling; affine and spline transformers; conditional or not).

References are independent of the implementation: ``slogdet`` of ``jax.jacfwd`` for the
log-det-Jacobians, the Jacobian's sparsity for the autoregressive structure, numerical
integration of the pushed-forward density for normalization, a direct float64 NumPy
evaluation of the spline formula, the sequential inverse for the implicit (hinted) inverse's
derivatives. Flows are small (D = 3, two layers) with randomized parameters (a fresh flow is
the identity), and each kind's checks share one compiled function.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate
from hypothesis import given, settings
from hypothesis import strategies as st

import jelbo
from jelbo import bijectors as B
from jelbo import flows

D = 3
C = 2  # context size
BATCH = 4
INTERVAL = 2.0
BINS = 4
KINDS = [
    (kind, transformer, conditional)
    for kind in ("maf", "iaf", "coupling")
    for transformer in ("affine", "spline")
    for conditional in (False, True)
]
IDS = [f"{k}-{t}-{'cond' if c else 'plain'}" for k, t, c in KINDS]


def randomize(tree, key, scale=0.3):
    """Adds N(0, scale^2) noise to every leaf (a fresh flow is the identity: too easy)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, noisy)


def build(kind, transformer, conditional, dim=D, dtype=jnp.float64, seed=0, num_layers=2):
    key = jax.random.key(seed)
    options = dict(
        num_layers=num_layers,
        hidden_sizes=(6,),
        transformer=transformer,
        num_bins=BINS,
        interval=INTERVAL,
        context_dim=C if conditional else None,
        activation="tanh",
        dtype=dtype,
    )
    if kind == "coupling":
        return flows.coupling(key, dim, **options)
    return flows.masked_autoregressive(key, dim, inverse=kind == "iaf", **options)


@functools.cache
def random_flow(kind, transformer, conditional, dtype=jnp.float64):
    """A flow with random parameters and, if conditional, conditioned on BATCH contexts."""
    flow = randomize(build(kind, transformer, conditional, dtype=dtype), jax.random.key(1))
    if conditional:
        context = jax.random.normal(jax.random.key(2), (BATCH, C), dtype)
        flow = flow.condition(context)
    return flow


def points(dtype, n=BATCH):
    """Inputs inside and outside [-INTERVAL, INTERVAL], up to |x| = 10."""
    grid = np.array([-10.0, -2.5, -INTERVAL, -1.3, -0.2, 0.0, 0.7, 1.9, INTERVAL, 3.0, 10.0, 5.5])
    return jnp.asarray(grid.reshape(n, D), dtype)


@jax.jit
def _round_trip(flow, x):
    y = flow.forward(x)
    return y, flow.inverse(y), flow.forward_log_det_jacobian(x), flow.inverse_log_det_jacobian(y)


def _jacobians(flow, x):
    """Per row: the forward Jacobian (autodiff), one context per row."""
    if getattr(flow, "context", None) is None:
        return jax.vmap(jax.jacfwd(flow.forward))(x)

    def per_row(xi, ci):
        return jax.jacfwd(dataclasses.replace(flow, context=ci).forward)(xi)

    return jax.vmap(per_row)(x, flow.context)


_jacobians_jit = jax.jit(_jacobians)


# --- the spline ------------------------------------------------------------------------------


def spline_reference(uw, uh, ud, x, interval, min_w=1e-3, min_h=1e-3, min_d=1e-3):
    """Durkan et al.'s forward formula in float64 NumPy, one coordinate at a time."""
    uw, uh, ud, x = (np.asarray(a, np.float64) for a in (uw, uh, ud, x))
    k = uw.shape[-1]

    def positions(u, m):
        e = np.exp(u - u.max())
        sizes = m + (1 - k * m) * e / e.sum()
        return np.concatenate(
            [[-interval], -interval + 2 * interval * np.cumsum(sizes)[:-1], [interval]]
        )

    y, log_slope = np.empty_like(x), np.empty_like(x)
    for j in range(x.shape[-1]):
        xs, ys = positions(uw[j], min_w), positions(uh[j], min_h)
        c = math.log(math.expm1(1 - min_d))
        d = np.concatenate([[1.0], min_d + np.logaddexp(0, ud[j] + c), [1.0]])
        for i in np.ndindex(x.shape[:-1]):
            v = x[i + (j,)]
            if abs(v) > interval:
                y[i + (j,)], log_slope[i + (j,)] = v, 0.0
                continue
            b = min(max(np.searchsorted(xs, v, side="right") - 1, 0), k - 1)
            w, h = xs[b + 1] - xs[b], ys[b + 1] - ys[b]
            s, xi = h / w, (v - xs[b]) / w
            den = s + (d[b + 1] + d[b] - 2 * s) * xi * (1 - xi)
            y[i + (j,)] = ys[b] + h * (s * xi**2 + d[b] * xi * (1 - xi)) / den
            num = s**2 * (d[b + 1] * xi**2 + 2 * s * xi * (1 - xi) + d[b] * (1 - xi) ** 2)
            log_slope[i + (j,)] = math.log(num / den**2)
    return y, log_slope.sum(-1)


SPLINE_ROWS = 512  # every spline check evaluates (SPLINE_ROWS, D) points: one compilation
SPLINE_BINS = 6
SPLINE_INTERVAL = 3.0


def random_spline(key, scale=1.0, dtype=jnp.float64, batch=()):
    k1, k2, k3 = jax.random.split(key, 3)
    shape = (*batch, D, SPLINE_BINS)
    return flows.RationalQuadraticSpline(
        scale * jax.random.normal(k1, shape, dtype),
        scale * jax.random.normal(k2, shape, dtype),
        scale * jax.random.normal(k3, shape[:-1] + (SPLINE_BINS - 1,), dtype),
        interval=SPLINE_INTERVAL,
    )


def pad(x, dtype):
    """``x`` (n, D) as SPLINE_ROWS rows (zeros after), so that the compiled checks are reused."""
    x = np.asarray(x, np.float64).reshape(-1, D)
    out = np.zeros((SPLINE_ROWS, D))
    out[: len(x)] = x
    return jnp.asarray(out, dtype)


@jax.jit
def _spline_all(spline, x):
    """Both directions, log-dets, slopes (the Jacobian is diagonal: one JVP with ones) and
    gradients, at ``x`` and (the other way round) at ``inverse(x)``."""
    y, x_back, ld, ild = _round_trip.__wrapped__(spline, x)
    x2 = spline.inverse(x)
    ones = jnp.ones_like(x)

    def forward_total(s, v):
        return jnp.sum(s.forward(v)) + jnp.sum(s.forward_log_det_jacobian(v))

    def inverse_total(s, v):
        return jnp.sum(s.inverse(v)) + jnp.sum(s.inverse_log_det_jacobian(v))

    return {
        "y": y,
        "x_back": x_back,
        "ld": ld,
        "ild": ild,
        "slope": jax.jvp(spline.forward, (x,), (ones,))[1],
        "x2": x2,
        "y2": spline.forward(x2),
        "slope2": jax.jvp(spline.forward, (x2,), (ones,))[1],
        "grad_forward": jax.grad(forward_total, argnums=(0, 1))(spline, x),
        "grad_inverse": jax.grad(inverse_total, argnums=(0, 1))(spline, x),
    }


def test_spline_against_the_formula_and_jacobian(rng):
    spline = random_spline(jax.random.key(0))
    x = rng.uniform(-4, 4, size=(SPLINE_ROWS, D))
    x[0] = [-3.0, 3.0, 0.0]  # the interval's ends exactly
    y_ref, ld_ref = spline_reference(
        spline.unnormalized_widths,
        spline.unnormalized_heights,
        spline.unnormalized_derivatives,
        x[:64],
        SPLINE_INTERVAL,
    )
    out = _spline_all(spline, jnp.asarray(x))
    np.testing.assert_allclose(out["y"][:64], y_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(out["ld"][:64], ld_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.log(out["slope"][:64]).sum(-1), ld_ref, atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_spline_round_trip(dtype, scale):
    """|x| up to 10: 1e-12 relative in float64, 1e-5 in float32 (parameters of scale <= 1)."""
    spline = random_spline(jax.random.key(3), scale=scale, dtype=dtype)
    x = jax.random.uniform(jax.random.key(4), (SPLINE_ROWS, D), dtype, -10.0, 10.0)
    out = _spline_all(spline, x)
    assert all(out[k].dtype == dtype for k in ("y", "x_back", "ld", "ild"))
    rel = np.abs(np.float64(out["x_back"]) - np.float64(x)) / np.maximum(1.0, np.abs(np.float64(x)))
    assert rel.max() < (1e-12 if dtype == np.float64 else 1e-5)
    np.testing.assert_allclose(out["ld"], -out["ild"], atol=1e-11 if dtype == np.float64 else 1e-4)


def test_spline_round_trip_is_backward_stable_for_steep_bins(dtype):
    """With parameters of scale 3 (slopes from 1e-5 to 20) the round trip's error stays
    within a few ulps of the problem's condition, eps * (|x| + B + (|y| + B) / slope), both
    ways (the knots are of size B, so values near 0 carry absolute errors of order eps * B)."""
    spline = random_spline(jax.random.key(5), scale=3.0, dtype=dtype)
    x = jax.random.uniform(jax.random.key(6), (SPLINE_ROWS, D), dtype, -10.0, 10.0)
    out = {k: np.float64(v) for k, v in _spline_all(spline, x).items() if k[0] in "xys"}
    eps, b, x = np.finfo(dtype).eps, SPLINE_INTERVAL, np.float64(x)
    assert out["slope"].min() < 1e-3 and out["slope"].max() > 10  # flat and steep bins
    cond = eps * (np.abs(x) + b + (np.abs(out["y"]) + b) / out["slope"])
    assert (np.abs(out["x_back"] - x) <= 8 * cond).all()
    # the other way: y -> x -> y, conditioned by the slope at the preimage
    cond_y = eps * (np.abs(x) + b + (np.abs(out["x2"]) + b) * out["slope2"])
    assert (np.abs(out["y2"] - x) <= 8 * cond_y).all()


def test_spline_identity_and_boundary_derivatives(dtype):
    identity = flows.RationalQuadraticSpline.identity(
        D, SPLINE_BINS, interval=SPLINE_INTERVAL, dtype=dtype
    )
    x = pad([[-5.0, -3.0, -0.4], [0.0, 3.0, 7.0]], dtype)
    out = _spline_all(identity, x)
    np.testing.assert_allclose(out["y"], x, atol=8 * np.finfo(dtype).eps)
    np.testing.assert_allclose(out["ld"], 0.0, atol=16 * np.finfo(dtype).eps)
    # Slope 1 at +-B from both sides (linear tails) for a non-trivial spline, and the
    # gradient at the boundary and at a knot is the one-sided slope (no halved clip gradient).
    spline = random_spline(jax.random.key(7), dtype=dtype)
    knot = float(spline._knots(dtype).x[0, 2])
    step = 1e-3 * float(np.sqrt(np.finfo(dtype).eps))
    at = [[-3.0, 3.0, -3.001], [3.001, -3.0, 3.0], [knot, 0, 0], [knot - step, 0, 0]]
    slope = np.float64(_spline_all(spline, pad(at + [[knot + step, 0, 0]], dtype))["slope"])
    np.testing.assert_allclose(slope[:2], 1.0, rtol=1e-5)
    np.testing.assert_allclose(slope[3, 0], slope[2, 0], rtol=1e-4)
    np.testing.assert_allclose(slope[4, 0], slope[2, 0], rtol=1e-4)


def test_spline_extremes_are_finite_with_finite_gradients(dtype):
    """x = +-B exactly, +-1e4, and bins squeezed to their minimum width, height, slope."""
    uw = np.zeros((D, SPLINE_BINS))
    uh = np.zeros((D, SPLINE_BINS))
    ud = np.zeros((D, SPLINE_BINS - 1))
    uw[0, :2], uh[0, 2:4], ud[0, :2] = -1e3, -1e3, [-1e3, 1e3]
    uw[1, 3], uh[1, 1], ud[1, 1:3] = 30.0, -30.0, [50.0, -50.0]
    spline = flows.RationalQuadraticSpline(
        *(jnp.asarray(u, dtype) for u in (uw, uh, ud)), interval=SPLINE_INTERVAL
    )
    rows = [[-3.0, 3.0, 0.0], [3.0, -3.0, -3.0], [-1e4, 1e4, 1e4], [-2.999, 2.999, 1e-7]]
    out = _spline_all(spline, pad(rows, dtype))
    for leaf in jax.tree_util.tree_leaves(out):
        assert np.isfinite(np.asarray(leaf)).all()
    x = np.asarray(pad(rows, dtype))
    np.testing.assert_array_equal(out["y"][2], x[2])  # identity tails
    np.testing.assert_array_equal(out["y"][:2], x[:2])  # the ends map onto the ends
    np.testing.assert_array_equal(out["x_back"][:3], x[:3])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    value=st.floats(-12.0, 12.0, allow_nan=False),
)
def test_spline_round_trip_property(seed, value):
    spline = random_spline(jax.random.key(seed))
    x = pad([[value] * D], np.float64)
    out = _spline_all(spline, x)
    np.testing.assert_allclose(out["x_back"][0], x[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["ld"][0], -out["ild"][0], atol=1e-11)


def test_spline_batch_shape_and_errors():
    spline = random_spline(jax.random.key(8), batch=(5,))
    assert spline.batch_shape == (5,)
    assert jax.eval_shape(spline.forward, jnp.zeros(D)).shape == (5, D)
    with pytest.raises(ValueError, match=r"D=3.*event shape \(4,\)"):
        spline.forward(jnp.zeros(4))
    with pytest.raises(ValueError, match="derivatives K-1"):
        flows.RationalQuadraticSpline(jnp.zeros((3, 4)), jnp.zeros((3, 4)), jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(\*batch, D, K\)"):
        flows.RationalQuadraticSpline(jnp.zeros(4), jnp.zeros(4), jnp.zeros(3))
    with pytest.raises(ValueError, match="`interval` must be finite and > 0"):
        flows.RationalQuadraticSpline.identity(2, interval=-1.0)
    with pytest.raises(ValueError, match="`min_bin_width`"):
        flows.RationalQuadraticSpline.identity(2, 4, min_bin_width=0.3)


# --- the masked flows --------------------------------------------------------------------------

# Inputs at the spline's interval ends and far beyond it.
EXTREME = np.array(
    [
        [-INTERVAL, INTERVAL, 0.0],
        [1e4, -1e4, INTERVAL],
        [-1e4, 0.0, 1e4],
        [INTERVAL, -INTERVAL, -1e4],
    ]
)


def _first_layer_jacobians(flow, x):
    """Per row: the Jacobian of layer 0 alone (its one-pass map)."""
    layers, x = flow._stacked(x)
    first = jax.tree_util.tree_map(lambda a: a[0], layers)

    def one(u, c):
        return flow._layer(first._replace(context=c), u)[0]

    if first.context is None:
        return jax.vmap(jax.jacfwd(one), (0, None))(x, None)
    return jax.vmap(jax.jacfwd(one))(x, first.context)


@jax.jit
def _check(flow, x):
    """What the per-kind exactness test looks at, in one compiled function per kind."""
    y, x_back, ld, ild = _round_trip.__wrapped__(flow, x)
    return {
        "y": y,
        "x_back": x_back,
        "ld": ld,
        "ild": ild,
        "jac": _jacobians(flow, x),
        "jac_layer": _first_layer_jacobians(flow, x + 0.1),
    }


@jax.jit
def _extremes(flow, x):
    """Values of both directions and gradients (parameters and inputs) of the forward one."""

    def forward_total(f, v):
        return jnp.sum(f.forward(v)) + jnp.sum(f.forward_log_det_jacobian(v))

    return _round_trip.__wrapped__(flow, x), jax.grad(forward_total, argnums=(0, 1))(flow, x)


#: Each kind and each transformer once plain and once conditional (the context enters every
#: kind's conditioner the same way).
EXACT_KINDS = [0, 3, 5, 6, 8, 11]


@pytest.mark.parametrize(
    ("kind", "transformer", "conditional"),
    [KINDS[i] for i in EXACT_KINDS],
    ids=[IDS[i] for i in EXACT_KINDS],
)
def test_flow_exactness(kind, transformer, conditional):
    """Round trip to 1e-12 relative for |x| up to 10; log-dets equal slogdet of jacfwd; one
    layer's Jacobian has exactly the autoregressive (or coupling) sparsity of its degrees; a
    fresh flow (same compiled function) is the identity."""
    flow = random_flow(kind, transformer, conditional)
    x = points(np.float64)
    out = _check(flow, x)
    rel = np.abs(out["x_back"] - np.asarray(x)) / np.maximum(1.0, np.abs(np.asarray(x)))
    assert rel.max() < 1e-12
    sign, logdet = np.linalg.slogdet(np.asarray(out["jac"]))
    assert np.all(sign == 1)  # orientation preserving
    np.testing.assert_allclose(out["ld"], logdet, atol=1e-12)
    np.testing.assert_allclose(out["ild"], -logdet, atol=1e-12)
    # Layer 0 alone: output j depends on input i only if degree(i) < degree(j), or i == j.
    degrees = np.asarray(flow.degrees[0])
    allowed = (degrees[None, :] < degrees[:, None]) | np.eye(D, dtype=bool)
    jac_layer = np.asarray(out["jac_layer"])
    assert np.all(jac_layer[:, ~allowed] == 0.0)
    if transformer == "affine" and kind != "coupling":  # and every allowed dependence is there
        assert np.all(np.abs(jac_layer[:, allowed]) > 0)
    # fresh: the identity
    fresh = build(kind, transformer, conditional)
    if conditional:
        fresh = fresh.condition(flow.context)
    fresh_out = _check(fresh, x)
    np.testing.assert_allclose(fresh_out["y"], x, atol=1e-14)
    np.testing.assert_allclose(fresh_out["ld"], 0.0, atol=1e-14)
    leaves = jax.tree_util.tree_leaves(fresh)
    assert leaves and all(
        isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves
    )
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(flow)


FLOAT32_KINDS = [1, 10]  # maf-affine-cond (sequential forward), coupling-spline-plain


@pytest.mark.parametrize(
    ("kind", "transformer", "conditional"),
    [KINDS[i] for i in FLOAT32_KINDS],
    ids=[IDS[i] for i in FLOAT32_KINDS],
)
def test_float32_round_trip_and_dtype(kind, transformer, conditional):
    """float32 flows stay float32 (under x64) in both directions and as a Transformed
    family's log-density and ELBO; round trip to 1e-5 relative for |x| up to 10."""
    flow = random_flow(kind, transformer, conditional, dtype=jnp.float32)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(flow))
    x = points(np.float32)
    y, x_back, ld, ild = _round_trip(flow, x)
    assert y.dtype == x_back.dtype == ld.dtype == ild.dtype == jnp.float32
    rel = np.abs(np.float64(x_back) - np.float64(x)) / np.maximum(1.0, np.abs(np.float64(x)))
    assert rel.max() < 1e-5
    np.testing.assert_allclose(ild, -ld, atol=1e-5)
    q = jelbo.Transformed(jelbo.Normal(jnp.zeros(D, jnp.float32), jnp.ones(D, jnp.float32)), flow)
    elbo = jelbo.ELBO(num_samples=2, kl="mc", grad_estimator="stl")
    out = jax.eval_shape(lambda q: (q.log_prob(x), elbo(jax.random.key(0), q, _log_joint).value), q)
    assert out[0].dtype == out[1].dtype == jnp.float32


def test_extremes_are_finite_with_finite_gradients():
    """At +-interval exactly and +-1e4, a spline IAF: finite values in both directions (the
    one-pass and the sequential one; MAF is the same pair reversed) and finite gradients of
    the forward direction with respect to the parameters and the inputs (the spline's own
    inverse gradients at these points: test_spline_extremes_are_finite_...)."""
    for leaf in jax.tree_util.tree_leaves(_extremes(random_flow("iaf", "spline", False), EXTREME)):
        assert np.isfinite(np.asarray(leaf)).all()


def test_eager_equals_jit_and_vmap():
    flow = random_flow("iaf", "affine", True)
    x = points(np.float64)
    y = flow.forward(x)
    eager = (y, flow.inverse(y), flow.forward_log_det_jacobian(x), flow.inverse_log_det_jacobian(y))
    for a, b in zip(eager, _round_trip(flow, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    # vmap over rows (one context each) and over a stack of flows
    per_row = jax.jit(jax.vmap(lambda f, c, v: f.condition(c).forward(v), (None, 0, 0)))(
        flow, flow.context, x
    )
    np.testing.assert_allclose(per_row, eager[0], rtol=1e-13, atol=1e-13)
    other = randomize(flow, jax.random.key(9))
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), flow, other)
    out = jax.jit(jax.vmap(lambda f, v: f.forward(v), (0, None)))(stacked, x)
    np.testing.assert_allclose(out[0], eager[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(out[1], _round_trip(other, x)[0], rtol=1e-13, atol=1e-13)


def test_grad_and_optax_apply_to_a_flow_directly():
    flow = random_flow("coupling", "spline", False)
    x = points(np.float64)

    def loss(f):
        return jnp.sum(jnp.square(f.forward(x))) - jnp.sum(f.forward_log_det_jacobian(x))

    opt = optax.adam(1e-2)

    @jax.jit
    def step(f, state):
        value, grads = jax.value_and_grad(loss)(f)
        updates, state = opt.update(grads, state, f)
        return value, grads, optax.apply_updates(f, updates), loss(optax.apply_updates(f, updates))

    value, grads, new, new_value = step(flow, opt.init(flow))
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(flow)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    masks = flow._stacked(x)[0].masks
    for g, m in zip(grads.weights, masks, strict=True):  # masked weights: zero
        assert np.all(np.asarray(g)[m == 0] == 0)
    assert isinstance(new, flows.Coupling) and new_value < value


GRID_1D = np.linspace(-12.0, 12.0, 240_001)  # h = 1e-4
GRID_2D = np.linspace(-7.0, 7.0, 481)  # h = 0.029


@jax.jit
def _normalization(flow1, flow2, x):
    """Densities of Transformed(N(0, I), flow) on the 1-D grid (for each of flow1's two
    contexts) and the 2-D grid, and flow1's round trip at x: one compilation per kind."""
    q1 = jelbo.Transformed(jelbo.Normal(jnp.zeros(1), jnp.ones(1)), flow1)
    q2 = jelbo.Transformed(jelbo.Normal(jnp.zeros(2), jnp.ones(2)), flow2)
    grid1 = jnp.asarray(GRID_1D)[:, None, None]  # (n, 1, 1): against the contexts' (2,)
    xx, yy = jnp.meshgrid(jnp.asarray(GRID_2D), jnp.asarray(GRID_2D), indexing="ij")
    y = flow1.forward(x)
    return {
        "dens1": jnp.exp(q1.log_prob(grid1)),
        "dens2": jnp.exp(q2.log_prob(jnp.stack([xx, yy], -1))),
        "x_back": flow1.inverse(y),
        "y": y,
    }


@pytest.mark.parametrize("kind", ["maf", "iaf", "coupling"])
def test_normalized_in_one_and_two_dimensions(kind):
    """The density of Transformed(N(0, I), flow) integrates to 1: composite Simpson with
    h = 1e-4 on [-12, 12] in 1-D (the splines are C^1, so the density is continuous with
    kinks at the knots: error O(h^2) there, 3e-7 with h = 1e-3), a trapezoid grid with
    h = 0.029 on [-7, 7]^2 in 2-D. The
    1-D flows are conditional with dim=1 (their transformers' parameters come from the
    context alone), each of two contexts a different density."""
    flow = randomize(build(kind, "spline", True, dim=1), jax.random.key(4))
    flow = flow.condition(jnp.asarray([[0.7, -0.2], [-1.0, 0.4]]))
    transformer = "affine" if kind == "maf" else "spline"
    flow2 = randomize(build(kind, transformer, False, dim=2), jax.random.key(5), scale=0.2)
    x = jnp.asarray([[0.3], [0.3]])
    out = _normalization(flow, flow2, x)
    np.testing.assert_allclose(out["x_back"], x, atol=1e-13)
    assert out["y"][0, 0] != out["y"][1, 0]  # depends on the context
    mass = scipy.integrate.simpson(np.asarray(out["dens1"]), x=GRID_1D, axis=0)
    np.testing.assert_allclose(mass, 1.0, atol=1e-8)
    dens = np.asarray(out["dens2"])
    assert abs(np.trapezoid(np.trapezoid(dens, GRID_2D, axis=1), GRID_2D) - 1.0) < 1e-4


def test_chain_composition():
    iaf = random_flow("iaf", "affine", False)
    chain = B.Chain([iaf, B.Affine(jnp.array([1.0, -1.0, 0.5]), jnp.array([2.0, 0.5, 1.5]))])
    x = points(np.float64)
    _, x_back, ld, ild = _round_trip(chain, x)
    np.testing.assert_allclose(x_back, x, atol=1e-12)
    np.testing.assert_allclose(ld, np.linalg.slogdet(_jacobians_jit(chain, x))[1], atol=1e-12)
    np.testing.assert_allclose(ild, -ld, atol=1e-12)


# --- the implicit inverse at a known point -----------------------------------------------------


def _log_q_pair(flow, x):
    """log q at y = f(x) through the sequential inverse (reference) and through the known x."""
    base = jelbo.Normal(jnp.zeros(D), jnp.ones(D))

    def reference(f, v):
        u, ild = f._inverse_and_log_det(v)
        return jnp.sum(base.log_prob(u) + ild)

    def hinted(f, v):
        u = f._inverse_given(v, jax.lax.stop_gradient(x))
        return jnp.sum(base.log_prob(u) - f.forward_log_det_jacobian(u))

    return reference, hinted


@jax.jit
def _implicit_first_order(flow, x):
    y = flow.forward(x)
    return [(fn(flow, y), jax.grad(fn, argnums=(0, 1))(flow, y)) for fn in _log_q_pair(flow, x)]


def test_implicit_inverse_matches_the_sequential_inverse():
    """log q(y) through the known preimage (no sequential inverse): the same value and
    gradients with respect to y and the parameters as through ``inverse`` (a conditional
    spline IAF; the affine one through the objectives below)."""
    flow = random_flow("iaf", "spline", True)
    (v1, g1), (v2, g2) = _implicit_first_order(flow, points(np.float64) * 0.4)
    np.testing.assert_allclose(v2, v1, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(a).max()))


def test_implicit_inverse_second_derivatives():
    """The Hessian in y too: the tangent rule evaluates the Jacobian at the implicit point."""
    flow = random_flow("iaf", "affine", False)
    x = points(np.float64) * 0.4
    y = flow.forward(x)
    h1, h2 = jax.jit(lambda f, v: [jax.hessian(fn, argnums=1)(f, v) for fn in _log_q_pair(f, x)])(
        flow, y
    )
    np.testing.assert_allclose(h2, h1, rtol=1e-8, atol=1e-8 * np.abs(h1).max())


# --- flows as variational families -------------------------------------------------------------


class _InverseOnly(flows.InverseAutoregressive):
    """The reference: an IAF whose stopped-parameter log-density runs the sequential inverse."""

    def _inverse_given(self, y, x):
        return self._inverse(y)


def _inverse_only(flow):
    return _InverseOnly(**{f.name: getattr(flow, f.name) for f in dataclasses.fields(flow)})


def _log_joint(z):
    """A correlated Gaussian target in 3-D (log joint up to a constant)."""
    return -0.5 * (z[0] ** 2 + 4.0 * (z[1] - 0.5 * z[0]) ** 2 + (z[2] + z[1]) ** 2)


OBJECTIVES = {
    "elbo-reparam": jelbo.ELBO(num_samples=4, kl="mc"),
    "elbo-stl": jelbo.ELBO(num_samples=4, kl="mc", grad_estimator="stl"),
    "iwae-reparam": jelbo.IWAE(num_samples=4),
    "iwae-dreg": jelbo.IWAE(num_samples=4, grad_estimator="dreg"),
    "renyi": jelbo.Renyi(alpha=0.5, num_samples=4),
}


def _scan_lengths(jaxpr, found):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            found.append(eqn.params["length"])
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                _scan_lengths(inner, found)
    return found


def _objective_losses(names):
    base = jelbo.Normal(jnp.zeros(D), jnp.ones(D))

    def losses(f, key):
        q = jelbo.Transformed(base, f)
        return jnp.stack([-OBJECTIVES[n](key, q, _log_joint).value for n in names])

    return losses


@functools.cache
def _values_and_grads(names, reference):
    """jit of vmap over keys of the objectives' values and gradients (one compilation)."""
    losses = _objective_losses(names)
    return jax.jit(jax.vmap(lambda f, k: (losses(f, k), jax.jacrev(losses)(f, k)), (None, 0)))


def test_every_objective_with_an_iaf_posterior():
    """ELBO (reparam, STL), IWAE (reparam, DReG), Renyi with an IAF q: values and gradients
    finite under jit of vmap (over two keys) of grad; STL and DReG through the implicit
    inverse equal the same estimators through the sequential inverse, to rounding."""
    flow = random_flow("iaf", "affine", False)
    keys = jax.random.split(jax.random.key(0), 2)
    names = tuple(OBJECTIVES)
    values, grads = _values_and_grads(names, False)(flow, keys)
    assert values.shape == (2, len(names)) and np.isfinite(values).all()
    assert np.all(values[0] != values[1])  # one estimate per key
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.isfinite(np.asarray(leaf)).all()
    stopped = ("elbo-stl", "iwae-dreg")
    ref_values, ref_grads = _values_and_grads(stopped, True)(_inverse_only(flow), keys)
    index = np.array([names.index(n) for n in stopped])
    np.testing.assert_allclose(values[:, index], ref_values, rtol=1e-12)
    for a, b in zip(
        jax.tree_util.tree_leaves(ref_grads), jax.tree_util.tree_leaves(grads), strict=True
    ):
        np.testing.assert_allclose(np.asarray(b)[:, index], a, rtol=1e-9, atol=1e-12)


def test_no_sequential_inverse_for_the_density_of_own_draws():
    """The traced STL and DReG gradients contain no loop of the sequential inverse's D = 3
    passes (the layers' loop has length 2); through the sequential inverse they do."""
    flow = random_flow("iaf", "affine", False)
    key = jax.random.key(0)
    for name in ("elbo-stl", "iwae-dreg"):
        loss = lambda f, k, name=name: _objective_losses((name,))(f, k)[0]
        assert D not in _scan_lengths(jax.make_jaxpr(jax.grad(loss))(flow, key).jaxpr, [])
        reference = jax.make_jaxpr(jax.grad(loss))(_inverse_only(flow), key).jaxpr
        assert D in _scan_lengths(reference, [])


def test_amortized_iaf_posterior():
    """An encoder's output as the context (one per datapoint): batch shape B, IWAE with
    DReG, gradients reach the encoder through the context."""
    flow = flows.masked_autoregressive(
        jax.random.key(0), D, num_layers=2, hidden_sizes=(8,), inverse=True, context_dim=C
    )
    flow = randomize(flow, jax.random.key(1), scale=0.1)
    data = jax.random.normal(jax.random.key(2), (5, 4))
    encoder = {"loc": 0.1 * jnp.ones((4, D)), "context": 0.1 * jnp.ones((4, C))}
    prior = jelbo.Normal(jnp.zeros(D), jnp.ones(D))
    objective = jelbo.IWAE(num_samples=3, grad_estimator="dreg")

    def log_likelihood(z, x):
        return -0.5 * jnp.sum((x[:D] - z) ** 2)

    def loss(params, key):
        f, enc = params
        q = jelbo.Transformed(
            jelbo.Normal(data @ enc["loc"], jnp.ones(D)), f.condition(data @ enc["context"])
        )
        assert q.batch_shape == (5,)
        return -jnp.mean(objective(key, q, log_likelihood, prior, data).value)

    value, (g_flow, g_enc) = jax.jit(jax.value_and_grad(loss))((flow, encoder), jax.random.key(3))
    assert np.isfinite(value)
    assert np.abs(np.asarray(g_enc["context"])).max() > 0
    for leaf in jax.tree_util.tree_leaves((g_flow, g_enc)):
        assert np.isfinite(np.asarray(leaf)).all()


# --- errors -------------------------------------------------------------------------------------


def test_errors_name_the_argument_and_shapes():
    key = jax.random.key(0)
    flow = flows.masked_autoregressive(key, 3, num_layers=1, hidden_sizes=(4,), inverse=True)
    with pytest.raises(ValueError, match=r"dim=3.*event shape \(5,\)"):
        flow.forward(jnp.zeros(5))
    with pytest.raises(ValueError, match="takes no context"):
        flow.condition(jnp.zeros(2))
    cond = flows.coupling(key, 3, num_layers=1, hidden_sizes=(4,), context_dim=2)
    with pytest.raises(ValueError, match=r"flow.condition\(context\)"):
        cond.forward(jnp.zeros(3))
    with pytest.raises(
        ValueError,
        match=r"`context` must have shape \(\*batch, context_dim=2\); got shape \(4, 3\)",
    ):
        cond.condition(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"batch axes \(5,\).*context's \(4,\)"):
        cond.condition(jnp.zeros((4, 2))).forward(jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="`dim` must be >= 1"):
        flows.coupling(key, 0)
    with pytest.raises(ValueError, match="`transformer` must be one of"):
        flows.masked_autoregressive(key, 2, transformer="neural")
    with pytest.raises(ValueError, match="`hidden_sizes` needs at least one"):
        flows.coupling(key, 2, hidden_sizes=())
    with pytest.raises(ValueError, match="`activation` must be one of"):
        flows.coupling(key, 2, activation="sigmoid")
    with pytest.raises(ValueError, match="`interval`"):
        flows.coupling(key, 2, transformer="spline", interval=0.0)
    with pytest.raises(TypeError, match="`key`"):
        flows.coupling(0, 2)
    with pytest.raises(ValueError, match="must then be concrete"):
        jax.jit(lambda k: flows.masked_autoregressive(k, 3, permutation="random").weights[0])(key)
    # the same shape errors at trace time, under jit (eval_shape traces without running)
    with pytest.raises(ValueError, match=r"dim=3.*event shape \(5,\)"):
        jax.eval_shape(jax.jit(lambda f, v: f.inverse(v)), flow, jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"flow.condition\(context\)"):
        jax.eval_shape(jax.jit(lambda f, v: f.inverse(v)), cond, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"context_dim=2\); got shape \(4, 3\)"):
        jax.eval_shape(
            jax.jit(lambda f, c: f.condition(c).forward(jnp.zeros(3))), cond, jnp.zeros((4, 3))
        )
    with pytest.raises(ValueError, match=r"batch axes \(5,\).*context's \(4,\)"):
        jax.eval_shape(
            jax.jit(lambda f, c, v: f.condition(c).inverse(v)),
            cond,
            jnp.zeros((4, 2)),
            jnp.zeros((5, 3)),
        )


def test_condition_batch_shape():
    """``condition(context)``'s batch shape is ``context.shape[:-1]``; inputs broadcast against
    it (one latent per context, or one input for all contexts), in both directions; a
    Transformed family on it has that batch shape."""
    key = jax.random.key(0)
    for flow in (
        flows.masked_autoregressive(key, 3, num_layers=1, hidden_sizes=(4,), context_dim=2),
        flows.coupling(key, 3, num_layers=1, hidden_sizes=(4,), context_dim=2),
    ):
        cond = flow.condition(jnp.zeros((2, 5, 2)))
        assert cond.batch_shape == (2, 5) and flow.batch_shape == ()
        for fn in (cond.forward, cond.inverse):
            assert jax.eval_shape(fn, jnp.zeros(3)).shape == (2, 5, 3)
            assert jax.eval_shape(fn, jnp.zeros((5, 3))).shape == (2, 5, 3)
        for fn in (cond.forward_log_det_jacobian, cond.inverse_log_det_jacobian):
            assert jax.eval_shape(fn, jnp.zeros((5, 3))).shape == (2, 5)
        q = jelbo.Transformed(jelbo.Normal(jnp.zeros((5, 3)), jnp.ones((5, 3))), cond)
        assert q.batch_shape == (2, 5) and q.event_shape == (3,)


# --- variational inference ----------------------------------------------------------------------


def banana_log_density(z):
    """A normalized banana: z0 ~ N(0, 1), z1 | z0 ~ N(z0^2 - 1, 0.5^2)."""
    return (
        -0.5 * z[0] ** 2
        - 0.5 * ((z[1] - z[0] ** 2 + 1.0) / 0.5) ** 2
        - math.log(2 * math.pi)
        - math.log(0.5)
    )


def test_flow_beats_a_full_rank_gaussian_on_a_banana():
    """ELBO (= -KL, the target is normalized) after the same Adam steps and draws."""
    steps, draws = 600, 32
    objective = jelbo.ELBO(num_samples=draws, kl="mc", grad_estimator="stl")
    base = jelbo.Normal(jnp.zeros(2), jnp.ones(2))

    def fit(make_q, params):
        opt = optax.adam(3e-3)

        def loss(p, key):
            return -objective(key, make_q(p), banana_log_density).value

        @jax.jit
        def run(params, key):
            def step(carry, k):
                p, s = carry
                g = jax.grad(loss)(p, k)
                u, s = opt.update(g, s, p)
                return (optax.apply_updates(p, u), s), None

            (params, _), _ = jax.lax.scan(
                step, (params, opt.init(params)), jax.random.split(key, steps)
            )
            return -jnp.mean(jax.vmap(lambda k: loss(params, k))(jax.random.split(key, 64)))

        return float(run(params, jax.random.key(11)))

    flow = flows.masked_autoregressive(
        jax.random.key(0), 2, num_layers=2, hidden_sizes=(16,), inverse=True, activation="gelu"
    )
    elbo_flow = fit(lambda f: jelbo.Transformed(base, f), flow)

    def gaussian(p):
        return jelbo.MultivariateNormalTriL(
            p[0], jnp.tril(p[1], -1) + jnp.diag(jax.nn.softplus(jnp.diag(p[1])))
        )

    elbo_gauss = fit(gaussian, (jnp.zeros(2), jnp.eye(2) * 0.55))
    assert elbo_flow > elbo_gauss + 0.3, (elbo_flow, elbo_gauss)
    assert elbo_flow > -0.1
