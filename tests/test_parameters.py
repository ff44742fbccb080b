"""Tests of jelbo.parameters: layout, constraints satisfied, round trips, the log-det of the
whole flat map against ``slogdet`` of its ``jax.jacfwd`` (onto the free coordinates),
dependent bounds, batching, both dtypes, jit/vmap/grad, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tol
from support import markdown_python_blocks

from jelbo.parameters import (
    ParameterSpace,
    corr_cholesky,
    greater_than,
    interval,
    less_than,
    ordered,
    positive,
    positive_ordered,
    real,
    simplex,
)

SPACE = ParameterSpace(
    {
        "mu": real(),
        "tau": positive(),
        "theta": real((2, 2)),
        "alpha1": interval(0.0, 1.0),
        "beta1": interval(0.0, lambda p: 1.0 - p["alpha1"]),  # garch's beta1 < 1 - alpha1
        "rho": interval(jnp.array([-1.0, 0.0, 2.0]), 5.0, shape=(3,)),
        "nu": greater_than(2.0),
        "cap": less_than(lambda p: p["nu"][..., None], shape=(2,)),
        "w": simplex(3),
        "cuts": ordered(3),
        "lam": positive_ordered(2),
        "L": corr_cholesky(3),
    }
)
DIM = 1 + 1 + 4 + 1 + 1 + 3 + 1 + 2 + 2 + 3 + 2 + 3


def free_vector(params):
    """Every parameter's free coordinates, flattened in the space's order."""
    parts = []
    for name, value in params.items():
        if name == "w":
            value = value[..., :-1]
        elif name == "L":
            value = value[..., np.tril_indices(3, -1)[0], np.tril_indices(3, -1)[1]]
        parts.append(value.reshape(*value.shape[: value.ndim - len(SPACE.shapes[name])], -1))
    return jnp.concatenate(parts, axis=-1)


def check_constraints(p):
    assert np.all(p["tau"] > 0)
    assert np.all((p["alpha1"] > 0) & (p["alpha1"] < 1))
    assert np.all((p["beta1"] > 0) & (p["beta1"] < 1 - p["alpha1"]))
    assert np.all((p["rho"] > np.array([-1.0, 0.0, 2.0])) & (p["rho"] < 5.0))
    assert np.all(p["nu"] > 2.0)
    assert np.all(p["cap"] < p["nu"][..., None])
    np.testing.assert_allclose(np.sum(p["w"], -1), 1.0, rtol=1e-6)
    assert np.all(p["w"] > 0)
    assert np.all(np.diff(p["cuts"], axis=-1) > 0)
    assert np.all((p["lam"][..., 0] > 0) & (np.diff(p["lam"], axis=-1)[..., 0] > 0))
    corr = p["L"] @ np.swapaxes(p["L"], -1, -2)
    np.testing.assert_allclose(np.diagonal(corr, 0, -2, -1), 1.0, rtol=1e-5)


def test_layout_and_shapes():
    assert SPACE.dim == DIM
    assert SPACE.names[0] == "mu" and SPACE.names[-1] == "L"
    out = jax.eval_shape(SPACE.constrain, jax.ShapeDtypeStruct((4, 5, DIM), jnp.float32))
    params, log_det = out
    assert log_det.shape == (4, 5)
    for name, shape in SPACE.shapes.items():
        assert params[name].shape == (4, 5, *shape) and params[name].dtype == jnp.float32
    assert "beta1: interval[]" in repr(SPACE)


@jax.jit
def _jitted_maps(u):
    """Everything the round-trip test compares, in ONE compiled program: the batched
    constrain, its unconstrain, the flat map's Jacobian (float64), one row, and the vmapped
    constrain."""
    params, log_det = SPACE.constrain(u)
    jac = jax.vmap(jax.jacfwd(lambda v: free_vector(SPACE.constrain(v)[0])))(u.astype(np.float64))
    row = SPACE.constrain(u[1])
    return (params, log_det), SPACE.unconstrain(params), jac, row, jax.vmap(SPACE.constrain)(u)


def test_round_trip_log_det_and_batching(dtype, rng):
    u = jnp.asarray(rng.normal(size=(3, DIM)), dtype)
    (params, log_det), back, jac, (row_params, row_log_det), (vparams, vlog_det) = _jitted_maps(u)
    check_constraints({k: np.asarray(v, np.float64) for k, v in params.items()})
    np.testing.assert_allclose(back, u, **tol(dtype))
    # log-det of the whole flat map (its Jacobian is block lower triangular)
    assert jac.shape == (3, DIM, DIM)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(np.asarray(jac))[1], **tol(dtype))
    # eager == jit, batched == per row == vmapped
    eager_params, eager_log_det = SPACE.constrain(u)
    np.testing.assert_allclose(eager_log_det, log_det, **tol(dtype))
    np.testing.assert_allclose(row_log_det, log_det[1], **tol(dtype))
    np.testing.assert_allclose(vlog_det, log_det, **tol(dtype))
    for name in SPACE.names:
        np.testing.assert_allclose(row_params[name], params[name][1], **tol(dtype))
        np.testing.assert_allclose(eager_params[name], params[name], **tol(dtype))
        np.testing.assert_allclose(vparams[name], params[name], **tol(dtype))


def test_grad_and_extreme_points():
    def f(v):
        params, log_det = SPACE.constrain(v)
        return log_det + sum(jnp.sum(x) for x in params.values())

    value_and_grad = jax.jit(jax.value_and_grad(f))
    for u in (jnp.full(DIM, -30.0), jnp.full(DIM, 30.0), jnp.zeros(DIM)):
        value, grad = value_and_grad(u)
        assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_unconstrain_from_initial_values():
    space = ParameterSpace({"sigma": positive(), "p": interval(0.0, 1.0, (2,)), "w": simplex(2)})
    u = space.unconstrain({"sigma": 2.0, "p": jnp.array([0.5, 0.25]), "w": jnp.array([0.5, 0.5])})
    np.testing.assert_allclose(u, [np.log(2.0), 0.0, np.log(1 / 3), 0.0], atol=1e-15)


def test_errors():
    with pytest.raises(ValueError, match=rf"\(\*batch, {DIM}\).*\(3,\)"):
        SPACE.constrain(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"missing parameters \['L'\]"):
        SPACE.unconstrain({n: 0.0 for n in SPACE.names[:-1]})
    with pytest.raises(ValueError, match=r"`tau` must have shape"):
        ParameterSpace({"tau": positive(3)}).unconstrain({"tau": jnp.ones(2)})
    with pytest.raises(ValueError, match="batch shapes differ"):
        ParameterSpace({"a": real(), "b": real()}).unconstrain(
            {"a": jnp.zeros(2), "b": jnp.zeros(3)}
        )
    with pytest.raises(ValueError, match=r"`low` of shape \(2,\)"):
        interval(jnp.zeros(2), 1.0, shape=(3,))
    with pytest.raises(ValueError, match="k` must be a Python int >= 2"):
        simplex(1)
    with pytest.raises(TypeError, match="`x` must be a Constraint"):
        ParameterSpace({"x": 1.0})


def test_docs_bayesian_models_example_runs():
    code = markdown_python_blocks("docs/bayesian.md", "# Tutorial: Bayesian models")[0]
    namespace: dict = {}
    exec(code, namespace)
    draws = namespace["draws"]
    np.testing.assert_allclose(np.mean(draws["w"], 0), [1 / 3] * 3, atol=0.05)
    assert abs(float(np.mean(draws["sigma"])) - 0.5) < 0.05
    assert 0.0 < float(np.mean(draws["eps"])) < 0.1
