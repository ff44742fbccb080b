"""Gradient, value and dtype sweep of every public family (registry: ``tests/families.py``).

For each registry entry (with x64 enabled): every method's value in float64 and float32, and
its ``jax.grad`` with respect to every parameter (and ``x`` for ``log_prob``) in float64, at
the entry's special and random points (float32 at its own extremes), against mpmath (30+
digits: values, and finite differences of an independent transcription). Tolerances:
``families.TOLERANCES`` (values 1e-12 / 1e-5 relative, gradients 1e-10, with the floors and
the documented per-point overrides explained in ``families.compare``); every result must
also have the input's dtype. One jitted, vmapped program per (entry, dtype) evaluates all
methods (and their gradients) at all points.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from families import FAMILIES, METHODS, family_findings, family_outputs, public_families

import jelbo

DTYPES = (np.float64, np.float32)


def _failures(findings, limit=25):
    bad = [f for f in findings if not f.ok]
    lines = [str(f) for f in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more")
    return bad, "\n".join(lines)


def test_every_public_family_is_in_the_registry():
    registered = {fam.cls for fam in FAMILIES}
    missing = sorted(cls.__name__ for cls in public_families() - registered)
    assert not missing, (
        f"public families missing from tests/families.py (add a Family entry): {missing}"
    )


def test_the_introspection_finds_the_known_families():
    # The registry check above is only as good as public_families(): it must see the
    # families that are known to exist (and no abstract base).
    found = public_families()
    for cls in (jelbo.Normal, jelbo.Beta, jelbo.PowerSpherical, jelbo.LKJCholesky):
        assert cls in found
    assert jelbo.Distribution not in found


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_registry_lists_exactly_the_methods_the_family_has(fam):
    point = next(p for p in fam.points if p.f32)
    theta = jnp.asarray(point.theta, jnp.float32)
    x = jnp.asarray(point.xs[0], jnp.int32 if fam.x_integer else jnp.float32)
    has = set()
    for name in METHODS:
        try:  # traced only: a missing closed form raises at trace time
            if name == "log_prob":
                jax.eval_shape(lambda t, v: fam.make(t).log_prob(v.reshape(fam.x_shape)), theta, x)
            else:
                jax.eval_shape(lambda t, n=name: getattr(fam.make(t), n)(), theta)
        except NotImplementedError:
            continue
        has.add(name)
    assert has == set(fam.refs), (
        f"{fam.name}: methods {sorted(has)}, transcribed {sorted(fam.refs)}"
    )


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_values_and_gradients_match_mpmath_in_both_precisions(fam):
    report = []
    for dtype in DTYPES:
        bad, text = _failures(family_findings(fam, dtype))
        if bad:
            report.append(f"{np.dtype(dtype).name}: {len(bad)} failures\n{text}")
    assert not report, "\n".join(report)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_every_method_keeps_the_input_dtype(fam):
    wrong = []
    for dtype in DTYPES:
        for name, (_, _, out_dtype) in family_outputs(fam, dtype).items():
            if jnp.issubdtype(out_dtype, jnp.integer):  # an index (Categorical.mode)
                continue
            # A family without parameters (HypersphericalUniform) has no input dtype but
            # x's: its other methods are in the default float dtype.
            want = dtype if (fam.params or name == "log_prob") else jnp.result_type(float)
            if out_dtype != want:
                wrong.append(f"{name} [{np.dtype(dtype).name} in]: {out_dtype}")
    assert not wrong, f"{fam.name}: {wrong}"


def test_every_keyword_parameterization_has_an_entry():
    # Each alternative (probs=/logits=, rate=/log_rate=) is its own code path: one entry each.
    missing = [
        f"{cls.__name__}({name}=...)"
        for cls in public_families()
        for group in cls.parameterizations
        for name in group
        if not any(fam.cls is cls and fam.keyword == name for fam in FAMILIES)
    ]
    assert not missing, f"keyword parameterizations missing from tests/families.py: {missing}"


def test_every_factorized_family_has_a_scalar_entry():
    missing = sorted(
        cls.__name__
        for cls in public_families()
        if issubclass(cls, jelbo.Factorized)
        and not any(fam.cls is cls and fam.scalar for fam in FAMILIES)
    )
    assert not missing, f"factorized families without a scalar entry (families.scalar): {missing}"


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_entry_builds_what_it_declares(fam):
    point = next(p for p in fam.points if p.f32)
    dist = fam.make(jnp.asarray(point.theta, jnp.float32))
    assert isinstance(dist, fam.cls)
    if fam.scalar:
        assert dist.batch_shape == () and dist.event_shape == (), fam.name
    given = [n for group in fam.cls.parameterizations for n in group if _stored(dist, n)]
    assert given == ([fam.keyword] if fam.keyword else []), (fam.name, given)


def _stored(dist, name):
    # keyword_parameter("probs") is stored in the field ``_probs`` (None when not given)
    return getattr(dist, "_" + name) is not None
