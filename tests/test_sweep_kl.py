"""Overflow, gradient and dtype sweep of every registered KL pair (``tests/families.py``).

Each closed-form KL is checked, in float64 and float32 (x64 enabled), at its pair's points
-- |logits| up to 1e4 in float64 and 80 in float32, scales and concentrations from 1e-200
to 1e200 (float64) and 1e-30 to 1e30 (float32), q = p, nearly equal pairs -- against an
independent mpmath transcription: the value finite (or the same infinity) and within 1e-12
(float64) / 1e-5 (float32) relative, every partial derivative within 1e-10 (float64), and
the result in the input's dtype. Where the exact KL is 0 (q = p) a relative bound is
meaningless: the absolute bound is scaled by the magnitude of the terms of the closed form
(at least 1 nat), see ``families.compare``. Pairs of scalar entries are checked for values
and dtypes only: their gradients are their vector pair's, at the same points
(``families.swept_gradients``).
"""

from __future__ import annotations

import numpy as np
import pytest
from families import KL_PAIRS, kl_findings, kl_outputs, kl_registry, resolves_to

import jelbo

DTYPES = (np.float64, np.float32)


def test_every_registered_kl_pair_is_swept():
    registry = kl_registry()
    missing = [
        f"{q.__name__} || {p.__name__}"
        for q, p in registry
        if not any(resolves_to(pair, (q, p)) for pair in KL_PAIRS)
    ]
    assert not missing, f"KL pairs missing from tests/families.py (add a KLPair): {missing}"


def test_kl_pairs_cover_every_keyword_parameterization():
    # probs= and logits= (rate= and log_rate=) are separate code paths of a closed form: each
    # alternative of q's class on the q side of some pair of the key, and likewise for p.
    missing = []
    for key in kl_registry():
        pairs = [pair for pair in KL_PAIRS if resolves_to(pair, key)]
        for side, cls in zip(("q", "p"), key, strict=True):
            for name in (n for group in cls.parameterizations for n in group):
                if not any(getattr(pair, side).keyword == name for pair in pairs):
                    missing.append(f"{key[0].__name__} || {key[1].__name__}: {side} {name}=")
    assert not missing, f"KL pairs missing from tests/families.py: {missing}"


def test_factorized_kl_pairs_have_a_scalar_pair():
    missing = [
        f"{q.__name__} || {p.__name__}"
        for q, p in kl_registry()
        if issubclass(q, jelbo.Factorized)
        and issubclass(p, jelbo.Factorized)
        and not any(
            pair.q.scalar and pair.p.scalar and resolves_to(pair, (q, p)) for pair in KL_PAIRS
        )
    ]
    assert not missing, f"scalar KL pairs missing from tests/families.py: {missing}"


def test_every_swept_pair_resolves_to_a_registered_closed_form():
    registry = kl_registry()
    stray = [pair.name for pair in KL_PAIRS if not any(resolves_to(pair, k) for k in registry)]
    assert not stray, stray


@pytest.mark.parametrize("pair", KL_PAIRS, ids=lambda p: p.name)
def test_kl_values_and_gradients_match_mpmath_in_both_precisions(pair):
    report = []
    for dtype in DTYPES:
        findings = kl_findings(pair, dtype)
        bad = [f for f in findings if not f.ok]
        if bad:
            lines = "\n".join(str(f) for f in bad[:25])
            report.append(f"{np.dtype(dtype).name}: {len(bad)} failures\n{lines}")
    assert not report, "\n".join(report)


@pytest.mark.parametrize("pair", KL_PAIRS, ids=lambda p: p.name)
def test_kl_keeps_the_input_dtype(pair):
    for dtype in DTYPES:
        assert kl_outputs(pair, dtype)[2] == dtype, (pair.name, dtype)
