r"""Score-function (REINFORCE) gradient estimators, written as surrogate objectives.

When :math:`z \sim q_\phi` cannot be reparameterized (``Bernoulli``, ``Categorical``), the
gradient of an expectation goes through the density instead of the sample:

.. math::
    \nabla_\phi \mathbb E_{q_\phi}[f_\phi(z)]
    = \mathbb E_{q_\phi}\big[f_\phi(z)\,\nabla_\phi \log q_\phi(z) + \nabla_\phi f_\phi(z)\big].

Every function here returns a *surrogate*: an array whose **value** is the bound and whose
**gradient** (under ``jax.grad``) is the estimator. The building block is

.. math::
    \mathrm{score\_term}(f, \log q) = \bot(f)\,\big(\log q - \bot(\log q)\big),

with :math:`\bot` the stop-gradient: its value is exactly 0 and its gradient is
:math:`f\,\nabla_\phi\log q`. The inputs are per-sample terms of shape ``(*batch, S)``
computed on samples ``z`` that are themselves behind a stop-gradient, so that the only
path from :math:`\phi` to the result is :math:`\log q(z)` (for a reparameterizable ``q``
this discards the pathwise gradient on purpose).

Control variates. :math:`\mathbb E_q[\nabla_\phi\log q] = 0`, so any :math:`b` that does
not depend on :math:`z_s` may be subtracted from :math:`f(z_s)` without bias:

- leave-one-out (:func:`leave_one_out_mean`): with :math:`S \ge 2` samples,
  :math:`b_s = \frac1{S-1}\sum_{j\ne s} f(z_j)` depends only on the other samples, which are
  independent of :math:`z_s`, so the estimator stays unbiased (Kool et al. 2019);
- a user baseline :math:`c(x)` (NVIL, Mnih & Gregor 2014), e.g. a learned scalar or a small
  network of the datapoint, for the single-sample case;
- VIMCO (Mnih & Rezende 2016) for the importance-weighted bound
  (:func:`vimco_leave_one_out_bounds`, :func:`iwae_surrogate`).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import jax
import jax.numpy as jnp

from jelbo import _checks
from jelbo._typing import Array, ArrayLike

__all__ = [
    "elbo_surrogate",
    "iwae_surrogate",
    "leave_one_out_mean",
    "score_term",
    "vimco_leave_one_out_bounds",
]

_sg = jax.lax.stop_gradient


def score_term(signal: Array, log_q: Array) -> Array:
    r"""Per-sample :math:`\bot(f)(\log q - \bot(\log q))`: value 0, gradient :math:`f\nabla\log q`.

    Args:
        signal: the learning signal :math:`f(z_s)` (minus any baseline); its gradient is
            stopped.
        log_q: :math:`\log q_\phi(z_s)`, differentiable in :math:`\phi` (``z_s`` must not be).

    Returns:
        An array of zeros with the broadcast shape, carrying the score-function gradient.
    """
    return _sg(signal) * (log_q - _sg(log_q))


def leave_one_out_mean(values: Array) -> Array:
    r"""Leave-one-out means over the last (sample) axis: :math:`\frac1{S-1}\sum_{j\ne s} v_j`.

    Args:
        values: array ``(*batch, S)`` with :math:`S \ge 2`.

    Returns:
        Array ``(*batch, S)`` whose entry ``s`` is the mean of the other ``S - 1`` entries.

    Raises:
        ValueError: if there are fewer than 2 samples.
    """
    s = values.shape[-1]
    if s < 2:
        raise ValueError(f"A leave-one-out baseline needs at least 2 samples; got {s}.")
    return (jnp.sum(values, axis=-1, keepdims=True) - values) / (s - 1)


def check_baseline(baseline: ArrayLike, batch_shape: tuple[int, ...]) -> Array:
    """Deprecated since 0.2 (argument checks are internal): ``baseline`` broadcast to
    ``batch_shape``, or ``ValueError`` naming both shapes."""
    warnings.warn(
        "jelbo.score.check_baseline is deprecated and will be removed; "
        "jelbo.ELBO(grad_estimator='score', baseline=...) checks the baseline itself.",
        DeprecationWarning,
        stacklevel=2,
    )
    return _broadcast_baseline(baseline, batch_shape)


def _broadcast_baseline(baseline: ArrayLike, batch_shape: tuple[int, ...]) -> Array:
    _checks.check_broadcasts_to(jnp.shape(baseline), "baseline", batch_shape, "`q`'s batch shape")
    return jnp.broadcast_to(jnp.asarray(baseline), batch_shape)


def elbo_surrogate(
    log_lik: Array,
    log_q: Array,
    log_p: Array,
    *,
    kl: Array | None,
    beta: ArrayLike = 1.0,
    baseline: ArrayLike | None = None,
) -> tuple[Array, Array, Array]:
    r"""Score-function ELBO surrogate from per-sample terms; ``(elbo, expected_log_lik, kl)``.

    With samples :math:`z_1..z_S \sim q` (stop-gradiented) the learning signal is

    .. math::
        f_s = \log p(x|z_s) \quad (\text{analytic KL}), \qquad
        f_s = \log p(x|z_s) - \beta\,(\log q(z_s) - \log p(z_s)) \quad (\text{MC KL}),

    and the gradient of the returned ``elbo`` with respect to q's parameters is

    .. math::
        \frac1S\sum_s (f_s - b_s)\,\nabla_\phi\log q(z_s) \;-\;
        \beta\,\nabla_\phi\mathrm{KL}(q\|p) \ [\text{analytic KL only}],

    an unbiased estimate of :math:`\nabla_\phi\mathrm{ELBO}`. The zero-mean term
    :math:`-\beta\,\mathbb E_q[\nabla_\phi\log q]` of the MC KL is dropped. The model's
    parameters (in ``log_lik`` and ``log_p``) get their usual pathwise gradients. The
    baseline :math:`b_s` is

    - ``baseline=None``: the leave-one-out mean :math:`\frac1{S-1}\sum_{j\ne s} f_j` when
      :math:`S\ge2` (applied to each of the two fields separately: it is linear), none for
      :math:`S = 1`;
    - an array :math:`c` broadcastable to the batch shape: :math:`b_s = c` for every sample
      (``0.0`` gives the plain REINFORCE estimator). The ``expected_log_likelihood`` field
      (hence ``elbo``) also carries the zero-valued term
      :math:`h - \bot(h)`, :math:`h = -\frac12\frac1S\sum_s(\bot(f_s) - c)^2`, so that
      maximizing the bound with ``jax.grad`` fits :math:`c` to :math:`\mathbb E[f]` by least
      squares (NVIL): a learned baseline trains jointly with the model. If ``c`` shares
      parameters with ``q``, stop its gradient, or this regression will reach ``q``.

    Each field is itself a surrogate for its own gradient, and
    ``elbo == expected_log_lik - beta * kl`` in value and gradient.

    Args:
        log_lik, log_q, log_p: per-sample :math:`\log p(x|z_s)`, :math:`\log q(z_s)`,
            :math:`\log p(z_s)`, each ``(*batch, S)``; ``z_s`` stop-gradiented.
        kl: the closed-form :math:`\mathrm{KL}(q\|p)` of shape ``batch`` (differentiable), or
            ``None`` for the Monte Carlo KL from ``log_q - log_p``.
        beta: weight of the KL term.
        baseline: control variate :math:`c` as above, or ``None``.

    Returns:
        ``(elbo, expected_log_likelihood, kl)``, each of shape ``batch``.
    """
    num_samples = log_lik.shape[-1]
    batch = log_lik.shape[:-1]
    _checks.check_broadcasts_to(jnp.shape(beta), "beta", batch, "the batch shape")
    mc = kl is None
    log_ratio = log_q - log_p
    c = None if baseline is None else _broadcast_baseline(baseline, batch)[..., None]
    if c is not None:
        b_lik, b_ratio = c, 0.0
    elif num_samples > 1:
        b_lik = leave_one_out_mean(log_lik)
        b_ratio = leave_one_out_mean(log_ratio) if mc else 0.0
    else:
        b_lik, b_ratio = 0.0, 0.0

    expected = jnp.mean(log_lik + score_term(log_lik - b_lik, log_q), axis=-1)
    if mc:
        kl = jnp.mean(_sg(log_q) - log_p + score_term(log_ratio - b_ratio, log_q), axis=-1)
    if c is not None:
        beta_per_sample = jnp.expand_dims(jnp.asarray(beta), -1)
        signal = log_lik - beta_per_sample * log_ratio if mc else log_lik
        fit = -0.5 * jnp.mean(jnp.square(_sg(signal) - c), axis=-1)
        expected = expected + (fit - _sg(fit))
    return expected - beta * kl, expected, kl


def vimco_leave_one_out_bounds(log_w: Array) -> Array:
    r"""VIMCO's per-sample baselines :math:`\hat{\mathcal L}_{-k}`, shape ``(*batch, K)``.

    .. math::
        \hat{\mathcal L}_{-k} = \log\frac1K\Big(\sum_{j\ne k} w_j + \hat w_{-k}\Big),\qquad
        \log\hat w_{-k} = \frac1{K-1}\sum_{j\ne k}\log w_j,

    the bound with sample :math:`k` replaced by the geometric mean of the others (Mnih &
    Rezende 2016, eq. 9). :math:`\log\sum_{j\ne k} w_j` is computed in :math:`O(K)` and
    without cancellation from exclusive prefix and suffix ``cumlogsumexp``.

    Args:
        log_w: log-weights ``(*batch, K)``, :math:`K \ge 2`.

    Raises:
        ValueError: if :math:`K < 2`.
    """
    k = log_w.shape[-1]
    if k < 2:
        raise ValueError(f"VIMCO needs at least 2 samples; got {k}.")
    # Leave-one-out mean of the log-weights, -inf where another log-weight is -inf (a zero
    # weight makes the geometric mean 0), never (-inf) - (-inf).
    zero = log_w == -jnp.inf
    finite = jnp.where(zero, 0.0, log_w)
    geometric = jnp.where(
        jnp.sum(zero, axis=-1, keepdims=True) - zero > 0, -jnp.inf, leave_one_out_mean(finite)
    )
    before = jax.lax.cumlogsumexp(log_w, axis=log_w.ndim - 1)
    after = jax.lax.cumlogsumexp(log_w, axis=log_w.ndim - 1, reverse=True)
    empty = jnp.full(log_w.shape[:-1] + (1,), -jnp.inf, log_w.dtype)
    before = jnp.concatenate([empty, before[..., :-1]], axis=-1)
    after = jnp.concatenate([after[..., 1:], empty], axis=-1)
    others = jnp.logaddexp(before, after)
    return jnp.logaddexp(others, geometric) - math.log(k)


def iwae_surrogate(
    log_w: Array, log_q: Array, *, control_variate: Literal["vimco", "none"] = "vimco"
) -> Array:
    r"""IWAE bound with the score-function (VIMCO) gradient, one value per datapoint.

    Value :math:`\hat{\mathcal L} = \log\frac1K\sum_k w_k`; gradient

    .. math::
        \sum_k \big(\hat{\mathcal L} - \hat{\mathcal L}_{-k}\big)\,\nabla_\phi\log q(z_k)
        + \sum_k \tilde w_k\,\nabla\log w_k, \qquad \tilde w_k = w_k / \textstyle\sum_j w_j,

    where :math:`\nabla\log w_k` is taken at fixed :math:`z_k` (so it contains
    :math:`-\nabla_\phi\log q(z_k)` for q's parameters and the pathwise model gradient).
    :math:`\hat{\mathcal L}_{-k}` (:func:`vimco_leave_one_out_bounds`) does not depend on
    :math:`z_k`, so the estimator is unbiased for :math:`\nabla\mathbb E\,\hat{\mathcal L}`.

    Args:
        log_w: :math:`\log p(x|z_k) + \log p(z_k) - \log q(z_k)`, ``(*batch, K)``, with
            ``z_k`` stop-gradiented and ``log q`` differentiable.
        log_q: :math:`\log q(z_k)`, ``(*batch, K)``, as in ``log_w``.
        control_variate: ``"vimco"``, or ``"none"`` for the plain score function
            (:math:`\hat{\mathcal L}\,\nabla\log q(z_k)`; for comparisons only).

    Returns:
        Array of shape ``batch``.
    """
    if control_variate not in ("vimco", "none"):
        raise ValueError(f"`control_variate` must be 'vimco' or 'none'; got {control_variate!r}.")
    bound = jax.nn.logsumexp(log_w, axis=-1) - math.log(log_w.shape[-1])
    signal = _sg(bound)[..., None]
    if control_variate == "vimco":
        signal = signal - vimco_leave_one_out_bounds(_sg(log_w))
    # Samples whose leave-one-out bound is -inf (every other weight is 0, or all are) have no
    # finite learning signal: their score term is dropped instead of forming inf * 0.
    signal = jnp.where(jnp.isfinite(signal), signal, 0.0)
    return bound + jnp.sum(score_term(signal, log_q), axis=-1)
