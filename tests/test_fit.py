"""``jelbo.fit``'s shared pieces (argument checks, evaluation counting, diagnostics) and
Pathfinder: exact answers on Gaussian targets, a non-Gaussian target against quadrature,
counted evaluations against a counter inside the log density, and one posteriordb model."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback
from scipy import stats

import jelbo
from jelbo.fit import _common

# --- the shared pieces ----------------------------------------------------------------------


def _std_normal(z):
    return -0.5 * jnp.sum(z * z)


def test_check_problem_accepts_and_returns_init(dtype):
    z0 = _common.check_problem("f", jax.random.key(0), _std_normal, jnp.zeros(3, dtype))
    assert z0.shape == (3,) and z0.dtype == dtype


@pytest.mark.parametrize(
    ("key", "log_joint", "init", "error", "match"),
    [
        (0, _std_normal, np.zeros(3), TypeError, "f: `key` must be a PRNG key"),
        (jax.random.split(jax.random.key(0)), _std_normal, np.zeros(3), TypeError, r"shape \(2,\)"),
        (jax.random.key(0), "no", np.zeros(3), TypeError, "`log_joint` must be a function"),
        (jax.random.key(0), _std_normal, np.zeros((2, 3)), ValueError, r"shape \(2, 3\)"),
        (jax.random.key(0), _std_normal, np.zeros(0), ValueError, r"D >= 1; got shape \(0,\)"),
        (jax.random.key(0), _std_normal, np.zeros(3, np.int32), TypeError, r"floating.*int32\[3\]"),
        (jax.random.key(0), lambda z: z, np.zeros(3), ValueError, r"returned \(3,\)"),
        (jax.random.key(0), lambda z: (z > 0).all(), np.zeros(3), TypeError, "floating scalar"),
    ],
)
def test_check_problem_errors(key, log_joint, init, error, match):
    with pytest.raises(error, match=match):
        _common.check_problem("f", key, log_joint, init)


def test_counted_log_joint_counts_points_and_maps_nan_to_minus_inf():
    model = _common.CountedLogJoint(lambda z: jnp.where(z[0] > 5, jnp.nan, _std_normal(z)))
    count = _common.zero_count()
    v, count = model.value(jnp.ones(2), count)
    _, g, count = model.value_and_grad(jnp.ones(2), count)
    vs, count = model.values(jnp.array([[1.0, 1.0], [6.0, 0.0], [0.0, 0.0]]), count)
    _, gs, count = model.values_and_grads(jnp.zeros((4, 2)), count)
    h, count = model.hessian(jnp.zeros(2), count)
    assert int(count) == 1 + 1 + 3 + 4 + 2
    np.testing.assert_allclose(v, -1.0)
    np.testing.assert_allclose(g, -np.ones(2))
    np.testing.assert_array_equal(vs, [-1.0, -np.inf, 0.0])
    np.testing.assert_allclose(h, -np.eye(2))
    assert gs.shape == (4, 2)


def test_counted_log_joint_keeps_float32_under_x64():
    model = _common.CountedLogJoint(lambda z: jnp.sum(z.astype(jnp.float64)))
    v, _ = model.value(jnp.ones(2, jnp.float32), _common.zero_count())
    assert v.dtype == jnp.float32


def test_diagnose_is_the_elbo_and_psis_of_the_same_draws(dtype):
    loc = np.array([0.5, -1.0])
    tril = np.array([[1.2, 0.0], [0.3, 0.7]])
    q = jelbo.MultivariateNormalTriL(jnp.asarray(loc, dtype), jnp.asarray(tril, dtype))
    target = stats.multivariate_normal(np.zeros(2), np.array([[1.0, 0.5], [0.5, 2.0]]))

    def log_joint(z):
        prec = jnp.asarray(np.linalg.inv(target.cov), z.dtype)
        return -0.5 * z @ prec @ z + 1.5

    d = jax.jit(lambda k: _common.diagnose(k, q, log_joint, num_draws=300))(jax.random.key(1))
    draws = np.asarray(d.draws, np.float64)
    assert d.draws.shape == (300, 2) and d.draws.dtype == dtype and d.num_evals == 300
    log_q = stats.multivariate_normal(loc, tril @ tril.T).logpdf(draws)
    log_p = target.logpdf(draws) - target.logpdf(np.zeros(2)) + 1.5
    log_w = log_p - log_q
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(d.log_weights, log_w, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(d.bound.value, log_w.mean(), rtol=rtol)
    np.testing.assert_allclose(d.bound.expected_log_likelihood, log_p.mean(), rtol=rtol)
    np.testing.assert_allclose(d.bound.kl, log_q.mean(), rtol=rtol)
    np.testing.assert_allclose(d.bound.stderr, log_w.std(ddof=1) / np.sqrt(300), rtol=10 * rtol)
    _, k = jelbo.psis(jnp.asarray(log_w))
    np.testing.assert_allclose(d.pareto_k, k, rtol=100 * rtol, atol=100 * rtol)
    np.testing.assert_allclose(jax.nn.logsumexp(d.smoothed_log_weights), 0.0, atol=rtol)


# --- the L-BFGS (jelbo.fit._lbfgs) ------------------------------------------------------------

from jelbo.fit import _lbfgs  # noqa: E402


def _quadratic(dim, cond, seed):
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    cov = rot @ np.diag(np.logspace(0, np.log10(cond), dim)) @ rot.T
    return rng.normal(size=dim), cov


def _bfgs_recursion(s, y, valid, alpha):
    """The inverse-Hessian estimate by the textbook recursion (numpy, float64):
    H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T over the kept pairs, oldest first."""
    h = np.diag(alpha)
    eye = np.eye(len(alpha))
    for si, yi, ok in zip(s, y, valid, strict=True):
        if ok:
            rho = 1.0 / (si @ yi)
            h = (eye - rho * np.outer(si, yi)) @ h @ (eye - rho * np.outer(yi, si))
            h += rho * np.outer(si, si)
    return h


def test_lbfgs_compact_inverse_hessian_is_the_bfgs_recursion():
    mu, cov = _quadratic(6, 1e3, 1)
    prec = np.linalg.inv(cov)

    def value_and_grad(x):
        d = x - jnp.asarray(mu)
        return 0.5 * d @ jnp.asarray(prec) @ d, jnp.asarray(prec) @ d

    options = _lbfgs.Options(history=3, gtol=1e-12)
    state = _lbfgs.init(value_and_grad, jnp.zeros(6), history=3)
    step = jax.jit(lambda st: _lbfgs.step(value_and_grad, st, options))
    accepted = 0
    while accepted < 5:  # the window of 3 pairs has slid
        state, acc = step(state)
        accepted += int(acc)
    s, y, valid, alpha = (np.asarray(v) for v in (state.s, state.y, state.valid, state.alpha))
    assert valid.all()
    expected = _bfgs_recursion(s, y, valid, alpha)
    applied = np.stack([_lbfgs.inverse_hessian_apply(state, e) for e in jnp.eye(6)], 1)
    np.testing.assert_allclose(applied, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
    a, b, g = (np.asarray(v) for v in _lbfgs.inverse_hessian_factors(state))
    np.testing.assert_allclose(np.diag(a) + b @ g @ b.T, expected, rtol=1e-9, atol=1e-12)
    # the secant equation for the newest pair, and positive definiteness
    np.testing.assert_allclose(expected @ y[-1], s[-1], rtol=1e-9)
    assert np.all(np.linalg.eigvalsh(expected) > 0)
    np.testing.assert_allclose(state.direction, -expected @ np.asarray(state.g), rtol=1e-9)


def test_lbfgs_diagonal_update_is_the_diagonal_of_a_scaled_bfgs_update():
    rng = np.random.default_rng(2)
    alpha, s = rng.uniform(0.5, 2.0, 5), rng.normal(size=5)
    y = s * rng.uniform(0.5, 3.0, 5) + 0.1 * rng.normal(size=5)
    assert s @ y > 0
    # Hessian estimate B = tau diag(1/alpha), tau = a/b, BFGS-updated with (s, y)
    a, b = y @ (alpha * y), y @ s
    big_b = (a / b) * np.diag(1 / alpha)
    updated = big_b - np.outer(big_b @ s, big_b @ s) / (s @ big_b @ s) + np.outer(y, y) / b
    new = _lbfgs._update_alpha(jnp.asarray(alpha), jnp.asarray(s), jnp.asarray(y))
    np.testing.assert_allclose(new, 1 / np.diag(updated), rtol=1e-12)


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lbfgs_minimizes_rosenbrock_and_counts_every_call(dtype):
    calls = [0]

    def value_and_grad(x):
        io_callback(lambda m: calls.__setitem__(0, calls[0] + 1), None, x[0])
        return jax.value_and_grad(_rosenbrock)(x)

    run = jax.jit(lambda x: _lbfgs.minimize(value_and_grad, x, _lbfgs.Options(gtol=1e-6)))
    res = run(jnp.full(6, -1.0, dtype))
    jax.effects_barrier()
    assert bool(res.converged) and res.x.dtype == dtype
    assert int(res.num_evals) == calls[0] and int(res.num_iters) < int(res.num_evals)
    # measured: float64 within 1e-9 (gradient rule), float32 3e-4 (objective resolution)
    np.testing.assert_allclose(res.x, np.ones(6), atol=2e-3 if dtype == np.float32 else 1e-6)


def test_lbfgs_reports_iteration_cap_and_a_non_finite_start():
    vg = jax.value_and_grad(_rosenbrock)
    capped = _lbfgs.minimize(vg, jnp.full(6, -1.0), _lbfgs.Options(max_iters=3))
    assert not bool(capped.converged) and int(capped.status) == _lbfgs.Status.MAX_ITERS
    assert int(capped.num_iters) == 3
    bad = _lbfgs.minimize(lambda x: (jnp.inf * jnp.sum(x), x), jnp.zeros(2))
    assert not bool(bad.converged) and int(bad.status) == _lbfgs.Status.NONFINITE
    assert int(bad.num_evals) == 1


# --- Pathfinder -------------------------------------------------------------------------------
#
# Every fit below runs one of a few compiled programs (compiling Pathfinder is the expensive
# part): the target's parameters are traced arguments of the jitted fit, closed over by the
# log joint. The 4-D target is a Gaussian N(mu, prec^-1) times independent skewed factors
# exp(skew * (3 z - 2 e^z)) (z = log sigma with sigma ~ Gamma(3, 2) when prec = 0, skew = 1).

_MU, _COV = _quadratic(4, 100.0, 3)  # eigenvalues of the covariance 1 .. 100, rotated
_PREC = np.linalg.inv(_COV)


def _target(z, mu, prec, skew):
    d = z - mu
    # without the skewed factors (skew = 0), exp(z) is not evaluated: it overflows at the
    # z = 1000 of the wide Gaussian below (and 0 * inf is NaN, in the value and the gradient)
    zs = jnp.where(skew == 0, jnp.zeros_like(z), z)
    return -0.5 * d @ prec @ d + skew * jnp.sum(3.0 * zs - 2.0 * jnp.exp(zs))


class _Counter:
    """Counts the points at which the target is evaluated, from inside it."""

    def __init__(self):
        self.count = 0

    def log_joint(self, z, mu, prec, skew):
        # io_callback: under vmap a rolled lax.map (jax.debug.callback would be unrolled, one
        # call site per point, and slow to compile)
        io_callback(self._add, None, jax.lax.stop_gradient(z[0]))
        return _target(z, mu, prec, skew)

    def _add(self, marker):
        self.count += int(np.size(marker))


_CONFIGS = {"path": {"num_paths": 1, "moment_match": 0}, "default": {}}


@functools.cache
def _compiled(config, dtype):
    """(counter, jitted fit(key, mu, prec, skew)) for one option set and dtype."""
    counter = _Counter()
    options = _CONFIGS[config]

    @jax.jit
    def run(key, mu, prec, skew):
        return jelbo.fit.pathfinder(
            key,
            lambda z: counter.log_joint(z, mu, prec, skew),
            jnp.zeros(4, dtype),
            **options,
        )

    return counter, run


def _fit(config, dtype, key=1, mu=_MU, prec=_PREC, skew=0.0):
    counter, run = _compiled(config, np.dtype(dtype))
    before = counter.count
    fit = run(
        jax.random.key(key),
        jnp.asarray(mu, dtype),
        jnp.asarray(prec, dtype),
        jnp.asarray(skew, dtype),
    )
    jax.block_until_ready(fit)
    jax.effects_barrier()
    return fit, counter.count - before


def _kl_to_target(loc, scale_tril, mu, cov):
    """KL(N(loc, LL^T) || N(mu, cov)) in float64 numpy."""
    m, tril = np.asarray(loc, np.float64), np.asarray(scale_tril, np.float64)
    c, prec, d = tril @ tril.T, np.linalg.inv(cov), mu - m
    logdet = np.linalg.slogdet(cov)[1] - np.linalg.slogdet(c)[1]
    return 0.5 * (np.trace(prec @ c) + d @ prec @ d - len(mu) + logdet)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_pathfinder_is_exact_on_an_isotropic_gaussian(dtype, scale):
    # One L-BFGS step along -grad gives a pair with y = s / scale^2, for which the diagonal
    # update is exactly alpha = scale^2: H is the covariance and x + H grad the mean.
    mu = np.array([1.0, -2.0, 0.5, 0.0]) * scale
    fit, _ = _fit("path", dtype, mu=mu, prec=np.eye(4) / scale**2)
    assert fit.q.loc.dtype == dtype and bool(fit.converged)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fit.q.loc, mu, rtol=rtol, atol=rtol * scale)
    cov = np.asarray(fit.q.covariance(), np.float64)
    np.testing.assert_allclose(cov, scale**2 * np.eye(4), rtol=rtol, atol=rtol * scale**2)
    # the ELBO of the exact q is log Z (up to rounding: no Monte Carlo error)
    log_z = 2.0 * np.log(2 * np.pi * scale**2)
    np.testing.assert_allclose(fit.bound.value, log_z, rtol=rtol, atol=100 * rtol)


def test_pathfinder_gaussian_of_a_correlated_gaussian(dtype):
    fit, count = _fit("path", dtype)
    assert isinstance(fit.q, jelbo.MultivariateNormalTriL) and fit.q.loc.dtype == dtype
    assert bool(fit.converged) and int(fit.info["path_status"][0]) in _lbfgs.Status.CONVERGED
    # The mean is the mode to the L-BFGS tolerance; the covariance is the L-BFGS estimate
    # (weak-Wolfe steps: no hereditary property), measured KL 0.0137, sds 0.945-0.986x.
    d = np.asarray(fit.q.loc, np.float64) - _MU
    assert np.sqrt(d @ _PREC @ d) < 1e-3
    assert _kl_to_target(fit.q.loc, fit.q.scale_tril, _MU, _COV) < 0.03
    ratio = np.sqrt(np.diag(np.asarray(fit.q.covariance(), np.float64)) / np.diag(_COV))
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio
    assert int(fit.num_evals) == count
    assert int(fit.info["num_evals_algorithm"]) + int(fit.info["num_evals_diagnostics"]) == count


def test_pathfinder_defaults_on_a_correlated_gaussian():
    # float32 here; float64 in the skewed-target test below
    dtype = np.float32
    fit, count = _fit("default", dtype)
    assert isinstance(fit.q, jelbo.MixtureSameFamily) and fit.q.event_shape == (4,)
    assert fit.q.mean().dtype == dtype
    assert bool(fit.converged) and float(fit.pareto_k) < 0.7
    # four paths: the batch computes (and counts) the stopped paths' evaluations too
    assert int(fit.num_evals) == count
    assert int(fit.info["num_evals_algorithm"]) >= int(np.sum(fit.info["path_num_evals"]))
    d = np.asarray(fit.q.mean(), np.float64) - _MU
    assert np.sqrt(d @ _PREC @ d) < 0.2  # measured 0.05-0.09 (moment matching noise)
    ratio = np.sqrt(np.asarray(fit.q.variance(), np.float64) / np.diag(_COV))
    assert np.all((ratio > 0.85) & (ratio < 1.15)), ratio
    assert fit.info["draws"].shape == (2000, 4) and fit.info["elbo_trace"].shape == (4, 1001)
    draws = np.asarray(fit.info["draws"], np.float64)  # PSIS-resampled
    assert np.all(np.abs(draws.mean(0) - _MU) / np.sqrt(np.diag(_COV)) < 0.2)


def test_pathfinder_on_a_skewed_target_against_quadrature():
    # Four independent z = log(sigma), sigma ~ Gamma(3, 2): log p(z) = 3 z - 2 e^z.
    grid = np.linspace(-8.0, 4.0, 200_001)
    dens = np.exp(3.0 * grid - 2.0 * np.exp(grid))
    dens /= np.trapezoid(dens, grid)
    mean = np.trapezoid(grid * dens, grid)
    sd = np.sqrt(np.trapezoid((grid - mean) ** 2 * dens, grid))
    mode = np.log(1.5)
    assert (mode - mean) / sd > 0.25  # the mode is off the mean: a Laplace-type q is too
    fit, _ = _fit("path", np.float64, mu=np.zeros(4), prec=np.zeros((4, 4)), skew=1.0)
    # Pathfinder's own Gaussian: near the mode (the best ELBO, measured 0.03 sd below it),
    # its mean error the mode's
    np.testing.assert_allclose(fit.info["grad_norm"], 0.0, atol=1e-3)
    assert np.all(np.abs(np.asarray(fit.q.loc) - mode) / sd < 0.1)
    fit, _ = _fit("default", np.float64, mu=np.zeros(4), prec=np.zeros((4, 4)), skew=1.0)
    assert bool(fit.info["moment_matched"]) and float(fit.pareto_k) < 0.7
    q_mean, q_sd = np.asarray(fit.q.mean()), np.sqrt(np.asarray(fit.q.variance()))
    # moment-matched: the PSIS moments of 2,000 weighted draws, with their Monte Carlo error
    # (float64 here; float32's different draws gave one sd 10.5 % off)
    assert np.all(np.abs(q_mean - mean) / sd < 0.1), q_mean
    assert np.all(np.abs(q_sd / sd - 1) < 0.1), q_sd
    draws = np.asarray(fit.info["draws"])
    assert np.all(np.abs(draws.mean(0) - mean) / sd < 0.15)


def test_pathfinder_eager_equals_jit():
    _, jitted = _compiled("path", np.dtype(np.float64))
    args = (jnp.asarray(_MU), jnp.asarray(_PREC), jnp.asarray(0.0))

    def run(key, mu, prec, skew):
        return jelbo.fit.pathfinder(
            key, lambda z: _target(z, mu, prec, skew), jnp.zeros(4), num_paths=1, moment_match=0
        )

    eager = run(jax.random.key(2), *args)
    compiled = jitted(jax.random.key(2), *args)
    for a, b in zip(jax.tree.leaves(eager.q), jax.tree.leaves(compiled.q), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(eager.bound.value, compiled.bound.value, rtol=1e-12)
    assert int(eager.num_evals) == int(compiled.num_evals)


def test_pathfinder_vmap_over_keys_and_not_converged_when_capped():
    def run(key):
        return jelbo.fit.pathfinder(
            key,
            lambda z: _target(z, _MU, _PREC, 0.0),
            jnp.zeros(4),
            num_paths=2,
            max_iters=2,
            moment_match=0,
            num_draws=64,
            num_diagnostic_draws=32,
        )

    keys = jax.random.split(jax.random.key(0), 2)
    fits = jax.jit(jax.vmap(run))(keys)
    assert fits.q.mean().shape == (2, 4) and fits.num_evals.shape == (2,)
    assert not np.any(np.asarray(fits.converged))
    np.testing.assert_array_equal(fits.info["path_status"], _lbfgs.Status.MAX_ITERS)
    np.testing.assert_array_equal(fits.num_iters, 2)


def test_pathfinder_bad_input():
    key, z0 = jax.random.key(0), jnp.zeros(4)

    def log_joint(z):
        return _target(z, _MU, _PREC, 0.0)

    with pytest.raises(ValueError, match=r"pathfinder: `init` must be one unconstrained vector"):
        jelbo.fit.pathfinder(key, log_joint, jnp.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"pathfinder: `init` must be floating"):
        jelbo.fit.pathfinder(key, log_joint, jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match=r"pathfinder: `log_joint` must return a scalar"):
        jelbo.fit.pathfinder(key, lambda z: z, z0)
    with pytest.raises(TypeError, match="pathfinder: `key`"):
        jelbo.fit.pathfinder(0, log_joint, z0)
    with pytest.raises(ValueError, match="pathfinder: `num_paths` must be >= 1"):
        jelbo.fit.pathfinder(key, log_joint, z0, num_paths=0)
    with pytest.raises(TypeError, match="pathfinder: `history`"):
        jelbo.fit.pathfinder(key, log_joint, z0, history=2.5)
    with pytest.raises(ValueError, match="pathfinder: `num_draws` must be >= 2"):
        jelbo.fit.pathfinder(key, log_joint, z0, num_draws=1)
    with pytest.raises(ValueError, match="pathfinder: `gtol`"):
        jelbo.fit.pathfinder(key, log_joint, z0, gtol=-1.0)
    with pytest.raises(TypeError, match="pathfinder: `moment_match`"):
        jelbo.fit.pathfinder(key, log_joint, z0, moment_match=True)


def test_pathfinder_on_a_posteriordb_model_end_to_end():
    from bench import posteriordb as PDB
    from bench import posteriordb_models as M

    post = M.load("gp_pois_regr-gp_regr")
    space = M.make_space(post.spec)
    log_joint = M.make_log_joint(post, space)
    fit = jax.jit(lambda k: jelbo.fit.pathfinder(k, log_joint, jnp.zeros(space.dim)))(
        jax.random.key(0)
    )
    u = jelbo.sample(jax.random.key(1), fit.q, (4000,))
    r = PDB.evaluate(post, space, log_joint, u, jelbo.log_prob(fit.q, u))
    assert bool(fit.converged) and float(fit.pareto_k) < 0.7
    assert r["mean_err"] < 0.25 and 0.75 < r["sd_ratio_min"] and r["sd_ratio_max"] < 1.33, r
    assert int(fit.num_evals) < 4000


_ALGORITHMS = ("pathfinder", "dadvi", "batch_and_match", "advi")


def test_fit_public_surface():
    import inspect

    assert "fit" in jelbo.__all__ and set(jelbo.fit.__all__) >= {"Fit", *_ALGORITHMS}
    for name in jelbo.fit.__all__:
        assert inspect.getdoc(getattr(jelbo.fit, name)), name
    for name in _ALGORITHMS:
        signature = inspect.signature(getattr(jelbo.fit, name))
        params = list(signature.parameters.values())
        assert [p.name for p in params[:3]] == ["key", "log_joint", "init"], name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[3:]), name
        assert all(p.annotation is not inspect.Parameter.empty for p in params), name
        assert signature.return_annotation is not inspect.Signature.empty, name
    assert jelbo.fit.Fit._fields == (
        "q",
        "converged",
        "num_evals",
        "num_iters",
        "bound",
        "pareto_k",
        "info",
    )


@pytest.mark.parametrize("name", _ALGORITHMS)
def test_every_algorithm_names_a_bad_init_and_its_shape_at_trace_time(name):
    algorithm = getattr(jelbo.fit, name)
    key = jax.random.key(0)
    for bad in (jnp.zeros((2, 3)), jnp.zeros(()), jnp.zeros(0)):
        with pytest.raises(ValueError, match=rf"{name}: `init` must be.*got shape"):
            jax.eval_shape(lambda k, b=bad: algorithm(k, _std_normal, b), key)
    with pytest.raises(TypeError, match=rf"{name}: `init` must be floating"):
        algorithm(key, _std_normal, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match=rf"{name}: `log_joint` must return a scalar"):
        algorithm(key, lambda z: z, jnp.zeros(3))
