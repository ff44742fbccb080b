"""The registry of every public family and every registered KL pair, for the sweeps.

One :class:`Family` entry per parameterization of a public ``jelbo.Distribution`` subclass
(a class with several constructors, e.g. ``Normal`` and ``Normal.from_log_var``, has one
entry each): how to build it from a flat parameter vector, the parameter sets that matter
for its math (special points: concentrations exactly 1, zero and near-zero concentration or
temperature, boundaries of the support, huge and tiny scales, logits at ±1e4 in float64
and ±80 in float32, plus random points) and an mpmath transcription of each of its methods
(``log_prob``, ``entropy``, ``mean``, ``variance``, ``mode`` where defined), written from
the textbook formulas, independently of jelbo's implementation. :class:`KLPair` does the
same for each closed-form KL. ``tests/test_sweep_*.py`` check that the registry covers
every public family (by introspection of ``jelbo``) and every pair of the KL registry, so a
new family or pair cannot be added without an entry here.

Adding a family is one :class:`Family` entry (a new keyword parameterization, a scalar
event or an ``Independent`` wrapper is one more entry with its own ``make``); adding a KL
pair is one :class:`KLPair`.

Conventions: a point's values are rounded to float32 when the point is also a float32 point
(``f32=True``, the default), so that both precisions and the mpmath reference see exactly
the same numbers and one reference serves both. ``make(theta)`` receives the parameters as
one flat array (``theta``, in the order of ``params``) and returns a distribution with
batch shape ``()``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np

import jelbo
import jelbo.kl

METHODS = ("log_prob", "entropy", "mean", "variance", "mode")

# --- mpmath references with derivatives ------------------------------------------------------


class Terms(list):
    """A reference written as a sum of terms: its value is their exact sum and its *scale*
    the sum of their magnitudes, the absolute precision to which a float computation that
    adds those terms can be held (e.g. a log-density that crosses zero as ``x`` moves
    between the normalizer and the data term)."""


def _as_mpf(value: Any) -> Any:
    """``value`` as a real mpf, or ValueError (a complex result: outside the domain)."""
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


# --- registry types --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
    """One parameter set ``theta`` and the values ``xs`` at which ``log_prob`` is checked."""

    theta: tuple[float, ...]
    xs: tuple[tuple[float, ...], ...] = ()
    f32: bool = True
    label: str = ""
    diff: tuple[bool, ...] | None = None
    tol: tuple[tuple[str, str, float], ...] = ()
    why: str = ""


def point(
    theta: Sequence[float],
    *xs: Sequence[float],
    f32: bool = True,
    label: str = "",
    diff: Sequence[bool] | None = None,
    tol: dict[str, dict[str, float]] | None = None,
    why: str = "",
) -> Point:
    """A :class:`Point`; its values are rounded to float32 when it is a float32 point.

    ``diff`` restricts the parameters whose partials are checked (default: all); ``tol``
    overrides :data:`TOLERANCES` at this point (``{"float32": {"grad": 1e-3}}``) and must come
    with ``why``, the reason the math is ill-conditioned there (it is part of the report).
    """
    if tol and not why:
        raise ValueError(f"a tolerance override at {theta} needs its justification (`why`)")
    rnd = (lambda v: float(np.float32(v))) if f32 else float
    overrides = tuple((d, k, v) for d, kv in (tol or {}).items() for k, v in kv.items())
    return Point(
        tuple(rnd(v) for v in theta),
        tuple(tuple(rnd(v) for v in x) for x in xs),
        f32,
        label,
        None if diff is None else tuple(diff),
        overrides,
        why,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """One parameterization of a public family (see the module docstring).

    Attributes:
        name: the entry's name (``"Normal"``, ``"Normal.from_log_var"``, ...).
        cls: the public class it builds.
        params: names of the entries of the flat parameter vector, in order.
        make: ``make(theta) -> distribution`` (batch shape ``()``).
        refs: ``method -> mpmath transcription``; ``log_prob``'s takes ``(theta, x)``, the
            others ``(theta)`` (lists of mpf), returning an mpf (or :class:`Terms`), or a
            list of them for an event-shaped method (flattened in C order).
        points: the parameter sets (special and random).
        x_shape: the event shape of one value (``xs`` entries are flattened).
        x_integer: values are integer indices (``Categorical``): passed as ints, no x-gradient.
        x_diff: whether ``log_prob`` is differentiated with respect to ``x`` too.
        keyword: the keyword parameterization ``make`` uses (``"probs"``, ``"logits"``,
            ``"rate"``, ...) for a family with alternatives (``cls.parameterizations``).
        scalar: ``make`` builds a scalar distribution (0-d parameters, event shape ``()``).
    """

    name: str
    cls: type
    params: tuple[str, ...]
    make: Callable[[Any], jelbo.Distribution]
    refs: dict[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
    points: tuple[Point, ...] = ()
    x_shape: tuple[int, ...] = (1,)
    x_integer: bool = False
    x_diff: bool = True
    keyword: str | None = None
    scalar: bool = False

    def __repr__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True, eq=False)
class KLPair:
    """A closed-form KL: ``q`` and ``p`` registry entries, the mpmath transcription
    ``ref(theta_q, theta_p)`` and the points ``(theta_q, theta_p)`` (as :class:`Point` with
    ``theta = theta_q + theta_p``)."""

    q: Family
    p: Family
    ref: Callable[[list, list], Any]
    points: tuple[Point, ...]
    dps: int = 30

    @property
    def name(self) -> str:
        return f"{self.q.name}||{self.p.name}"

    def __repr__(self) -> str:
        return self.name


def _seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def randoms(name: str, n: int, draw: Callable[[np.random.Generator], Point]) -> list[Point]:
    """``n`` random points from ``draw``, with a generator seeded by ``name``."""
    rng = _seeded(name)
    return [draw(rng) for _ in range(n)]


# --- mpmath helpers (the transcriptions use these, never jelbo) ------------------------------

HALF_LOG_2PI = lambda: mp.log(2 * mp.pi) / 2


def xlogy(c: Any, x: Any) -> Any:
    """``c log x`` with ``0 log x = 0`` (also at ``x = 0``)."""
    return mp.mpf(0) if c == 0 else c * mp.log(x)


def xlog1p(c: Any, x: Any) -> Any:
    """``c log1p(x)`` with ``0 log1p(x) = 0`` (``log1p``: ``1 - p`` at 30 digits is 1 for
    ``p = 1e-300``, and so would be its finite differences)."""
    return mp.mpf(0) if c == 0 else c * mp.log1p(x)


def log_sigmoid(a: Any) -> Any:
    return -mp.log1p(mp.exp(-a))


def sigmoid(a: Any) -> Any:
    return 1 / (1 + mp.exp(-a))


def logsumexp(v: Sequence[Any]) -> Any:
    m = max(v)
    if mp.isinf(m):
        return m
    return m + mp.log(mp.fsum(mp.exp(u - m) for u in v))


def lbeta(*a: Any) -> Any:
    return mp.fsum(mp.loggamma(v) for v in a) - mp.loggamma(mp.fsum(a))


def step(condition: bool) -> Any:
    return mp.mpf(1) if condition else mp.mpf(0)


def inverse(m: Any) -> Any:
    """The inverse of a 1x1 or 2x2 mpmath matrix from its adjugate (mpmath's LU refuses
    matrices whose entries span many orders of magnitude as "numerically singular")."""
    if m.rows == 1:
        return mp.matrix([[1 / m[0, 0]]])
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    return mp.matrix([[m[1, 1] / det, -m[0, 1] / det], [-m[1, 0] / det, m[0, 0] / det]])


def det(m: Any) -> Any:
    return m[0, 0] if m.rows == 1 else m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]


def _unit(v: np.ndarray) -> tuple[float, ...]:
    v = np.asarray(v, np.float64)
    return tuple(v / np.linalg.norm(v))


# --- the families ----------------------------------------------------------------------------

FAMILIES: list[Family] = []
KL_PAIRS: list[KLPair] = []


def family(**kwargs: Any) -> Family:
    entry = Family(**kwargs)
    FAMILIES.append(entry)
    return entry


def kl_pair(q: Family, p: Family, ref: Callable, points: Sequence[Point], dps: int = 30) -> KLPair:
    entry = KLPair(q, p, ref, tuple(points), dps)
    KL_PAIRS.append(entry)
    return entry


# Normal ------------------------------------------------------------------------------------


def _normal_lp(t, x):
    loc, scale = t
    z = (x[0] - loc) / scale
    return -z * z / 2 - mp.log(scale) - HALF_LOG_2PI()


def _normal_entropy(t):
    return mp.mpf(0.5) + HALF_LOG_2PI() + mp.log(t[1])


NORMAL = family(
    name="Normal",
    cls=jelbo.Normal,
    params=("loc", "scale"),
    make=lambda t: jelbo.Normal(t[0:1], t[1:2]),
    refs={
        "log_prob": _normal_lp,
        "entropy": _normal_entropy,
        "mean": lambda t: [t[0]],
        "variance": lambda t: [t[1] ** 2],
        "mode": lambda t: [t[0]],
    },
    points=(
        point((0.0, 1.0), (0.0,), (1.5,), (-3.0,)),
        point((0.5, 1e-30), (0.5,), (0.5 + 2e-30,), label="tiny scale"),
        point((1e4, 1e30), (-1e30,), (1e4,), label="huge scale"),
        point((0.0, 1.0), (1e10,), label="far tail"),
        point((0.0, 1e-200), (0.0,), (3e-200,), f32=False, label="tiny scale"),
        point((1e150, 1e200), (-1e200,), f32=False, label="huge scale"),
        point((0.0, 1.0), (1e150,), f32=False, label="far tail"),
        *randoms(
            "Normal",
            4,
            lambda r: point((r.normal(), r.uniform(0.2, 3)), (r.normal() * 2,), (r.normal(),)),
        ),
    ),
)


def _normal_lv_lp(t, x):
    loc, log_var = t
    return -((x[0] - loc) ** 2) * mp.exp(-log_var) / 2 - log_var / 2 - HALF_LOG_2PI()


NORMAL_LOG_VAR = family(
    name="Normal.from_log_var",
    cls=jelbo.Normal,
    params=("loc", "log_var"),
    make=lambda t: jelbo.Normal.from_log_var(t[0:1], t[1:2]),
    refs={
        "log_prob": _normal_lv_lp,
        "entropy": lambda t: mp.mpf(0.5) + HALF_LOG_2PI() + t[1] / 2,
        "mean": lambda t: [t[0]],
        "variance": lambda t: [mp.exp(t[1])],
        "mode": lambda t: [t[0]],
    },
    points=(
        point((0.0, 0.0), (0.0,), (1.0,)),
        point((0.25, -180.0), (0.25,), label="scale e^-90 (0 in float32)"),
        point((0.0, 60.0), (1e13,), label="huge scale"),
        point((0.25, -1400.0), (0.25,), f32=False, label="scale e^-700"),
        *randoms(
            "Normal.from_log_var",
            3,
            lambda r: point((r.normal(), r.uniform(-3, 3)), (r.normal(),)),
        ),
    ),
)


# Beta ----------------------------------------------------------------------------------------


def _beta_lp(t, x):
    a, b = t
    return xlogy(a - 1, x[0]) + xlogy(b - 1, 1 - x[0]) - lbeta(a, b)


def _beta_entropy(t):
    a, b = t
    s = a + b
    return lbeta(a, b) - (a - 1) * mp.digamma(a) - (b - 1) * mp.digamma(b) + (s - 2) * mp.digamma(s)


def _beta_mode(t):
    a, b = t
    if a > 1 and b > 1:
        return [(a - 1) / (a + b - 2)]
    if a <= 1 and b > 1:
        return [mp.mpf(0)]
    if a > 1 and b <= 1:
        return [mp.mpf(1)]
    return [mp.nan]


BETA = family(
    name="Beta",
    cls=jelbo.Beta,
    params=("concentration1", "concentration0"),
    make=lambda t: jelbo.Beta(t[0:1], t[1:2]),
    refs={
        "log_prob": _beta_lp,
        "entropy": _beta_entropy,
        "mean": lambda t: [t[0] / (t[0] + t[1])],
        "variance": lambda t: [t[0] * t[1] / ((t[0] + t[1]) ** 2 * (t[0] + t[1] + 1))],
        "mode": _beta_mode,
    },
    points=(
        point((1.0, 1.0), (0.5,), (0.0,), (1.0,), (1e-30,), label="uniform"),
        point((1.0, 2.5), (0.5,), (0.0,), (0.9,), label="a = 1"),
        point((3.0, 1.0), (0.25,), (1.0,), label="b = 1"),
        point((1e-3, 0.5), (1e-20,), (0.5,), label="tiny a"),
        point((2.0, 3.0), (1e-30,), (0.999,), label="near the boundaries"),
        point((1e6, 1e6), (0.5,), (0.5005,), label="huge, at the mode"),
        point((1e4, 3.0), (0.9997,), label="huge a"),
        *randoms(
            "Beta",
            4,
            lambda r: point(tuple(np.exp(r.uniform(-1.5, 2, 2))), (r.uniform(0.01, 0.99),)),
        ),
    ),
)


# PowerSpherical -----------------------------------------------------------------------------


def _ps_log_normalizer(kappa, d):
    alpha = (d - 1) / mp.mpf(2) + kappa
    beta = (d - 1) / mp.mpf(2)
    return -(
        (alpha + beta) * mp.log(2)
        + beta * mp.log(mp.pi)
        + mp.loggamma(alpha)
        - mp.loggamma(alpha + beta)
    )


def _ps_lp(t, x):
    *mu, kappa = t
    cosine = mp.fsum(m * v for m, v in zip(mu, x, strict=True))
    return _ps_log_normalizer(kappa, len(mu)) + xlogy(kappa, 1 + cosine)


def _ps_entropy(t):
    *mu, kappa = t
    d = len(mu)
    alpha = (d - 1) / mp.mpf(2) + kappa
    beta = (d - 1) / mp.mpf(2)
    return -_ps_log_normalizer(kappa, d) - kappa * (
        mp.log(2) + mp.digamma(alpha) - mp.digamma(alpha + beta)
    )


def _ps_variance(t):
    *mu, kappa = t
    d = len(mu)
    alpha = (d - 1) / mp.mpf(2) + kappa
    beta = (d - 1) / mp.mpf(2)
    s = alpha + beta
    # t = mu.x = 2z - 1 with z ~ Beta(alpha, beta); x = t mu + sqrt(1 - t^2) v, v uniform on
    # the sphere orthogonal to mu: Var(x_i) = Var(t) mu_i^2 + E[1 - t^2]/(d - 1) (1 - mu_i^2).
    var_t = 4 * alpha * beta / (s * s * (s + 1))
    mean_t = (alpha - beta) / s
    tangent = (1 - var_t - mean_t**2) / (d - 1)
    return [var_t * m * m + tangent * (1 - m * m) for m in mu]


POWER_SPHERICAL = family(
    name="PowerSpherical",
    cls=jelbo.PowerSpherical,
    params=("mean_direction[0]", "mean_direction[1]", "mean_direction[2]", "concentration"),
    make=lambda t: jelbo.PowerSpherical(t[:3], t[3]),
    refs={
        "log_prob": _ps_lp,
        "entropy": _ps_entropy,
        "mean": lambda t: [t[3] / (2 + t[3]) * m for m in t[:3]],
        "variance": _ps_variance,
        "mode": lambda t: list(t[:3]),
    },
    x_shape=(3,),
    points=(
        point(
            (0.6, 0.8, 0.0, 0.0),
            (0.0, 1.0, 0.0),
            (0.6, 0.8, 0.0),
            (-0.6, -0.8, 0.0),
            label="kappa = 0",
        ),
        point((0.6, 0.8, 0.0, 1e-6), (0.0, 1.0, 0.0), label="kappa = 1e-6"),
        point(
            (0.0, 0.0, 1.0, 2.0),
            (0.0, 0.0, 1.0),
            (0.0, 0.6, -0.8),
            (0.0, 0.0, -1.0),
            label="antipode",
        ),
        point((1.0, 0.0, 0.0, 1e6), (1.0, 0.0, 0.0), (0.6, 0.8, 0.0), label="huge kappa"),
        *randoms(
            "PowerSpherical",
            3,
            lambda r: point(
                (*_unit(r.normal(size=3)), r.uniform(0.1, 20)), _unit(r.normal(size=3))
            ),
        ),
    ),
)


# Laplace -------------------------------------------------------------------------------------

LAPLACE = family(
    name="Laplace",
    cls=jelbo.Laplace,
    params=("loc", "scale"),
    make=lambda t: jelbo.Laplace(t[0:1], t[1:2]),
    refs={
        "log_prob": lambda t, x: -mp.log(2 * t[1]) - abs(x[0] - t[0]) / t[1],
        "entropy": lambda t: 1 + mp.log(2 * t[1]),
        "mean": lambda t: [t[0]],
        "variance": lambda t: [2 * t[1] ** 2],
        "mode": lambda t: [t[0]],
    },
    points=(
        point((0.0, 1.0), (0.0,), (1.0,), (-2.5,), label="x = loc is a kink"),
        point((0.5, 1e-30), (0.5,), (0.5 + 3e-30,), label="tiny scale"),
        point((1e4, 1e30), (-1e30,), label="huge scale"),
        point((0.0, 1e-200), (3e-200,), f32=False, label="tiny scale"),
        point((1e150, 1e200), (-1e200,), f32=False, label="huge scale"),
        *randoms("Laplace", 3, lambda r: point((r.normal(), r.uniform(0.2, 3)), (r.normal(),))),
    ),
)


# StudentT ------------------------------------------------------------------------------------


def _t_lp(t, x):
    df, loc, scale = t
    z = (x[0] - loc) / scale
    return (
        mp.loggamma((df + 1) / 2)
        - mp.loggamma(df / 2)
        - mp.log(df * mp.pi) / 2
        - mp.log(scale)
        - (df + 1) / 2 * mp.log1p(z * z / df)
    )


def _t_entropy(t):
    df, _, scale = t
    h = df / 2
    return (
        (df + 1) / 2 * (mp.digamma((df + 1) / 2) - mp.digamma(h))
        + mp.log(mp.sqrt(df) * mp.beta(h, mp.mpf(1) / 2))
        + mp.log(scale)
    )


def _t_variance(t):
    df, _, scale = t
    if df > 2:
        return [scale**2 * df / (df - 2)]
    return [mp.inf if df > 1 else mp.nan]


STUDENT_T = family(
    name="StudentT",
    cls=jelbo.StudentT,
    params=("df", "loc", "scale"),
    make=lambda t: jelbo.StudentT(t[0:1], t[1:2], t[2:3]),
    refs={
        "log_prob": _t_lp,
        "entropy": _t_entropy,
        "mean": lambda t: [t[1] if t[0] > 1 else mp.nan],
        "variance": _t_variance,
        "mode": lambda t: [t[1]],
    },
    points=(
        point((1.0, 0.0, 1.0), (0.0,), (3.0,), (-1e3,), label="Cauchy"),
        point((2.0, 0.5, 2.0), (0.5,), (10.0,), label="df = 2"),
        point((1e-3, 0.0, 1.0), (1.0,), (1e10,), label="tiny df"),
        point((1e6, 0.0, 1.0), (0.0,), (2.0,), (1e4,), label="huge df"),
        point((2.5, 1e4, 1e-30), (1e4,), label="tiny scale"),
        point((4.0, 0.0, 1e30), (1e30,), label="huge scale"),
        point((1e12, 0.0, 1.0), (1.5,), (1e8,), f32=False, label="huge df"),
        point((3.0, 0.0, 1.0), (1e150,), f32=False, label="far tail"),
        *randoms(
            "StudentT",
            3,
            lambda r: point((r.uniform(0.5, 10), r.normal(), r.uniform(0.3, 3)), (r.normal() * 3,)),
        ),
    ),
)


# Bernoulli -----------------------------------------------------------------------------------

BERNOULLI = family(
    name="Bernoulli",
    cls=jelbo.Bernoulli,
    params=("logits",),
    make=lambda t: jelbo.Bernoulli(logits=t[0:1]),
    keyword="logits",
    refs={
        "log_prob": lambda t, x: x[0] * log_sigmoid(t[0]) + (1 - x[0]) * log_sigmoid(-t[0]),
        "entropy": lambda t: (
            -(sigmoid(t[0]) * log_sigmoid(t[0]) + sigmoid(-t[0]) * log_sigmoid(-t[0]))
        ),
        "mean": lambda t: [sigmoid(t[0])],
        "variance": lambda t: [sigmoid(t[0]) * sigmoid(-t[0])],
        "mode": lambda t: [step(t[0] > 0)],
    },
    points=(
        point((0.0,), (0.0,), (1.0,), (0.5,), label="p = 1/2"),
        point((2.5,), (0.0,), (1.0,), (0.25,)),
        point((-30.0,), (0.0,), (1.0,)),
        point((80.0,), (0.0,), (1.0,), label="float32 extreme"),
        point((-80.0,), (0.0,), (1.0,), label="float32 extreme"),
        point((745.0,), (0.0,), (1.0,), f32=False, label="sigmoid(-a) subnormal"),
        point((1e4,), (0.0,), (1.0,), (0.5,), f32=False, label="float64 extreme"),
        point((-1e4,), (0.0,), (1.0,), f32=False, label="float64 extreme"),
        *randoms("Bernoulli", 3, lambda r: point((r.normal() * 3,), (r.uniform(),))),
    ),
)


# Poisson -------------------------------------------------------------------------------------

POISSON = family(
    name="Poisson",
    cls=jelbo.Poisson,
    params=("log_rate",),
    make=lambda t: jelbo.Poisson(log_rate=t[0:1]),
    keyword="log_rate",
    refs={
        "log_prob": lambda t, x: x[0] * t[0] - mp.exp(t[0]) - mp.loggamma(x[0] + 1),
        "mean": lambda t: [mp.exp(t[0])],
        "variance": lambda t: [mp.exp(t[0])],
        "mode": lambda t: [mp.floor(mp.exp(t[0]))],
    },
    x_diff=False,
    points=(
        point((0.0,), (0.0,), (1.0,), (3.0,), label="rate 1"),
        point((-80.0,), (0.0,), (1.0,), label="tiny rate"),
        point((9.21,), (1e4,), (9990.0,), label="rate ~ 1e4, counts near it"),
        point((50.0,), (0.0,), (1e6,), label="huge rate"),
        point((-700.0,), (0.0,), (2.0,), f32=False, label="tiny rate"),
        point((20.72,), (1e9,), (999990000.0,), f32=False, label="rate ~ 1e9, counts near it"),
        *randoms("Poisson", 3, lambda r: point((r.uniform(-2, 3),), (float(r.integers(0, 12)),))),
    ),
)


# Categorical ---------------------------------------------------------------------------------


def _argmax(v):
    return max(range(len(v)), key=lambda i: (v[i], -i))  # the first maximum, as jnp.argmax


def _log_softmax(a):
    total = logsumexp(a)
    return [u - total for u in a]


def _categorical_entropy(a):
    return -mp.fsum(mp.exp(u) * u for u in _log_softmax(a) if u != -mp.inf)


CATEGORICAL = family(
    name="Categorical",
    cls=jelbo.Categorical,
    params=("logits[0]", "logits[1]", "logits[2]"),
    make=lambda t: jelbo.Categorical(logits=t),
    keyword="logits",
    refs={
        "log_prob": lambda t, x: _log_softmax(t)[int(x[0])],
        "entropy": _categorical_entropy,
        "mode": lambda t: [mp.mpf(_argmax(t))],
    },
    x_shape=(),
    x_integer=True,
    points=(
        point((0.0, 0.0, 0.0), (0.0,), (2.0,), label="uniform"),
        point((30.0, 0.0, 0.0), (0.0,), (1.0,), label="nearly deterministic"),
        point((80.0, 0.0, -80.0), (0.0,), (2.0,), label="float32 extremes"),
        point((-np.inf, 0.0, 1.0), (0.0,), (2.0,), label="masked category"),
        point((1e4, 0.0, -1e4), (0.0,), (1.0,), (2.0,), f32=False, label="float64 extremes"),
        *randoms(
            "Categorical",
            3,
            lambda r: point(tuple(r.normal(size=3) * 2), (float(r.integers(0, 3)),)),
        ),
    ),
)


# MultivariateNormalTriL ----------------------------------------------------------------------


def _tril2(t):
    return mp.matrix([[t[2], 0], [t[3], t[4]]])


def _mvn_lp(t, x):
    y = inverse(_tril2(t)) * mp.matrix([x[0] - t[0], x[1] - t[1]])
    return -(y[0] ** 2 + y[1] ** 2) / 2 - mp.log(abs(t[2])) - mp.log(abs(t[4])) - 2 * HALF_LOG_2PI()


MVN_TRIL = family(
    name="MultivariateNormalTriL",
    cls=jelbo.MultivariateNormalTriL,
    params=("loc[0]", "loc[1]", "scale_tril[0,0]", "scale_tril[1,0]", "scale_tril[1,1]"),
    make=lambda t: jelbo.MultivariateNormalTriL(
        t[0:2], jnp.stack([jnp.stack([t[2], 0.0 * t[2]]), jnp.stack([t[3], t[4]])])
    ),
    refs={
        "log_prob": _mvn_lp,
        "entropy": lambda t: mp.log(abs(t[2])) + mp.log(abs(t[4])) + 1 + 2 * HALF_LOG_2PI(),
        "mean": lambda t: [t[0], t[1]],
        "variance": lambda t: [t[2] ** 2, t[3] ** 2 + t[4] ** 2],
        "mode": lambda t: [t[0], t[1]],
    },
    x_shape=(2,),
    points=(
        point((0.0, 0.0, 1.0, 0.0, 1.0), (0.0, 0.0), (1.0, -2.0), label="standard"),
        point((1.0, -1.0, 1.0, 0.99, 0.1), (1.5, 0.0), label="correlated"),
        point((0.0, 0.0, -2.0, 0.5, -0.5), (1.0, 1.0), label="negative diagonal"),
        point((0.0, 1.0, 1e-30, 0.0, 1e-30), (1e-30, 1.0), label="tiny scale"),
        point((1e4, 0.0, 1e30, 1e29, 1e30), (-1e30, 1e30), label="huge scale"),
        point((0.0, 0.0, 1e-200, 0.0, 1e-200), (1e-200, 0.0), f32=False, label="tiny scale"),
        *randoms(
            "MultivariateNormalTriL",
            2,
            lambda r: point(
                (*r.normal(size=2), r.uniform(0.5, 2), r.normal(), r.uniform(0.5, 2)),
                tuple(r.normal(size=2)),
            ),
        ),
    ),
)


# Gamma ---------------------------------------------------------------------------------------


def _gamma_lp(t, x):
    a, rate = t
    return a * mp.log(rate) + xlogy(a - 1, x[0]) - rate * x[0] - mp.loggamma(a)


GAMMA = family(
    name="Gamma",
    cls=jelbo.Gamma,
    params=("concentration", "rate"),
    make=lambda t: jelbo.Gamma(t[0:1], t[1:2]),
    refs={
        "log_prob": _gamma_lp,
        "entropy": lambda t: (
            t[0] - mp.log(t[1]) + mp.loggamma(t[0]) + (1 - t[0]) * mp.digamma(t[0])
        ),
        "mean": lambda t: [t[0] / t[1]],
        "variance": lambda t: [t[0] / t[1] ** 2],
        "mode": lambda t: [max(t[0] - 1, 0) / t[1]],
    },
    points=(
        point((1.0, 1.0), (0.5,), (0.0,), (1e-30,), label="exponential"),
        point((1.0, 2.5), (0.0,), (3.0,), label="exponential"),
        point((1e-3, 1.0), (1e-30,), (2.0,), label="tiny concentration"),
        point((2.5, 1e-30), (1e30,), label="tiny rate"),
        point((0.5, 1e30), (1e-31,), label="huge rate"),
        point((1e6, 1e6), (1.0,), (1.001,), label="huge, at the mode"),
        point((1e12, 1e12), (1.0,), f32=False, label="huge, at the mode"),
        point((2.0, 1e-200), (1e200,), f32=False, label="tiny rate"),
        *randoms(
            "Gamma",
            3,
            lambda r: point(tuple(np.exp(r.uniform(-1.5, 2, 2))), (np.exp(r.normal()),)),
        ),
    ),
)


# Dirichlet -----------------------------------------------------------------------------------


def _dirichlet_entropy(t):
    total = mp.fsum(t)
    return (
        lbeta(*t)
        + (total - len(t)) * mp.digamma(total)
        - mp.fsum((a - 1) * mp.digamma(a) for a in t)
    )


def _dirichlet_mode(t):
    if all(a > 1 for a in t):
        return [(a - 1) / (mp.fsum(t) - len(t)) for a in t]
    return [mp.nan] * len(t)


def _dirichlet_variance(t):
    total = mp.fsum(t)
    return [a * (total - a) / (total**2 * (total + 1)) for a in t]


DIRICHLET = family(
    name="Dirichlet",
    cls=jelbo.Dirichlet,
    params=("concentration[0]", "concentration[1]", "concentration[2]"),
    make=lambda t: jelbo.Dirichlet(t),
    refs={
        "log_prob": lambda t, x: (
            mp.fsum(xlogy(a - 1, v) for a, v in zip(t, x, strict=True)) - lbeta(*t)
        ),
        "entropy": _dirichlet_entropy,
        "mean": lambda t: [a / mp.fsum(t) for a in t],
        "variance": _dirichlet_variance,
        "mode": _dirichlet_mode,
    },
    x_shape=(3,),
    points=(
        point(
            (1.0, 1.0, 1.0),
            (0.25, 0.25, 0.5),
            (1.0, 0.0, 0.0),
            (0.5, 0.5, 0.0),
            label="uniform: interior, vertex, face",
        ),
        point((1.0, 2.0, 3.0), (0.0, 0.5, 0.5), (0.2, 0.3, 0.5), label="one concentration 1"),
        point((1e-3, 1e-3, 1e-3), (1e-30, 0.5, 0.5), label="tiny"),
        point((1e6, 1e6, 1e6), (0.25, 0.375, 0.375), label="huge"),
        point((2.0, 0.5, 1.0), (0.2, 0.3, 0.5)),
        point((1e6, 1e-3, 1.0), (0.999, 1e-4, 9e-4), label="one dominant concentration"),
        *randoms(
            "Dirichlet",
            3,
            lambda r: point(tuple(np.exp(r.uniform(-1, 2, 3))), tuple(r.dirichlet([2, 2, 2]))),
        ),
    ),
)


# Kumaraswamy ---------------------------------------------------------------------------------


def _kumaraswamy_moment(a, b, n):
    return b * mp.beta(1 + n / a, b)


def _kumaraswamy_mode(t):
    a, b = t
    if a >= 1 and b >= 1 and (a > 1 or b > 1):
        return [((a - 1) / (a * b - 1)) ** (1 / a)]
    return [mp.nan]


KUMARASWAMY = family(
    name="Kumaraswamy",
    cls=jelbo.Kumaraswamy,
    params=("concentration1", "concentration0"),
    make=lambda t: jelbo.Kumaraswamy(t[0:1], t[1:2]),
    refs={
        "log_prob": lambda t, x: (
            mp.log(t[0]) + mp.log(t[1]) + xlogy(t[0] - 1, x[0]) + xlogy(t[1] - 1, 1 - x[0] ** t[0])
        ),
        "entropy": lambda t: (
            (1 - 1 / t[1])
            + (1 - 1 / t[0]) * (mp.digamma(t[1] + 1) + mp.euler)
            - mp.log(t[0] * t[1])
        ),
        "mean": lambda t: [_kumaraswamy_moment(t[0], t[1], 1)],
        "variance": lambda t: [
            _kumaraswamy_moment(t[0], t[1], 2) - _kumaraswamy_moment(t[0], t[1], 1) ** 2
        ],
        "mode": _kumaraswamy_mode,
    },
    points=(
        point((1.0, 1.0), (0.5,), (0.0,), (1.0,), label="uniform"),
        point((1.0, 3.0), (0.0,), (0.2,), label="a = 1"),
        point((3.0, 1.0), (1.0,), (0.5,), label="b = 1"),
        point((1e-3, 2.0), (1e-30,), (0.5,), label="tiny a"),
        point(
            (2.0, 1e-3),
            (0.5,),
            (0.999,),
            label="tiny b",
            tol={"float64": {"value": 1e-11}, "float32": {"value": 1e-2}},
            why="the variance E[x^2] - E[x]^2 of a law concentrated near 1 cancels 4 digits "
            "(open: no cancellation-free closed form)",
        ),
        point(
            (50.0, 1e3),
            (0.8,),
            label="large",
            tol={"float32": {"value": 1e-3, "grad": 1e-3}},
            why="the variance E[x^2] - E[x]^2 of a concentrated law (CV 2.5%) cancels 3 "
            "digits (open: no cancellation-free closed form)",
        ),
        *randoms(
            "Kumaraswamy",
            3,
            lambda r: point(tuple(np.exp(r.uniform(-1, 1.5, 2))), (r.uniform(0.02, 0.98),)),
        ),
    ),
)


# ContinuousBernoulli --------------------------------------------------------------------------


def _cb(lam):
    """(log-normalizer, mean, variance) at the working precision (with the digits the 0/0
    forms near lambda = 0 cancel added)."""
    if lam == 0:
        return mp.mpf(0), mp.mpf(1) / 2, mp.mpf(1) / 12
    with mp.extraprec(2 * max(0, -int(mp.log(abs(lam), 2))) + 10):
        em1 = mp.expm1(lam)
        log_norm = mp.log(em1 / lam)
        mean = 1 / (1 - mp.exp(-lam)) - 1 / lam
        var = (
            1 / lam**2 - mp.exp(lam) / em1**2
            if lam < 0
            else 1 / lam**2 - 1 / (em1 * (1 - mp.exp(-lam)))
        )
        return +log_norm, +mean, +var


CONTINUOUS_BERNOULLI = family(
    name="ContinuousBernoulli",
    cls=jelbo.ContinuousBernoulli,
    params=("logits",),
    make=lambda t: jelbo.ContinuousBernoulli(logits=t[0:1]),
    keyword="logits",
    refs={
        "log_prob": lambda t, x: t[0] * x[0] - _cb(t[0])[0],
        "entropy": lambda t: _cb(t[0])[0] - t[0] * _cb(t[0])[1],
        "mean": lambda t: [_cb(t[0])[1]],
        "variance": lambda t: [_cb(t[0])[2]],
        "mode": lambda t: [step(t[0] > 0)],
    },
    points=(
        point((0.0,), (0.0,), (1.0,), (0.5,), label="uniform"),
        point((1e-8,), (0.3,), label="near 0"),
        point((-1e-8,), (0.3,), label="near 0"),
        point((0.4,), (0.9,), label="series / closed form switch"),
        point((2.5,), (0.1,)),
        point((80.0,), (1.0,), (0.0,), label="float32 extreme"),
        point((-80.0,), (1.0,), (0.0,), label="float32 extreme"),
        point((1e4,), (1.0,), (0.5,), f32=False, label="float64 extreme"),
        point((-1e4,), (0.0,), f32=False, label="float64 extreme"),
        *randoms("ContinuousBernoulli", 3, lambda r: point((r.normal() * 4,), (r.uniform(),))),
    ),
)


# NegativeBinomial ----------------------------------------------------------------------------


def _nb_lp(t, x):
    r, a = t
    k = x[0]
    return (
        mp.loggamma(k + r)
        - mp.loggamma(k + 1)
        - mp.loggamma(r)
        + k * log_sigmoid(a)
        + r * log_sigmoid(-a)
    )


NEGATIVE_BINOMIAL = family(
    name="NegativeBinomial",
    cls=jelbo.NegativeBinomial,
    params=("total_count", "logits"),
    make=lambda t: jelbo.NegativeBinomial(t[0:1], logits=t[1:2]),
    keyword="logits",
    refs={
        "log_prob": _nb_lp,
        "mean": lambda t: [t[0] * mp.exp(t[1])],
        "variance": lambda t: [t[0] * mp.exp(t[1]) * (1 + mp.exp(t[1]))],
        "mode": lambda t: [mp.floor((t[0] - 1) * mp.exp(t[1])) if t[0] > 1 else mp.mpf(0)],
    },
    x_diff=False,
    points=(
        point((1.0, 0.0), (0.0,), (3.0,), label="geometric"),
        point((1e-3, 0.5), (0.0,), (1.0,), label="tiny total_count"),
        point((1e6, 0.0), (1e6,), (0.0,), label="huge total_count"),
        point((2.0, 80.0), (0.0,), (5.0,), label="float32 extreme"),
        point((2.0, -80.0), (0.0,), (5.0,), label="float32 extreme"),
        point((2.0, 1e4), (0.0,), (3.0,), f32=False, label="float64 extreme"),
        point((2.0, -1e4), (0.0,), (3.0,), f32=False, label="float64 extreme"),
        *randoms(
            "NegativeBinomial",
            3,
            lambda r: point((np.exp(r.uniform(-1, 2)), r.normal()), (float(r.integers(0, 20)),)),
        ),
    ),
)


# OneHotCategorical ---------------------------------------------------------------------------


def _one_hot_lp(t, x):
    return mp.fsum(xlogy(v, mp.exp(u)) for v, u in zip(x, _log_softmax(t), strict=True))


def _one_hot_mode(t):
    k = _argmax(t)
    return [step(i == k) for i in range(len(t))]


ONE_HOT = family(
    name="OneHotCategorical",
    cls=jelbo.OneHotCategorical,
    params=("logits[0]", "logits[1]", "logits[2]"),
    make=lambda t: jelbo.OneHotCategorical(logits=t),
    keyword="logits",
    refs={
        "log_prob": _one_hot_lp,
        "entropy": _categorical_entropy,
        "mean": lambda t: [mp.exp(u) for u in _log_softmax(t)],
        "variance": lambda t: [mp.exp(u) * (1 - mp.exp(u)) for u in _log_softmax(t)],
        "mode": _one_hot_mode,
    },
    x_shape=(3,),
    points=(
        point((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), label="uniform"),
        point((30.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), label="nearly deterministic"),
        point((80.0, 0.0, -80.0), (0.0, 0.0, 1.0), label="float32 extremes"),
        point((-np.inf, 0.0, 1.0), (0.0, 1.0, 0.0), label="masked category"),
        point((1e4, 0.0, -1e4), (0.0, 1.0, 0.0), f32=False, label="float64 extremes"),
        *randoms(
            "OneHotCategorical",
            3,
            lambda r: point(tuple(r.normal(size=3) * 2), tuple(np.eye(3)[r.integers(0, 3)])),
        ),
    ),
)


# RelaxedBernoulli ----------------------------------------------------------------------------


def _relaxed_bernoulli_lp(t, x):
    lam, a = t
    v = x[0]
    return (
        mp.log(lam)
        + a
        - (lam + 1) * (mp.log(v) + mp.log1p(-v))
        - 2 * mp.log(mp.exp(a) * v ** (-lam) + (1 - v) ** (-lam))
    )


RELAXED_BERNOULLI = family(
    name="RelaxedBernoulli",
    cls=jelbo.RelaxedBernoulli,
    params=("temperature", "logits"),
    make=lambda t: jelbo.RelaxedBernoulli(t[0:1], logits=t[1:2]),
    keyword="logits",
    refs={"log_prob": _relaxed_bernoulli_lp},
    points=(
        point((1.0, 0.0), (0.5,), (1e-30,), (0.99,), label="temperature 1"),
        point((1e-3, 1.0), (0.5,), (1e-20,), (0.999,), label="near-0 temperature"),
        point((10.0, -2.0), (0.3,), label="high temperature"),
        point((0.5, 80.0), (0.5,), (0.999,), label="float32 extreme logits"),
        point((0.5, 1e4), (0.5,), f32=False, label="float64 extreme logits"),
        *randoms(
            "RelaxedBernoulli",
            3,
            lambda r: point((np.exp(r.uniform(-2, 1)), r.normal() * 2), (r.uniform(0.01, 0.99),)),
        ),
    ),
)


# RelaxedOneHotCategorical --------------------------------------------------------------------


def _relaxed_one_hot_lp(t, x):
    lam, *a = t
    c = len(a)
    return (
        mp.loggamma(c)
        + (c - 1) * mp.log(lam)
        + mp.fsum(u - (lam + 1) * mp.log(v) for u, v in zip(a, x, strict=True))
        - c * logsumexp([u - lam * mp.log(v) for u, v in zip(a, x, strict=True)])
    )


RELAXED_ONE_HOT = family(
    name="RelaxedOneHotCategorical",
    cls=jelbo.RelaxedOneHotCategorical,
    params=("temperature", "logits[0]", "logits[1]", "logits[2]"),
    make=lambda t: jelbo.RelaxedOneHotCategorical(t[0], logits=t[1:4]),
    keyword="logits",
    refs={"log_prob": _relaxed_one_hot_lp},
    x_shape=(3,),
    points=(
        point((1.0, 0.0, 0.0, 0.0), (0.25, 0.25, 0.5), (0.2, 0.3, 0.5), label="temperature 1"),
        point(
            (1e-3, 0.5, 0.0, -0.5), (0.25, 0.25, 0.5), (1e-20, 0.5, 0.5), label="near-0 temperature"
        ),
        point((10.0, 1.0, 0.0, 0.0), (0.2, 0.3, 0.5), label="high temperature"),
        point((0.5, 80.0, 0.0, -80.0), (0.2, 0.3, 0.5), label="float32 extreme logits"),
        point((0.5, 1e4, 0.0, -1e4), (0.2, 0.3, 0.5), f32=False, label="float64 extremes"),
        *randoms(
            "RelaxedOneHotCategorical",
            3,
            lambda r: point(
                (np.exp(r.uniform(-2, 1)), *r.normal(size=3)), tuple(r.dirichlet([2, 2, 2]))
            ),
        ),
    ),
)


# HypersphericalUniform -----------------------------------------------------------------------


def _sphere_lp(d):
    return mp.loggamma(mp.mpf(d) / 2) - mp.log(2) - mp.mpf(d) / 2 * mp.log(mp.pi)


HYPERSPHERICAL_UNIFORM = family(
    name="HypersphericalUniform",
    cls=jelbo.HypersphericalUniform,
    params=(),
    make=lambda t: jelbo.HypersphericalUniform(3),
    refs={
        "log_prob": lambda t, x: _sphere_lp(3),
        "entropy": lambda t: -_sphere_lp(3),
        "mean": lambda t: [mp.mpf(0)] * 3,
        "variance": lambda t: [mp.mpf(1) / 3] * 3,
    },
    x_shape=(3,),
    points=(point((), (1.0, 0.0, 0.0), (0.6, 0.0, -0.8)),),
)


# LogNormal -----------------------------------------------------------------------------------


def _log_normal_lp(t, x):
    loc, scale = t
    y = mp.log(x[0])
    return -y - mp.log(scale) - HALF_LOG_2PI() - (y - loc) ** 2 / (2 * scale**2)


LOG_NORMAL = family(
    name="LogNormal",
    cls=jelbo.LogNormal,
    params=("loc", "scale"),
    make=lambda t: jelbo.LogNormal(t[0:1], t[1:2]),
    refs={
        "log_prob": _log_normal_lp,
        "entropy": lambda t: t[0] + mp.mpf(0.5) + HALF_LOG_2PI() + mp.log(t[1]),
        "mean": lambda t: [mp.exp(t[0] + t[1] ** 2 / 2)],
        "variance": lambda t: [mp.expm1(t[1] ** 2) * mp.exp(2 * t[0] + t[1] ** 2)],
        "mode": lambda t: [mp.exp(t[0] - t[1] ** 2)],
    },
    points=(
        point((0.0, 1.0), (1.0,), (0.5,), (1e-30,), (1e30,), label="standard"),
        point((0.0, 1e-3), (1.0,), (1.001,), label="small scale"),
        point((0.0, 1e-30), (1.0,), label="tiny scale"),
        point((40.0, 3.0), (1e17,), label="huge mean"),
        point((0.0, 30.0), (1e100,), f32=False, label="variance overflows"),
        *randoms(
            "LogNormal", 3, lambda r: point((r.normal(), r.uniform(0.2, 2)), (np.exp(r.normal()),))
        ),
    ),
)


# Transformed ---------------------------------------------------------------------------------


def _affine_normal_lp(t, x):
    loc, scale, shift, b = t
    z = ((x[0] - shift) / b - loc) / scale
    return -z * z / 2 - mp.log(scale) - HALF_LOG_2PI() - mp.log(abs(b))


TRANSFORMED_AFFINE = family(
    name="Transformed(Normal, Affine)",
    cls=jelbo.Transformed,
    params=("base.loc", "base.scale", "bijector.shift", "bijector.scale"),
    make=lambda t: jelbo.Transformed(
        jelbo.Normal(t[0:1], t[1:2]), jelbo.bijectors.Affine(t[2:3], t[3:4])
    ),
    refs={
        "log_prob": _affine_normal_lp,
        "entropy": lambda t: mp.mpf(0.5) + HALF_LOG_2PI() + mp.log(t[1]) + mp.log(abs(t[3])),
    },
    points=(
        point((0.0, 1.0, 0.0, 1.0), (0.3,), label="identity"),
        point((0.5, 2.0, -3.0, -0.5), (-3.0,), (1.0,), label="negative scale"),
        point((0.0, 1e-20, 1.0, 1e20), (1.0,), (2.0,), label="tiny base scale, huge bijector"),
        *randoms(
            "Transformed(Normal, Affine)",
            2,
            lambda r: point(
                (r.normal(), r.uniform(0.3, 2), r.normal(), r.uniform(0.3, 2) * r.choice([-1, 1])),
                (r.normal(),),
            ),
        ),
    ),
)


def _softplus_normal_lp(t, x):
    loc, scale = t
    y = x[0]
    inner = y + mp.log(-mp.expm1(-y))  # softplus^-1
    z = (inner - loc) / scale
    return -z * z / 2 - mp.log(scale) - HALF_LOG_2PI() - mp.log(-mp.expm1(-y))


TRANSFORMED_SOFTPLUS = family(
    name="Transformed(Normal, Softplus)",
    cls=jelbo.Transformed,
    params=("base.loc", "base.scale"),
    make=lambda t: jelbo.Transformed(jelbo.Normal(t[0:1], t[1:2]), jelbo.bijectors.Softplus()),
    refs={"log_prob": _softplus_normal_lp},
    points=(
        point((0.0, 1.0), (0.5,), (1e-6,), (30.0,), label="standard"),
        point((-60.0, 1.0), (1e-26,), label="tiny values"),
        *randoms(
            "Transformed(Normal, Softplus)",
            2,
            lambda r: point((r.normal(), r.uniform(0.3, 2)), (np.exp(r.normal()),)),
        ),
    ),
)


# LowRankMultivariateNormal -------------------------------------------------------------------


def _low_rank_cov(t):
    f0, f1, d0, d1 = t[2:6]
    return mp.matrix([[f0 * f0 + d0, f0 * f1], [f0 * f1, f1 * f1 + d1]])


def _low_rank_lp(t, x):
    cov = _low_rank_cov(t)
    delta = mp.matrix([x[0] - t[0], x[1] - t[1]])
    maha = (delta.T * inverse(cov) * delta)[0]
    return -maha / 2 - mp.log(det(cov)) / 2 - 2 * HALF_LOG_2PI()


LOW_RANK = family(
    name="LowRankMultivariateNormal",
    cls=jelbo.LowRankMultivariateNormal,
    params=(
        "loc[0]",
        "loc[1]",
        "cov_factor[0,0]",
        "cov_factor[1,0]",
        "cov_diag[0]",
        "cov_diag[1]",
    ),
    make=lambda t: jelbo.LowRankMultivariateNormal(t[0:2], t[2:4, None], t[4:6]),
    refs={
        "log_prob": _low_rank_lp,
        "entropy": lambda t: mp.log(det(_low_rank_cov(t))) / 2 + 1 + 2 * HALF_LOG_2PI(),
        "mean": lambda t: [t[0], t[1]],
        "variance": lambda t: [t[2] ** 2 + t[4], t[3] ** 2 + t[5]],
        "mode": lambda t: [t[0], t[1]],
    },
    x_shape=(2,),
    points=(
        point((0.0, 0.0, 0.0, 0.0, 1.0, 1.0), (0.5, -1.0), label="no factor"),
        point((0.0, 1.0, 1.0, 1.0, 1e-6, 1e-6), (0.5, 1.5), label="nearly rank 1"),
        point((1.0, 0.0, 3.0, -2.0, 0.5, 2.0), (0.0, 0.0), (1.0, 0.0)),
        point(
            (0.0, 0.0, 1e3, 0.0, 1e-3, 1e6),
            (1e3, 1e3),
            f32=False,
            label="cov_diag tiny next to the factor",
            tol={"float64": {"grad": 1e-6}},
            why="the cov_diag-gradient of log|Sigma| = log|C| + sum log d (determinant lemma) "
            "is 1/d - (F^2/d^2)/C, which cancels F^2/d = 1e9-fold (float32 keeps nothing of "
            "it; open: diag(Sigma^-1) without cancellation costs O(K^2 r))",
        ),
        *randoms(
            "LowRankMultivariateNormal",
            2,
            lambda r: point(
                (*r.normal(size=2), *r.normal(size=2), *np.exp(r.normal(size=2))),
                tuple(r.normal(size=2)),
            ),
        ),
    ),
)


# MixtureSameFamily ---------------------------------------------------------------------------


def _mixture_parts(t):
    log_w = _log_softmax(t[0:2])
    return log_w, t[2:4], t[4:6]


def _mixture_lp(t, x):
    log_w, locs, scales = _mixture_parts(t)
    return logsumexp(
        [lw + _normal_lp((m, s), x) for lw, m, s in zip(log_w, locs, scales, strict=True)]
    )


def _mixture_mean(t):
    log_w, locs, _ = _mixture_parts(t)
    return mp.fsum(mp.exp(lw) * m for lw, m in zip(log_w, locs, strict=True))


def _mixture_variance(t):
    log_w, locs, scales = _mixture_parts(t)
    second = mp.fsum(
        mp.exp(lw) * (s * s + m * m) for lw, m, s in zip(log_w, locs, scales, strict=True)
    )
    return second - _mixture_mean(t) ** 2


MIXTURE = family(
    name="MixtureSameFamily(Normal)",
    cls=jelbo.MixtureSameFamily,
    params=(
        "mixture_logits[0]",
        "mixture_logits[1]",
        "loc[0]",
        "loc[1]",
        "scale[0]",
        "scale[1]",
    ),
    make=lambda t: jelbo.MixtureSameFamily(t[0:2], jelbo.Normal(t[2:4, None], t[4:6, None])),
    refs={
        "log_prob": _mixture_lp,
        "mean": lambda t: [_mixture_mean(t)],
        "variance": lambda t: [_mixture_variance(t)],
    },
    points=(
        point((0.0, 0.0, -1.0, 1.0, 1.0, 1.0), (0.0,), (5.0,), (-1e3,), label="symmetric"),
        point((80.0, -80.0, 0.0, 2.0, 1.0, 0.5), (2.0,), label="float32 extreme weights"),
        point((0.0, -np.inf, 0.0, 2.0, 1.0, 0.5), (1.0,), label="masked component"),
        point((0.0, 1.0, 0.0, 1e-3, 1e-20, 1.0), (1e-20,), label="tiny scale"),
        point((1e4, 0.0, 0.0, 2.0, 1.0, 1.0), (2.0,), f32=False, label="float64 extremes"),
        *randoms(
            "MixtureSameFamily(Normal)",
            2,
            lambda r: point(
                (*r.normal(size=2), *r.normal(size=2) * 2, *np.exp(r.normal(size=2) / 2)),
                (r.normal() * 2,),
            ),
        ),
    ),
)


# LKJCholesky ---------------------------------------------------------------------------------


def _lkj_lp(t, x, k=3):
    eta = t[0]
    # LKJ (2009), eq. 16: the normalizer of det(R)^(eta - 1) over correlation matrices, and
    # the Jacobian prod_i L_ii^(K - i) from R's off-diagonal entries to L's strictly lower ones.
    log_c = mp.fsum(
        (2 * eta - 2 + k - i) * (k - i) * mp.log(2)
        + (k - i) * lbeta(eta + mp.mpf(k - i - 1) / 2, eta + mp.mpf(k - i - 1) / 2)
        for i in range(1, k)
    )
    diag = [x[i * k + i] for i in range(k)]
    return mp.fsum((k - i + 2 * eta - 2) * mp.log(diag[i - 1]) for i in range(2, k + 1)) - log_c


def _corr_cholesky(r: np.random.Generator) -> tuple[float, ...]:
    a = r.normal(size=(3, 3))
    cov = a @ a.T + np.eye(3)
    d = np.sqrt(np.diag(cov))
    return tuple(np.linalg.cholesky(cov / np.outer(d, d)).ravel())


LKJ = family(
    name="LKJCholesky",
    cls=jelbo.LKJCholesky,
    params=("concentration",),
    make=lambda t: jelbo.LKJCholesky(3, t[0]),
    refs={"log_prob": _lkj_lp},
    x_shape=(3, 3),
    points=(
        point((1.0,), tuple(np.eye(3).ravel()), _corr_cholesky(_seeded("LKJ1")), label="uniform"),
        point((1e-3,), _corr_cholesky(_seeded("LKJ2")), label="tiny concentration"),
        point((1e6,), tuple(np.eye(3).ravel()), label="huge concentration"),
        *randoms(
            "LKJCholesky",
            2,
            lambda r: point((np.exp(r.uniform(-1, 2)),), _corr_cholesky(r)),
        ),
    ),
)


# --- keyword alternatives (probs=, rate=) -------------------------------------------------------
# One entry per keyword parameterization: the families store the parameter given and compute
# in it, so each alternative is its own code path (and its own special points: probabilities
# 0, 1 and within 2^-52 of them, a zero rate).


def _logit(p):
    return mp.log(p) - mp.log1p(-p)


BERNOULLI_PROBS = family(
    name="Bernoulli(probs)",
    cls=jelbo.Bernoulli,
    params=("probs",),
    make=lambda t: jelbo.Bernoulli(probs=t[0:1]),
    keyword="probs",
    refs={
        "log_prob": lambda t, x: xlogy(x[0], t[0]) + xlog1p(1 - x[0], -t[0]),
        "entropy": lambda t: -(xlogy(t[0], t[0]) + xlog1p(1 - t[0], -t[0])),
        "mean": lambda t: [t[0]],
        "variance": lambda t: [t[0] * (1 - t[0])],
        "mode": lambda t: [step(t[0] > 0.5)],
    },
    points=(
        point((0.5,), (0.0,), (1.0,), (0.5,), label="p = 1/2"),
        point((0.0,), (0.0,), (1.0,), (0.25,), label="p = 0"),
        point((1.0,), (0.0,), (1.0,), label="p = 1"),
        point((1e-30,), (0.0,), (1.0,), label="tiny p"),
        point((1 - 2.0**-24,), (0.0,), (1.0,), label="p within float32 eps of 1"),
        point((1e-300,), (0.0,), (1.0,), f32=False, label="tiny p"),
        point((1 - 2.0**-52,), (0.0,), (1.0,), f32=False, label="p within eps of 1"),
        *randoms("Bernoulli(probs)", 2, lambda r: point((r.uniform(),), (r.uniform(),))),
    ),
)

POISSON_RATE = family(
    name="Poisson(rate)",
    cls=jelbo.Poisson,
    params=("rate",),
    make=lambda t: jelbo.Poisson(rate=t[0:1]),
    keyword="rate",
    refs={
        "log_prob": lambda t, x: xlogy(x[0], t[0]) - t[0] - mp.loggamma(x[0] + 1),
        "mean": lambda t: [t[0]],
        "variance": lambda t: [t[0]],
        "mode": lambda t: [mp.floor(t[0])],
    },
    x_diff=False,
    points=(
        point((1.0,), (0.0,), (1.0,), (3.0,), label="rate 1"),
        point((0.0,), (0.0,), (1.0,), label="rate 0"),
        point((1e-30,), (0.0,), (1.0,), label="tiny rate"),
        point((1e4,), (1e4,), (9990.0,), label="counts near the rate"),
        point((1e-300,), (0.0,), (2.0,), f32=False, label="tiny rate"),
        point((2.5e8,), (2.5e8 + 1e4,), (1e6,), f32=False, label="counts near a huge rate"),
        *randoms(
            "Poisson(rate)",
            2,
            lambda r: point((np.exp(r.uniform(-2, 3)),), (float(r.integers(0, 12)),)),
        ),
    ),
)

_SIMPLEX_POINTS = (
    point((0.25, 0.25, 0.5), (0.0,), (2.0,), label="interior"),
    point((1.0, 0.0, 0.0), (0.0,), (1.0,), label="vertex"),
    point((0.5, 0.5, 0.0), (0.0,), (2.0,), label="face"),
    point((1 - 2.0**-23, 2.0**-24, 2.0**-24), (0.0,), (1.0,), label="nearly a vertex"),
    point((1 - 2e-300, 1e-300, 1e-300), (0.0,), (1.0,), f32=False, label="nearly a vertex"),
)


def _probs_entropy(t):
    return -mp.fsum(xlogy(u, u) for u in t)


CATEGORICAL_PROBS = family(
    name="Categorical(probs)",
    cls=jelbo.Categorical,
    params=("probs[0]", "probs[1]", "probs[2]"),
    make=lambda t: jelbo.Categorical(probs=t),
    keyword="probs",
    refs={
        "log_prob": lambda t, x: mp.log(t[int(x[0])]),
        "entropy": _probs_entropy,
        "mode": lambda t: [mp.mpf(_argmax(t))],
    },
    x_shape=(),
    x_integer=True,
    points=_SIMPLEX_POINTS,
)


def _one_hot_simplex_points():
    eye = tuple(tuple(float(v) for v in row) for row in np.eye(3))
    return tuple(
        dataclasses.replace(p, xs=tuple(eye[int(x[0])] for x in p.xs)) for p in _SIMPLEX_POINTS
    )


ONE_HOT_PROBS = family(
    name="OneHotCategorical(probs)",
    cls=jelbo.OneHotCategorical,
    params=("probs[0]", "probs[1]", "probs[2]"),
    make=lambda t: jelbo.OneHotCategorical(probs=t),
    keyword="probs",
    refs={
        "log_prob": lambda t, x: mp.fsum(xlogy(v, u) for v, u in zip(x, t, strict=True)),
        "entropy": _probs_entropy,
        "mean": lambda t: list(t),
        "variance": lambda t: [u * (1 - u) for u in t],
        "mode": lambda t: [step(i == _argmax(t)) for i in range(len(t))],
    },
    x_shape=(3,),
    points=_one_hot_simplex_points(),
)


def _nb_probs_lp(t, x):
    r, p = t
    k = x[0]
    return mp.loggamma(k + r) - mp.loggamma(k + 1) - mp.loggamma(r) + xlogy(k, p) + r * mp.log1p(-p)


NEGATIVE_BINOMIAL_PROBS = family(
    name="NegativeBinomial(probs)",
    cls=jelbo.NegativeBinomial,
    params=("total_count", "probs"),
    make=lambda t: jelbo.NegativeBinomial(t[0:1], probs=t[1:2]),
    keyword="probs",
    refs={
        "log_prob": _nb_probs_lp,
        "mean": lambda t: [t[0] * t[1] / (1 - t[1])],
        "variance": lambda t: [t[0] * t[1] / (1 - t[1]) ** 2],
        "mode": lambda t: [mp.floor((t[0] - 1) * t[1] / (1 - t[1])) if t[0] > 1 else mp.mpf(0)],
    },
    x_diff=False,
    points=(
        point((1.0, 0.5), (0.0,), (3.0,), label="geometric"),
        point((2.5, 1e-6), (0.0,), (1.0,), label="small p"),
        point((2.0, 0.0), (0.0,), (1.0,), label="p = 0"),
        point((1e6, 0.5), (1e6,), (0.0,), label="huge total_count"),
        point((2.0, 1 - 2.0**-24), (0.0,), (5.0,), label="p near 1"),
        point((2.0, 1e-300), (0.0,), (3.0,), f32=False, label="tiny p"),
    ),
)

CONTINUOUS_BERNOULLI_PROBS = family(
    name="ContinuousBernoulli(probs)",
    cls=jelbo.ContinuousBernoulli,
    params=("probs",),
    make=lambda t: jelbo.ContinuousBernoulli(probs=t[0:1]),
    keyword="probs",
    refs={
        "log_prob": lambda t, x: _logit(t[0]) * x[0] - _cb(_logit(t[0]))[0],
        "entropy": lambda t: _cb(_logit(t[0]))[0] - _logit(t[0]) * _cb(_logit(t[0]))[1],
        "mean": lambda t: [_cb(_logit(t[0]))[1]],
        "variance": lambda t: [_cb(_logit(t[0]))[2]],
        "mode": lambda t: [step(t[0] > 0.5)],
    },
    points=(
        point((0.5,), (0.0,), (1.0,), (0.5,), label="uniform"),
        point((0.5 + 2.0**-20,), (0.3,), label="near 1/2"),
        point((0.3,), (0.9,)),
        point((1e-30,), (0.0,), (1.0,), label="tiny p"),
        point((1 - 2.0**-24,), (1.0,), label="p near 1"),
        point((1e-300,), (0.5,), f32=False, label="tiny p"),
    ),
)

RELAXED_BERNOULLI_PROBS = family(
    name="RelaxedBernoulli(probs)",
    cls=jelbo.RelaxedBernoulli,
    params=("temperature", "probs"),
    make=lambda t: jelbo.RelaxedBernoulli(t[0:1], probs=t[1:2]),
    keyword="probs",
    refs={"log_prob": lambda t, x: _relaxed_bernoulli_lp([t[0], _logit(t[1])], x)},
    points=(
        point((1.0, 0.5), (0.5,), (0.99,), label="temperature 1"),
        point((1e-3, 0.7), (0.5,), (0.999,), label="near-0 temperature"),
        point((0.5, 1e-20), (0.5,), (1e-3,), label="tiny p"),
        point((0.5, 1e-300), (0.5,), f32=False, label="tiny p"),
    ),
)

RELAXED_ONE_HOT_PROBS = family(
    name="RelaxedOneHotCategorical(probs)",
    cls=jelbo.RelaxedOneHotCategorical,
    params=("temperature", "probs[0]", "probs[1]", "probs[2]"),
    make=lambda t: jelbo.RelaxedOneHotCategorical(t[0], probs=t[1:4]),
    keyword="probs",
    refs={"log_prob": lambda t, x: _relaxed_one_hot_lp([t[0], *(mp.log(u) for u in t[1:])], x)},
    x_shape=(3,),
    points=(
        point((1.0, 0.25, 0.25, 0.5), (0.2, 0.3, 0.5), label="temperature 1"),
        point((1e-3, 0.5, 0.25, 0.25), (0.25, 0.25, 0.5), label="near-0 temperature"),
        point((0.5, 1 - 2e-20, 1e-20, 1e-20), (0.2, 0.3, 0.5), label="nearly a vertex"),
    ),
)


# --- scalar families (0-d parameters, event shape ()) ------------------------------------------


def scalar(fam: Family, make: Callable, points: Sequence[Point] | None = None) -> Family:
    """The scalar version of a factorized entry: the same references (one coordinate) at
    ``points`` (default: the entry's first three)."""
    entry = dataclasses.replace(
        fam,
        name=f"{fam.name} (scalar)",
        make=make,
        x_shape=(),
        scalar=True,
        points=tuple(points if points is not None else fam.points[:3]),
    )
    FAMILIES.append(entry)
    return entry


NORMAL_SCALAR = scalar(NORMAL, lambda t: jelbo.Normal(t[0], t[1]))
LAPLACE_SCALAR = scalar(LAPLACE, lambda t: jelbo.Laplace(t[0], t[1]))
STUDENT_T_SCALAR = scalar(STUDENT_T, lambda t: jelbo.StudentT(t[0], t[1], t[2]))
GAMMA_SCALAR = scalar(GAMMA, lambda t: jelbo.Gamma(t[0], t[1]))
BETA_SCALAR = scalar(BETA, lambda t: jelbo.Beta(t[0], t[1]))
KUMARASWAMY_SCALAR = scalar(KUMARASWAMY, lambda t: jelbo.Kumaraswamy(t[0], t[1]))
CONTINUOUS_BERNOULLI_SCALAR = scalar(
    CONTINUOUS_BERNOULLI, lambda t: jelbo.ContinuousBernoulli(logits=t[0])
)
BERNOULLI_SCALAR = scalar(BERNOULLI_PROBS, lambda t: jelbo.Bernoulli(probs=t[0]))
POISSON_SCALAR = scalar(POISSON_RATE, lambda t: jelbo.Poisson(rate=t[0]))
NEGATIVE_BINOMIAL_SCALAR = scalar(
    NEGATIVE_BINOMIAL, lambda t: jelbo.NegativeBinomial(t[0], logits=t[1])
)
RELAXED_BERNOULLI_SCALAR = scalar(
    RELAXED_BERNOULLI, lambda t: jelbo.RelaxedBernoulli(t[0], logits=t[1])
)


# --- Independent --------------------------------------------------------------------------------


def _independent_normal_lp(t, x):
    return Terms([_normal_lp([t[i], t[2 + i]], [x[i]]) for i in range(2)])


INDEPENDENT = family(
    name="Independent(Normal, 1)",
    cls=jelbo.Independent,
    params=("loc[0]", "loc[1]", "scale[0]", "scale[1]"),
    # a base of batch shape (2,) and event shape (1,): event (2, 1) once reinterpreted
    make=lambda t: jelbo.Independent(jelbo.Normal(t[0:2, None], t[2:4, None]), 1),
    refs={
        "log_prob": _independent_normal_lp,
        "entropy": lambda t: _normal_entropy([t[0], t[2]]) + _normal_entropy([t[1], t[3]]),
        "mean": lambda t: [t[0], t[1]],
        "variance": lambda t: [t[2] ** 2, t[3] ** 2],
        "mode": lambda t: [t[0], t[1]],
    },
    x_shape=(2, 1),
    points=(
        point((0.0, 1.0, 1.0, 2.0), (0.0, 1.0), (1.5, -3.0)),
        point((0.5, 1e4, 1e-30, 1e30), (0.5, -1e30), label="scale extremes"),
        point((0.0, 1e150, 1e-200, 1e200), (3e-200, -1e200), f32=False, label="scale extremes"),
    ),
)


# --- KL pairs --------------------------------------------------------------------------------


def kp(theta_q: Sequence[float], theta_p: Sequence[float], **kwargs: Any) -> Point:
    """A KL point: ``theta = theta_q + theta_p``."""
    return point(tuple(theta_q) + tuple(theta_p), **kwargs)


def _kl_entry(
    name: str, cls: type, params: tuple[str, ...], make: Callable, keyword: str | None = None
) -> Family:
    """A parameterization used only by KL pairs (e.g. a Normal with a 2-dimensional event)."""
    return Family(name=name, cls=cls, params=params, make=make, keyword=keyword)


def _gaussian_kl(mq, sq, mp_, sp):
    """KL(N(mq, Sq) || N(mp, Sp)) = ½[tr(Sp^-1 Sq) + d'Sp^-1 d - K + log|Sp| - log|Sq|]."""
    k = len(mq)
    delta = mp.matrix([a - b for a, b in zip(mp_, mq, strict=True)])
    inv_p = inverse(sp)
    solved = inv_p * sq
    trace = mp.fsum(solved[i, i] for i in range(k))
    maha = (delta.T * inv_p * delta)[0]
    log_det_p, log_det_q = mp.log(det(sp)), mp.log(det(sq))
    return Terms([trace / 2, maha / 2, -mp.mpf(k) / 2, log_det_p / 2, -log_det_q / 2])


def _diag(*variances):
    return mp.diag(list(variances))


def _gauss_normal(t):  # Normal with K = len(t) / 2: (loc, scale)
    k = len(t) // 2
    return list(t[:k]), _diag(*(s * s for s in t[k:]))


def _gauss_tril(t):  # MultivariateNormalTriL K = 2
    chol = _tril2(t)
    return [t[0], t[1]], chol * chol.T


def _gauss_low_rank(t):
    return [t[0], t[1]], _low_rank_cov(t)


def _gaussian_pair(fq, fp):
    return lambda tq, tp: _gaussian_kl(*fq(tq), *fp(tp))


NORMAL2 = _kl_entry(
    "Normal(K=2)",
    jelbo.Normal,
    ("loc[0]", "loc[1]", "scale[0]", "scale[1]"),
    lambda t: jelbo.Normal(t[0:2], t[2:4]),
)
GAUSSIANS = {
    "normal": (NORMAL2, _gauss_normal),
    "tril": (MVN_TRIL, _gauss_tril),
    "low_rank": (LOW_RANK, _gauss_low_rank),
}
GAUSSIAN_POINTS = {
    "normal": [(0.0, 0.0, 1.0, 1.0), (1.0, -2.0, 1e-3, 30.0), (0.5, 0.0, 1e-20, 1e20)],
    "tril": [
        (0.0, 0.0, 1.0, 0.0, 1.0),
        (1.0, -1.0, 1.0, 0.99, 0.1),
        (0.0, 1.0, 1e-20, 0.0, 1e20),
    ],
    "low_rank": [
        (0.0, 0.0, 0.0, 0.0, 1.0, 1.0),
        (1.0, 0.0, 3.0, -2.0, 0.5, 2.0),
        (0.0, 1.0, 1.0, 1.0, 1e-6, 1e-6),
    ],
}

for q_kind, p_kind in [
    ("normal", "normal"),
    ("tril", "tril"),
    ("normal", "tril"),
    ("tril", "normal"),
    ("low_rank", "tril"),
    ("low_rank", "low_rank"),
    ("normal", "low_rank"),
    ("tril", "low_rank"),
    ("low_rank", "normal"),
]:
    (q_fam, q_moments), (p_fam, p_moments) = GAUSSIANS[q_kind], GAUSSIANS[p_kind]
    q_points, p_points = GAUSSIAN_POINTS[q_kind], GAUSSIAN_POINTS[p_kind]
    pts = [kp(tq, tp) for tq in q_points for tp in p_points]
    if q_kind == p_kind:
        pts.append(kp(q_points[1], q_points[1], label="q = p"))
    kl_pair(q_fam, p_fam, _gaussian_pair(q_moments, p_moments), pts)

# Normal || Normal in one dimension, by scale and by log-variance (the log_scale path).
NORMAL_NORMAL = kl_pair(
    NORMAL,
    NORMAL,
    lambda tq, tp: _gaussian_kl([tq[0]], _diag(tq[1] ** 2), [tp[0]], _diag(tp[1] ** 2)),
    [
        kp((0.0, 1.0), (0.0, 1.0), label="q = p"),
        kp((0.0, 1.0), (1e4, 1.0), label="far apart"),
        kp((0.0, 1.0), (0.0, 1.0000001), label="nearly equal scales"),
        kp((0.0, 1e-30), (0.0, 1e30), label="scale extremes"),
        kp((1e4, 1e30), (0.0, 1e-30), label="scale extremes"),
        kp((0.0, 1e-200), (3.0, 1e200), f32=False, label="scale extremes"),
        kp((0.0, 1e150), (1e150, 1e-150), f32=False, label="scale extremes"),
    ],
)
kl_pair(
    NORMAL_LOG_VAR,
    NORMAL_LOG_VAR,
    lambda tq, tp: _gaussian_kl([tq[0]], _diag(mp.exp(tq[1])), [tp[0]], _diag(mp.exp(tp[1]))),
    [
        kp((0.0, -180.0), (0.0, 0.0), label="q's scale 0 in float32"),
        kp((0.0, 0.0), (1.0, -180.0), label="p's scale 0 in float32"),
        kp((0.5, 1e-7), (0.5, 0.0), label="nearly equal"),
        kp((0.0, 60.0), (0.0, -60.0)),
        kp((0.0, -1400.0), (0.0, 1400.0), f32=False, label="log-variance extremes"),
    ],
)


def _laplace_kl(tq, tp):
    (mq, bq), (mp_, bp) = tq, tp
    d = abs(mq - mp_)
    return Terms([mp.log(bp / bq), d / bp, bq / bp * mp.exp(-d / bq), -mp.mpf(1)])


kl_pair(
    LAPLACE,
    LAPLACE,
    _laplace_kl,
    [
        kp((0.0, 1.0), (0.0, 1.0), label="q = p"),
        kp((0.0, 1.0), (0.5, 2.0)),
        kp((0.0, 1.0), (1e-8, 1.0), label="nearly equal"),
        kp((0.0, 1e-30), (1e4, 1e30), label="scale extremes"),
        kp((3.0, 1e30), (0.0, 1e-30), label="scale extremes"),
        kp((0.0, 1e-200), (1.0, 1e200), f32=False, label="scale extremes"),
    ],
)


def _bernoulli_kl(tq, tp):
    a, b = tq[0], tp[0]
    return Terms(
        [
            sigmoid(a) * (log_sigmoid(a) - log_sigmoid(b)),
            sigmoid(-a) * (log_sigmoid(-a) - log_sigmoid(-b)),
        ]
    )


_BERNOULLI_LOGITS_32 = (-80.0, -38.9, -1.0, 0.0, 1e-3, 1.0, 38.9, 79.0, 80.0)
_BERNOULLI_LOGITS_64 = (-1e4, -785.9, -38.9, 0.0, 38.9, 745.0, 785.9, 9999.0, 1e4)
kl_pair(
    BERNOULLI,
    BERNOULLI,
    _bernoulli_kl,
    [kp((a,), (b,)) for a in _BERNOULLI_LOGITS_32 for b in _BERNOULLI_LOGITS_32]
    + [
        kp((a,), (b,), f32=False)
        for a in _BERNOULLI_LOGITS_64
        for b in _BERNOULLI_LOGITS_64
        if abs(a) > 80 or abs(b) > 80
    ],
)


def _categorical_kl(tq, tp):
    lq, lp = _log_softmax(tq), _log_softmax(tp)
    return Terms([mp.exp(u) * (u - v) for u, v in zip(lq, lp, strict=True) if u != -mp.inf])


_CATEGORICAL_KL_POINTS = [
    kp((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), label="q = p"),
    kp((1.0, 0.0, -1.0), (0.0, 0.5, 2.0)),
    kp((30.0, 0.0, 0.0), (30.0, 1e-3, 0.0), label="nearly equal, nearly deterministic"),
    kp((80.0, 0.0, -80.0), (-80.0, 0.0, 80.0), label="float32 extremes"),
    kp((-np.inf, 0.0, 1.0), (0.0, 0.0, 0.0), label="q masks a category"),
    kp((0.0, 0.0, 1.0), (-np.inf, 0.0, 0.0), label="p masks a category q has"),
    kp((1e4, 0.0, -1e4), (-1e4, 0.0, 1e4), f32=False, label="float64 extremes"),
    kp((1e4, 0.0, -1e4), (1e4, 1.0, -1e4), f32=False, label="float64 extremes"),
]
kl_pair(CATEGORICAL, CATEGORICAL, _categorical_kl, _CATEGORICAL_KL_POINTS)
kl_pair(ONE_HOT, ONE_HOT, _categorical_kl, _CATEGORICAL_KL_POINTS)


def _poisson_kl(tq, tp):
    eq, ep = tq[0], tp[0]
    return Terms([mp.exp(eq) * (eq - ep), -mp.exp(eq), mp.exp(ep)])


_ETAS_32 = (-80.0, -1.0, 0.0, 1e-6, 1.0, 50.0)
_ETAS_64 = (-1e3, -700.0, 0.0, 700.0)
kl_pair(
    POISSON,
    POISSON,
    _poisson_kl,
    [kp((a,), (b,)) for a in _ETAS_32 for b in _ETAS_32]
    + [kp((a,), (b,), f32=False) for a in _ETAS_64 for b in _ETAS_64 if a != 0 or b != 0],
)


def _gamma_kl(tq, tp):
    (aq, rq), (ap, rp) = tq, tp
    return Terms(
        [
            (aq - ap) * mp.digamma(aq),
            -mp.loggamma(aq) + mp.loggamma(ap),
            ap * (mp.log(rq) - mp.log(rp)),
            aq * (rp - rq) / rq,
        ]
    )


kl_pair(
    GAMMA,
    GAMMA,
    _gamma_kl,
    [
        kp((1.0, 1.0), (1.0, 1.0), label="q = p"),
        kp((1.0, 1.0), (2.5, 0.5), label="exponential q"),
        kp((1e-3, 1.0), (1.0, 1e-3), label="tiny"),
        kp((1e6, 1e6), (1000001.0, 1e6), label="huge, nearly equal"),
        kp((2.0, 1e-30), (3.0, 1e30), label="rate extremes"),
        kp((1e12, 1e12), (2e12, 1e12), f32=False, label="huge"),
        kp((2.0, 1e-200), (0.5, 1e200), f32=False, label="rate extremes"),
    ],
)


def _beta_kl(tq, tp):
    (aq, bq), (ap, bp) = tq, tp
    return Terms(
        [
            lbeta(ap, bp) - lbeta(aq, bq),
            (aq - ap) * mp.digamma(aq),
            (bq - bp) * mp.digamma(bq),
            (ap - aq + bp - bq) * mp.digamma(aq + bq),
        ]
    )


kl_pair(
    BETA,
    BETA,
    _beta_kl,
    [
        kp((1.0, 1.0), (1.0, 1.0), label="q = p"),
        kp((1.0, 1.0), (2.0, 0.5), label="uniform q"),
        kp((1e-3, 1.0), (1.0, 1e-3), label="tiny"),
        kp((1e6, 1e6), (1000001.0, 1e6), label="huge, nearly equal"),
        kp((1e6, 3.0), (2.0, 1e6), label="huge, far apart"),
        kp((1e12, 1e12), (1e12, 2e12), f32=False, label="huge"),
    ],
)


def _dirichlet_kl(tq, tp):
    return Terms(
        [
            lbeta(*tp) - lbeta(*tq),
            *(
                (a - b) * (mp.digamma(a) - mp.digamma(mp.fsum(tq)))
                for a, b in zip(tq, tp, strict=True)
            ),
        ]
    )


kl_pair(
    DIRICHLET,
    DIRICHLET,
    _dirichlet_kl,
    [
        kp((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), label="q = p"),
        kp((1.0, 1.0, 1.0), (2.0, 0.5, 1.0), label="uniform q"),
        kp((1e-3, 1e-3, 1e-3), (1.0, 1.0, 1.0), label="tiny"),
        kp((1e3, 1e3, 1e3), (1000.5, 1e3, 1e3), label="huge, nearly equal"),
        kp((1e6, 1.0, 3.0), (1.0, 1e6, 1.0), label="huge, far apart"),
        kp((1e12, 1.0, 1.0), (1e12, 2.0, 1.0), f32=False, label="huge"),
    ],
)


def _cb_kl(tq, tp):
    lq, lp = tq[0], tp[0]
    log_norm_q, mean_q, _ = _cb(lq)
    return Terms([(lq - lp) * mean_q, -log_norm_q, _cb(lp)[0]])


_CB_LOGITS_32 = (-80.0, -1e-8, 0.0, 0.4, 2.5, 80.0)
kl_pair(
    CONTINUOUS_BERNOULLI,
    CONTINUOUS_BERNOULLI,
    _cb_kl,
    [kp((a,), (b,)) for a in _CB_LOGITS_32 for b in _CB_LOGITS_32]
    + [kp((a,), (b,), f32=False) for a, b in [(1e4, -1e4), (-1e4, 1e4), (1e4, 0.0), (0.0, 1e4)]],
)


@functools.lru_cache(maxsize=4096)
def _kumaraswamy_e_log1m(a: Any, b: Any, prec: int) -> Any:
    """E_q[log(1 - x)] for q = Kumaraswamy(a, b), by tanh-sinh quadrature over the inverse
    CDF x = (1 - w^(1/b))^(1/a), w ~ U(0, 1) (memoized: the p-partials of the KL reuse it)."""
    with mp.workprec(prec):
        return mp.quad(lambda w: mp.log(-mp.expm1(mp.log1p(-(w ** (1 / b))) / a)), [0, 1])


def _kumaraswamy_beta_kl(tq, tp):
    (a, b), (alpha, beta) = tq, tp
    # E_q[log x] = -H_b / a (x^a ~ Beta(1, b)); E_q[log(1 - x)] by quadrature.
    harmonic = mp.digamma(b + 1) + mp.euler
    e_log_1mx = _kumaraswamy_e_log1m(a, b, mp.mp.prec)
    entropy = (1 - 1 / b) + (1 - 1 / a) * harmonic - mp.log(a * b)
    cross = -(alpha - 1) * harmonic / a + (beta - 1) * e_log_1mx - lbeta(alpha, beta)
    return Terms([-entropy, -cross])


kl_pair(
    KUMARASWAMY,
    BETA,
    _kumaraswamy_beta_kl,
    [
        # E_q[log(1 - x)] has no closed form: its reference is a quadrature, whose finite
        # differences in (a, b) cost seconds per point; they are taken at one point, the
        # p-partials (which reuse the memoized quadrature) everywhere.
        kp((1.0, 1.0), (1.0, 1.0), label="q = p (uniform)", diff=(False, False, True, True)),
        kp((0.5, 0.5), (2.0, 3.5), diff=(False, False, True, True)),
        kp(
            (10.0, 12.0),
            (5.0, 2.0),
            label="peaked q",
            tol={"float64": {"value": 1e-6, "grad": 1e-5}},
            why="E_q[log(1 - x)] is a truncated series with an asymptotic tail (jelbo.kl): "
            "6e-8 relative at a = 10, b = 12 (documented there); exact only for a <~ 3",
        ),
    ],
    dps=15,
)


def _ps_uniform_kl(tq, tp):
    return -_ps_entropy(tq) - _sphere_lp(3)


kl_pair(
    POWER_SPHERICAL,
    HYPERSPHERICAL_UNIFORM,
    _ps_uniform_kl,
    [
        kp((0.6, 0.8, 0.0, 0.0), (), label="kappa = 0 (q = p)"),
        kp(
            (0.6, 0.8, 0.0, 1e-6),
            (),
            label="kappa = 1e-6",
            tol={"float64": {"value": 1e-3}, "float32": {"value": 1.0}},
            why="the KL is 5e-13 (second order in kappa), the difference of log|S| and an "
            "entropy of size 1: float64 keeps 5e-4 of it, float32 none (open: a Bregman "
            "form of log-gamma remainders, accurate for tiny kappa)",
        ),
        kp((0.0, 0.0, 1.0, 2.5), ()),
        kp((1.0, 0.0, 0.0, 1e6), (), label="huge kappa"),
        kp((1.0, 0.0, 0.0, 1e12), (), f32=False, label="huge kappa"),
    ],
)

# Transformed pairs: the same bijector on both sides (a fixed Affine: same_bijector needs
# equal constants, not traced ones), and LogNormal (Exp).
_AFFINE = jelbo.bijectors.Affine(2.0, -3.0)
TRANSFORMED_FIXED = _kl_entry(
    "Transformed(Normal, Affine(2, -3))",
    jelbo.Transformed,
    ("base.loc", "base.scale"),
    lambda t: jelbo.Transformed(jelbo.Normal(t[0:1], t[1:2]), _AFFINE),
)
for _fam in (TRANSFORMED_FIXED, LOG_NORMAL):
    kl_pair(
        _fam,
        _fam,
        NORMAL_NORMAL.ref,
        [
            kp((0.0, 1.0), (0.0, 1.0), label="q = p"),
            kp((0.5, 2.0), (-1.0, 0.3)),
            kp((0.0, 1e-30), (1e4, 1e30), label="scale extremes"),
        ],
    )


# Keyword alternatives: the pairs computed from probabilities or rates as given.


def _bernoulli_probs_kl(tq, tp):
    q, p = tq[0], tp[0]
    return Terms([xlogy(q, q) - xlogy(q, p), xlog1p(1 - q, -q) - xlog1p(1 - q, -p)])


kl_pair(
    BERNOULLI_PROBS,
    BERNOULLI_PROBS,
    _bernoulli_probs_kl,
    [
        kp((0.3,), (0.3,), label="q = p"),
        kp((0.3,), (0.7,)),
        kp((0.3,), (0.3 + 2.0**-20,), label="nearly equal, below 1/2"),
        kp((1e-10,), (2e-10,), label="tiny"),
        kp((1 - 2.0**-20,), (1 - 2.0**-19,), label="near 1"),
        kp((0.2,), (1e-30,), label="p << q"),
        kp((0.0,), (0.4,), label="q = 0"),
        kp((1.0,), (0.4,), label="q = 1"),
        kp((0.5,), (1.0,), label="p = 1 (infinite)"),
        kp((0.2,), (1e-300,), f32=False, label="p << q"),
        kp((0.3,), (0.3 + 1e-9,), f32=False, label="nearly equal, below 1/2"),
    ],
)


def _poisson_rate_kl(tq, tp):
    q, p = tq[0], tp[0]
    return Terms([xlogy(q, q) - xlogy(q, p), -q, p])


kl_pair(
    POISSON_RATE,
    POISSON_RATE,
    _poisson_rate_kl,
    [
        kp((3.0,), (3.0,), label="q = p"),
        kp((3.0,), (0.1,)),
        kp((3.0,), (3.0 * (1 + 2.0**-20),), label="nearly equal"),
        kp((1e-6,), (2e-6,)),
        kp((0.0,), (2.0,), label="rate_q = 0"),
        kp((1.0,), (1e-30,), label="rate_p << rate_q"),
        kp((1e-30,), (1e30,), label="rate_q << rate_p"),
        kp((1.0,), (1e-300,), f32=False, label="rate_p << rate_q"),
        kp((2.5e8,), (2.5e8 + 1.0,), f32=False, label="nearly equal huge rates"),
    ],
)


def _categorical_probs_kl(tq, tp):
    return Terms([xlogy(u, u) - xlogy(u, v) for u, v in zip(tq, tp, strict=True)])


_CATEGORICAL_PROBS_KL_POINTS = [
    kp((0.25, 0.25, 0.5), (0.25, 0.25, 0.5), label="q = p"),
    kp((0.25, 0.25, 0.5), (0.5, 0.25, 0.25)),
    kp((0.5, 0.5, 0.0), (0.25, 0.25, 0.5), label="q on a face"),
    kp((1.0, 0.0, 0.0), (0.25, 0.25, 0.5), label="q a vertex"),
    kp((0.25, 0.25, 0.5), (0.5, 0.5, 0.0), label="p on a face q is not (infinite)"),
    kp(
        (1 - 2.0**-23, 2.0**-24, 2.0**-24),
        (1 - 2.0**-22, 2.0**-23, 2.0**-23),
        label="near a vertex",
    ),
]
kl_pair(CATEGORICAL_PROBS, CATEGORICAL_PROBS, _categorical_probs_kl, _CATEGORICAL_PROBS_KL_POINTS)
kl_pair(ONE_HOT_PROBS, ONE_HOT_PROBS, _categorical_probs_kl, _CATEGORICAL_PROBS_KL_POINTS)
kl_pair(
    CONTINUOUS_BERNOULLI_PROBS,
    CONTINUOUS_BERNOULLI_PROBS,
    lambda tq, tp: _cb_kl([_logit(tq[0])], [_logit(tp[0])]),
    [
        kp((0.5,), (0.5,), label="q = p"),
        kp((0.3,), (0.9,)),
        kp((0.5,), (0.5 + 2.0**-20,), label="nearly uniform"),
        kp((1e-30,), (0.5,), label="tiny p"),
    ],
)

# Straight-through relaxed q: the categorical KL of its one-hot samples (a closed form in
# jelbo.kl for a OneHotCategorical or straight-through p); temperatures do not enter.
RELAXED_ST = _kl_entry(
    "RelaxedOneHotCategorical(straight_through)",
    jelbo.RelaxedOneHotCategorical,
    ("temperature", "logits[0]", "logits[1]", "logits[2]"),
    lambda t: jelbo.RelaxedOneHotCategorical(t[0], logits=t[1:4], straight_through=True),
    keyword="logits",
)
RELAXED_ST_PROBS = _kl_entry(
    "RelaxedOneHotCategorical(straight_through, probs)",
    jelbo.RelaxedOneHotCategorical,
    ("temperature", "probs[0]", "probs[1]", "probs[2]"),
    lambda t: jelbo.RelaxedOneHotCategorical(t[0], probs=t[1:4], straight_through=True),
    keyword="probs",
)
_ST_POINTS = [
    ((0.5, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), "q = p"),
    ((0.1, 1.0, 0.0, -1.0), (0.0, 0.5, 2.0), ""),
    ((2.0, 30.0, 0.0, 0.0), (30.0, 1e-3, 0.0), "nearly equal, nearly deterministic"),
]
kl_pair(
    RELAXED_ST,
    ONE_HOT,
    lambda tq, tp: _categorical_kl(tq[1:], tp),
    [kp(q, p, label=label) for q, p, label in _ST_POINTS],
)
kl_pair(
    RELAXED_ST,
    RELAXED_ST,
    lambda tq, tp: _categorical_kl(tq[1:], tp[1:]),
    [kp(q, (1.0, *p), label=label) for q, p, label in _ST_POINTS],
)

kl_pair(
    RELAXED_ST_PROBS,
    ONE_HOT_PROBS,
    lambda tq, tp: _categorical_probs_kl(tq[1:], tp),
    [
        kp((0.5, 0.25, 0.25, 0.5), (0.25, 0.25, 0.5), label="q = p"),
        kp((0.1, 0.5, 0.5, 0.0), (0.25, 0.25, 0.5), label="q on a face"),
        kp((2.0, 0.25, 0.25, 0.5), (0.5, 0.5, 0.0), label="p on a face q is not (infinite)"),
    ],
)
kl_pair(
    RELAXED_ST_PROBS,
    RELAXED_ST_PROBS,
    lambda tq, tp: _categorical_probs_kl(tq[1:], tp[1:]),
    [
        kp((0.5, 0.25, 0.25, 0.5), (1.0, 0.5, 0.25, 0.25)),
        kp((0.5, 1.0, 0.0, 0.0), (1.0, 0.25, 0.25, 0.5), label="q a vertex"),
    ],
)

# Independent || Independent: the sum of the bases' KLs over the reinterpreted axes.
kl_pair(
    INDEPENDENT,
    INDEPENDENT,
    lambda tq, tp: Terms(
        [
            *NORMAL_NORMAL.ref([tq[0], tq[2]], [tp[0], tp[2]]),
            *NORMAL_NORMAL.ref([tq[1], tq[3]], [tp[1], tp[3]]),
        ]
    ),
    [
        kp((0.0, 1.0, 1.0, 2.0), (0.0, 1.0, 1.0, 2.0), label="q = p"),
        kp((0.0, 1.0, 1.0, 2.0), (0.5, -1.0, 3.0, 1e-3)),
        kp((0.0, 1e4, 1e-30, 1e30), (1e4, 0.0, 1e30, 1e-30), label="scale extremes"),
    ],
)


# Scalar pairs: every factorized KL again with 0-d parameters (event shape ()), the same
# references at the first points of the vector pair.


def scalar_kl(q: Family, p: Family, n: int = 3) -> KLPair:
    """The pair of the scalar entries ``q``, ``p`` with the references and first ``n``
    points of the vector pair of the entries they were made from."""
    base = next(
        pair
        for pair in KL_PAIRS
        if pair.q.name == q.name.removesuffix(" (scalar)")
        and pair.p.name == p.name.removesuffix(" (scalar)")
    )
    return kl_pair(q, p, base.ref, base.points[:n], base.dps)


for _q, _p in [
    (NORMAL_SCALAR, NORMAL_SCALAR),
    (LAPLACE_SCALAR, LAPLACE_SCALAR),
    (GAMMA_SCALAR, GAMMA_SCALAR),
    (BETA_SCALAR, BETA_SCALAR),
    (CONTINUOUS_BERNOULLI_SCALAR, CONTINUOUS_BERNOULLI_SCALAR),
    (BERNOULLI_SCALAR, BERNOULLI_SCALAR),
    (POISSON_SCALAR, POISSON_SCALAR),
]:
    scalar_kl(_q, _p)
scalar_kl(KUMARASWAMY_SCALAR, BETA_SCALAR, n=1)


# --- introspection -----------------------------------------------------------------------------


def public_families() -> set[type]:
    """Every concrete ``jelbo.Distribution`` subclass that jelbo exports: the names in
    ``jelbo.__all__`` and in the ``__all__`` of the public modules it exports, and every
    non-abstract subclass defined in the package under a public name."""
    found: set[type] = set()

    def consider(obj: Any) -> None:
        if (
            isinstance(obj, type)
            and issubclass(obj, jelbo.Distribution)
            and not inspect.isabstract(obj)
            and not obj.__name__.startswith("_")
        ):
            found.add(obj)

    for name in jelbo.__all__:
        obj = getattr(jelbo, name)
        consider(obj)
        if inspect.ismodule(obj):
            for sub in getattr(obj, "__all__", ()):
                consider(getattr(obj, sub))
    stack = [jelbo.Distribution]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] == "jelbo":
            consider(cls)
    return found


