r"""L-BFGS with a counted line search and its inverse-Hessian factors (internal).

The internal API, for :mod:`jelbo.fit`'s algorithms (Pathfinder, deterministic ADVI, the
Laplace approximation); everything works on a flat vector ``x`` of shape ``(D,)`` and
*minimizes* ``f``:

- :func:`init` ``(value_and_grad, x0, *, history)`` -> :class:`State`: one evaluation at
  ``x0`` and the first search direction :math:`-\nabla f`;
- :func:`step` ``(value_and_grad, state, options)`` -> ``(state, accepted)``: **exactly one**
  evaluation of ``value_and_grad`` (one line-search trial). When the trial is accepted the
  iterate moves, the history and the diagonal estimate are updated, the next direction is
  computed and the stopping rules are checked; ``state.done`` says when to stop. A loop of
  ``step`` calls is a complete L-BFGS run, and an algorithm that needs something at every
  iterate (Pathfinder's ELBO) does it between the calls, where ``accepted`` is true;
- :func:`minimize` ``(value_and_grad, x0, options)`` -> :class:`Result`: that loop in a
  ``lax.while_loop``;
- :func:`inverse_hessian_apply` ``(state, v)``: :math:`Hv` for the current inverse-Hessian
  estimate :math:`H`; :func:`inverse_hessian_factors` ``(state)``: its factors
  :math:`(\alpha, \beta, \gamma)` with :math:`H = \mathrm{diag}(\alpha) + \beta\gamma\beta^\top`.

Counting: ``state.num_evals`` is the number of calls of ``value_and_grad`` (value and
gradient together count once), line-search trials included; a caller whose objective costs
several model evaluations per call (e.g. a Monte Carlo objective over ``N`` fixed draws)
multiplies.

**The inverse-Hessian estimate** is the compact form of Byrd, Nocedal & Schnabel (Math.
Prog. 63, 1994) with the last ``history`` pairs :math:`s_i = x_{i+1} - x_i`,
:math:`y_i = \nabla f_{i+1} - \nabla f_i` (oldest first; a pair is kept only if
:math:`s^\top y > \epsilon\lVert s\rVert\lVert y\rVert`) and the *diagonal* initial matrix
:math:`\mathrm{diag}(\alpha)` of Zhang, Carpenter, Gelman & Vehtari (Pathfinder, JMLR 2022,
Algorithms 3–4):

.. math::
    H = \mathrm{diag}(\alpha) + \beta\gamma\beta^\top,\quad
    \beta = [\mathrm{diag}(\alpha)Y,\ S],\quad
    \gamma = \begin{pmatrix} 0 & -R^{-1}\\ -R^{-\top} & R^{-\top}(E + Y^\top
    \mathrm{diag}(\alpha)Y)R^{-1}\end{pmatrix},

:math:`R` the upper triangle of :math:`S^\top Y`, :math:`E` its diagonal. :math:`\alpha`
starts at 1 and is updated with each kept pair to the inverse of the diagonal of the BFGS
update of the Hessian estimate :math:`\tau\,\mathrm{diag}(1/\alpha)` with
:math:`\tau = a/b` (Gilbert & Lemaréchal, Math. Prog. 45, 1989):

.. math::
    \frac1{\alpha'_i} = \frac{a}{b\,\alpha_i} + \frac{y_i^2}{b}
        - \frac{a\,s_i^2}{b\,c\,\alpha_i^2},\qquad
    a = y^\top\mathrm{diag}(\alpha)y,\ b = y^\top s,\ c = s^\top\mathrm{diag}(\alpha)^{-1}s.

The search direction is :math:`p = -H\nabla f`; so the same :math:`H` that Pathfinder uses
as a covariance steers the optimizer, and :math:`\lambda^2 = \nabla f^\top H\nabla f =
-\nabla f^\top p` is the quasi-Newton decrement (twice the decrease the quadratic model
predicts to its minimum; for :math:`f = -\log p` it is the squared distance to the mode in
units of the posterior sd that :math:`H` implies).

**Line search** (weak Wolfe: :math:`f(x+tp) \le f + c_1 t\,\nabla f^\top p` and
:math:`\nabla f(x+tp)^\top p \ge c_2\nabla f^\top p`, which guarantee :math:`s^\top y > 0`):
trial steps start at 1 (at the first iteration at :math:`1/\lVert\nabla f\rVert`, a unit
step), are multiplied by :math:`4^{2^k}` after the :math:`k`-th trial that was too short (4,
16, 256, ...: a diagonal estimate off by orders of magnitude, as after a first step from a
point where :math:`f` is astronomically large, is corrected in a few trials), and once a
step fails the sufficient-decrease test are chosen in the bracket by cubic (else quadratic)
interpolation, safeguarded to the middle 80 % of the bracket (to 10 % of it from the good
end after a non-finite value; geometric bisection while the bracket spans more than a
factor 16). After ``max_linesearch`` trials the best point with a strict decrease that
passed the sufficient-decrease test is taken if there is one; otherwise the run stops.

**Stopping rules** (checked at every accepted iterate). The decrement is only as good as
:math:`H`: directions not yet explored carry the curvature of the explored ones (the
diagonal estimate is scaled to it), and a point far from the minimum can look converged
(on a logistic regression with an uncentred covariate, :math:`\lambda = 8\cdot10^{-6}`
after 6 iterations, 1.8 posterior sds from the mode). So a rule counts only when the
quadratic model has just been *confirmed*: the unit quasi-Newton step (:math:`t = 1`) was
accepted at its first trial.

- *gradient*: :math:`\lambda \le` ``gtol`` (scale-free: the same for any units of ``x``)
  at two consecutive iterates, the step between them confirmed (or a gradient exactly 0);
- *relative objective*: a confirmed step decreased :math:`f` by at most ``ftol``
  :math:`\max(1, |f|, |f_{\rm prev}|)` (no progress at the objective's resolution);
- *line search at resolution*: the line search failed after a confirmed step and
  :math:`\lambda^2/2 \le` ``ftol`` :math:`\max(1, |f|)` (the model predicts no decrease
  the objective could resolve);

any of them is convergence (``converged = True``). With ``Options(confirm=False)`` the first
rule needs only one kept pair and the third no confirmed step (for whitened objectives).
``max_iters`` iterations, a line-search failure otherwise, or a non-finite start stop without
it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jelbo._typing import Array

__all__ = [
    "Options",
    "Result",
    "State",
    "Status",
    "init",
    "inverse_hessian_apply",
    "inverse_hessian_factors",
    "minimize",
    "step",
]

ValueAndGrad = Callable[[Array], tuple[Array, Array]]


class Status:
    """Why a run stopped (``State.status``; 0 while running)."""

    RUNNING = 0
    GRADIENT = 1  # converged: decrement <= gtol
    OBJECTIVE = 2  # converged: relative decrease <= ftol
    RESOLUTION = 3  # converged: line search failed where the model predicts no resolvable decrease
    MAX_ITERS = 4
    LINESEARCH_FAILED = 5
    NONFINITE = 6  # f or its gradient is not finite at the start

    CONVERGED = (GRADIENT, OBJECTIVE, RESOLUTION)


class Options(NamedTuple):
    """L-BFGS options (all static Python numbers).

    Attributes:
        max_iters: the most iterations (accepted steps).
        history: the number of :math:`(s, y)` pairs kept.
        gtol: stop when the decrement :math:`\\sqrt{\\nabla f^\\top H\\nabla f} \\le` gtol.
        ftol: the relative-objective tolerance; ``None``: 100 times the dtype's machine
            epsilon (2.2e-14 in float64, 1.2e-5 in float32).
        max_linesearch: the most trials per iteration.
        c1, c2: the weak Wolfe constants.
        confirm: the gradient and resolution rules count only after a confirmed step (the
            unit quasi-Newton step accepted at its first trial; module docstring). ``False``:
            the decrement rule holds as soon as :math:`H` has one pair, and the resolution
            rule after any step: for an objective whose coordinates are already whitened
            (:math:`H \approx I` from the start, e.g. DADVI after the Laplace start), where
            the unconfirmed estimate is trustworthy and the objective sits at its resolution
            right after the first steps.
    """

    max_iters: int = 1000
    history: int = 6
    gtol: float = 1e-3
    ftol: float | None = None
    max_linesearch: int = 30
    c1: float = 1e-4
    c2: float = 0.9
    confirm: bool = True


class State(NamedTuple):
    """The L-BFGS state of one run (a pytree; vmap it for several runs).

    Attributes:
        x, f, g: the current iterate, its objective and gradient.
        s, y: ``(history, D)`` the kept pairs, oldest first (zero rows where ``valid`` is
            false).
        valid: ``(history,)`` which rows of ``s``, ``y`` hold a pair.
        alpha: ``(D,)`` the diagonal of the initial inverse-Hessian estimate.
        direction: the search direction :math:`p = -H\\nabla f`.
        decrement: :math:`\\lambda^2 = \\nabla f^\\top H\\nabla f` at ``x``.
        t: the next trial step length; t_lo, f_lo, d_lo, g_lo: the best sufficient-decrease
            trial so far (``t_lo = 0`` is ``x`` itself); t_hi, f_hi, d_hi: the upper end of
            the bracket (``t_hi = inf`` before one is found); ls_evals: trials in this
            line search.
        confirmed: the last accepted step was the unit quasi-Newton step, accepted at its
            first trial; small: the decrement at ``x`` was below ``gtol`` when accepted.
        num_iters: accepted steps; num_evals: calls of ``value_and_grad``.
        done, status: whether the run has stopped and why (:class:`Status`).
    """

    x: Array
    f: Array
    g: Array
    s: Array
    y: Array
    valid: Array
    alpha: Array
    direction: Array
    decrement: Array
    t: Array
    t_lo: Array
    f_lo: Array
    d_lo: Array
    g_lo: Array
    t_hi: Array
    f_hi: Array
    d_hi: Array
    ls_evals: Array
    confirmed: Array
    small: Array
    num_iters: Array
    num_evals: Array
    done: Array
    status: Array


class Result(NamedTuple):
    """What :func:`minimize` returns.

    Attributes:
        x, value, grad: the last accepted iterate, :math:`f` and :math:`\\nabla f` there.
        converged: a stopping rule was met (:class:`Status`).
        status: :class:`Status` code.
        num_iters: accepted steps; num_evals: calls of ``value_and_grad``.
        decrement: :math:`\\sqrt{\\nabla f^\\top H\\nabla f}` at ``x``.
        state: the final :class:`State` (history, diagonal estimate).
    """

    x: Array
    value: Array
    grad: Array
    converged: Array
    status: Array
    num_iters: Array
    num_evals: Array
    decrement: Array
    state: State


def _ftol(options: Options, dtype: jnp.dtype) -> float:
    if options.ftol is not None:
        return float(options.ftol)
    return 100.0 * float(jnp.finfo(dtype).eps)


def _evaluate(value_and_grad: ValueAndGrad, x: Array) -> tuple[Array, Array]:
    """``f`` and ``∇f`` in ``x``'s dtype, with a non-finite value as ``+inf``."""
    f, g = value_and_grad(x)
    f = jnp.asarray(f).astype(x.dtype)
    g = jnp.asarray(g).astype(x.dtype)
    return jnp.where(jnp.isfinite(f), f, jnp.inf), g


