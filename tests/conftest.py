"""Shared fixtures: float64 enabled (tests pick dtypes explicitly), per-dtype tolerances,
and an eager/jit parametrization so every numeric check runs both ways."""

from __future__ import annotations

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

# Tolerances for comparing against independent float64 references, per input dtype.
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 2e-5, "atol": 2e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-10},
}


def tol(dtype) -> dict:
    """``rtol``/``atol`` keyword arguments for ``np.testing.assert_allclose`` at ``dtype``."""
    return TOLERANCES[np.dtype(dtype)]


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    """Both floating dtypes jelbo supports."""
    return request.param


@pytest.fixture(params=["eager", "jit"])
def maybe_jit(request):
    """Identity or ``jax.jit``: the same check must pass with and without compilation."""
    return (lambda f, **kw: f) if request.param == "eager" else jax.jit


@pytest.fixture
def rng():
    """A seeded NumPy generator for test inputs."""
    return np.random.default_rng(0)
