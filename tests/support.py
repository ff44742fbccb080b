"""Helpers shared by the tests (and by ``bench/sharding_check.py``): one place for them.

Import as ``from support import ...`` (pytest puts ``tests/`` on ``sys.path``). What is here:

- random parameters of the families and the distributions built from them
  (:func:`random_params`, :func:`build`, :func:`make`, :data:`CLASSES`);
- Monte Carlo assertions in standard errors (:func:`assert_within_se`, :data:`N_SIGMA`);
- the closed-form PPCA references of ``examples/ppca.py`` (:data:`ppca`), the linear VAE of
  the examples (:data:`linear`, ``examples/_linear.py``: its decoder
  ``linear.log_likelihood(W, b, sigma2)`` is the tests' linear-Gaussian model too), and the
  examples' directory on ``sys.path`` so that tests import the examples' modules by name;
- compiled-output inspection (:func:`noise_elements`).

Add a helper here as soon as two test modules need it, and a new family to
:data:`CLASSES` / :func:`random_params` when the shared tests should cover it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

import jelbo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import _linear as linear  # noqa: E402  (examples/_linear.py: the linear VAE of the examples)
import ppca  # noqa: E402  (examples/ppca.py: closed-form PPCA, float64 NumPy)

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
