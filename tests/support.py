"""Helpers shared by the tests (and by ``bench/sharding_check.py``): one place for them.

Import as ``from support import ...``. Nothing here edits ``sys.path``: pytest's ``pythonpath``
setting (``pyproject.toml``) puts the repository root and ``examples/`` on it, so tests
import ``bench.*`` and the examples' modules (``import vae``, ``import _linear``) by name, and
pytest itself puts ``tests/`` there (``from support import ...``). What is here:

- random parameters of the families and the distributions built from them
  (:func:`random_params`, :func:`build`, :func:`make`, :data:`CLASSES`);
- Monte Carlo assertions in standard errors (:func:`assert_within_se`, :data:`N_SIGMA`);
- the closed-form PPCA references of ``examples/ppca.py`` (:data:`ppca`), the linear VAE of
  the examples (:data:`linear`, ``examples/_linear.py``: its decoder
  ``linear.log_likelihood(W, b, sigma2)`` is the tests' linear-Gaussian model too);
- compiled-output inspection (:func:`noise_elements`, from ``bench/hlo.py``, which the
  sharding check uses too);
- an evaluation counter inside a log density (:class:`EvalCounter`), targets for the
  :mod:`jelbo.fit` algorithms with one inside and known optima (:class:`FitTarget`,
  :func:`ill_conditioned_gaussian`, :func:`loggamma_target`),
  how far a fitted Gaussian is from one (:func:`standardized_errors`) and one posteriordb
  model fitted and judged end to end (:func:`fit_posteriordb`);
- :data:`USES_0_1_BOUNDS`, the mark of tests that call the deprecated 0.1 bound functions.

Add a helper here as soon as two test modules need it, and a new family to
:data:`CLASSES` / :func:`random_params` when the shared tests should cover it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import _linear as linear  # examples/_linear.py: the linear VAE of the examples
import jax.numpy as jnp
import numpy as np
import ppca  # examples/ppca.py: closed-form PPCA, float64 NumPy
import pytest

import jelbo
from bench.hlo import noise_elements

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

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
    "FitTarget",
    "K",
    "assert_within_se",
    "build",
    "fit_posteriordb",
    "ill_conditioned_gaussian",
    "linear",
    "loggamma_target",
    "make",
    "markdown_python_blocks",
    "noise_elements",
    "ppca",
    "random_params",
    "random_tril",
    "standardized_errors",
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


# --- targets for the jelbo.fit algorithms ----------------------------------------------------


class EvalCounter:
    """Counts the evaluations of a log density from inside it (what a user's own counter
    sees): :meth:`tick` puts an unordered ``io_callback`` of ``stop_gradient(z[0])`` into the
    traced function, one host call per point evaluated. Under ``vmap`` JAX runs it as a rolled
    ``lax.map``; ``jax.debug.callback`` would be unrolled, one call site per point (256 for
    the diagnostic draws alone), and its compilation took longer than the fits. The stopped
    gradient keeps it out of differentiation (an ``io_callback`` has no JVP): it runs in the
    forward pass, once per value-and-gradient or Hessian-vector product."""

    def __init__(self) -> None:
        self._points: list[int] = []

    @property
    def count(self) -> int:
        """Points evaluated since the last reset (``counter.count = 0``), after every
        pending callback has run (``jax.effects_barrier``)."""
        import jax

        jax.effects_barrier()
        return sum(self._points)

    @count.setter
    def count(self, value: int) -> None:
        self._points = [value]

    def _add(self, z0: Any) -> None:
        # XLA runs host callbacks from several threads: list.append is atomic, `+=` is not.
        self._points.append(int(np.asarray(z0).size))

    def tick(self, z: Any) -> None:
        """Counts one evaluation at ``z`` ``(D,)`` (call it inside the log density)."""
        import jax
        from jax.experimental import io_callback

        io_callback(self._add, None, jax.lax.stop_gradient(z[0]), ordered=False)

    def wrap(self, log_joint: Any) -> Any:
        """``log_joint`` with this counter inside it."""

        def counted(z: Any) -> Any:
            self.tick(z)
            return log_joint(z)

        return counted


class FitTarget(EvalCounter):
    """A log density of ``(D,)`` vectors for the ``jelbo.fit`` tests, with an
    :class:`EvalCounter` inside it.

    ``z = A u + b`` with independent coordinates ``u`` (``kind="gaussian"``: standard normal;
    ``kind="loggamma"``: ``u_i`` the log of a Gamma(``shapes[i]``, 1) variable, density
    :math:`\\propto e^{a u - e^u}`), so the exact posterior (Gaussian case) and the Gaussian
    optima of the algorithms (log-gamma case, :func:`kl_optimum` and :func:`bam_fixed_point`)
    are known in closed form or by one-dimensional root finding.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, kind: str = "gaussian", shapes=None):
        super().__init__()
        self.a, self.b, self.kind = np.asarray(a, float), np.asarray(b, float), kind
        self.dim = self.b.shape[0]
        self.shapes = None if shapes is None else np.asarray(shapes, float)

    def __call__(self, z: Any) -> Any:
        self.tick(z)
        return self.density(z)

    def density(self, z: Any) -> Any:
        """The log density without the counter (``io_callback`` cannot run inside a
        ``while_loop`` whose predicate is batched, i.e. a vmapped fit)."""
        a_inv = jnp.asarray(np.linalg.inv(self.a), z.dtype)
        u = a_inv @ (z - jnp.asarray(self.b, z.dtype))
        if self.kind == "gaussian":
            return -0.5 * jnp.sum(u * u)
        shapes = jnp.asarray(self.shapes, z.dtype)
        return jnp.sum(shapes * u - jnp.exp(u))

    def transform(self, m_u: np.ndarray, s_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Gaussian ``N(A m_u + b, A diag(s_u^2) A^T)`` in ``z``: (mean, covariance)."""
        return self.a @ m_u + self.b, self.a @ np.diag(np.square(s_u)) @ self.a.T

    def exact(self) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian kind: the posterior's mean and covariance."""
        return self.transform(np.zeros(self.dim), np.ones(self.dim))

    def kl_optimum(self) -> tuple[np.ndarray, np.ndarray]:
        """Log-gamma kind: the full-rank Gaussian maximizing the ELBO. Per coordinate the
        ELBO is :math:`am - e^{m + s^2/2} + \\log s` + const, maximal at :math:`s = a^{-1/2}`,
        :math:`m = \\log a - 1/(2a)`; the product target makes the optimum diagonal in ``u``
        (Hadamard's inequality) and the ELBO is affine-equivariant."""
        a = self.shapes
        return self.transform(np.log(a) - 0.5 / a, 1.0 / np.sqrt(a))

    def bam_fixed_point(self) -> tuple[np.ndarray, np.ndarray]:
        """Log-gamma kind: batch-and-match's population fixed point, where
        :math:`\\mathbb E_q[\\nabla\\log p] = 0` and :math:`\\mathrm{Cov}_q[\\nabla\\log p] =
        \\Sigma^{-1}`. Per coordinate (score :math:`a - e^u`): :math:`e^{m + s^2/2} = a` and
        :math:`a^2(e^{s^2} - 1) = 1/s^2`, solved for :math:`s` by ``scipy.optimize.brentq``."""
        from scipy.optimize import brentq

        s = np.array(
            [
                np.sqrt(brentq(lambda v, a=a: a * a * np.expm1(v) * v - 1.0, 1e-12, 50.0))
                for a in self.shapes
            ]
        )
        return self.transform(np.log(self.shapes) - 0.5 * s * s, s)


def ill_conditioned_gaussian(dim: int = 4, seed: int = 0) -> FitTarget:
    """A correlated Gaussian with sds from 0.01 to 10 (condition number 1e6) and a mean far
    from zero: what makes a plain ADVI from 0 slow."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    scales = np.logspace(-2, 1, dim)
    return FitTarget(q * scales, rng.normal(size=dim) * 5.0 + 3.0)


def loggamma_target(seed: int = 1) -> FitTarget:
    """A skewed, correlated 2-d target: log-gamma coordinates (shapes 2 and 6) mixed by a
    random matrix."""
    rng = np.random.default_rng(seed)
    return FitTarget(
        rng.normal(size=(2, 2)) + 2.0 * np.eye(2), rng.normal(size=2), "loggamma", [2.0, 6.0]
    )


def standardized_errors(q: Any, mean: np.ndarray, cov: np.ndarray) -> tuple[float, float]:
    """How far a Gaussian ``q`` is from ``N(mean, cov)``: the largest mean error in standard
    deviations (whitened by ``cov``'s Cholesky factor) and the largest deviation from 1 of
    the eigenvalues of ``q``'s whitened covariance. Both 0 when ``q`` is ``N(mean, cov)``."""
    chol = np.linalg.cholesky(cov)
    q_cov = np.asarray(q.covariance(), np.float64)
    white = np.linalg.solve(chol, np.linalg.solve(chol, q_cov).T)
    mean_err = np.max(np.abs(np.linalg.solve(chol, np.asarray(q.loc, np.float64) - mean)))
    return float(mean_err), float(np.max(np.abs(np.linalg.eigvalsh(white) - 1.0)))


def fit_posteriordb(algorithm: Any, name: str = "gp_pois_regr-gp_regr") -> tuple[Any, dict]:
    """Runs ``algorithm(key, log_joint, zeros(D))`` (jitted, defaults) on a posteriordb model
    and judges its ``q`` with the benchmark's own evaluation (2,000 draws) against the
    reference: ``(fit, metrics)``; ``metrics["external_evals"]`` is what an
    :class:`EvalCounter` inside the log joint counted during the fit."""
    import jax

    from bench import posteriordb as B
    from bench import posteriordb_models as M

    post = M.load(name)
    space = M.make_space(post.spec)
    log_joint = M.make_log_joint(post, space)
    counter = EvalCounter()
    counted = counter.wrap(log_joint)
    fit = jax.jit(lambda k: algorithm(k, counted, jnp.zeros(space.dim)))(jax.random.key(0))
    external = counter.count
    u = jelbo.sample(jax.random.key(1), fit.q, (2000,))
    metrics = B.evaluate(post, space, log_joint, u, jelbo.log_prob(fit.q, u))
    return fit, {**metrics, "external_evals": external}
