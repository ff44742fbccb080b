r"""A small L-BFGS minimizer that counts its function evaluations (private to ``jelbo.fit``).

Used by :func:`jelbo.fit.dadvi` (the deterministic objective) and for the mode search that
starts :func:`jelbo.fit.advi`. Placeholder until the shared ``jelbo.fit`` L-BFGS lands; its
interface (``minimize_lbfgs(fun, x0, ...) -> LBFGSResult``) is kept small to be swapped.

Algorithm (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 7.4 and 3.5):

- direction :math:`d = -H g` by the two-loop recursion over the last ``memory`` pairs
  :math:`(s, y)` with :math:`H_0 = \gamma I`, :math:`\gamma = s^\top y / y^\top y` of the newest
  pair (the first step is along :math:`-g/\lVert g\rVert`); pairs with
  :math:`s^\top y \le \epsilon\, y^\top y` are skipped;
- backtracking line search from :math:`\alpha = 1`, accepting the Armijo condition
  :math:`f(x+\alpha d) \le f(x) + c_1\alpha g^\top d` or, where :math:`f` is at its rounding
  floor, the approximate Wolfe condition of Hager & Zhang (SIAM J. Optim. 16, 2005):
  :math:`f(x+\alpha d) \le f(x) + \epsilon_f` and :math:`g(x+\alpha d)^\top d \le
  (2\delta-1) g^\top d` (the directional derivative still says "downhill" and ``f`` did not
  rise beyond its rounding); non-finite trial values shrink the step fivefold, others by
  safeguarded quadratic interpolation;
- stopping rule (``converged``): the predicted decrease to the minimum of the local quadratic
  model, :math:`\tfrac12 g^\top H g`, is below ``tol`` nats plus ten float epsilons of
  :math:`|f|` (what ``f`` can resolve), with at least one curvature pair in ``H``. A line
  search that finds no acceptable step, or ``max_iters``, stops it with ``converged = False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jelbo._typing import Array

ValueAndGrad = Callable[[Array], tuple[Array, Array]]

_C1 = 1e-4  # Armijo constant
_DELTA = 0.1  # Hager-Zhang approximate Wolfe delta


class LBFGSResult(NamedTuple):
    """What :func:`minimize_lbfgs` returns (arrays; ``jit``-compatible).

    Attributes:
        x: the last accepted point.
        value: ``fun`` there.
        grad: its gradient there.
        converged: the stopping rule was met (not the iteration cap, not a stalled search).
        stalled: the last line search found no acceptable step.
        num_iters: accepted iterations.
        num_calls: calls of ``fun`` (every line-search trial included).
        decrement: :math:`\\tfrac12 g^\\top H g` at the last point (predicted decrease, nats).
    """

    x: Array
    value: Array
    grad: Array
    converged: Array
    stalled: Array
    num_iters: Array
    num_calls: Array
    decrement: Array


class _State(NamedTuple):
    x: Array
    f: Array
    g: Array
    s: Array  # (memory, n), newest last
    y: Array
    rho: Array  # (memory,), 0 for an empty slot
    iters: Array
    calls: Array
    converged: Array
    stalled: Array
    decrement: Array


def _direction(g: Array, s: Array, y: Array, rho: Array) -> Array:
    """``-H g`` by the two-loop recursion (empty slots have ``rho = 0`` and do nothing)."""
    memory = rho.shape[0]

    def backward(i: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        q, alphas = carry
        j = memory - 1 - i
        a = rho[j] * jnp.dot(s[j], q)
        return q - a * y[j], alphas.at[j].set(a)

    q, alphas = jax.lax.fori_loop(0, memory, backward, (g, jnp.zeros_like(rho)))
    sy, yy = jnp.dot(s[-1], y[-1]), jnp.dot(y[-1], y[-1])
    has_pair = rho[-1] > 0
    gamma = jnp.where(has_pair, sy / jnp.where(has_pair, yy, 1.0), 1.0)
    # No pair yet: a first step of unit length along -g.
    norm = jnp.linalg.norm(g)
    gamma = jnp.where(has_pair, gamma, 1.0 / jnp.where(norm > 0, norm, 1.0))
    r = gamma * q

    def forward(j: int, r: Array) -> Array:
        b = rho[j] * jnp.dot(y[j], r)
        return r + s[j] * (alphas[j] - b)

    r = jax.lax.fori_loop(0, memory, forward, r)
    return -r


def minimize_lbfgs(
    fun: ValueAndGrad,
    x0: Array,
    *,
    max_iters: int,
    tol: float,
    memory: int = 10,
    max_linesearch: int = 30,
) -> LBFGSResult:
    """Minimizes ``fun`` (``x -> (value, grad)``) from ``x0`` by L-BFGS; see the module doc.

    ``fun`` may return non-finite values (treated as "too far"); ``x0`` must give finite ones
    (else the result is ``x0`` with ``stalled = True``).
    """
    dtype = x0.dtype
    n = x0.shape[0]
    eps = jnp.finfo(dtype).eps
    f0, g0 = fun(x0)
    finite0 = jnp.isfinite(f0) & jnp.all(jnp.isfinite(g0))

    def tolerance(f: Array) -> Array:
        return tol + 10.0 * eps * jnp.abs(f)

    def step(st: _State) -> _State:
        d = _direction(st.g, st.s, st.y, st.rho)
        slope = jnp.dot(st.g, d)
        # Not a descent direction (bad curvature memory): restart from steepest descent.
        bad = ~(slope < 0) | ~jnp.all(jnp.isfinite(d))
        gnorm = jnp.linalg.norm(st.g)
        d = jnp.where(bad, -st.g / jnp.where(gnorm > 0, gnorm, 1.0), d)
        slope = jnp.where(bad, -gnorm, slope)
        rho = jnp.where(bad, jnp.zeros_like(st.rho), st.rho)
        f_floor = 10.0 * eps * jnp.abs(st.f)

        def search_cond(c: tuple) -> Array:
            _, _, _, _, accepted, tries = c
            return ~accepted & (tries < max_linesearch)

        def search_body(c: tuple) -> tuple:
            alpha, _, _, _, _, tries = c
            f_new, g_new = fun(st.x + alpha * d)
            finite = jnp.isfinite(f_new) & jnp.all(jnp.isfinite(g_new))
            armijo = f_new <= st.f + _C1 * alpha * slope
            approx_wolfe = (f_new <= st.f + f_floor) & (
                jnp.dot(g_new, d) <= (2 * _DELTA - 1) * slope
            )
            accepted = finite & (armijo | approx_wolfe)
            # Safeguarded quadratic interpolation of f along d; fivefold shrink if not finite.
            curvature = f_new - st.f - slope * alpha
            interp = -slope * alpha * alpha / (2.0 * jnp.where(curvature > 0, curvature, 1.0))
            interp = jnp.where(curvature > 0, interp, 0.5 * alpha)
            shrunk = jnp.clip(interp, 0.1 * alpha, 0.5 * alpha)
            next_alpha = jnp.where(finite, shrunk, 0.2 * alpha)
            return (
                jnp.where(accepted, alpha, next_alpha),
                f_new,
                g_new,
                alpha,
                accepted,
                tries + 1,
            )

        init = (
            jnp.asarray(1.0, dtype),
            st.f,
            st.g,
            jnp.asarray(0.0, dtype),
            jnp.asarray(False),
            jnp.asarray(0, jnp.int32),
        )
        searched = jax.lax.while_loop(search_cond, search_body, init)
        _, f_new, g_new, alpha = searched[:4]
        accepted, tries = jnp.asarray(searched[4]), jnp.asarray(searched[5])
        x_new = jnp.where(accepted, st.x + alpha * d, st.x)
        f_new = jnp.where(accepted, f_new, st.f)
        g_new = jnp.where(accepted, g_new, st.g)
        s_new, y_new = x_new - st.x, g_new - st.g
        sy = jnp.dot(s_new, y_new)
        keep = accepted & (sy > eps * jnp.dot(y_new, y_new))
        s_mem = jnp.where(keep, jnp.roll(st.s, -1, 0).at[-1].set(s_new), st.s)
        y_mem = jnp.where(keep, jnp.roll(st.y, -1, 0).at[-1].set(y_new), st.y)
        rho_mem = jnp.where(keep, jnp.roll(rho, -1).at[-1].set(1.0 / jnp.where(keep, sy, 1.0)), rho)
        dec = -0.5 * jnp.dot(g_new, _direction(g_new, s_mem, y_mem, rho_mem))
        converged = (rho_mem[-1] > 0) & (dec <= tolerance(f_new)) | (jnp.max(jnp.abs(g_new)) == 0)
        return _State(
            x_new,
            f_new,
            g_new,
            s_mem,
            y_mem,
            rho_mem,
            st.iters + accepted.astype(st.iters.dtype),
            st.calls + tries,
            converged,
            ~accepted,
            dec,
        )

    def keep_going(st: _State) -> Array:
        return ~st.converged & ~st.stalled & (st.iters < max_iters)

    zeros = jnp.zeros((memory, n), dtype)
    init = _State(
        x0,
        f0,
        g0,
        zeros,
        zeros,
        jnp.zeros((memory,), dtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(1, jnp.int32),
        jnp.max(jnp.abs(g0)) == 0,
        ~finite0,
        jnp.asarray(jnp.inf, dtype),
    )
    st = jax.lax.while_loop(keep_going, step, init)
    return LBFGSResult(st.x, st.f, st.g, st.converged, st.stalled, st.iters, st.calls, st.decrement)
