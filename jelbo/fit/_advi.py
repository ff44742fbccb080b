r"""ADVI that needs no tuning: Adam on :class:`jelbo.ELBO` with a step-size and stopping rule
from the bound's own Monte Carlo standard error.

ADVI (Kucukelbir, Tran, Ranganath, Gelman & Blei, JMLR 18(14), 2017) maximizes the ELBO of a
Gaussian :math:`q` by stochastic gradient ascent. Its two tuning knobs — the step size and
when to stop — are set here from quantities the fit measures itself:

- **parameterization**: a full-rank Gaussian :math:`q = \mathcal N(m_0 + Wa,\ (WB)(WB)^\top)`
  with trainable :math:`a` and lower-triangular :math:`B` (diagonal through :math:`\exp`),
  relative to the Laplace start :math:`(m_0, W)` (the mode, and :math:`W` the
  lower-triangular factor of :math:`P^{-1}` for the Hessian :math:`-P` there;
  :func:`jelbo.preconditioned_q` is the same idea). Adam's per-coordinate steps
  are then in posterior standard deviations whatever the model's scales, so one learning rate
  fits every model; ``start="init"`` uses :math:`m_0 =` ``init``, :math:`W = 0.1 I`;
- **gradient**: ``jelbo.ELBO(num_samples=num_draws, kl="mc", grad_estimator="stl")``
  (sticking the landing, Roeder et al. 2017: its variance vanishes as :math:`q` approaches a
  Gaussian posterior);
- **windows**: the steps are grouped in windows of ``window`` steps; a window's ELBO is the
  mean of its steps' estimates, with standard error :math:`\sqrt{\sum_t \mathrm{se}_t^2}/W`
  from their ``Bound.stderr`` (independent draws at every step);
- **step-size rule**: when a window's ELBO exceeds the previous window's by less than the
  standard error of that difference (a plateau at the current step size: the iterates now
  jitter around the optimum instead of approaching it), the learning rate is divided by
  ``decay``;
- **stopping rule**: after ``num_decreases`` decreases, the next plateau stops the fit
  (``converged = True``); ``max_iters`` steps stop it otherwise (``converged = False``);
- **iterate averaging**: ``q`` is built from the parameters averaged over the last window
  (Polyak–Ruppert), which removes most of the jitter of the final steps.

This is a simpler relative of RAABBVI (Welandawe, Andersen, Vehtari & Huggins, "Robust,
automated, and accurate black-box variational inference", 2022), which also decreases the
step size at detected stationarity and stops when a further decrease would not pay; here the
ELBO's standard error plays the role of its stationarity test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jelbo import _checks
from jelbo._typing import Array, ArrayLike
from jelbo.distributions import MultivariateNormalTriL
from jelbo.fit._common import (
    DIAGNOSTIC_DRAWS,
    CountedLogJoint,
    check_draws,
    check_positive,
    check_problem,
    diagnose,
    finish,
    zero_count,
)
from jelbo.fit._result import Fit
from jelbo.fit._start import laplace_start, tril_from_square_root
from jelbo.objectives import ELBO

__all__ = ["advi"]

_B1, _B2, _ADAM_EPS = 0.9, 0.999, 1e-8
_INIT_SCALE = 0.1


class _Params(NamedTuple):
    shift: Array  # a, (D,)
    raw: Array  # B's lower triangle, diagonal through exp, (D, D)


class _Adam(NamedTuple):
    m: _Params
    v: _Params
    t: Array


class _State(NamedTuple):
    params: _Params
    adam: _Adam
    key: Array
    lr: Array
    steps: Array
    evals: Array
    windows: Array
    prev_value: Array
    prev_se: Array
    decreases: Array
    converged: Array
    average: _Params
    last_value: Array
    last_se: Array
    trace: Array  # (max_windows,) window ELBOs, nan where not run


def advi(
    key: Array,
    log_joint: Callable[[Array], Array],
    init: ArrayLike,
    *,
    num_draws: int = 8,
    learning_rate: float = 0.1,
    window: int = 100,
    decay: float = 4.0,
    num_decreases: int = 3,
    max_iters: int = 5000,
    start: str = "laplace",
    start_max_iters: int = 1000,
    start_tol: float = 1e-6,
    num_diagnostic_draws: int = DIAGNOSTIC_DRAWS,
) -> Fit:
    r"""ADVI with a full-rank Gaussian, a step-size rule and a stopping rule of its own.

    See the module docstring for the parameterization and the rules. The whole fit is one
    compiled program (``jax.jit`` it with ``log_joint`` closed over); the same inputs give the
    same ``q`` eager and jitted.

    Args:
        key: PRNG key (the Monte Carlo draws of every step and the diagnostic draws).
        log_joint: :math:`\log p(x, z)` of ONE unconstrained ``(D,)`` vector, differentiable
            (twice for ``start="laplace"``). A step whose ELBO or gradient is not finite is
            skipped (its evaluations still count).
        init: the starting point, a floating ``(D,)`` array (its dtype is the fit's).
        num_draws: Monte Carlo draws per step (static, >= 2: the standard error needs two).
        learning_rate: Adam's initial step size, in posterior standard deviations with the
            Laplace start (> 0).
        window: steps per window of the rules (static, >= 2).
        decay: the factor of each step-size decrease (> 1).
        num_decreases: decreases before the stopping rule may fire (static, >= 0).
        max_iters: the most Adam steps (static); ``converged = False`` when it stops the fit.
            Rounded up to whole windows.
        start: ``"laplace"`` (default) or ``"init"`` (:math:`q_0 = \mathcal N(\text{init},
            0.1^2 I)` in the original coordinates, as ``bench/posteriordb.py``'s recipe).
        start_max_iters, start_tol: the mode search's L-BFGS cap and tolerance (nats).
        num_diagnostic_draws: fresh draws from ``q`` for ``bound`` and ``pareto_k``.

    Returns:
        A :class:`jelbo.fit.Fit` with ``q`` a ``MultivariateNormalTriL``; ``num_evals``
        counts ``num_draws`` per step, the start and the diagnostics; ``num_iters`` the Adam
        steps. ``info``: ``elbo`` and ``elbo_stderr`` (the last window's), ``elbo_trace``
        (every window's ELBO, ``nan`` after the last), ``learning_rate``
        (the final one), ``num_decreases``, ``start_converged``, ``start_hessian_ok``,
        ``num_evals_start``, ``num_evals_algorithm``, ``num_evals_diagnostics``.

    Raises:
        ValueError, TypeError: at trace time, for a bad argument (naming it).

    References:
        Kucukelbir, Tran, Ranganath, Gelman & Blei, "Automatic differentiation variational
        inference", JMLR 18(14), 2017. Roeder, Wu & Duvenaud, "Sticking the landing", NeurIPS
        2017. Welandawe, Andersen, Vehtari & Huggins, "Robust, automated, and accurate
        black-box variational inference", arXiv:2203.15945, 2022.
    """
    z0 = check_problem("advi", key, log_joint, init)
    dim, dtype = z0.shape[0], z0.dtype
    s = check_draws(num_draws, "num_draws", "advi")
    window = check_draws(window, "window", "advi")
    max_windows = -(-check_positive(max_iters, "max_iters", "advi") // window)
    num_decreases = _non_negative(num_decreases, "num_decreases")
    _checks.check_choice(start, "start", ("laplace", "init"))
    _check_float(learning_rate, "learning_rate", 0.0)
    _check_float(decay, "decay", 1.0)
    n_diag = check_draws(num_diagnostic_draws, "num_diagnostic_draws", "advi")

    run_key, diag_key = jax.random.split(key)
    model = CountedLogJoint(log_joint)
    count = zero_count()
    if start == "laplace":
        st, count = laplace_start(model, z0, count, max_iters=start_max_iters, tol=start_tol)
        loc0, scale0 = st.loc, tril_from_square_root(st.scale)
        start_info = {
            "start_converged": st.converged,
            "start_hessian_ok": st.hessian_ok,
            "num_evals_start": count,
        }
    else:
        loc0, scale0 = z0, _INIT_SCALE * jnp.eye(dim, dtype=dtype)
        start_info = {"num_evals_start": count}
    loc0, scale0 = jax.lax.stop_gradient(loc0), jax.lax.stop_gradient(scale0)
    objective = ELBO(num_samples=s, kl="mc", grad_estimator="stl")
    eye = jnp.eye(dim, dtype=dtype)

    def q_of(p: _Params) -> MultivariateNormalTriL:
        b = jnp.tril(p.raw, -1) + jnp.exp(jnp.diagonal(p.raw)) * eye
        return MultivariateNormalTriL(loc0 + scale0 @ p.shift, scale0 @ b)

    def loss(p: _Params, k: Array) -> tuple[Array, Array]:
        bound = objective(k, q_of(p), model._one)
        return -bound.value, bound.stderr

    grad_fn = jax.value_and_grad(loss, has_aux=True)

    def adam_step(carry: tuple, k: Array) -> tuple[tuple, tuple[Array, Array]]:
        p, adam, lr, total = carry
        (neg, se), g = grad_fn(p, k)
        finite = jnp.isfinite(neg) & _all_finite(g)
        t = adam.t + 1
        m = _tmap(lambda m_, g_: _B1 * m_ + (1 - _B1) * g_, adam.m, g)
        v = _tmap(lambda v_, g_: _B2 * v_ + (1 - _B2) * g_ * g_, adam.v, g)
        tf = t.astype(dtype)
        c1, c2 = 1 - _B1**tf, 1 - _B2**tf
        new_p = _tmap(
            lambda p_, m_, v_: p_ - lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + _ADAM_EPS), p, m, v
        )
        p = _tmap(lambda a, b: jnp.where(finite, a, b), new_p, p)
        adam = _Adam(
            _tmap(lambda a, b: jnp.where(finite, a, b), m, adam.m),
            _tmap(lambda a, b: jnp.where(finite, a, b), v, adam.v),
            jnp.where(finite, t, adam.t),
        )
        total = _tmap(lambda a, b: a + b, total, p)
        value = jnp.where(finite, -neg, jnp.nan)
        return (p, adam, lr, total), (value, jnp.where(finite, se, jnp.nan))

    def run_window(st: _State) -> _State:
        key, sub = jax.random.split(st.key)
        keys = jax.random.split(sub, window)
        zero = _tmap(jnp.zeros_like, st.params)
        (p, adam, _, total), (values, ses) = jax.lax.scan(
            adam_step, (st.params, st.adam, st.lr, zero), keys
        )
        ok = jnp.isfinite(values)
        n_ok = jnp.maximum(jnp.sum(ok), 1)
        value = jnp.sum(jnp.where(ok, values, 0.0)) / n_ok
        se = jnp.sqrt(jnp.sum(jnp.where(ok, ses * ses, 0.0))) / n_ok
        average = _tmap(lambda a: a / window, total)
        first = st.windows == 0
        plateau = ~first & (value - st.prev_value < jnp.sqrt(se * se + st.prev_se * st.prev_se))
        converged = plateau & (st.decreases >= num_decreases)
        decrease = plateau & ~converged
        return _State(
            params=p,
            adam=adam,
            key=key,
            lr=jnp.where(decrease, st.lr / decay, st.lr),
            steps=st.steps + window,
            evals=st.evals + window * s,
            windows=st.windows + 1,
            prev_value=value,
            prev_se=se,
            decreases=st.decreases + decrease.astype(st.decreases.dtype),
            converged=converged,
            average=average,
            last_value=value,
            last_se=se,
            trace=st.trace.at[st.windows].set(value),
        )

    def keep_going(st: _State) -> Array:
        return ~st.converged & (st.windows < max_windows)

    params0 = _Params(jnp.zeros(dim, dtype), jnp.zeros((dim, dim), dtype))
    zeros = _tmap(jnp.zeros_like, params0)
    nan = jnp.full((), jnp.nan, dtype)
    state = _State(
        params=params0,
        adam=_Adam(zeros, zeros, jnp.zeros((), jnp.int32)),
        key=run_key,
        lr=jnp.asarray(learning_rate, dtype),
        steps=jnp.zeros((), jnp.int32),
        evals=count,
        windows=jnp.zeros((), jnp.int32),
        prev_value=nan,
        prev_se=nan,
        decreases=jnp.zeros((), jnp.int32),
        converged=jnp.asarray(False),
        average=params0,
        last_value=nan,
        last_se=nan,
        trace=jnp.full((max_windows,), jnp.nan, dtype),
    )
    state = jax.lax.while_loop(keep_going, run_window, state)
    q = q_of(state.average)
    diagnosis = diagnose(diag_key, q, log_joint, num_draws=n_diag)
    info: dict[str, Any] = {
        **start_info,
        "elbo": state.last_value,
        "elbo_stderr": state.last_se,
        "learning_rate": state.lr,
        "num_decreases": state.decreases,
        "elbo_trace": state.trace,
    }
    return finish(
        q,
        converged=state.converged,
        num_evals=state.evals,
        num_iters=state.steps,
        diagnosis=diagnosis,
        info=info,
    )


def _tmap(fn: Callable[..., Array], *trees: _Params) -> Any:
    return jax.tree_util.tree_map(fn, *trees)


def _all_finite(tree: _Params) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _non_negative(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"advi: `{name}` must be a Python int >= 0; got {value!r}.")
    return value


def _check_float(value: Any, name: str, above: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > above:
        raise ValueError(f"advi: `{name}` must be a number > {above}; got {value!r}.")