def kl_registry() -> dict[tuple[type, type], Callable]:
    """jelbo's KL registry: ``(type_q, type_p) -> closed form``."""
    return dict(jelbo.kl._KL_REGISTRY)


def resolves_to(pair: KLPair, key: tuple[type, type]) -> bool:
    """Whether ``kl_divergence`` of the pair's classes uses the closed form registered under
    ``key`` (the most specific pair along both MROs, as jelbo looks it up)."""
    registry = kl_registry()
    for base_q in pair.q.cls.__mro__:
        for base_p in pair.p.cls.__mro__:
            if (base_q, base_p) in registry:
                return (base_q, base_p) == key
    return False


# --- evaluation --------------------------------------------------------------------------------


def _value_and_jacobian(fn: Callable, *args: Any, grads: bool = True) -> tuple[Any, Any]:
    """``fn(*args)`` (flattened) and its Jacobian with respect to all ``args`` concatenated,
    row by row through ``jax.vjp`` (i.e. ``jax.grad`` of each output); NaN for the Jacobian
    when ``grads`` is false (the value only is compiled)."""
    if not grads:
        value = fn(*args)
        width = sum(jnp.size(a) for a in args)
        return value, jnp.full((value.size, width), jnp.nan)
    value, vjp = jax.vjp(fn, *args)
    if not jnp.issubdtype(value.dtype, jnp.inexact):  # an index (Categorical.mode)
        width = sum(jnp.size(a) for a in args)
        return value, jnp.zeros((value.size, width))
    rows = jax.vmap(vjp)(jnp.eye(value.size, dtype=value.dtype))
    return value, jnp.concatenate([jnp.reshape(r, (value.size, -1)) for r in rows], axis=-1)