def init(value_and_grad: ValueAndGrad, x0: Array, *, history: int = 6) -> State:
    """The state at ``x0`` after one evaluation (``num_evals = 1``)."""
    dtype = x0.dtype
    dim = x0.shape[-1]
    f, g = _evaluate(value_and_grad, x0)
    finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g))
    zero = jnp.zeros((), dtype)
    g_norm = jnp.linalg.norm(g)
    t0 = jnp.where(g_norm > 0, 1.0 / g_norm, 1.0).astype(dtype)
    return State(
        x=x0,
        f=f,
        g=g,
        s=jnp.zeros((history, dim), dtype),
        y=jnp.zeros((history, dim), dtype),
        valid=jnp.zeros((history,), bool),
        alpha=jnp.ones((dim,), dtype),
        direction=-g,
        decrement=g_norm * g_norm,
        t=t0,
        t_lo=zero,
        f_lo=f,
        d_lo=-g_norm * g_norm,
        g_lo=g,
        t_hi=jnp.asarray(jnp.inf, dtype),
        f_hi=jnp.asarray(jnp.inf, dtype),
        d_hi=jnp.asarray(jnp.nan, dtype),
        ls_evals=jnp.zeros((), jnp.int32),
        confirmed=jnp.asarray(False),
        small=g_norm * g_norm <= 0.0,
        num_iters=jnp.zeros((), jnp.int32),
        num_evals=jnp.ones((), jnp.int32),
        done=~finite,
        status=jnp.where(finite, Status.RUNNING, Status.NONFINITE).astype(jnp.int32),
    )


