"""Numerics audit: worst relative error of jelbo's functions against mpmath (40 digits).

Uses only the public 0.1 API (plus ``jax.scipy.special.betaln`` for the "before" of the
special functions), so the same script measures any version of jelbo on ``PYTHONPATH``:

    python bench/numerics_audit.py --out bench/results/numerics_after.md
    PYTHONPATH=/path/to/old/checkout python bench/numerics_audit.py --out ..._before.md

Each row is one function and regime: the inputs (float64, and the same inputs rounded to
float32), the worst relative error ``|value - ref| / max(|ref|, floor)`` over the grid
(the floor, stated per row, makes it an absolute error where the reference vanishes), and
the number of non-finite results where the reference is finite, the worse of an eager and
a jitted evaluation. References are computed
from the float32-rounded inputs for the float32 column, so the figures measure the
computation, not the rounding of the inputs. Gradients are checked the same way against
closed-form derivatives evaluated in mpmath.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import sys
import time
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import mpmath as mp  # noqa: E402
import numpy as np  # noqa: E402

import jelbo  # noqa: E402

mp.mp.dps = 40
FLOOR32 = 1e-30  # float32 results this small are near the flush-to-zero range (1.2e-38)
F = mp.mpf


def _grid(*axes: np.ndarray) -> list[np.ndarray]:
    return [a.ravel() for a in np.meshgrid(*axes, indexing="ij")]


def _mp_sigmoid(a):
    return 1 / (1 + mp.exp(-a))


def _mp_softplus(a):
    return mp.log1p(mp.exp(a)) if a < 0 else a + mp.log1p(mp.exp(-a))


# --- the audited cases -------------------------------------------------------------------
# Each case: (name, regime, inputs: list of float64 arrays, jelbo fn(*arrays) -> values,
#             mpmath ref(*mpf scalars) -> mpf, floor)


def _studentt_log_prob(df, x):
    return jelbo.log_prob(jelbo.StudentT(df[:, None], 0.0, 1.0), x[:, None])


def _studentt_entropy(df):
    return jelbo.entropy(jelbo.StudentT(df[:, None], 0.0, 1.0))


def _ref_t_log_prob(df, x):
    return (
        mp.loggamma((df + 1) / 2)
        - mp.loggamma(df / 2)
        - mp.log(df * mp.pi) / 2
        - (df + 1) / 2 * mp.log1p(x * x / df)
    )


def _ref_t_entropy(df):
    h = df / 2
    return (
        (h + F(0.5)) * (mp.digamma(h + F(0.5)) - mp.digamma(h))
        + mp.log(df) / 2
        + mp.log(mp.beta(h, F(0.5)))
    )


def _bern_kl(a, b):
    return jelbo.kl_divergence(
        jelbo.Bernoulli(logits=a[:, None]), jelbo.Bernoulli(logits=b[:, None])
    )


def _ref_bern_kl(a, b):
    with mp.workdps(160):  # the closed form cancels to ~1e-33 of its terms far out
        return +(_mp_sigmoid(a) * (a - b) - _mp_softplus(a) + _mp_softplus(b))


def _bern_entropy(a):
    return jelbo.entropy(jelbo.Bernoulli(logits=a[:, None]))


def _ref_bern_entropy(a):
    return _mp_sigmoid(a) * _mp_softplus(-a) + _mp_sigmoid(-a) * _mp_softplus(a)


def _pois_kl(eq, ep):
    return jelbo.kl_divergence(
        jelbo.Poisson(log_rate=eq[:, None]), jelbo.Poisson(log_rate=ep[:, None])
    )


def _ref_pois_kl(eq, ep):
    return mp.exp(eq) * (eq - ep - 1) + mp.exp(ep)


def _pois_log_prob(eta, x):
    return jelbo.log_prob(jelbo.Poisson(log_rate=eta[:, None]), x[:, None])


def _ref_pois_log_prob(eta, x):
    return x * eta - mp.exp(eta) - mp.loggamma(x + 1)


def _normal_kl(lv_q, lv_p):
    q = jelbo.Normal.from_log_var(jnp.zeros_like(lv_q)[:, None], lv_q[:, None])
    p = jelbo.Normal.from_log_var(jnp.zeros_like(lv_p)[:, None], lv_p[:, None])
    return jelbo.kl_divergence(q, p)


def _ref_normal_kl(lv_q, lv_p):
    t = lv_q - lv_p
    return (mp.exp(t) - 1 - t) / 2


def _laplace_kl(sq, d):
    q = jelbo.Laplace(d[:, None], sq[:, None])
    p = jelbo.Laplace(jnp.zeros_like(d)[:, None], jnp.ones_like(sq)[:, None])
    return jelbo.kl_divergence(q, p)


def _ref_laplace_kl(sq, d):
    d = abs(d)
    return -mp.log(sq) + d + sq * mp.exp(-d / sq) - 1


def _cat_entropy(l0, l1):
    logits = jnp.stack([l0, l1, jnp.full_like(l0, -jnp.inf)], axis=-1)
    return jelbo.entropy(jelbo.Categorical(logits=logits))


def _ref_cat_entropy(l0, l1):
    m = max(l0, l1)
    z = mp.exp(l0 - m) + mp.exp(l1 - m)
    p0, p1 = mp.exp(l0 - m) / z, mp.exp(l1 - m) / z
    return -(p0 * mp.log(p0) + p1 * mp.log(p1))


def _cat_kl_uniform(l0, l1):
    logits = jnp.stack([l0, l1, jnp.full_like(l0, -jnp.inf)], axis=-1)
    return jelbo.kl_divergence(
        jelbo.Categorical(logits=logits), jelbo.Categorical(logits=jnp.zeros(3))
    )


def _ref_cat_kl_uniform(l0, l1):
    return mp.log(3) - _ref_cat_entropy(l0, l1)


def _betaln_jelbo(a, b):
    special = importlib.import_module("jelbo._special")
    return special.betaln(a, b)


def _betaln_jax(a, b):
    return jax.scipy.special.betaln(a, b)


def _ref_betaln(a, b):
    return mp.loggamma(a) + mp.loggamma(b) - mp.loggamma(a + b)


DF = np.array([0.1, 0.5, 1.0, 3.5, 16.0, 30.0, 1e3, 1e6, 1e8, 1e10])
T = np.array([0.0, 0.5, 3.0, 1e3])
SAME = np.array([10.0, 20.0, 30.0, 45.0, 60.0])
LOGITS = np.concatenate([-SAME, [-1.0, 0.0, 1.0], SAME])
ETAS = np.array([-90.0, -45.0, -10.0, -1.0, 0.0, 1e-6, 1.0, 10.0, 45.0])
COUNTS = np.array([0.0, 1.0, 5.0, 1e3, 1e6, 1e9])
LOG_VARS = np.array([-180.0, -92.0, -10.0, -1e-6, 0.0, 1e-7, 1.0, 10.0])
GRID_AB = np.geomspace(1e-3, 1e10, 14)


def cases() -> list[tuple]:
    same_a, same_d = _grid(SAME, np.array([-1.0, -0.1, 1e-3, 0.1, 1.0]))
    bern_same = [
        np.concatenate([same_a, -same_a]),
        np.concatenate([same_a + same_d, -same_a - same_d]),
    ]
    out = [
        ("StudentT.log_prob", "df 0.1–1e10, |t| 0–1e3", _grid(DF, T), _studentt_log_prob,
         _ref_t_log_prob, 1.0),
        ("StudentT.entropy", "df 0.1–1e10", [DF], _studentt_entropy, _ref_t_entropy, 1.0),
        ("Bernoulli KL", "both logits 10–60 on one side", bern_same, _bern_kl, _ref_bern_kl,
         1e-300),
        ("Bernoulli KL", "logits −60…60 all pairs", _grid(LOGITS, LOGITS), _bern_kl,
         _ref_bern_kl, 1e-300),
        ("Bernoulli entropy", "logits −60…60", [LOGITS], _bern_entropy, _ref_bern_entropy,
         1e-300),
        ("Poisson KL", "log-rates −90…45 all pairs", _grid(ETAS, ETAS), _pois_kl, _ref_pois_kl,
         1e-300),
        ("Poisson log_prob", "counts 0–1e9, rate near the count",
         [np.log(np.maximum(COUNTS, 0.5)) + 1e-3, COUNTS], _pois_log_prob, _ref_pois_log_prob,
         1.0),
        ("Normal KL (from_log_var)", "log-variances −180…10 all pairs", _grid(LOG_VARS, LOG_VARS),
         _normal_kl, _ref_normal_kl, 1e-300),
        ("Laplace KL", "scale ratio 1e-6…1e3, |Δ| 0–10",
         _grid(np.array([1e-6, 0.5, 1.0 - 1e-7, 1.0, 1.0 + 1e-7, 2.0, 1e3]),
               np.array([0.0, 1e-8, 1.0, 10.0])),
         _laplace_kl, _ref_laplace_kl, 1e-300),
        ("Categorical entropy", "one -inf logit, others −30…30", _grid(np.linspace(-30, 30, 7),
         np.array([0.0, 5.0])), _cat_entropy, _ref_cat_entropy, 1e-300),
        ("Categorical KL to uniform", "one -inf logit", _grid(np.linspace(-30, 30, 7),
         np.array([0.0, 5.0])), _cat_kl_uniform, _ref_cat_kl_uniform, 1e-300),
        ("jax.scipy.special.betaln", "a, b in 1e-3…1e10", _grid(GRID_AB, GRID_AB), _betaln_jax,
         _ref_betaln, 1.0),
    ]  # fmt: skip
    if os.path.exists(os.path.join(os.path.dirname(jelbo.__file__), "_special.py")):
        out.append(
            (
                "jelbo._special.betaln",
                "a, b in 1e-3…1e10",
                _grid(GRID_AB, GRID_AB),
                _betaln_jelbo,
                _ref_betaln,
                1.0,
            )
        )
    return out


# --- gradients -----------------------------------------------------------------------------


def _grad_cases() -> list[tuple]:
    """(name, regime, inputs, scalar fn(*scalars), [ref partials], floor)."""

    def t_log_prob(df, x):
        return jelbo.log_prob(jelbo.StudentT(jnp.reshape(df, (1,)), 0.0, 1.0), jnp.reshape(x, (1,)))

    def t_ddf(df, x):
        return (
            (mp.digamma((df + 1) / 2) - mp.digamma(df / 2)) / 2
            - 1 / (2 * df)
            - mp.log1p(x * x / df) / 2
            + (df + 1) / 2 * x * x / (df * df + df * x * x)
        )

    def t_dx(df, x):
        return -(df + 1) * x / (df + x * x)

    def bern(a, b):
        return jelbo.kl_divergence(
            jelbo.Bernoulli(logits=jnp.reshape(a, (1,))),
            jelbo.Bernoulli(logits=jnp.reshape(b, (1,))),
        )

    def bern_da(a, b):
        return _mp_sigmoid(a) * _mp_sigmoid(-a) * (a - b)

    def bern_db(a, b):
        return _mp_sigmoid(b) - _mp_sigmoid(a)

    def pois(eq, ep):
        return jelbo.kl_divergence(
            jelbo.Poisson(log_rate=jnp.reshape(eq, (1,))),
            jelbo.Poisson(log_rate=jnp.reshape(ep, (1,))),
        )

    def pois_dq(eq, ep):
        return mp.exp(eq) * (eq - ep)

    def pois_dp(eq, ep):
        return mp.exp(ep) - mp.exp(eq)

    def normal_scale(scale, x):
        # d/dscale log N(x; 0, scale) = (z^2 - 1)/scale
        return jelbo.log_prob(
            jelbo.Normal(jnp.zeros(1), jnp.reshape(scale, (1,))), jnp.reshape(x, (1,))
        )

    def normal_ds(scale, x):
        return ((x / scale) ** 2 - 1) / scale

    def normal_dx(scale, x):
        return -x / scale**2

    same_a, same_d = _grid(SAME, np.array([-1.0, 0.1, 1.0]))
    tiny = np.array([1e-30, 1e-20, 1e-10, 1.0])
    return [
        ("StudentT.log_prob grad (df, x)", "df 0.1–1e8, |t| 0.5–3",
         _grid(DF[:-1], np.array([0.5, 3.0])), t_log_prob, [t_ddf, t_dx], 1e-300),
        ("Bernoulli KL grad (a, b)", "both logits 10–60 on one side",
         [same_a, same_a + same_d], bern, [bern_da, bern_db], 1e-300),
        ("Poisson KL grad", "log-rates −90…45 all pairs", _grid(ETAS, ETAS), pois,
         [pois_dq, pois_dp], 1e-300),
        ("Normal.log_prob grad (scale, x)", "scale 1e-30–1, x = scale, 2·scale (floor 1/scale)",
         [np.concatenate([tiny, tiny]), np.concatenate([tiny, 2 * tiny])], normal_scale,
         [normal_ds, normal_dx], lambda scale, x: 1.0 / scale),
    ]  # fmt: skip


def _measure(values: np.ndarray, ref: np.ndarray, floor: Any) -> tuple[float, int]:
    values = np.asarray(values, np.float64).ravel()
    floor = np.broadcast_to(floor, ref.shape)[np.isfinite(ref) & np.isfinite(values)]
    finite_ref = np.isfinite(ref)
    bad = int(np.sum(finite_ref & ~np.isfinite(values)))
    ok = finite_ref & np.isfinite(values)
    err = np.abs(values[ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), floor)
    return (float(err.max()) if err.size else 0.0), bad


def _floor(floor: Any, args: list[np.ndarray], dtype: Any) -> np.ndarray:
    """The row's floor (a number, or a function of the inputs), at least FLOOR32 in float32."""
    value = floor(*args) if callable(floor) else np.full(len(args[0]), floor)
    value = np.asarray(value, np.float64)
    return value if dtype == np.float64 else np.maximum(value, FLOOR32)