def active_points(points: Sequence[Point], dtype: Any) -> list[Point]:
    return [p for p in points if p.f32 or np.dtype(dtype) == np.float64]


@functools.cache
def family_outputs(fam: Family, dtype: Any) -> dict[str, tuple[np.ndarray, np.ndarray, Any]]:
    """``method -> (values (n, out), jacobians (n, out, inputs), dtype)`` at the family's
    points in ``dtype``: one jitted, vmapped program for all methods (per family and dtype).
    ``log_prob`` rows are the (point, x) pairs, its inputs ``theta + x``."""
    points = active_points(fam.points, dtype)
    theta = np.array([p.theta for p in points], dtype)
    rows = [(i, x) for i, p in enumerate(points) for x in p.xs]
    row_theta = np.array([points[i].theta for i, _ in rows], dtype).reshape(len(rows), -1)
    x_dtype = np.int32 if fam.x_integer else dtype
    row_x = np.array([x for _, x in rows], x_dtype).reshape(len(rows), -1)
    grads = np.dtype(dtype) in GRADIENT_DTYPES

    def method(name: str) -> Callable:
        return lambda t: jnp.ravel(getattr(fam.make(t), name)())

    def log_prob(t: Any, x: Any) -> Any:
        x = jnp.reshape(x, fam.x_shape)
        if fam.x_integer or not fam.x_diff:
            out, jac = _value_and_jacobian(
                lambda t_: jnp.ravel(fam.make(t_).log_prob(x)), t, grads=grads
            )
            return out, jnp.concatenate([jac, jnp.zeros((out.size, x.size), jac.dtype)], -1)
        return _value_and_jacobian(
            lambda t_, x_: jnp.ravel(fam.make(t_).log_prob(jnp.reshape(x_, fam.x_shape))),
            t,
            jnp.ravel(x),
            grads=grads,
        )

    def compute(theta: Any, row_theta: Any, row_x: Any) -> dict[str, Any]:
        out = {}
        for name in fam.refs:
            if name == "log_prob":
                out[name] = jax.vmap(log_prob)(row_theta, row_x)
            else:
                out[name] = jax.vmap(
                    lambda t, name=name: _value_and_jacobian(method(name), t, grads=grads)
                )(theta)
        return out

    results = jax.jit(compute)(theta, row_theta, row_x)
    return {k: (np.asarray(v), np.asarray(j), v.dtype) for k, (v, j) in results.items()}