# --- the inverse-Hessian estimate -----------------------------------------------------------


def _compact_parts(s: Array, y: Array, valid: Array, alpha: Array) -> tuple[Array, Array]:
    """``(R, M)``: ``R`` the upper triangle of ``SᵀY`` (1 on the diagonal of unused rows, so
    that it is invertible) and ``M = E + Yᵀ diag(α) Y``, both ``(m, m)``."""
    sy = s @ y.T  # (m, m): s_i · y_j
    m = s.shape[0]
    eye = jnp.eye(m, dtype=s.dtype)
    r = jnp.triu(sy) + jnp.where(valid, 0.0, 1.0).astype(s.dtype) * eye
    e = jnp.diagonal(sy) * eye
    return r, e + (y * alpha) @ y.T


def inverse_hessian_apply(state: State, v: Array) -> Array:
    r""":math:`Hv` with :math:`H = \mathrm{diag}(\alpha) + \beta\gamma\beta^\top` (module
    docstring), by two ``(m, m)`` triangular solves: :math:`O(Dm + m^2)`."""
    return _apply(state.s, state.y, state.valid, state.alpha, v)


def _apply(s: Array, y: Array, valid: Array, alpha: Array, v: Array) -> Array:
    r, m = _compact_parts(s, y, valid, alpha)
    u1 = y @ (alpha * v)  # (αY)ᵀ v
    u2 = s @ v  # Sᵀ v
    w = solve_triangular(r, u2, lower=False)  # R⁻¹ Sᵀv
    second = solve_triangular(r.T, m @ w - u1, lower=True)
    return alpha * v - alpha * (y.T @ w) + s.T @ second


