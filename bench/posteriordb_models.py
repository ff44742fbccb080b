"""The eleven posteriordb models of ``bench/posteriordb_data`` written in JAX.

Each model is a :class:`Posterior`: a parameter spec (constraints named as in the reference
draws, Stan's constraints) and the Stan ``model`` block's log density **on the constrained
parameters** (priors included, additive constants dropped where Stan's ``~`` drops them). The
log joint that VI fits is the density of the flat unconstrained vector ``u``::

    params, log_det = space.constrain(u)
    log_joint(u) = log_density(params) + log_det

with ``space`` a :class:`jelbo.ParameterSpace` (the Jacobian comes from the space). Transformed
parameters that the reference draws include (eight schools' ``theta``) are ``derived``
quantities. ``summary_names`` lists the reference draws' names (``beta[1]``, ...), and
:func:`flatten` maps a dict of constrained (batched) parameters to them.

Nothing here reads ``../shared``: the data are the project's copy (see
``bench/posteriordb_data/README.md``).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import stats

import jelbo
import jelbo.parameters

DATA_DIR = pathlib.Path(__file__).resolve().parent / "posteriordb_data"

POSTERIORS = (
    "arK-arK",
    "arma-arma11",
    "bball_drive_event_0-hmm_drive_0",
    "diamonds-diamonds",
    "earnings-logearn_interaction",
    "eight_schools-eight_schools_noncentered",
    "garch-garch11",
    "gp_pois_regr-gp_regr",
    "low_dim_gauss_mix-low_dim_gauss_mix",
    "nes2000-nes",
    "sblrc-blr",
)

# Posteriors whose reference posterior has more than one mode in the unconstrained space that a
# Gaussian q can sit in. The HMM's label switching is removed by the ordered emission rates, but
# the posteriordb keywords mark it "multimodal"; the Gaussian mixture is identified by `ordered`.
MULTIMODAL = frozenset({"bball_drive_event_0-hmm_drive_0"})


class Posterior(NamedTuple):
    """One posteriordb posterior in JAX.

    Attributes:
        name: posteriordb name, e.g. ``"eight_schools-eight_schools_noncentered"``.
        spec: ``{name: constraint}`` for :class:`jelbo.ParameterSpace` (dict order kept).
        log_density: ``log_density(params) -> scalar``, the Stan ``model`` block on the
            constrained parameters of ONE draw.
        derived: ``derived(params) -> dict`` of transformed parameters in the reference draws.
        summary_names: the reference draws' parameter names, in their order.
        reference: ``{name: {"mean", "sd", "q05", "q50", "q95"}}`` from all 10,000 draws.
        draws: ``{name: np.ndarray (1000,)}`` thinned reference draws.
    """

    name: str
    spec: dict[str, Any]
    log_density: Callable[[dict], jax.Array]
    derived: Callable[[dict], dict]
    summary_names: tuple[str, ...]
    reference: dict[str, dict[str, float]]
    draws: dict[str, np.ndarray]


def _read(name: str, file: str) -> Any:
    return json.loads((DATA_DIR / name / file).read_text())


def _f(x: Any) -> jax.Array:
    return jnp.asarray(np.asarray(x, dtype=np.float64))


def _normal(x, loc, scale):
    return jnp.sum(stats.norm.logpdf(x, loc, scale))


def _cauchy(x, loc, scale):
    return jnp.sum(stats.cauchy.logpdf(x, loc, scale))


def _student_t(x, df, loc, scale):
    return jnp.sum(stats.t.logpdf(x, df, loc, scale))


def _no_derived(params: dict) -> dict:
    return {}


# --- the models: (spec, log_density, derived) from (constraint module P, data dict) ---------


def _ark(P, d):
    K, y = int(d["K"]), _f(d["y"])
    T = y.shape[0]
    # lags[t, k] = y[t - k - 1] for t = K..T-1 (0-based)
    lags = jnp.stack([y[K - k - 1 : T - k - 1] for k in range(K)], axis=-1)
    target = y[K:]
    spec = {"alpha": P.real(), "beta": P.real((K,)), "sigma": P.positive()}

    def log_density(p):
        lp = _normal(p["alpha"], 0.0, 10.0) + _normal(p["beta"], 0.0, 10.0)
        lp += _cauchy(p["sigma"], 0.0, 2.5)
        return lp + _normal(target, p["alpha"] + lags @ p["beta"], p["sigma"])

    return spec, log_density, _no_derived


def _arma11(P, d):
    y = _f(d["y"])
    spec = {"mu": P.real(), "phi": P.real(), "theta": P.real(), "sigma": P.positive()}

    def log_density(p):
        mu, phi, theta, sigma = p["mu"], p["phi"], p["theta"], p["sigma"]
        lp = _normal(mu, 0.0, 10.0) + _normal(phi, 0.0, 2.0) + _normal(theta, 0.0, 2.0)
        lp += _cauchy(sigma, 0.0, 2.5)
        err1 = y[0] - (mu + phi * mu)

        def step(err_prev, t):
            err = y[t] - (mu + phi * y[t - 1] + theta * err_prev)
            return err, err

        _, errs = jax.lax.scan(step, err1, jnp.arange(1, y.shape[0]))
        err = jnp.concatenate([err1[None], errs])
        return lp + _normal(err, 0.0, sigma)

    return spec, log_density, _no_derived


def _hmm_drive(P, d):
    K = int(d["K"])
    u, v, alpha = _f(d["u"]), _f(d["v"]), _f(d["alpha"])
    spec = {
        "theta1": P.simplex(K),
        "theta2": P.simplex(K),
        "phi": P.positive_ordered(K),
        "lambda": P.positive_ordered(K),
    }

    def log_density(p):
        theta = jnp.stack([p["theta1"], p["theta2"]])  # (K, K), rows = from-state
        phi, lam = p["phi"], p["lambda"]
        lp = jnp.sum(jax.vmap(stats.dirichlet.logpdf)(theta, alpha))
        lp += _normal(phi[0], 0.0, 1.0) + _normal(phi[1], 3.0, 1.0)
        lp += _normal(lam[0], 0.0, 1.0) + _normal(lam[1], 3.0, 1.0)
        # exponential_lpdf(u | phi) = log(phi) - phi * u; emission (N, K)
        emit = jnp.log(phi) - u[:, None] * phi + jnp.log(lam) - v[:, None] * lam
        log_theta = jnp.log(theta)

        def forward(gamma, e):
            gamma = jax.nn.logsumexp(gamma[:, None] + log_theta, axis=0) + e
            return gamma, None

        gamma, _ = jax.lax.scan(forward, emit[0], emit[1:])
        return lp + jax.nn.logsumexp(gamma)

    return spec, log_density, _no_derived


def _diamonds(P, d):
    X, Y = np.asarray(d["X"], np.float64), _f(d["Y"])
    Xc = X[:, 1:] - X[:, 1:].mean(axis=0)
    Xc = _f(Xc)
    spec = {"b": P.real((Xc.shape[1],)), "Intercept": P.real(), "sigma": P.positive()}

    def log_density(p):
        lp = _normal(p["b"], 0.0, 1.0) + _student_t(p["Intercept"], 3.0, 8.0, 10.0)
        # student_t_lccdf(0 | 3, 0, 10) = log(1/2) is a constant: kept for Stan's value.
        lp += _student_t(p["sigma"], 3.0, 0.0, 10.0) - jnp.log(0.5)
        return lp + _normal(Y, p["Intercept"] + Xc @ p["b"], p["sigma"])

    return spec, log_density, _no_derived


def _earnings(P, d):
    earn, height, male = _f(d["earn"]), _f(d["height"]), _f(d["male"])
    log_earn, inter = jnp.log(earn), height * male
    X = jnp.stack([jnp.ones_like(height), height, male, inter], axis=-1)
    spec = {"beta": P.real((4,)), "sigma": P.positive()}

    def log_density(p):
        return _normal(log_earn, X @ p["beta"], p["sigma"])

    return spec, log_density, _no_derived


def _eight_schools(P, d):
    J, y, sigma = int(d["J"]), _f(d["y"]), _f(d["sigma"])
    spec = {"theta_trans": P.real((J,)), "mu": P.real(), "tau": P.positive()}

    def derived(p):
        return {"theta": p["theta_trans"] * p["tau"][..., None] + p["mu"][..., None]}

    def log_density(p):
        theta = derived(p)["theta"]
        lp = _normal(p["theta_trans"], 0.0, 1.0) + _normal(y, theta, sigma)
        return lp + _normal(p["mu"], 0.0, 5.0) + _cauchy(p["tau"], 0.0, 5.0)

    return spec, log_density, derived


def _eight_schools_centered(P, d):
    """The centered parameterization (a funnel in ``(log tau, theta)``): the same posterior of
    ``(theta, mu, tau)`` as the non-centered model, whose reference draws it is judged by."""
    J, y, sigma = int(d["J"]), _f(d["y"]), _f(d["sigma"])
    spec = {"theta": P.real((J,)), "mu": P.real(), "tau": P.positive()}

    def log_density(p):
        lp = _normal(p["theta"], p["mu"][..., None], p["tau"][..., None])
        lp += _normal(y, p["theta"], sigma)
        return lp + _normal(p["mu"], 0.0, 5.0) + _cauchy(p["tau"], 0.0, 5.0)

    return spec, log_density, _no_derived


def _garch11(P, d):
    y, sigma1 = _f(d["y"]), float(d["sigma1"])
    spec = {
        "mu": P.real(),
        "alpha0": P.positive(),
        "alpha1": P.interval(0.0, 1.0),
        "beta1": P.interval(0.0, lambda p: 1.0 - p["alpha1"]),
    }

    def log_density(p):
        mu, a0, a1, b1 = p["mu"], p["alpha0"], p["alpha1"], p["beta1"]

        def step(s_prev, y_prev):
            s = jnp.sqrt(a0 + a1 * jnp.square(y_prev - mu) + b1 * jnp.square(s_prev))
            return s, s

        s1 = jnp.asarray(sigma1, y.dtype)
        _, s = jax.lax.scan(step, s1, y[:-1])
        return _normal(y, mu, jnp.concatenate([s1[None], s]))

    return spec, log_density, _no_derived


def _gp_regr(P, d):
    x, y = _f(d["x"]), _f(d["y"])
    n = x.shape[0]
    sq = jnp.square(x[:, None] - x[None, :])
    spec = {"rho": P.positive(), "alpha": P.positive(), "sigma": P.positive()}

    def log_density(p):
        rho, alpha, sigma = p["rho"], p["alpha"], p["sigma"]
        lp = jnp.sum(stats.gamma.logpdf(rho, 25.0, scale=1.0 / 4.0))
        lp += _normal(alpha, 0.0, 2.0) + _normal(sigma, 0.0, 1.0)
        # gp_exp_quad_cov + diag(sigma) (Stan's model adds sigma, not sigma^2, to the diagonal)
        cov = alpha**2 * jnp.exp(-0.5 * sq / rho**2) + sigma * jnp.eye(n, dtype=sq.dtype)
        chol = jnp.linalg.cholesky(cov)
        z = jax.scipy.linalg.solve_triangular(chol, y, lower=True)
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
        return lp - 0.5 * jnp.sum(z * z) - log_det - 0.5 * n * jnp.log(2 * jnp.pi)

    return spec, log_density, _no_derived


def _gauss_mix(P, d):
    y = _f(d["y"])
    spec = {"mu": P.ordered(2), "sigma": P.positive((2,)), "theta": P.interval(0.0, 1.0)}

    def log_density(p):
        mu, sigma, theta = p["mu"], p["sigma"], p["theta"]
        lp = _normal(sigma, 0.0, 2.0) + _normal(mu, 0.0, 2.0)
        lp += jnp.sum(stats.beta.logpdf(theta, 5.0, 5.0))
        a = jnp.log(theta) + stats.norm.logpdf(y, mu[0], sigma[0])
        b = jnp.log1p(-theta) + stats.norm.logpdf(y, mu[1], sigma[1])
        return lp + jnp.sum(jnp.logaddexp(a, b))

    return spec, log_density, _no_derived


def _nes(P, d):
    age = np.asarray(d["age_discrete"])
    cols = [
        np.ones(age.shape),
        d["real_ideo"],
        d["race_adj"],
        age == 2,
        age == 3,
        age == 4,
        d["educ1"],
        d["gender"],
        d["income"],
    ]
    X = _f(np.stack([np.asarray(c, np.float64) for c in cols], axis=-1))
    y = _f(d["partyid7"])
    spec = {"beta": P.real((9,)), "sigma": P.positive()}

    def log_density(p):
        return _normal(y, X @ p["beta"], p["sigma"])

    return spec, log_density, _no_derived


def _blr(P, d):
    X, y = _f(d["X"]), _f(d["y"])
    spec = {"beta": P.real((X.shape[1],)), "sigma": P.positive()}

    def log_density(p):
        lp = _normal(p["beta"], 0.0, 10.0) + _normal(p["sigma"], 0.0, 10.0)
        return lp + _normal(y, X @ p["beta"], p["sigma"])

    return spec, log_density, _no_derived


_BUILDERS = {
    "arK-arK": _ark,
    "arma-arma11": _arma11,
    "bball_drive_event_0-hmm_drive_0": _hmm_drive,
    "diamonds-diamonds": _diamonds,
    "earnings-logearn_interaction": _earnings,
    "eight_schools-eight_schools_noncentered": _eight_schools,
    "garch-garch11": _garch11,
    "gp_pois_regr-gp_regr": _gp_regr,
    "low_dim_gauss_mix-low_dim_gauss_mix": _gauss_mix,
    "nes2000-nes": _nes,
    "sblrc-blr": _blr,
    # not one of the eleven (no reference of its own): the non-centered model's data and
    # reference draws (the same posterior of theta, mu, tau), see _DATA
    "eight_schools-eight_schools_centered": _eight_schools_centered,
}
# Posteriors that read another posterior's data and reference draws.
_DATA = {"eight_schools-eight_schools_centered": "eight_schools-eight_schools_noncentered"}


def constraints_module():
    """``jelbo.parameters`` (the constraint constructors)."""
    return jelbo.parameters


def make_space(spec: dict) -> jelbo.ParameterSpace:
    """``jelbo.ParameterSpace(spec)``."""
    return jelbo.ParameterSpace(spec)


def make_log_joint(post: Posterior, space: Any) -> Callable[[jax.Array], jax.Array]:
    """``log_joint(u)`` of ONE unconstrained vector ``u`` (dim,): density plus log-Jacobian."""

    def log_joint(u):
        params, log_det = space.constrain(u)
        return post.log_density(params) + log_det

    return log_joint


def constrained_summary(post: Posterior, space: Any, u: jax.Array) -> dict[str, jax.Array]:
    """Reference-named constrained parameters (and derived quantities) of draws ``u`` (n, dim)."""
    params, _ = space.constrain(u)
    params = {**params, **post.derived(params)}
    return flatten(params, post.summary_names)


def load(name: str, P: Any = None) -> Posterior:
    """The posterior ``name`` (one of :data:`POSTERIORS`), with its reference summary."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown posterior {name!r}; choose one of {POSTERIORS}")
    P = constraints_module() if P is None else P
    data = _DATA.get(name, name)
    spec, log_density, derived = _BUILDERS[name](P, _read(data, "data.json"))
    reference = _read(data, "reference_summary.json")
    draws = {k: np.asarray(v) for k, v in _read(data, "reference_draws_thinned.json").items()}
    return Posterior(name, spec, log_density, derived, tuple(reference), reference, draws)


