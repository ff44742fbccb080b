"""Tests of jelbo._checks (all argument validation) and the deprecated 0.1 check names."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import jelbo
from jelbo import _checks


@pytest.mark.parametrize(
    ("shape", "target", "ok"),
    [
        ((), (3,), True),
        ((1,), (3,), True),
        ((3,), (3,), True),
        ((3, 1), (3,), False),  # would grow the batch into a (3, 3) table
        ((4,), (3,), False),
        ((2, 3), (2, 3), True),
        ((3,), (2, 3), True),
        ((2, 1), (2, 3), True),
        ((2,), (2, 3), False),
    ],
)
def test_check_broadcasts_to_refuses_shapes_that_grow_or_clash(shape, target, ok):
    if ok:
        _checks.check_broadcasts_to(shape, "beta", target, "`q`'s batch shape")
    else:
        with pytest.raises(ValueError, match=re.escape(f"`beta` has shape {shape}")):
            _checks.check_broadcasts_to(shape, "beta", target, "`q`'s batch shape")


def test_check_instance_and_same_event_name_the_arguments():
    with pytest.raises(TypeError, match="`prior` must be a jelbo distribution; got dict"):
        _checks.check_instance({}, jelbo.Distribution, "prior")
    q, p = jelbo.Normal(jnp.zeros(2), 1.0), jelbo.Normal(jnp.zeros(3), 1.0)
    with pytest.raises(ValueError, match=r"`q`.*\(2,\).*`prior`.*\(3,\)"):
        _checks.check_same_event(q, p, names=("q", "prior"))


def test_check_real_and_alpha():
    for good in (1.0, 2, jnp.ones(3), jnp.float32(0.5)):
        _checks.check_real(good, "beta")
    for bad in ("1", None, True, jnp.ones(2, bool), 1j):
        with pytest.raises(TypeError, match="beta"):
            _checks.check_real(bad, "beta")
    assert _checks.check_alpha(2) == 2.0 and isinstance(_checks.check_alpha(2), float)
    with pytest.raises(ValueError, match="alpha"):
        _checks.check_alpha(-1.0)


def test_traced_real_values_pass_the_checks():
    jax.jit(lambda b: _checks.check_real(b, "beta"))(1.0)


def test_deprecated_01_check_names_warn_and_still_work():
    q, p = jelbo.Normal(jnp.zeros(2), 1.0), jelbo.Normal(jnp.zeros(3), 1.0)
    with pytest.warns(DeprecationWarning, match="check_same_event"):
        with pytest.raises(ValueError, match="Event shapes differ"):
            jelbo.kl.check_same_event(q, p)
    with pytest.warns(DeprecationWarning, match="check_baseline"):
        assert jelbo.score.check_baseline(1.0, (3,)).shape == (3,)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="baseline"):
        jelbo.score.check_baseline(jnp.ones((3, 1)), (3,))
    assert "check_baseline" not in jelbo.score.__all__