def inverse_hessian_factors(state: State) -> tuple[Array, Array, Array]:
    r"""``(alpha (D,), beta (D, 2m), gamma (2m, 2m))`` with
    :math:`H = \mathrm{diag}(\alpha) + \beta\gamma\beta^\top` (Pathfinder's Algorithm 4)."""
    s, y, valid, alpha = state.s, state.y, state.valid, state.alpha
    r, m = _compact_parts(s, y, valid, alpha)
    eye = jnp.eye(r.shape[0], dtype=r.dtype)
    r_inv = solve_triangular(r, eye, lower=False)
    zero = jnp.zeros_like(r)
    gamma = jnp.block([[zero, -r_inv], [-r_inv.T, r_inv.T @ m @ r_inv]])
    beta = jnp.concatenate([(y * alpha).T, s.T], axis=1)
    return alpha, beta, gamma


def _update_alpha(alpha: Array, s: Array, y: Array) -> Array:
    """The diagonal update of the module docstring (kept when it is not positive)."""
    a = jnp.sum(y * alpha * y)
    b = jnp.sum(y * s)
    c = jnp.sum(s * s / alpha)
    inv = a / (b * alpha) + y * y / b - a * s * s / (b * c * alpha * alpha)
    new = 1.0 / inv
    ok = jnp.all(jnp.isfinite(new) & (new > 0))
    return jnp.where(ok, new, alpha)


# --- one line-search trial ------------------------------------------------------------------


def _interpolate(state: State) -> Array:
    """The next trial inside the bracket ``[t_lo, t_hi]`` (cubic, else quadratic, else
    bisection; 10 % from ``t_lo`` after a non-finite value), safeguarded."""
    a, fa, da = state.t_lo, state.f_lo, state.d_lo
    b, fb, db = state.t_hi, state.f_hi, state.d_hi
    width = b - a
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    d2 = jnp.sqrt(jnp.where(disc >= 0, disc, jnp.nan))
    cubic = b - width * (db + d2 - d1) / (db - da + 2.0 * d2)
    denom = 2.0 * (fb - fa - da * width)
    quad = a - da * width * width / denom
    cand = jnp.where(jnp.isfinite(quad), quad, a + 0.5 * width)
    cand = jnp.where(jnp.isfinite(cubic), cubic, cand)
    cand = jnp.where(jnp.isfinite(fb), cand, a + 0.1 * width)
    cand = jnp.clip(cand, a + 0.1 * width, b - 0.1 * width)
    # A bracket spanning orders of magnitude (after the fast extrapolation) is bisected
    # geometrically.
    return jnp.where((a > 0) & (b > 16.0 * a), jnp.sqrt(a * b), cand)