def _to_float(v) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _reference(ref_fn: Any, args: list[np.ndarray], dtype: Any) -> np.ndarray:
    rows = zip(*args, strict=True)
    ref = np.array([_to_float(ref_fn(*(F(float(v)) for v in vals))) for vals in rows])
    if dtype == np.float32:  # a float32 result may overflow where a float64 one does not
        ref = np.where(np.abs(ref) > np.finfo(np.float32).max, np.sign(ref) * np.inf, ref)
    return ref


def _worse(*measures: tuple[float, int]) -> tuple[float, int]:
    return max(m[0] for m in measures), max(m[1] for m in measures)


def run() -> list[tuple]:
    """Every row; each evaluated eagerly and jitted (XLA may simplify a jitted expression)."""
    rows = []
    for name, regime, inputs, fn, ref_fn, floor in cases():
        row = [name, regime]
        for dtype in (np.float64, np.float32):
            args = [a.astype(dtype) for a in inputs]
            try:
                runs = [np.asarray(jax.jit(fn)(*args)), np.asarray(fn(*args))]
            except Exception as err:  # an error is a finding: report it
                row.append(f"error: {type(err).__name__}")
                continue
            ref = _reference(ref_fn, args, dtype)
            row.append(_worse(*(_measure(v, ref, _floor(floor, args, dtype)) for v in runs)))
        rows.append(tuple(row))
    for name, regime, inputs, fn, ref_fns, floor in _grad_cases():
        row = [name, regime]
        for dtype in (np.float64, np.float32):
            args = [a.astype(dtype) for a in inputs]
            grad = jax.vmap(jax.grad(fn, argnums=tuple(range(len(args)))))
            runs = [np.stack([np.asarray(g) for g in f(*args)], -1) for f in (jax.jit(grad), grad)]
            ref = np.stack([_reference(r, args, dtype) for r in ref_fns], axis=-1).ravel()
            floors = np.repeat(_floor(floor, args, dtype), len(ref_fns))
            row.append(_worse(*(_measure(v, ref, floors) for v in runs)))
        rows.append(tuple(row))
    return rows


def _cell(cell) -> str:
    if isinstance(cell, str):
        return cell
    err, bad = cell
    text = f"{err:.1e}"
    return text + (f" ({bad} non-finite)" if bad else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the Markdown table here")
    parser.add_argument("--label", default="", help="a label for the table (e.g. the commit)")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run()
    lines = [
        f"# Numerics audit {args.label}".rstrip(),
        "",
        f"jelbo from `{jelbo.__file__}`, jax {jax.__version__}, mpmath {mp.__version__}, "
        f"Python {platform.python_version()}; {time.perf_counter() - start:.0f} s.",
        "Worst relative error against mpmath (40 digits) over each grid "
        "(non-finite results where the reference is finite in parentheses); float32 errors "
        f"are absolute below {FLOOR32:g} (near the flush-to-zero range).",
        "",
        "| function | regime | float64 | float32 |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| {r[0]} | {r[1].replace('|', chr(92) + '|')} | {_cell(r[2])} | {_cell(r[3])} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
