r"""Pieces shared by every algorithm of :mod:`jelbo.fit` (internal).

- :func:`check_problem` checks ``(key, log_joint, init)`` at trace time and returns ``init``
  as a floating ``(D,)`` array;
- :class:`CountedLogJoint` wraps ``log_joint`` so that every evaluation is counted: each
  method takes the running count and returns it increased by the number of points it
  evaluated, so the count cannot be forgotten on the way through a loop;
- :func:`diagnose` draws from a fitted ``q`` and returns its ELBO (a :class:`jelbo.Bound`) and
  PSIS :math:`\hat k` from the same draws, with the evaluations that cost;
- :func:`finish` assembles the :class:`jelbo.fit.Fit` with the total evaluation count.

**The evaluation convention.** One evaluation is one call of ``log_joint`` at one point
``z``: its value alone, or its value and gradient together (a reverse-mode gradient costs a
small constant times a value, and every algorithm here needs both at once). A vmapped call
at ``n`` points is ``n`` evaluations. A dense Hessian (``jax.hessian``, ``D`` forward-mode
passes over the gradient) counts as ``D`` evaluations. ``Fit.num_evals`` is the total the
call made, the final diagnostics included; ``Fit.info["num_evals_algorithm"]`` and
``Fit.info["num_evals_diagnostics"]`` give the split. Where points are evaluated in a
batch whose results are partly discarded (e.g. the finished paths of a vmapped loop), the
discarded evaluations count too: ``num_evals`` is what the program computed, what a counter
inside ``log_joint`` would see.

**Diagnostic draws.** Every algorithm takes ``num_diagnostic_draws`` (default
:data:`DIAGNOSTIC_DRAWS` = 256) fresh draws from its final ``q`` for :func:`diagnose`. 256
draws give PSIS a tail of :math:`M = \min(S/5, 3\sqrt S) = 48` weights (the
generalized-Pareto fit of :math:`\hat k` needs a few tens of tail points to tell 0.5 from
0.7; with 100 draws the tail is 20 and the fitted :math:`\hat k` is twice as noisy), an ELBO
standard error of :math:`\mathrm{sd}(\log w)/16`, and cost a small fraction of a fit's
evaluations (6 % of the 4,000 that :mod:`jelbo.fit` aims for on posteriordb models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jelbo import _checks, _stats
from jelbo._typing import Array, ArrayLike
from jelbo.distributions import Distribution, log_prob, sample
from jelbo.fit._result import Fit
from jelbo.objectives import Bound
from jelbo.psis import psis

__all__ = [
    "DIAGNOSTIC_DRAWS",
    "CountedLogJoint",
    "Diagnosis",
    "check_problem",
    "diagnose",
    "finish",
]

DIAGNOSTIC_DRAWS = 256

COUNT_DTYPE = jnp.int32


def check_problem(caller: str, key: Any, log_joint: Any, init: ArrayLike) -> Array:
    """Checks ``(key, log_joint, init)`` at trace time; returns ``init`` as an array.

    Args:
        caller: the public function's name, for the messages (e.g. ``"pathfinder"``).
        key: must be one PRNG key.
        log_joint: must be callable and return a floating scalar for one ``(D,)`` vector.
        init: must be a floating ``(D,)`` array with ``D >= 1``.

    Returns:
        ``init`` as a ``jax.Array`` (its dtype kept: the fit runs in it).

    Raises:
        TypeError: a key that is not one PRNG key, a ``log_joint`` that is not callable or
            returns a non-floating value, an ``init`` that is not floating.
        ValueError: an ``init`` that is not ``(D,)``, a ``log_joint`` whose value is not a
            scalar.
    """
    try:
        _checks.check_key(key)
    except TypeError as err:
        raise TypeError(f"{caller}: {err}") from None
    if not callable(log_joint):
        raise TypeError(
            f"{caller}: `log_joint` must be a function of one (D,) vector returning a scalar; "
            f"got {type(log_joint).__name__}."
        )
    z0 = jnp.asarray(init)
    if z0.ndim != 1 or z0.shape[0] < 1:
        raise ValueError(
            f"{caller}: `init` must be one unconstrained vector of shape (D,) with D >= 1; got "
            f"shape {z0.shape}. To fit from several starts, vmap over them."
        )
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        raise TypeError(
            f"{caller}: `init` must be floating (the fit runs in its dtype); got "
            f"{_checks.describe(z0)}. Pass e.g. jnp.zeros(D) or init.astype(float)."
        )
    out = jax.eval_shape(log_joint, jax.ShapeDtypeStruct(z0.shape, z0.dtype))
    shape = getattr(out, "shape", None)
    if shape != ():
        what = shape if shape is not None else type(out).__name__
        raise ValueError(
            f"{caller}: `log_joint` must return a scalar log p(x, z) for one latent of shape "
            f"{z0.shape}; it returned {what}. Sum over the data."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"{caller}: `log_joint` must return a floating scalar; it returned {out.dtype}."
        )
    return z0


def check_draws(value: Any, name: str, caller: str) -> int:
    """A static number of draws: a Python int >= 2 (a standard error needs two)."""
    try:
        n = _checks.check_positive_int(value, name)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{caller}: {err}") from None
    if n < 2:
        raise ValueError(f"{caller}: `{name}` must be >= 2 (a standard error needs two); got {n}.")
    return n


def zero_count() -> Array:
    """The start of an evaluation count (an ``int32`` scalar)."""
    return jnp.zeros((), COUNT_DTYPE)


class CountedLogJoint:
    """``log_joint`` with its evaluations counted; values in the dtype of the points.

    Every method takes the running count (an int scalar array) and returns it increased by
    the number of points evaluated, so that an algorithm threads the count through its loop
    carry and cannot evaluate the model without counting it. Non-finite values (``NaN``, a
    model evaluated outside where it is defined) are returned as ``-inf`` (zero density):
    a line search rejects such a point and an importance weight is zero.

    Args:
        log_joint: the user's function of one ``(D,)`` vector.
    """

    def __init__(self, log_joint: Callable[[Array], Array]) -> None:
        self.fn = log_joint

    def _one(self, z: Array) -> Array:
        value = jnp.asarray(self.fn(z)).astype(z.dtype)
        return jnp.where(jnp.isnan(value), -jnp.inf, value)

    def value(self, z: Array, count: Array) -> tuple[Array, Array]:
        """``log_joint(z)`` at one point ``z`` ``(D,)``: ``(value, count + 1)``."""
        return self._one(z), count + 1

    def value_and_grad(self, z: Array, count: Array) -> tuple[Array, Array, Array]:
        """Value and gradient at one point: ``(value, grad, count + 1)``."""
        value, grad = jax.value_and_grad(self._one)(z)
        return value, grad, count + 1

    def values(self, zs: Array, count: Array) -> tuple[Array, Array]:
        """Values at the points ``zs`` ``(n, D)`` (vmapped): ``(values (n,), count + n)``."""
        return jax.vmap(self._one)(zs), count + zs.shape[0]

    def values_and_grads(self, zs: Array, count: Array) -> tuple[Array, Array, Array]:
        """Values ``(n,)`` and gradients ``(n, D)`` at ``zs`` ``(n, D)``; ``count + n``."""
        values, grads = jax.vmap(jax.value_and_grad(self._one))(zs)
        return values, grads, count + zs.shape[0]

    def hessian(self, z: Array, count: Array) -> tuple[Array, Array]:
        """The dense Hessian ``(D, D)`` at one point: ``(hessian, count + D)``."""
        return jax.hessian(self._one)(z), count + z.shape[-1]


class Diagnosis(NamedTuple):
    r"""What :func:`diagnose` returns.

    Attributes:
        bound: the ELBO of ``q``: ``value`` :math:`\frac1S\sum_s\log w_s`,
            ``expected_log_likelihood`` :math:`\frac1S\sum_s\log p(x, z_s)`, ``kl``
            :math:`\frac1S\sum_s\log q(z_s)`, ``stderr`` :math:`\mathrm{sd}(\log w)/\sqrt S`
            (the semantics of ``jelbo.ELBO(num_samples=S, kl="mc")`` with ``prior=None``).
        pareto_k: PSIS :math:`\hat k` of the same log weights.
        num_evals: the evaluations of ``log_joint`` made (``S``, a Python int).
        draws: the draws :math:`z_s \sim q`, ``(S, D)``.
        log_weights: the raw log weights :math:`\log p(x, z_s) - \log q(z_s)`, ``(S,)``.
        smoothed_log_weights: the PSIS log weights, normalized (their ``logsumexp`` is 0).
    """

    bound: Bound
    pareto_k: Array
    num_evals: int
    draws: Array
    log_weights: Array
    smoothed_log_weights: Array


def diagnose(
    key: Array, q: Distribution, log_joint: Callable[[Array], Array], *, num_draws: int
) -> Diagnosis:
    r"""The ELBO and PSIS :math:`\hat k` of a fitted ``q`` from the same ``num_draws`` draws.

    With :math:`z_s \sim q` and :math:`\log w_s = \log p(x, z_s) - \log q(z_s)` (a
    non-finite :math:`\log p` counts as :math:`-\infty`), the ELBO estimate is
    :math:`\frac1S\sum_s\log w_s` with standard error :math:`\mathrm{sd}(\log w)/\sqrt S`
    and :math:`\hat k` is the Pareto shape of the weights' tail (:func:`jelbo.psis`; Vehtari,
    Simpson, Gelman, Yao & Gabry, JMLR 2024). No gradient flows through the result.

    Args:
        key: PRNG key for the draws.
        q: a distribution over :math:`\mathbb R^D` with batch shape ``()`` and event ``(D,)``
            (a mixture is fine: nothing is differentiated).
        log_joint: the user's function of one ``(D,)`` vector.
        num_draws: ``S`` (static, >= 2; with ``S <= 20`` :math:`\hat k` is ``inf``).

    Returns:
        A :class:`Diagnosis`.
    """
    q = jax.lax.stop_gradient(q)
    draws = sample(key, q, (num_draws,))
    model = CountedLogJoint(log_joint)
    log_p, _ = model.values(draws, zero_count())
    log_q = log_prob(q, draws).astype(draws.dtype)
    log_w = log_p - log_q
    smoothed, k = psis(log_w)
    bound = Bound(
        value=jnp.mean(log_w),
        expected_log_likelihood=jnp.mean(log_p),
        kl=jnp.mean(log_q),
        stderr=_stats.mean_stderr(log_w),
        ess=None,
    )
    smoothed = smoothed - jax.nn.logsumexp(smoothed)
    return Diagnosis(bound, k, num_draws, draws, log_w, smoothed)


def finish(
    q: Distribution,
    *,
    converged: Array,
    num_evals: Array,
    num_iters: Array,
    diagnosis: Diagnosis,
    info: dict[str, Any],
) -> Fit:
    """The :class:`Fit`: ``num_evals`` (the algorithm's) plus the diagnostics' evaluations.

    ``info`` gains ``num_evals_algorithm`` and ``num_evals_diagnostics`` (the split of
    ``Fit.num_evals``).
    """
    algorithm = jnp.asarray(num_evals, COUNT_DTYPE)
    diagnostics = jnp.asarray(diagnosis.num_evals, COUNT_DTYPE)
    info = {
        **info,
        "num_evals_algorithm": algorithm,
        "num_evals_diagnostics": diagnostics,
    }
    return Fit(
        q=q,
        converged=jnp.asarray(converged, jnp.bool_),
        num_evals=algorithm + diagnostics,
        num_iters=jnp.asarray(num_iters, COUNT_DTYPE),
        bound=diagnosis.bound,
        pareto_k=diagnosis.pareto_k,
        info=info,
    )