def step(value_and_grad: ValueAndGrad, state: State, options: Options) -> tuple[State, Array]:
    """One line-search trial (exactly one evaluation); returns ``(state, accepted)``.

    A stopped state (``state.done``) is returned unchanged with ``accepted = False`` (the
    evaluation is still made: under ``vmap`` every lane computes; callers that count what
    was computed count it).
    """
    dtype = state.x.dtype
    ftol = _ftol(options, dtype)
    p = state.direction
    d0 = jnp.sum(state.g * p)
    t = state.t
    f_t, g_t = _evaluate(value_and_grad, state.x + t * p)
    d_t = jnp.sum(g_t * p)
    finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
    armijo = finite & (f_t <= state.f + options.c1 * t * d0)
    curvature = d_t >= options.c2 * d0
    wolfe = armijo & curvature
    ls_evals = state.ls_evals + 1

    # --- the bracket: a trial without sufficient decrease is its upper end, else its lower
    too_long = ~armijo
    t_hi = jnp.where(too_long, t, state.t_hi)
    f_hi = jnp.where(too_long, jnp.where(finite, f_t, jnp.inf), state.f_hi)
    d_hi = jnp.where(too_long, d_t, state.d_hi)
    t_lo = jnp.where(too_long, state.t_lo, t)
    f_lo = jnp.where(too_long, state.f_lo, f_t)
    d_lo = jnp.where(too_long, state.d_lo, d_t)
    g_lo = jnp.where(too_long, state.g_lo, g_t)
    bracket = state._replace(
        t_lo=t_lo, f_lo=f_lo, d_lo=d_lo, g_lo=g_lo, t_hi=t_hi, f_hi=f_hi, d_hi=d_hi
    )
    # Too short: grow by 4, 16, 256, 65536, ... (4^(2^k) after k extrapolations), so that a
    # diagonal estimate off by dozens of orders of magnitude (a start where log p is
    # astronomically wrong) is corrected within a few trials.
    extrapolations = jnp.minimum(ls_evals - 1, 5).astype(dtype)
    next_t = jnp.where(jnp.isfinite(t_hi), _interpolate(bracket), t * 4.0 ** (2.0**extrapolations))
    # When the trials are used up, the best sufficient-decrease point found is taken.
    exhausted = ls_evals >= options.max_linesearch
    fallback = exhausted & ~wolfe & (t_lo > 0) & (f_lo < state.f)
    accepted = (wolfe | fallback) & ~state.done
    failed = exhausted & ~wolfe & ~fallback & ~state.done

    # --- the accepted point
    x_new = state.x + jnp.where(wolfe, t, t_lo) * p
    f_new = jnp.where(wolfe, f_t, f_lo)
    g_new = jnp.where(wolfe, g_t, g_lo)
    s_new = x_new - state.x
    y_new = g_new - state.g
    sy = jnp.sum(s_new * y_new)
    eps = jnp.finfo(dtype).eps
    keep = sy > eps * jnp.linalg.norm(s_new) * jnp.linalg.norm(y_new)
    shifted_s = jnp.concatenate([state.s[1:], s_new[None]], axis=0)
    shifted_y = jnp.concatenate([state.y[1:], y_new[None]], axis=0)
    shifted_valid = jnp.concatenate([state.valid[1:], jnp.ones((1,), bool)])
    s_hist = jnp.where(keep, shifted_s, state.s)
    y_hist = jnp.where(keep, shifted_y, state.y)
    valid = jnp.where(keep, shifted_valid, state.valid)
    alpha = jnp.where(keep, _update_alpha(state.alpha, s_new, y_new), state.alpha)
    direction = -_apply(s_hist, y_hist, valid, alpha, g_new)
    decrement = -jnp.sum(g_new * direction)
    # A direction that is not a descent one (rounding) restarts from the diagonal estimate.
    restart = ~(decrement > 0)
    direction = jnp.where(restart, -alpha * g_new, direction)
    decrement = jnp.where(restart, jnp.sum(alpha * g_new * g_new), decrement)
    s_hist = jnp.where(restart, 0.0, s_hist)
    y_hist = jnp.where(restart, 0.0, y_hist)
    valid = jnp.where(restart, False, valid)

    num_iters = state.num_iters + 1
    scale = jnp.maximum(jnp.maximum(jnp.abs(f_new), jnp.abs(state.f)), 1.0)
    # The decrement is only as good as H: directions not yet explored carry the curvature
    # of the explored ones (the diagonal estimate is scaled to it), and a point far from
    # the minimum can look converged. A rule counts only when the quadratic model was just
    # confirmed: the unit quasi-Newton step was accepted at its first trial.
    confirmed = wolfe & (ls_evals == 1) & (t == 1)
    small = decrement <= options.gtol**2
    stationary = jnp.all(g_new == 0)
    if options.confirm:
        by_gradient = stationary | (confirmed & small & state.small)
    else:
        by_gradient = stationary | (small & jnp.any(valid))
    by_objective = confirmed & (state.f - f_new <= ftol * scale)
    by_iters = num_iters >= options.max_iters
    status_new = jnp.where(
        by_gradient,
        Status.GRADIENT,
        jnp.where(
            by_objective,
            Status.OBJECTIVE,
            jnp.where(by_iters, Status.MAX_ITERS, Status.RUNNING),
        ),
    )
    at_resolution = (state.confirmed | (not options.confirm)) & (
        0.5 * state.decrement <= ftol * jnp.maximum(jnp.abs(state.f), 1.0)
    )
    status_failed = jnp.where(at_resolution, Status.RESOLUTION, Status.LINESEARCH_FAILED)
    one = jnp.ones((), dtype)
    zero = jnp.zeros((), dtype)
    after_accept = State(
        x=x_new,
        f=f_new,
        g=g_new,
        s=s_hist,
        y=y_hist,
        valid=valid,
        alpha=alpha,
        direction=direction,
        decrement=decrement,
        t=one,
        t_lo=zero,
        f_lo=f_new,
        d_lo=-decrement,
        g_lo=g_new,
        t_hi=jnp.asarray(jnp.inf, dtype),
        f_hi=jnp.asarray(jnp.inf, dtype),
        d_hi=jnp.asarray(jnp.nan, dtype),
        ls_evals=jnp.zeros((), jnp.int32),
        confirmed=confirmed,
        small=small,
        num_iters=num_iters,
        num_evals=state.num_evals + 1,
        done=status_new != Status.RUNNING,
        status=status_new.astype(jnp.int32),
    )
    searching = bracket._replace(
        t=next_t.astype(dtype),
        ls_evals=ls_evals,
        num_evals=state.num_evals + 1,
        done=failed,
        status=jnp.where(failed, status_failed, Status.RUNNING).astype(jnp.int32),
    )
    new = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), after_accept, searching)
    new = jax.tree.map(lambda a, b: jnp.where(state.done, a, b), state, new)
    return new, accepted


def minimize(value_and_grad: ValueAndGrad, x0: Array, options: Options | None = None) -> Result:
    """L-BFGS from ``x0`` until a stopping rule (module docstring), in a ``lax.while_loop``.

    Args:
        value_and_grad: ``x -> (f(x), ∇f(x))`` for ``x`` of ``x0``'s shape ``(D,)``.
        x0: the start, ``(D,)`` floating (the run is in its dtype).
        options: :class:`Options` (default ``Options()``).

    Returns:
        A :class:`Result`; ``num_evals`` counts every call of ``value_and_grad``.
    """
    options = Options() if options is None else options
    state = init(value_and_grad, x0, history=options.history)
    state = jax.lax.while_loop(
        lambda st: ~st.done, lambda st: step(value_and_grad, st, options)[0], state
    )
    return Result(
        x=state.x,
        value=state.f,
        grad=state.g,
        converged=converged(state),
        status=state.status,
        num_iters=state.num_iters,
        num_evals=state.num_evals,
        decrement=jnp.sqrt(jnp.maximum(state.decrement, 0.0)),
        state=state,
    )


def converged(state: State) -> Array:
    """Whether ``state`` stopped by a convergence rule."""
    return jnp.isin(state.status, jnp.asarray(Status.CONVERGED))
