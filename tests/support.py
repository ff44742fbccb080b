"""Helpers shared by the tests (and by ``bench/sharding_check.py``): one place for them.

Import as ``from support import ...`` (pytest puts ``tests/`` on ``sys.path``). What is here:

- random parameters of the families and the distributions built from them
  (:func:`random_params`, :func:`build`, :func:`make`, :data:`CLASSES`);
- Monte Carlo assertions in standard errors (:func:`assert_within_se`, :data:`N_SIGMA`);
- the closed-form PPCA references of ``examples/ppca.py`` (:data:`ppca`), the linear VAE of
  the examples (:data:`linear`, ``examples/_linear.py``: its decoder
  ``linear.log_likelihood(W, b, sigma2)`` is the tests' linear-Gaussian model too), and the
  examples' directory on ``sys.path`` so that tests import the examples' modules by name;
- compiled-output inspection (:func:`noise_elements`);
- :data:`USES_0_1_BOUNDS`, the mark of tests that call the deprecated 0.1 bound functions.

Add a helper here as soon as two test modules need it, and a new family to
:data:`CLASSES` / :func:`random_params` when the shared tests should cover it.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

import jelbo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import _linear as linear  # noqa: E402  (examples/_linear.py: the linear VAE of the examples)
import ppca  # noqa: E402  (examples/ppca.py: closed-form PPCA, float64 NumPy)

#: For tests that exercise the 0.1 bound functions (jelbo.elbo, iwae_bound, renyi_bound),
#: deprecated since 0.3: their warning is expected there (tests/test_compat.py checks it).
USES_0_1_BOUNDS = pytest.mark.filterwarnings(
    r"ignore:jelbo\.(elbo|iwae_bound|renyi_bound) is deprecated:DeprecationWarning"
)

K = 3  # event size of the vector-valued families
C = 4  # number of categories
N_SIGMA = 5  # Monte Carlo tolerance, in standard errors

CLASSES: dict[str, type[jelbo.Distribution]] = {
    "normal": jelbo.Normal,
    "laplace": jelbo.Laplace,
    "studentt": jelbo.StudentT,
    "bernoulli": jelbo.Bernoulli,
    "poisson": jelbo.Poisson,
    "categorical": jelbo.Categorical,
    "mvn": jelbo.MultivariateNormalTriL,
}

__all__ = [
    "CLASSES",
    "EXAMPLES",
    "N_SIGMA",
    "ROOT",
    "C",
    "K",
    "assert_within_se",
    "build",
    "linear",
    "make",
    "markdown_python_blocks",
    "noise_elements",
    "ppca",
    "random_params",
    "random_tril",
]


# --- random parameters -----------------------------------------------------------------------


def random_tril(rng: np.random.Generator, batch: tuple[int, ...], k: int = K) -> np.ndarray:
    """Well-conditioned lower-triangular factors ``(*batch, k, k)`` with positive diagonal."""
    off = np.tril(rng.normal(scale=0.5, size=(*batch, k, k)), -1)
    return off + np.exp(rng.uniform(-0.6, 0.6, size=(*batch, k)))[..., None] * np.eye(k)


def random_params(
    family: str, rng: np.random.Generator, batch: tuple[int, ...], shift: float = 0.3
) -> dict[str, np.ndarray]:
    """Asymmetric random float64 parameters of ``family`` with batch shape ``batch``.

    ``shift`` moves the location (and the logits, log-rates), so that two draws with
    different shifts give a ``q`` and a ``p`` that differ asymmetrically.
    """
    shape = (*batch, K)
    if family in ("normal", "laplace"):
        return {"loc": rng.normal(size=shape) + shift, "scale": rng.uniform(0.4, 2.5, shape)}
    if family == "studentt":
        return {
            "df": rng.uniform(2.5, 8.0, shape),
            "loc": rng.normal(size=shape) + shift,
            "scale": rng.uniform(0.5, 2.0, shape),
        }
    if family == "bernoulli":
        return {"logits": rng.normal(scale=2.0, size=shape) + shift}
    if family == "poisson":
        return {"log_rate": rng.uniform(-0.5, 2.0, shape) + 0.2 * shift}
    if family == "categorical":
        return {"logits": rng.normal(scale=1.5, size=(*batch, C)) + shift * np.arange(C)}
    if family == "mvn":
        return {"loc": rng.normal(size=shape) + shift, "scale_tril": random_tril(rng, batch)}
    raise ValueError(f"no random parameters for family {family!r}")


def build(
    family: str, params: dict[str, Any], dtype: Any
) -> tuple[jelbo.Distribution, dict[str, np.ndarray]]:
    """``(dist, params64)``: the distribution in ``dtype``, and its parameters as float64
    arrays holding exactly the dtype-rounded values (for float64 references)."""
    params = {k: np.asarray(v, dtype) for k, v in params.items()}
    dist = CLASSES[family](**{k: jnp.asarray(v) for k, v in params.items()})
    return dist, {k: v.astype(np.float64) for k, v in params.items()}


def make(
    family: str,
    rng: np.random.Generator,
    batch: tuple[int, ...],
    dtype: Any,
    shift: float = 0.3,
) -> tuple[Any, dict[str, np.ndarray]]:
    """:func:`build` of :func:`random_params`: a random ``family`` member in ``dtype``."""
    return build(family, random_params(family, rng, batch, shift), dtype)


# --- Monte Carlo assertions ------------------------------------------------------------------


def assert_within_se(estimate: Any, expected: Any, se: Any, what: str) -> None:
    """Every ``|estimate - expected| <= N_SIGMA * se`` (broadcasting), naming ``what``."""
    estimate, expected, se = np.broadcast_arrays(estimate, expected, se)
    z = np.abs(estimate - expected) / se
    assert np.all(z <= N_SIGMA), (
        f"{what}: {z.max():.2f} standard errors off\n{estimate}\n{expected}"
    )


# --- compiled-output inspection --------------------------------------------------------------

_U32_ARRAY = re.compile(r"\bu32\[(\d+(?:,\d+)*)\]")


def noise_elements(hlo: str) -> int:
    """Random numbers one device draws at once in a compiled (per-device) HLO module.

    Counter-based random bits are the only 32-bit unsigned integer arrays of the noise's
    size in these programs (threefry hashes ``u32`` counters into ``u32`` bits; keys are
    ``u32[2]``), so the largest ``u32`` array of the module is one device's noise, whatever
    the sampler's implementation or names (jelbo's unrolled threefry on CPU, JAX's own
    lowering elsewhere). After SPMD partitioning, shapes are per device: a device that draws
    only its shard shows the shard's size, one that draws the whole batch shows the batch's.
    """
    sizes = [0]
    for match in _U32_ARRAY.finditer(hlo):
        sizes.append(int(np.prod([int(d) for d in match.group(1).split(",")])))
    return max(sizes)


def mpmath_eval(fn: Any, *columns: Any, dps: int = 40) -> np.ndarray:
    """``fn`` evaluated by mpmath at ``dps`` digits on each row of the float ``columns``."""
    import mpmath as mp

    with mp.workdps(dps):
        return np.array(
            [float(fn(*(mp.mpf(float(v)) for v in row))) for row in zip(*columns, strict=True)]
        )


def worst_rel_error(values: Any, ref: np.ndarray, floor: Any = 1.0) -> float:
    """Worst ``|values - ref| / max(|ref|, floor)``, after asserting every value is finite."""
    values = np.asarray(values, np.float64)
    assert np.all(np.isfinite(values)), values
    return float(np.max(np.abs(values - ref) / np.maximum(np.abs(ref), floor)))


# --- mpmath references with derivatives (the sweeps of tests/families.py) -------------------


class Terms(list):
    """A reference written as a sum of terms: its value is their exact sum and its *scale*
    the sum of their magnitudes, the absolute precision to which a float computation that
    adds those terms can be held (e.g. a log-density that crosses zero as ``x`` moves
    between the normalizer and the data term)."""


def _as_mpf(value: Any) -> Any:
    """``value`` as a real mpf, or ValueError (a complex result: outside the domain)."""
    import mpmath as mp

    if isinstance(value, Terms):
        value = mp.fsum(value)
    if isinstance(value, mp.mpc):
        if value.imag != 0:
            raise ValueError("complex: outside the domain")
        value = value.real
    return mp.mpf(value)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _outputs(fn: Any, args: list[Any]) -> list[Any]:
    out = fn(args)
    return list(out) if isinstance(out, (list, tuple)) and not isinstance(out, Terms) else [out]


def _partial(fn: Any, args: list[Any], k: int, j: int) -> tuple[Any, Any, Any]:
    """``(d, left, right)``: ``d fn(args)[k] / d args[j]`` and its one-sided versions.

    Finite differences at the steps ``h = |x| 2^-(p+10)`` and ``h 2^-(p/2)`` (``|x|`` read as
    the smallest nonzero argument, at most 1, at 0; ``mpmath.diff``'s ``relative`` option
    moves the step the wrong way for tiny and huge ``x``), at three times the working
    precision ``p``, raised until the central differences at both steps agree to ``p/2``
    bits (a formula whose value is much larger than its change needs more). Where both
    sides exist and the gap between the one-sided differences shrinks with the step (it is
    ``h f''``), ``d`` is the central difference; at a boundary of the domain (one side
    complex, undefined or infinite) the other side; at a kink (a gap that does not shrink)
    ``d`` is NaN and ``left``/``right`` bound the subgradients. All NaN where no finite
    derivative is found (or ``x`` is infinite).
    """
    import mpmath as mp

    nan = mp.nan
    v = args[j]
    if not mp.isfinite(v):
        return nan, nan, nan

    def g(t: Any) -> Any:
        moved = list(args)
        moved[j] = t
        try:
            return _as_mpf(_outputs(fn, moved)[k])
        except (ValueError, ZeroDivisionError, TypeError):
            return nan

    def diffs(h: Any) -> tuple[Any, Any, Any]:
        f0, fp, fm = g(v), g(v + h), g(v - h)
        ok0 = mp.isfinite(f0)
        right = (fp - f0) / h if ok0 and mp.isfinite(fp) else nan
        left = (f0 - fm) / h if ok0 and mp.isfinite(fm) else nan
        central = (fp - fm) / (2 * h) if mp.isfinite(right) and mp.isfinite(left) else nan
        return central, left, right

    def close(a: Any, b: Any, bits: int) -> bool:
        return bool(abs(a - b) <= mp.ldexp(max(abs(a), abs(b)), -bits))

    prec = mp.mp.prec
    # At 0 the step follows the finest scale of the other arguments (e.g. a loc of 0 next to
    # a scale of 1e-200).
    nonzero = [abs(a) for a in args if a != 0 and mp.isfinite(a)]
    base = abs(v) if v != 0 else min([mp.mpf(1), *nonzero])
    for boost in (0, prec, 3 * prec, 7 * prec):
        with mp.workprec(3 * prec + 40 + boost):
            h1 = base * mp.ldexp(1, -prec - 10)
            h2 = h1 * mp.ldexp(1, -(prec // 2))
            c1, l1, r1 = diffs(h1)
            c2, l2, r2 = diffs(h2)
            if mp.isfinite(c1) and mp.isfinite(c2):
                if not close(c1, c2, prec // 2):
                    continue
                gap1, gap2 = abs(r1 - l1), abs(r2 - l2)
                if gap2 <= mp.ldexp(gap1, -(prec // 4)) or close(r2, l2, prec // 2):
                    return +c2, +l2, +r2
                return nan, +l2, +r2
            for one1, one2 in ((r1, r2), (l1, l2)):
                if mp.isfinite(one1) and mp.isfinite(one2) and close(one1, one2, prec // 4):
                    return +one2, +one2, +one2
    return nan, nan, nan


def _agree(a: Any, b: Any, digits: int, scale: Any = 0) -> bool:
    """``a`` and ``b`` equal to ``digits`` digits, relative to the larger or ``scale`` (the
    terms' magnitude, for a sum that cancels to 0)."""
    import mpmath as mp

    if mp.isnan(a) or mp.isnan(b) or mp.isinf(a) or mp.isinf(b):
        return bool((mp.isnan(a) and mp.isnan(b)) or a == b)
    floor = max(abs(a), abs(b), abs(scale), mp.mpf(10) ** -300)
    return bool(abs(a - b) <= mp.mpf(10) ** -digits * floor)


def mp_reference(
    fn: Any, args: tuple[float, ...], diff: tuple[bool, ...], dps: int = 30
) -> list[tuple[float, float, np.ndarray]]:
    """``[(value, scale, gradient), ...]``, one per output of the mpmath transcription ``fn``.

    ``fn`` maps a list of mpf (``args``, exactly as floats) to an mpf, a :class:`Terms` or a
    list of them (a vector-valued method). ``scale`` is the :class:`Terms` scale (0 for a
    plain value: pure relative precision); ``gradient[j]`` is the derivative with respect to
    ``args[j]`` where ``diff[j]`` (:func:`_partial`; NaN where it is not finite, or not
    asked for; ``gradient`` has a second and third row, the left and right derivatives,
    which differ at a kink). The value is computed at ``dps`` and ``dps + 20`` digits; where
    they disagree beyond ``min(25, dps - 5)`` digits (cancellation inside the formula) value
    and derivatives are recomputed with the precision doubled, up to 8x. The differences
    are taken at three times the precision with steps below it, so the derivatives keep
    about as many digits as the value.
    """
    import mpmath as mp

    for digits in (dps, 2 * dps, 4 * dps, 8 * dps):
        with mp.workdps(digits):
            point = [mp.mpf(float(a)) for a in args]
            values = [_safe_value(v) for v in _outputs(fn, point)]
        with mp.workdps(digits + 20):
            point = [mp.mpf(float(a)) for a in args]
            check = [_safe_value(v) for v in _outputs(fn, point)]
        agree = min(25, digits - 5)
        if all(_agree(a[0], b[0], agree, a[1]) for a, b in zip(values, check, strict=True)):
            break
    else:
        raise AssertionError(f"mpmath reference did not converge at {args} ({fn})")
    out = []
    with mp.workdps(digits):
        point = [mp.mpf(float(a)) for a in args]
        for k, (value, scale) in enumerate(values):
            if mp.isfinite(value) and abs(value) <= mp.mpf(10) ** (5 - digits) * scale:
                value = mp.mpf(0)  # a sum of terms that cancels to 0 (a KL of q with itself)
            grad = np.full((3, len(args)), np.nan)
            if mp.isfinite(value):
                for j in np.flatnonzero(diff):
                    grad[:, j] = [_to_float(d) for d in _partial(fn, point, k, int(j))]
            out.append((_to_float(value), _to_float(scale), grad))
    return out


def _safe_value(value: Any) -> tuple[Any, Any]:
    """``(value, scale)`` of one output; NaN for a value outside the real domain."""
    import mpmath as mp

    scale = mp.fsum(abs(t) for t in value) if isinstance(value, Terms) else mp.mpf(0)
    try:
        return _as_mpf(value), scale
    except ValueError:
        return mp.nan, mp.mpf(0)


def mp_gradient_floor(
    fn: Any, args: tuple[float, ...], diff: tuple[bool, ...], k: int, j: int, dps: int = 30
) -> float:
    """``sum_l |args_l d^2 fn(args)[k] / d args_l d args_j|``: how much the ``j``-th partial
    moves under relative perturbations of the inputs (the floor of a partial that is
    ill-conditioned, e.g. ``k - e^eta`` of a Poisson at counts near the rate). mpmath
    differences of :func:`_partial`; slow, so the sweeps only ask for it where a partial
    misses its relative tolerance."""
    import mpmath as mp

    total = mp.mpf(0)
    with mp.workdps(dps):
        point = [mp.mpf(float(a)) for a in args]

        def partial_j(a: list[Any]) -> list[Any]:
            return [_partial(fn, a, k, j)[0]]

        for m, use in enumerate(diff):
            if use and point[m] != 0 and mp.isfinite(point[m]):
                second = _partial(partial_j, point, 0, m)[0]
                if mp.isfinite(second):
                    total += abs(point[m] * second)
    return _to_float(total)


# --- documentation ---------------------------------------------------------------------------


def markdown_python_blocks(path: str | Path, heading: str | None = None) -> list[str]:
    """The ```` ```python ```` blocks of a Markdown file (relative to the repository root),
    in order; with ``heading`` (a whole line such as ``"## Quick start"``), only those of that
    section, up to the next heading of the same or a higher level."""
    text = (ROOT / path).read_text(encoding="utf-8")
    if heading is not None:
        lines = text.splitlines()
        if heading not in lines:
            raise AssertionError(f"{path} has no line {heading!r}")
        start = lines.index(heading) + 1
        level = len(heading) - len(heading.lstrip("#"))
        end = next(
            (
                i
                for i in range(start, len(lines))
                if re.match(rf"#{{1,{level}}} ", lines[i]) and not _in_fence(lines[:i])
            ),
            len(lines),
        )
        text = "\n".join(lines[start:end]) + "\n"
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def _in_fence(lines: list[str]) -> bool:
    """Whether the line after ``lines`` is inside a fenced code block."""
    return sum(line.startswith("```") for line in lines) % 2 == 1