def flatten(params: dict, names: tuple[str, ...], batch_ndim: int = 1) -> dict[str, jax.Array]:
    """``{"beta[2]": params["beta"][..., 1], ...}`` for the reference names ``names``.

    ``params`` holds constrained parameters and derived quantities with ``batch_ndim`` leading
    batch axes; Stan's indices are 1-based and row-major.
    """
    out = {}
    for n in names:
        base, _, index = n.partition("[")
        value = params[base]
        if index:
            idx = tuple(int(i) - 1 for i in index.rstrip("]").split(","))
            value = value[(Ellipsis, *idx)]
        out[n] = value
    return out


def unflatten_draws(post: Posterior, space: Any) -> dict[str, jax.Array]:
    """The thinned reference draws as a dict of batched constrained parameters (spec names).

    Eight schools' ``theta_trans`` (not in the reference draws) is recovered from ``theta``.
    Returns ``{}`` when some parameter cannot be recovered.
    """
    n = len(next(iter(post.draws.values())))
    draws = dict(post.draws)
    if post.name == "eight_schools-eight_schools_noncentered":
        mu, tau = draws["mu"], draws["tau"]
        for j in range(1, 9):
            draws[f"theta_trans[{j}]"] = (draws[f"theta[{j}]"] - mu) / tau
    shapes = space.shapes
    out = {}
    for base in post.spec:
        shape = shapes[base]
        if not shape:
            if base not in draws:
                return {}
            out[base] = jnp.asarray(draws[base])
            continue
        flat = []
        for idx in np.ndindex(*shape):
            key = f"{base}[{','.join(str(i + 1) for i in idx)}]"
            if key not in draws:
                return {}
            flat.append(draws[key])
        out[base] = jnp.asarray(np.stack(flat, axis=-1).reshape(n, *shape))
    return out
