"""jelbo.check_parameters / jelbo.checked: opt-in checks of parameter values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jelbo

NAN, INF = float("nan"), float("inf")

VALID = [
    jelbo.Normal(jnp.zeros(2), jnp.array([1e-30, 3.0])),
    jelbo.Normal.from_log_var(jnp.zeros(2), jnp.array([-180.0, 0.0])),
    jelbo.Laplace(jnp.zeros(2), 2.0),
    jelbo.StudentT(jnp.array([0.1, INF]), 0.0, 1.0),
    jelbo.Bernoulli(logits=jnp.array([-INF, INF, 0.0])),
    jelbo.Poisson(log_rate=jnp.array([-INF, 3.0])),
    jelbo.Categorical(logits=jnp.array([[0.0, -INF], [-INF, 2.0]])),
    jelbo.MultivariateNormalTriL(
        jnp.zeros(2), jnp.array([[1.0, NAN], [0.5, -2.0]])
    ),  # upper ignored
]

INVALID = [
    (jelbo.Normal(jnp.zeros(3), jnp.array([1.0, -1.0, 2.0])), r"Normal `scale` must be > 0 and "
     r"finite; 1 of 3 entries are not \(the first at index \(1,\)\)"),
    (jelbo.Normal(jnp.array([0.0, NAN]), 1.0), r"Normal `loc` must be finite"),
    (jelbo.Laplace(jnp.zeros(2), jnp.array([0.0, 1.0])), r"Laplace `scale` must be > 0"),
    (jelbo.StudentT(jnp.array([3.0, 0.0]), 0.0, 1.0), r"StudentT `df` must be > 0"),
    (jelbo.StudentT(jnp.array([3.0, NAN]), 0.0, 1.0), r"StudentT `df` must be > 0"),
    (jelbo.Bernoulli(logits=jnp.array([NAN])), r"Bernoulli `logits` must be not NaN"),
    (jelbo.Poisson(log_rate=jnp.array([INF])), r"Poisson `log_rate` must be < \+inf"),
    (jelbo.Categorical(logits=jnp.array([[0.0, 1.0], [-INF, -INF]])),
     r"Categorical `logits` must be finite for at least one category; 1 of 2 entries are "
     r"not \(the first at index \(1,\)\)"),
    (jelbo.MultivariateNormalTriL(jnp.zeros(2), jnp.diag(jnp.array([1.0, 0.0]))),
     r"MultivariateNormalTriL `scale_tril` must be of nonzero diagonal"),
]  # fmt: skip


def test_valid_parameters_pass_and_the_distribution_is_returned():
    for dist in VALID:
        assert jelbo.check_parameters(dist) is dist


@pytest.mark.parametrize("dist, message", INVALID, ids=lambda v: getattr(v, "__name__", None))
def test_invalid_values_raise_eagerly_naming_the_parameter(dist, message):
    with pytest.raises(ValueError, match=message):
        jelbo.check_parameters(dist)


def test_checks_under_jit_grad_and_vmap():
    def entropy(scale):
        return jelbo.check_parameters(jelbo.Normal(jnp.zeros(3), scale)).entropy()

    # a check is never skipped silently: without `checked`, jit refuses it at trace time and
    # says what to do (first: once jelbo.checked has traced `entropy`, JAX's trace cache
    # reuses that trace, and its check, for a plain jax.jit(entropy) of the same shapes)
    with pytest.raises(ValueError, match=r"traced inside jax.jit .* jelbo.checked\(jax.jit\(f\)\)"):
        jax.jit(entropy)(jnp.ones(3))
    with pytest.raises(ValueError, match=r"check_parameters\(Normal\).*outside jit"):
        jax.jit(jax.grad(entropy))(jnp.ones(3))
    with pytest.raises(ValueError, match=r"jelbo\.checked"):
        jax.lax.map(entropy, jnp.ones((2, 3)))

    checked = jelbo.checked(jax.jit(entropy))
    np.testing.assert_allclose(checked(jnp.ones(3)), 3 * (0.5 + 0.5 * np.log(2 * np.pi)))
    with pytest.raises(ValueError, match=r"Normal `scale` must be > 0 and "
                       r"finite; 1 of 3 entries are not"):  # fmt: skip
        checked(jnp.array([1.0, NAN, 2.0]))
    # eager vmap and grad check as they go, without a wrapper; checkify itself works too
    assert jax.vmap(entropy)(jnp.ones((2, 3))).shape == (2,)
    error, _ = checkify.checkify(jax.jit(entropy), errors=checkify.user_checks)(-jnp.ones(3))
    assert "Normal `scale` must be > 0" in error.get()
    grad = jelbo.checked(jax.jit(jax.grad(entropy)))
    np.testing.assert_allclose(grad(jnp.ones(3)), np.ones(3))
    with pytest.raises(ValueError, match="scale"):
        grad(-jnp.ones(3))
    batched = jelbo.checked(jax.vmap(entropy))
    assert batched(jnp.ones((2, 3))).shape == (2,)
    with pytest.raises(ValueError, match="scale"):
        batched(jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]))


def test_other_families_check_their_declared_constraints():
    # every family declares arg_constraints (tests/test_base.py); LogNormal's loc is real
    with pytest.raises(ValueError, match=r"LogNormal `loc` must be finite"):
        jelbo.check_parameters(jelbo.LogNormal(jnp.array([NAN]), jnp.ones(1)))
    with pytest.raises(TypeError, match="jelbo distribution"):
        jelbo.check_parameters(jnp.ones(2))
