"""The Laplace start and the preconditioned Gaussian: closed forms on a Gaussian log joint, an
independent SciPy reference on a Bayesian logistic regression, and plain vs preconditioned
Adam on ill-conditioned posteriors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
from jax.experimental import io_callback

import jelbo

# --- a 10-D Gaussian log joint: variances 1e-2 .. 1e2 along random directions ---------------

DIM = 10
_rng = np.random.default_rng(0)
_rot, _ = np.linalg.qr(_rng.normal(size=(DIM, DIM)))
COV = _rot @ np.diag(np.logspace(-2, 2, DIM)) @ _rot.T
PREC = np.linalg.inv(COV)
MU = 3.0 * _rng.normal(size=DIM)


def gaussian_log_joint(z):
    d = z - jnp.asarray(MU, z.dtype)
    return -0.5 * d @ jnp.asarray(PREC, z.dtype) @ d


def gaussian_kl_to_target(q):
    """KL(q || N(MU, COV)) in closed form (numpy, float64)."""
    m = np.asarray(q.loc, np.float64)
    tril = np.tril(np.asarray(q.scale_tril, np.float64))
    cov = tril @ tril.T
    d = MU - m
    _, logdet_q = np.linalg.slogdet(cov)
    _, logdet_p = np.linalg.slogdet(COV)
    return 0.5 * (np.trace(PREC @ cov) + d @ PREC @ d - DIM + logdet_p - logdet_q)


def plain_q(params):
    """The standard full-rank parameterization: loc, and a scale_tril with exp diagonal."""
    loc, raw = params
    return jelbo.MultivariateNormalTriL(
        loc, jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diagonal(raw)))
    )


def adam_fit(make_q, params, log_joint, *, steps, lr=1e-2, num_samples=8):
    """Adam (cosine decay to lr/100) on the STL ELBO, compiled end to end (lax.scan)."""
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
    objective = jelbo.ELBO(num_samples=num_samples, kl="mc", grad_estimator="stl")

    def loss(p, key):
        return -objective(key, make_q(p), log_joint).value

    def step(carry, key):
        p, state = carry
        grads = jax.grad(loss)(p, key)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    keys = jax.random.split(jax.random.key(0), steps)
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
    return params


@pytest.fixture(scope="module")
def gaussian_laplace():
    return jax.jit(lambda z: jelbo.laplace_approximation(gaussian_log_joint, z))(jnp.zeros(DIM))


def test_laplace_of_a_gaussian_is_exact(gaussian_laplace):
    lap = gaussian_laplace
    assert bool(lap.hessian_ok) and float(lap.grad_norm) < 1e-6
    assert 0 < int(lap.num_steps) < 1000
    # Mode error <= cov @ gradient: sd up to 10 along the flattest direction.
    np.testing.assert_allclose(lap.loc, MU, atol=2e-5)
    tril = np.asarray(lap.scale_tril)
    np.testing.assert_array_equal(tril, np.tril(tril))
    assert np.all(np.diag(tril) > 0)
    np.testing.assert_allclose(tril @ tril.T, COV, rtol=0, atol=1e-11 * np.abs(COV).max())
    np.testing.assert_allclose(lap.log_joint, 0.0, atol=1e-9)
    assert gaussian_kl_to_target(lap.q) < 1e-9


def test_laplace_eager_equals_jit(gaussian_laplace):
    eager = jelbo.laplace_approximation(gaussian_log_joint, jnp.zeros(DIM))
    for a, b in zip(eager, gaussian_laplace, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_laplace_float32_vmap_and_jit():
    inits = jnp.stack([jnp.zeros(DIM, jnp.float32), jnp.ones(DIM, jnp.float32)])
    run = jax.jit(jax.vmap(lambda z: jelbo.laplace_approximation(gaussian_log_joint, z)))
    lap = run(inits)
    assert lap.loc.dtype == jnp.float32 and lap.scale_tril.shape == (2, DIM, DIM)
    assert lap.hessian_ok.shape == (2,) and bool(jnp.all(lap.hessian_ok))
    assert lap.decrement.dtype == jnp.float32 and lap.log_joint.dtype == jnp.float32
    # float32: the gradient norm does not reach tol = 1e-6; the Newton decrement (scale-aware)
    # does reach its float32 tolerance sqrt(eps) = 3.5e-4, so both runs say converged.
    assert bool(jnp.all(lap.converged)) and bool(jnp.all(lap.decrement < 3.5e-4))
    assert bool(jnp.all(lap.num_steps < 500))
    np.testing.assert_allclose(lap.loc, np.broadcast_to(MU, (2, DIM)), atol=2e-4)
    cov = np.einsum("bij,bkj->bik", lap.scale_tril, lap.scale_tril)
    np.testing.assert_allclose(cov, np.broadcast_to(COV, (2, DIM, DIM)), atol=1e-3 * 100)


def test_laplace_fallback_when_not_positive_definite():
    # A double well in z0, started on the ridge z0 = 0 (zero gradient in z0): L-BFGS stops
    # at the saddle, where -Hessian = diag(-4, 2). The fallback uses |eigenvalues|.
    def log_joint(z):
        return -((z[0] ** 2 - 1.0) ** 2) - z[1] ** 2

    lap = jelbo.laplace_approximation(log_joint, jnp.array([0.0, 1.0]))
    assert not bool(lap.hessian_ok)
    tril = np.asarray(lap.scale_tril)
    np.testing.assert_allclose(tril @ tril.T, np.diag([1 / 4, 1 / 2]), atol=1e-12)
    # A flat direction: eigenvalue 0 floored at 1e-8 x the largest.
    flat = jelbo.laplace_approximation(lambda z: -(z[1] ** 2), jnp.array([0.3, 1.0]))
    assert not bool(flat.hessian_ok)
    np.testing.assert_allclose(np.asarray(flat.scale_tril) ** 2, np.diag([0.5e8, 0.5]))


def test_laplace_bad_input():
    with pytest.raises(ValueError, match=r"laplace_approximation: `init`.*got shape \(2, 10\)"):
        jelbo.laplace_approximation(gaussian_log_joint, jnp.zeros((2, DIM)))
    with pytest.raises(ValueError, match=r"D >= 1; got shape \(0,\)"):
        jelbo.laplace_approximation(gaussian_log_joint, jnp.zeros(0))
    with pytest.raises(ValueError, match=r"must return a scalar.*\(10,\); it returned \(10,\)"):
        jelbo.laplace_approximation(lambda z: z, jnp.zeros(DIM))
    with pytest.raises(TypeError, match="laplace_approximation: `log_joint` must be a function"):
        jelbo.laplace_approximation("no", jnp.zeros(DIM))
    with pytest.raises(TypeError, match="floating scalar"):
        jelbo.laplace_approximation(lambda z: jnp.sum(z > 0), jnp.zeros(DIM))
    lap = jelbo.LaplaceApproximation(jnp.zeros(3), jnp.eye(3), 0.0, 0.0, 0, True)
    with pytest.raises(ValueError, match="raw_scale"):
        jelbo.preconditioned_q(jelbo.PreconditionedParams(jnp.zeros(3), jnp.zeros((2, 2))), lap)


def test_log_evidence_of_a_gaussian_is_its_normalizer(gaussian_laplace):
    # log_joint = -d'Pd/2 integrates to (2 pi)^(D/2) |COV|^(1/2).
    _, logdet = np.linalg.slogdet(COV)
    expected = 0.5 * DIM * np.log(2 * np.pi) + 0.5 * logdet
    np.testing.assert_allclose(gaussian_laplace.log_evidence, expected, rtol=1e-12, atol=1e-9)


def _two_modes(z, dtype):
    """Mass 0.3 in a tall narrow mode at -3 (sd 0.1), 0.7 in a low wide one at +3 (sd 1)."""
    x = z[0]
    comps = jnp.stack(
        [
            jnp.log(0.3) - 0.5 * ((x + 3) / 0.1) ** 2 - jnp.log(0.1 * jnp.sqrt(2 * jnp.pi)),
            jnp.log(0.7) - 0.5 * (x - 3) ** 2 - jnp.log(jnp.sqrt(2 * jnp.pi)),
        ]
    )
    return jax.nn.logsumexp(comps).astype(dtype) - 0.5 * z[1] ** 2


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_multistart_laplace_picks_the_most_probable_mode_not_the_highest(dtype):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs jax_enable_x64")
    run = jax.jit(
        lambda k: jelbo.multistart_laplace(
            k, lambda z: _two_modes(z, dtype), jnp.zeros(2, dtype), num_starts=16, radius=5.0
        )
    )
    best, every = run(jax.random.key(0))
    assert every.loc.shape == (16, 2) and every.loc.dtype == dtype
    found = np.asarray(every.loc[:, 0])
    # Both basins were visited; the tall mode is higher but holds less mass.
    assert np.any(np.abs(found + 3) < 1e-3) and np.any(np.abs(found - 3) < 1e-3)
    assert float(jnp.max(every.log_joint)) > float(best.log_joint)
    np.testing.assert_allclose(best.loc, [3.0, 0.0], atol=1e-3 if dtype == jnp.float32 else 1e-6)
    # Laplace's mass of a Gaussian mode is exact: log(0.7) + log(2 pi)/2 from the z[1] factor.
    rtol = 1e-5 if dtype == jnp.float32 else 1e-9
    np.testing.assert_allclose(best.log_evidence, np.log(0.7) + 0.5 * np.log(2 * np.pi), rtol=rtol)
    assert bool(best.hessian_ok) and bool(best.converged)
    assert bool(jnp.all(every.converged)) and bool(jnp.all(every.num_evals > 0))


def test_multistart_laplace_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"multistart_laplace: `init`.*got shape \(2, 10\)"):
        jelbo.multistart_laplace(key, gaussian_log_joint, jnp.zeros((2, DIM)))
    with pytest.raises(ValueError, match="num_starts"):
        jelbo.multistart_laplace(key, gaussian_log_joint, jnp.zeros(DIM), num_starts=0)
    with pytest.raises(TypeError, match="multistart_laplace: `key`"):
        jelbo.multistart_laplace(0, gaussian_log_joint, jnp.zeros(DIM))
    with pytest.raises(ValueError, match=r"multistart_laplace: `log_joint` must return a scalar"):
        jelbo.multistart_laplace(key, lambda z: z, jnp.zeros(DIM))


def test_preconditioned_q_parameterization(gaussian_laplace):
    lap = gaussian_laplace
    params = jelbo.preconditioned_init(lap)
    q = jelbo.preconditioned_q(params, lap)
    np.testing.assert_array_equal(q.loc, lap.loc)
    np.testing.assert_allclose(q.scale_tril, lap.scale_tril, rtol=1e-15)
    a = jnp.arange(DIM, dtype=jnp.float64) / DIM
    raw = jnp.asarray(np.random.default_rng(1).normal(size=(DIM, DIM)))
    q = jelbo.preconditioned_q(jelbo.PreconditionedParams(a, raw), lap)
    b = np.tril(raw, -1) + np.diag(np.exp(np.diag(raw)))
    np.testing.assert_allclose(q.loc, lap.loc + lap.scale_tril @ a, rtol=1e-13)
    np.testing.assert_allclose(q.scale_tril, lap.scale_tril @ b, rtol=1e-12, atol=1e-14)
    # No gradient reaches the base.
    grad_base = jax.grad(
        lambda base: jnp.sum(jelbo.preconditioned_q(params, base).sample(jax.random.key(0)))
    )(lap.q)
    assert float(jnp.abs(grad_base.loc).max()) == 0.0
    assert float(jnp.abs(grad_base.scale_tril).max()) == 0.0


def test_ill_conditioned_gaussian_plain_adam_fails_preconditioned_converges(gaussian_laplace):
    # 1000 Adam steps (lr 1e-2 cosine, 8 STL samples). Plain full-rank from loc = 0,
    # scale = I: KL(q || p) = 12.4 measured (any KL > 1 fails). Preconditioned, on a base
    # deliberately spoiled (mean off by one base sd in every direction, scales doubled:
    # KL 13.1): KL < 1e-3 (measured 4e-11).
    steps = 1000
    plain = jax.jit(lambda p: adam_fit(plain_q, p, gaussian_log_joint, steps=steps))(
        (jnp.zeros(DIM), jnp.zeros((DIM, DIM)))
    )
    kl_plain = gaussian_kl_to_target(plain_q(plain))
    lap = gaussian_laplace
    base = jelbo.MultivariateNormalTriL(
        lap.loc + lap.scale_tril @ jnp.ones(DIM), 2.0 * lap.scale_tril
    )
    assert gaussian_kl_to_target(base) > 10
    fitted = jax.jit(
        lambda p: adam_fit(
            lambda p: jelbo.preconditioned_q(p, base), p, gaussian_log_joint, steps=steps
        )
    )(jelbo.preconditioned_init(base))
    kl_pre = gaussian_kl_to_target(jelbo.preconditioned_q(fitted, base))
    assert kl_plain > 1.0, kl_plain
    assert kl_pre < 1e-3, kl_pre


# --- Bayesian logistic regression with an uncentred covariate --------------------------------


def _logistic_problem():
    rng = np.random.default_rng(1)
    n = 60
    year = np.linspace(1955.0, 2014.0, n)  # uncentred: intercept and slope correlate -0.99996
    x = np.stack([np.ones(n), year, rng.normal(size=n)], 1)
    beta = np.array([-0.04 * 1985, 0.04, 0.8])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x @ beta))).astype(float)
    prior_sd = np.array([100.0, 1.0, 1.0])
    return x, y, prior_sd


def _reference_vi(x, y, prior_sd):
    """The full-rank Gaussian VI optimum, independently: the ELBO in closed form up to 1-D
    Gauss-Hermite quadratures (80 nodes) of E_q[log sigmoid], maximized by SciPy's BFGS in
    coordinates whitened by SciPy's own Laplace approximation. (Unwhitened, L-BFGS-B stops
    0.16 sd short of it.)"""
    dim = x.shape[1]
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / np.sqrt(2 * np.pi)
    tri = np.tril_indices(dim)

    def neg_log_joint(b):
        a = x @ b
        return np.sum(y * np.logaddexp(0, -a) + (1 - y) * np.logaddexp(0, a)) + 0.5 * np.sum(
            (b / prior_sd) ** 2
        )

    mode = scipy.optimize.minimize(neg_log_joint, np.zeros(dim), method="BFGS").x
    p = 1 / (1 + np.exp(-x @ mode))
    hess = x.T @ (x * (p * (1 - p))[:, None]) + np.diag(prior_sd**-2.0)
    base = np.linalg.cholesky(np.linalg.inv(hess))

    def unpack(theta):
        b = np.zeros((dim, dim))
        b[tri] = theta[dim:]
        b[np.diag_indices(dim)] = np.exp(np.diag(b))
        return mode + base @ theta[:dim], base @ b

    def neg_elbo(theta):
        m, tril = unpack(theta)
        cov = tril @ tril.T
        mean, sd = x @ m, np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
        a = mean[:, None] + sd[:, None] * nodes
        ll = (y[:, None] * -np.logaddexp(0, -a) + (1 - y[:, None]) * -np.logaddexp(0, a)) @ weights
        log_prior = -0.5 * np.sum((m**2 + np.diag(cov)) / prior_sd**2)
        return -(ll.sum() + log_prior + np.sum(np.log(np.diag(tril))))

    theta0 = np.zeros(dim + len(tri[0]))
    theta = scipy.optimize.minimize(neg_elbo, theta0, method="BFGS", options={"gtol": 1e-10}).x
    m, tril = unpack(theta)
    return m, np.sqrt(np.diag(tril @ tril.T))


def test_logistic_regression_against_an_independent_reference():
    x, y, prior_sd = _logistic_problem()
    m_ref, sd_ref = _reference_vi(x, y, prior_sd)

    def log_joint(b):
        a = jnp.asarray(x) @ b
        return jnp.sum(
            y * jax.nn.log_sigmoid(a) + (1 - y) * jax.nn.log_sigmoid(-a)
        ) - 0.5 * jnp.sum((b / prior_sd) ** 2)

    def errors(q):
        tril = np.tril(np.asarray(q.scale_tril))
        sd = np.sqrt(np.diag(tril @ tril.T))
        return np.max(np.abs(np.asarray(q.loc) - m_ref) / sd_ref), np.max(
            np.abs(np.log(sd / sd_ref))
        )

    lap = jax.jit(lambda z: jelbo.laplace_approximation(log_joint, z))(jnp.zeros(3))
    assert bool(lap.hessian_ok)
    steps = 1000
    fitted = jax.jit(
        lambda p: adam_fit(lambda p: jelbo.preconditioned_q(p, lap), p, log_joint, steps=steps)
    )(jelbo.preconditioned_init(lap))
    plain = jax.jit(lambda p: adam_fit(plain_q, p, log_joint, steps=steps))(
        (jnp.zeros(3), jnp.zeros((3, 3)))
    )
    # Measured (means in reference sds, |log sd ratio|): Laplace 0.16 / 0.020; preconditioned
    # Adam 0.0018 / 0.0034; plain Adam 9.0 / 3.1.
    lap_mean, _ = errors(lap.q)
    pre_mean, pre_sd = errors(jelbo.preconditioned_q(fitted, lap))
    plain_mean, plain_sd = errors(plain_q(plain))
    assert lap_mean > 0.1  # the VI optimum is not the Laplace approximation
    assert pre_mean < 0.03 and pre_sd < 0.03, (pre_mean, pre_sd)
    assert plain_mean > 1.0 and plain_sd > 1.0, (plain_mean, plain_sd)


# --- convergence: the README's logistic regression on an uncentred year --------------------

_YEAR = np.linspace(1955.0, 2014.0, 60)
_X_YEAR = np.stack([np.ones(60), _YEAR], 1)
_Y_YEAR = np.random.default_rng(1).uniform(size=60) < 1 / (1 + np.exp(-0.04 * (_YEAR - 1985)))


def _year_log_joint(b):
    a = jnp.asarray(_X_YEAR, b.dtype) @ b
    log_lik = jnp.sum(jnp.where(_Y_YEAR, jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)))
    return log_lik - 0.5 * jnp.sum((b / jnp.array([100.0, 1.0], b.dtype)) ** 2)


def _year_mode_reference():
    """The mode and posterior-precision by SciPy in float64 (Newton-CG to 1e-12)."""

    def neg(b):
        a = _X_YEAR @ b
        return -(
            np.sum(np.where(_Y_YEAR, -np.logaddexp(0, -a), -np.logaddexp(0, a)))
            - 0.5 * np.sum((b / np.array([100.0, 1.0])) ** 2)
        )

    def grad(b):
        a = _X_YEAR @ b
        resid = _Y_YEAR - 1 / (1 + np.exp(-a))
        return -(_X_YEAR.T @ resid - b / np.array([100.0, 1.0]) ** 2)

    def hess(b):
        a = _X_YEAR @ b
        p = 1 / (1 + np.exp(-a))
        return (_X_YEAR.T * (p * (1 - p))) @ _X_YEAR + np.diag(1 / np.array([100.0, 1.0]) ** 2)

    res = scipy.optimize.minimize(
        neg, np.zeros(2), jac=grad, hess=hess, method="trust-exact", options={"gtol": 1e-12}
    )
    return res.x, hess(res.x)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_laplace_reaches_the_mode_of_the_readme_example(dtype):
    # jelbo 0.2 (optax L-BFGS) stopped here after 3 iterations with a gradient norm of 3.9,
    # silently. L-BFGS then Newton with the exact Hessian reaches the mode.
    mode, precision = _year_mode_reference()
    lap = jax.jit(lambda z: jelbo.laplace_approximation(_year_log_joint, z))(jnp.zeros(2, dtype))
    assert lap.loc.dtype == dtype and bool(lap.converged) and bool(lap.hessian_ok)
    # distance to the reference mode in posterior sds (the Mahalanobis norm of the error)
    err = np.asarray(lap.loc, np.float64) - mode
    dist = float(np.sqrt(err @ precision @ err))
    # measured: float32 decrement 1.4e-5, float64 1.8e-14 (docs/diagnostics.md's example)
    assert dist < (1e-3 if dtype == jnp.float32 else 1e-9), dist
    assert float(lap.decrement) < (1e-3 if dtype == jnp.float32 else 1e-9)
    cov = np.asarray(lap.scale_tril, np.float64) @ np.asarray(lap.scale_tril, np.float64).T
    np.testing.assert_allclose(
        cov, np.linalg.inv(precision), rtol=2e-2 if dtype == jnp.float32 else 1e-9
    )
    assert int(lap.num_newton_steps) >= 1 and int(lap.num_evals) > int(lap.num_steps)


def test_laplace_says_when_it_did_not_converge():
    lap = jelbo.laplace_approximation(
        _year_log_joint, jnp.zeros(2), max_steps=2, max_newton_steps=0
    )
    assert not bool(lap.converged) and float(lap.decrement) > 1.0
    # a hand-built value (jelbo 0.2's six fields, positionally) still works
    old = jelbo.LaplaceApproximation(jnp.zeros(2), jnp.eye(2), 0.0, 0.0, 0, True)
    assert old.converged is None and old.q.event_shape == (2,)
    assert jelbo.fit.laplace_approximation is jelbo.laplace_approximation
    assert jelbo.fit.multistart_laplace is jelbo.multistart_laplace


def test_laplace_counts_its_evaluations():
    # A counter inside the log joint sees each value-and-gradient once and each Hessian once
    # (its primal runs once); num_evals counts a Hessian as D evaluations.
    seen = [0]

    def counted(z):
        io_callback(
            lambda m: seen.__setitem__(0, seen[0] + np.size(m)), None, jax.lax.stop_gradient(z[0])
        )
        return gaussian_log_joint(z)

    lap = jax.jit(lambda z: jelbo.laplace_approximation(counted, z))(jnp.zeros(DIM))
    jax.effects_barrier()
    hessians = 1 + int(lap.num_newton_steps)
    assert int(lap.num_evals) == seen[0] + (DIM - 1) * hessians