@functools.cache
def family_references(fam: Family) -> dict[str, list[list[tuple[float, float, np.ndarray]]]]:
    """``method -> [per row: [(value, scale, gradient) per output]]`` from mpmath, rows in
    the order of :func:`family_outputs` for float64 (a float32 run uses the subset of rows
    of its points)."""
    out: dict[str, list] = {}
    for name in fam.refs:
        rows = []
        for p in fam.points:
            for x in p.xs if name == "log_prob" else (None,):
                fn, diff = _reference_fn(fam, name, p, x)
                rows.append(mp_reference(fn, p.theta + (x or ()), diff))
        out[name] = rows
    return out


def row_points(
    fam: Family, name: str, dtype: Any
) -> list[tuple[Point, tuple[float, ...] | None, int]]:
    """``(point, x, reference row index)`` for each row of ``method`` in ``dtype``."""
    rows, index = [], 0
    for p in fam.points:
        for x in p.xs if name == "log_prob" else (None,):
            if p.f32 or np.dtype(dtype) == np.float64:
                rows.append((p, x, index))
            index += 1
    return rows


# --- comparison ----------------------------------------------------------------------------------

#: The dtypes whose gradients are swept. float32 is swept for values and dtypes at its own
#: points (including its extremes) but not for gradients: the compiled float32 gradient
#: programs doubled the sweeps' time (~150 s of CPU for both precisions, against the 60 s
#: budget), and the float32 gradient defects they found are fixed and kept by targeted
#: tests (test_special, test_continuous, test_spherical, test_distributions).
GRADIENT_DTYPES = (np.dtype(np.float64),)

