"""jelbo.constraints: the one table of constraints, their checks and their bijectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tol

import jelbo
from jelbo import bijectors as bij
from jelbo import constraints as c
from jelbo.parameters import ParameterSpace

# (constraint, event size of the unconstrained vector or None for elementwise, points inside,
#  points outside); the points are single elements of the set.
CASES = [
    (c.real, None, [0.0, -1e300, 3.5], [np.inf, -np.inf, np.nan]),
    (c.extended_real, None, [0.0, np.inf, -np.inf], [np.nan]),
    (c.real_or_neg_inf, None, [0.0, -np.inf], [np.inf, np.nan]),
    (c.positive, None, [1e-300, 2.0], [0.0, -1.0, np.inf, np.nan]),
    (c.extended_positive, None, [1e-300, np.inf], [0.0, -1.0, np.nan]),
    (c.nonnegative, None, [0.0, 2.0], [-1e-300, np.inf, np.nan]),
    (c.softplus_positive, None, [1e-300, 2.0], [0.0, np.inf]),
    (c.unit_interval, None, [0.0, 0.5, 1.0], [-1e-3, 1.001, np.nan]),
    (c.interval(-1.0, 2.0), None, [-0.5, 1.9], [-1.0, 2.0, 3.0]),
    (c.greater_than(2.0), None, [2.5, np.inf], [2.0, 1.0]),
    (c.less_than(-1.0), None, [-1.5], [-1.0, 0.0]),
    (c.simplex, 3, [[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]], [[0.5, 0.6, 0.0], [-0.1, 0.6, 0.5]]),
    (c.ordered, 3, [[-1.0, 0.0, 5.0]], [[0.0, 0.0, 1.0], [1.0, 0.5, 2.0]]),
    (c.positive_ordered, 3, [[0.1, 1.0, 5.0]], [[0.0, 1.0, 2.0], [1.0, 0.5, 2.0]]),
]


@pytest.mark.parametrize("constraint, k, inside, outside", CASES, ids=lambda v: repr(v))
def test_check_accepts_the_set_and_rejects_the_rest(constraint, k, inside, outside):
    assert np.all(constraint.check(jnp.asarray(inside, jnp.float64)))
    assert not np.any(constraint.check(jnp.asarray(outside, jnp.float64)))
    assert constraint.event_dim == (0 if k is None else 1)
    assert isinstance(constraint.requirement, str) and constraint.requirement


@pytest.mark.parametrize("constraint, k, inside, outside", CASES, ids=lambda v: repr(v))
def test_biject_to_maps_onto_the_set_and_back(constraint, k, inside, outside, dtype, rng):
    b = c.biject_to(constraint)
    size = 5 if k is None else constraint(k).unconstrained_size
    u = jnp.asarray(np.concatenate([rng.normal(size=(4, size)), np.full((1, size), 3.0)]), dtype)
    y = jax.jit(b.forward)(u)
    assert y.dtype == dtype
    assert np.all(constraint.check(y)), (constraint, y)
    np.testing.assert_allclose(bij.inverse(b, y), u, rtol=2e-4 if dtype == np.float32 else 1e-10)


def test_the_table_entries_the_lead_decided():
    # positive is exp everywhere (Stan, NumPyro, ParameterSpace, the Laplace fits)...
    assert isinstance(c.biject_to(c.positive), bij.Exp)
    assert isinstance(c.biject_to(c.softplus_positive), bij.Softplus)
    assert isinstance(c.biject_to(c.simplex), bij.StickBreaking)
    assert isinstance(c.biject_to(c.corr_cholesky), bij.CorrCholesky)
    # ...and a scale factor keeps FillScaleTriL's softplus diagonal (unchanged since 0.1).
    tril = c.biject_to(c.softplus_lower_cholesky)
    assert isinstance(tril, bij.FillScaleTriL)
    np.testing.assert_allclose(jnp.diagonal(tril.forward(jnp.zeros(3))), np.log(2.0) * np.ones(2))
    assert isinstance(c.biject_to(c.interval(0.0, 2.0)), bij.Sigmoid)


def test_matrix_constraints_check_their_sets():
    good = jnp.array([[1.0, 0.0], [0.6, 0.8]])
    assert bool(c.corr_cholesky.check(good))
    assert not bool(c.corr_cholesky.check(jnp.array([[1.0, 0.0], [0.6, 0.9]])))  # row norm
    assert not bool(c.corr_cholesky.check(jnp.array([[1.0, 0.1], [0.6, 0.8]])))  # upper
    # a scale factor: finite lower triangle, nonzero (possibly negative) diagonal
    assert bool(c.softplus_lower_cholesky.check(jnp.array([[1.0, np.nan], [0.5, -2.0]])))
    assert not bool(c.softplus_lower_cholesky.check(jnp.array([[1.0, 0.0], [0.5, 0.0]])))
    assert c.softplus_lower_cholesky.check(jnp.ones((4, 2, 2))).shape == (4,)


def test_supports_without_a_bijector():
    assert np.all(c.nonnegative_integer.check(jnp.array([0.0, 3.0])))
    assert not np.any(c.nonnegative_integer.check(jnp.array([-1.0, 1.5, np.inf])))
    assert np.all(c.boolean.check(jnp.array([0.0, 1.0])))
    assert np.all(c.integer_interval(0, 2).check(jnp.array([0, 1, 2])))
    assert not np.any(c.integer_interval(0, 2).check(jnp.array([-1, 3])))
    assert bool(c.one_hot.check(jnp.array([0.0, 1.0, 0.0])))
    assert not bool(c.one_hot.check(jnp.array([0.0, 1.0, 1.0])))
    assert bool(c.sphere.check(jnp.array([0.6, 0.8])))
    for support in (c.boolean, c.nonnegative_integer, c.one_hot, c.sphere):
        assert not support.has_bijector
        with pytest.raises(ValueError, match="no bijection"):
            c.biject_to(support)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match=r"must be a jelbo\.constraints\.Constraint"):
        c.biject_to("positive")
    with pytest.raises(ValueError, match="unknown kind 'postive'"):
        c.Constraint("postive")
    with pytest.raises(ValueError, match="only a ParameterSpace can resolve it"):
        c.biject_to(c.interval(0.0, lambda p: p["a"]))
    with pytest.raises(ValueError, match="k` must be a Python int >= 2"):
        c.simplex(1)
    with pytest.raises(ValueError, match=r"`low` of shape \(2,\)"):
        c.interval(jnp.zeros(2), 1.0, shape=(3,))


def test_calling_gives_a_shape_and_the_parameters_names_are_the_same_objects():
    assert c.positive((3,)).shape == (3,) and c.positive(3).shape == (3,)
    assert c.real() == c.real
    assert c.simplex(4).shape == (4,) and c.simplex(4).unconstrained_size == 3
    assert c.corr_cholesky(3).shape == (3, 3) and c.corr_cholesky(3).unconstrained_size == 3
    assert jelbo.parameters.positive is c.positive
    assert jelbo.parameters.Constraint is c.Constraint
    assert jelbo.parameters.interval is c.interval
    assert repr(c.interval(0.0, 1.0)) == "interval(0.0, 1.0)"
    assert c.interval(0.0, 1.0).requirement == "in (0, 1)"


def test_parameter_space_takes_any_constraint_with_a_bijector(rng):
    space = ParameterSpace({"s": c.softplus_positive((2,)), "p": c.unit_interval(), "z": c.real})
    u = jnp.asarray(rng.normal(size=(3, space.dim)))
    params, log_det = space.constrain(u)
    np.testing.assert_allclose(params["s"], jax.nn.softplus(u[:, :2]), **tol(np.float64))
    np.testing.assert_allclose(params["p"], jax.nn.sigmoid(u[:, 2]), **tol(np.float64))
    expected = jnp.sum(jax.nn.log_sigmoid(u[:, :2]), -1) + jnp.log(
        jax.nn.sigmoid(u[:, 2]) * jax.nn.sigmoid(-u[:, 2])
    )
    np.testing.assert_allclose(log_det, expected, **tol(np.float64))
    np.testing.assert_allclose(space.unconstrain(params), u, rtol=1e-10)
    with pytest.raises(ValueError, match="no unconstrained parameterization"):
        ParameterSpace({"n": c.nonnegative_integer})
    with pytest.raises(ValueError, match=r"needs the size of its simplex \(e.g. simplex\(3\)\)"):
        ParameterSpace({"w": c.simplex})