#: Relative tolerances of the values and gradients against mpmath, and the gradient floor
#: (below), per dtype.
TOLERANCES = {
    np.dtype(np.float64): {"value": 1e-12, "grad": 1e-10, "grad_floor": 1e-3},
    np.dtype(np.float32): {"value": 1e-5, "grad": 1e-4, "grad_floor": 1e-2},
}


@dataclasses.dataclass
class Finding:
    """One comparison of a value or partial derivative with its mpmath reference."""

    what: str
    got: float
    want: float
    error: float
    ok: bool

    def __str__(self) -> str:
        return f"{self.what}: got {self.got!r}, mpmath {self.want!r} (error {self.error:.3g})"


def _in_range(want: float, dtype: Any) -> tuple[float, bool]:
    """``want`` as ``dtype`` can hold it: ``(value, overflowed)`` (an overflowing result must
    be the infinity of its sign; an underflowing one is compared absolutely, below)."""
    big = float(np.finfo(dtype).max)
    if abs(want) > big:
        return float(np.copysign(np.inf, want)), True
    return want, False


def compare(
    got_value: np.ndarray,
    got_jac: np.ndarray,
    reference: list[tuple[float, float, np.ndarray]],
    args: Sequence[float],
    names: Sequence[str],
    dtype: Any,
    what: str,
    *,
    overrides: Sequence[tuple[str, str, float]] = (),
    second: Callable[[int, int], float] | None = None,
) -> list[Finding]:
    """Every output's value and partials against the reference (see :data:`TOLERANCES`).

    Values: relative error, with the floor ``sum_j |arg_j d value/d arg_j|``, the change an
    input perturbation of relative size ``tol`` causes (no implementation can be held to
    more: it matters where the value crosses zero), where the exact value is 0 (a KL of a
    distribution with itself) ``max(terms' scale, 1 nat)``, and the smallest normal number of
    the dtype (results that underflow). NaN references (undefined, e.g. the mode of a bimodal
    Beta) need NaN; infinite ones (and results beyond the dtype's range) the same infinity.

    Gradients: wherever the value is finite no partial may be NaN; each finite reference
    partial is compared relative to ``max(|itself|, grad_floor * largest partial of the same
    output)``: where one partial nearly vanishes next to the others, its absolute error is
    that of the terms it is summed from, which are of the size of the gradient (1e-3 of it
    in float64, 1e-2 in float32, whose terms carry ~1e-7). Where every partial vanishes
    (an extremum, e.g. the uniform Beta's entropy) or the value is exactly 0 (a KL of q with
    itself) the floor is 1 (absolute). A partial that
    misses that is given, like the values, the floor of its own conditioning,
    ``second(k, j) = sum_l |arg_l d partial_j / d arg_l|`` (mpmath, computed only then): a
    partial that relative input perturbations of size ``tol`` move by more than its error is
    as accurate as its inputs allow. At a kink (different one-sided derivatives) the
    gradient must lie between them. ``overrides`` are a point's documented tolerances.
    """
    tol = dict(TOLERANCES[np.dtype(dtype)])
    tol.update({key: v for name, key, v in overrides if name == np.dtype(dtype).name})
    tiny = float(np.finfo(dtype).tiny)
    out = []
    for k, (want, scale, grads) in enumerate(reference):
        grad, left, right = grads
        got = float(got_value[k])
        label = f"{what}[{k}]" if len(reference) > 1 else what
        want, overflow = _in_range(want, dtype)
        if np.isnan(want) or np.isinf(want):
            ok = bool(np.isnan(got)) if np.isnan(want) else got == want
            out.append(Finding(label, got, want, 0.0 if ok else np.inf, ok))
            if overflow or not np.isfinite(want):
                continue
        finite = np.isfinite(grad)
        floor = float(np.sum(np.abs(np.asarray(args)[finite] * grad[finite])))
        if want == 0:
            floor = max(floor, scale, 1.0)
        error = abs(got - want) / max(abs(want), floor, tiny)
        # Below the smallest normal number only the absolute error is meaningful.
        ok = bool(np.isfinite(got) and (error <= tol["value"] or abs(got - want) <= tiny))
        out.append(Finding(label, got, want, error if np.isfinite(got) else np.inf, ok))
        if np.dtype(dtype) not in GRADIENT_DTYPES:
            continue
        jac = np.asarray(got_jac[k], np.float64)
        biggest = float(np.max(np.abs(grad[finite]), initial=0.0))
        grad_floor = tol["grad_floor"] * biggest if biggest > 0 else 1.0
        if want == 0:  # a KL of q with itself: its gradient vanishes too (1 nat per unit)
            grad_floor = max(grad_floor, 1.0)
        for j, name in enumerate(names):
            partial = f"d {label}/d {name}"
            if np.isnan(jac[j]):
                out.append(Finding(partial, jac[j], grad[j], np.inf, False))
                continue
            want_j, _ = _in_range(grad[j], dtype)
            if np.isfinite(want_j):
                denom = max(abs(want_j), grad_floor, tiny)
                err = abs(jac[j] - want_j) / denom if np.isfinite(jac[j]) else np.inf
                if err > tol["grad"] and np.isfinite(jac[j]) and second is not None:
                    denom = max(denom, second(k, j))
                    err = abs(jac[j] - want_j) / denom
                out.append(Finding(partial, float(jac[j]), want_j, err, err <= tol["grad"]))
            elif np.isinf(want_j):
                ok = jac[j] == want_j
                out.append(Finding(partial, float(jac[j]), want_j, 0.0 if ok else np.inf, ok))
            elif np.isfinite(left[j]) and np.isfinite(right[j]):  # a kink
                lo, hi = sorted((left[j], right[j]))
                slack = tol["grad"] * max(abs(lo), abs(hi), grad_floor)
                ok = bool(lo - slack <= jac[j] <= hi + slack)
                err = 0.0 if ok else np.inf
                out.append(Finding(f"{partial} (kink)", float(jac[j]), (lo + hi) / 2, err, ok))
    return out


def family_findings(fam: Family, dtype: Any) -> list[Finding]:
    """Every value and partial of every method of ``fam`` at its points in ``dtype``."""
    outputs = family_outputs(fam, dtype)
    references = family_references(fam)
    x_names = [f"x[{i}]" for i in range(int(np.prod(fam.x_shape)))]
    findings = []
    for name in fam.refs:
        values, jacs, _ = outputs[name]
        names = list(fam.params) + (x_names if name == "log_prob" else [])
        for row, (p, x, index) in enumerate(row_points(fam, name, dtype)):
            args = p.theta + (x if x is not None else ())
            where = f"theta={p.theta}" + (f", x={x}" if x is not None else "")
            label = f" ({p.label})" if p.label else ""
            what = f"{fam.name}.{name} [{np.dtype(dtype).name}] at {where}{label}"
            fn, diff = _reference_fn(fam, name, p, x)
            findings += compare(
                values[row],
                jacs[row],
                references[name][index],
                args,
                names,
                dtype,
                what,
                overrides=p.tol,
                second=functools.partial(mp_gradient_floor, fn, args, diff),
            )
    return findings


def _reference_fn(
    fam: Family, name: str, p: Point, x: tuple[float, ...] | None
) -> tuple[Callable, tuple[bool, ...]]:
    """The transcription of ``method`` as a function of ``theta + x``, and which of those
    arguments are differentiated."""
    size = len(fam.params)
    ref = fam.refs[name]
    diff = p.diff or (True,) * size
    if name != "log_prob" or x is None:
        return ref, diff
    x_diff = fam.x_diff and not fam.x_integer
    return (lambda a: ref(a[:size], a[size:])), diff + (x_diff,) * len(x)


@functools.cache
def kl_outputs(pair: KLPair, dtype: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(values (n, 1), jacobians (n, 1, inputs), dtype)`` of ``kl_divergence`` at the
    pair's points in ``dtype``: one jitted, vmapped program per pair and dtype."""
    theta = np.array([p.theta for p in active_points(pair.points, dtype)], dtype)
    nq = len(pair.q.params)

    def kl(t: Any) -> Any:
        return jnp.ravel(jelbo.kl_divergence(pair.q.make(t[:nq]), pair.p.make(t[nq:])))

    grads = np.dtype(dtype) in GRADIENT_DTYPES
    value, jac = jax.jit(jax.vmap(lambda t: _value_and_jacobian(kl, t, grads=grads)))(theta)
    return np.asarray(value), np.asarray(jac), value.dtype


@functools.cache
def kl_references(pair: KLPair) -> list[list[tuple[float, float, np.ndarray]]]:
    """The mpmath KL and its gradient at every point of the pair (float64 order)."""
    nq = len(pair.q.params)
    fn = lambda a: pair.ref(a[:nq], a[nq:])
    return [
        mp_reference(fn, p.theta, p.diff or (True,) * len(p.theta), dps=pair.dps)
        for p in pair.points
    ]


def kl_findings(pair: KLPair, dtype: Any) -> list[Finding]:
    """The KL and its partials at every point of the pair in ``dtype``."""
    values, jacs, _ = kl_outputs(pair, dtype)
    references = kl_references(pair)
    names = [f"q.{n}" for n in pair.q.params] + [f"p.{n}" for n in pair.p.params]
    nq = len(pair.q.params)
    findings = []
    rows = [(p, i) for i, p in enumerate(pair.points) if p.f32 or np.dtype(dtype) == np.float64]
    for row, (p, index) in enumerate(rows):
        label = f" ({p.label})" if p.label else ""
        what = (
            f"KL({pair.name}) [{np.dtype(dtype).name}] at q={p.theta[:nq]}, p={p.theta[nq:]}{label}"
        )
        fn = lambda a: pair.ref(a[:nq], a[nq:])
        diff = p.diff or (True,) * len(p.theta)
        findings += compare(
            values[row],
            jacs[row],
            references[index],
            p.theta,
            names,
            dtype,
            what,
            overrides=p.tol,
            second=functools.partial(mp_gradient_floor, fn, p.theta, diff, dps=pair.dps),
        )
    return findings
