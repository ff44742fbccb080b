r"""KL divergences :math:`\mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log q(z) - \log p(z)]`.

Closed forms live in a registry keyed by the pair of types; :func:`register_kl` adds pairs,
and :func:`kl_divergence` looks them up along both types' MROs (so a subclass inherits its
parents' pairs). :func:`mc_kl` estimates the KL of any pair by Monte Carlo.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import digamma

from jelbo import _checks, _special
from jelbo._typing import Array
from jelbo.bijectors import same_bijector
from jelbo.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    ContinuousBernoulli,
    Dirichlet,
    Distribution,
    Gamma,
    HypersphericalUniform,
    Independent,
    Kumaraswamy,
    Laplace,
    LowRankMultivariateNormal,
    MultivariateNormalTriL,
    Normal,
    OneHotCategorical,
    Poisson,
    PowerSpherical,
    RelaxedOneHotCategorical,
    TransformedDistribution,
    log_prob,
    sample_and_log_prob,
)
from jelbo.distributions._util import common_float, log_scale
from jelbo.distributions.multivariate import trace_inverse_product

KLFn = Callable[[Any, Any], Array]
_F = TypeVar("_F", bound=Callable[..., Array])

__all__ = ["kl_divergence", "mc_kl", "register_kl"]


def _event_sum(q: Distribution, kl: Array) -> Array:
    """Per-coordinate KLs of a factorized pair summed over the event axis (none for a
    scalar event)."""
    return jnp.sum(kl, axis=-1) if q.event_shape else kl


_KL_REGISTRY: dict[tuple[type, type], KLFn] = {}


def register_kl(type_q: type, type_p: type) -> Callable[[_F], _F]:
    r"""Decorator registering a closed-form :math:`\mathrm{KL}(q\|p)` for a pair of types.

    The function takes ``(q, p)`` and returns the KL summed over the event, with the
    broadcast batch shape. Registered pairs are used by :func:`kl_divergence` and so by
    ``jelbo.ELBO(kl="analytic")``. Registering an existing pair replaces it.

    Example::

        @jelbo.register_kl(MyFamily, jelbo.Normal)
        def _kl_my_normal(q, p):
            ...
    """
    for name, cls in (("type_q", type_q), ("type_p", type_p)):
        if not (isinstance(cls, type) and issubclass(cls, Distribution)):
            raise TypeError(
                f"register_kl: `{name}` must be a jelbo Distribution subclass; got {cls!r}."
            )

    def decorator(fn: _F) -> _F:
        _KL_REGISTRY[(type_q, type_p)] = fn
        return fn

    return decorator


def _lookup(type_q: type, type_p: type) -> KLFn | None:
    for base_q in type_q.__mro__:
        for base_p in type_p.__mro__:
            fn = _KL_REGISTRY.get((base_q, base_p))
            if fn is not None:
                return fn
    return None


def kl_divergence(q: Distribution, p: Distribution) -> Array:
    r"""Closed-form :math:`\mathrm{KL}(q\|p)`, summed over the event axis.

    Batch shapes broadcast (e.g. a batch of posteriors against one prior).

    Args:
        q: distribution with batch shape ``Bq`` and event shape ``E``.
        p: distribution with batch shape ``Bp`` and the same event shape ``E``.

    Returns:
        Array of shape ``broadcast(Bq, Bp)``.

    Raises:
        NotImplementedError: no closed form is registered for ``(type(q), type(p))``.
        ValueError: the event shapes differ or the batch shapes do not broadcast.
    """
    _checks.check_instance(q, Distribution, "q")
    _checks.check_instance(p, Distribution, "p")
    fn = _lookup(type(q), type(p))
    if fn is None:
        nq, np_ = type(q).__name__, type(p).__name__
        raise NotImplementedError(
            f"No closed-form KL is registered for KL({nq} || {np_}). Register one with "
            f"@jelbo.register_kl({nq}, {np_}), or estimate it by Monte Carlo with "
            "jelbo.mc_kl(key, q, p, num_samples=...) or jelbo.ELBO(kl='mc')."
        )
    _checks.check_same_event(q, p)
    _checks.broadcast_shapes(("q.batch_shape", q.batch_shape), ("p.batch_shape", p.batch_shape))
    return fn(q, p)


def check_same_event(q: Distribution, p: Distribution, names: tuple[str, str] = ("q", "p")) -> None:
    """Deprecated since 0.2: argument checks are internal (``jelbo._checks``).

    Raises ``ValueError`` naming both shapes unless ``q`` and ``p`` share an event shape.
    """
    warnings.warn(
        "jelbo.kl.check_same_event is deprecated and will be removed; jelbo's functions "
        "check event shapes themselves.",
        DeprecationWarning,
        stacklevel=2,
    )
    _checks.check_same_event(q, p, names)


def mc_kl(key: Array, q: Distribution, p: Distribution, *, num_samples: int) -> Array:
    r"""Monte Carlo :math:`\mathrm{KL}(q\|p) \approx \frac1S\sum_s \log q(z_s) - \log p(z_s)`,
    :math:`z_s \sim q`.

    Works for any pair with matching event shapes; unbiased, and reparameterized when ``q``
    is. Returns an array of shape ``broadcast(q.batch_shape, p.batch_shape)``: when ``p``
    has more batch axes than ``q``, the same draws of ``q`` serve every ``p`` in the batch.
    """
    _checks.check_key(key)
    _checks.check_instance(q, Distribution, "q")
    _checks.check_instance(p, Distribution, "p")
    num_samples = _checks.check_positive_int(num_samples, "num_samples")
    _checks.check_same_event(q, p)
    batch = _checks.broadcast_shapes(
        ("q.batch_shape", q.batch_shape), ("p.batch_shape", p.batch_shape)
    )
    z, log_q = sample_and_log_prob(key, q, (num_samples,))
    # Line q's draws up with the joint batch: (S, 1, ..., 1, *q.batch_shape, *event).
    extra = len(batch) - len(q.batch_shape)
    z = z.reshape((num_samples,) + (1,) * extra + z.shape[1:])
    log_q = log_q.reshape((num_samples,) + (1,) * extra + log_q.shape[1:])
    kl = jnp.mean(log_q - log_prob(p, z), axis=0)
    return jnp.broadcast_to(kl, batch)


@register_kl(Normal, Normal)
def _kl_normal_normal(q: Normal, p: Normal) -> Array:
    # With t = 2 log(sq/sp): KL_i = ½[(e^t - 1 - t) + ((mq - mp)/sp)²]; expm1 keeps the
    # first bracket accurate and exactly zero when q == p.
    # expm1(t) - t = expm1_plus(-t), exact also where it vanishes (q.scale ~ p.scale).
    t = 2.0 * (log_scale(q.scale, q.log_scale, q.dtype) - log_scale(p.scale, p.log_scale, p.dtype))
    loc_q, loc_p, scale_p = common_float(q.loc, p.loc, p.scale)
    d = _special.standardize(loc_q, loc_p, scale_p)  # 0 at equal locs, even if scale_p = 0
    return _event_sum(q, 0.5 * (_special.expm1_plus(-t) + d * d))


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(q: Laplace, p: Laplace) -> Array:
    # KL_i = log(bp/bq) + |Δ|/bp + (bq/bp) exp(-|Δ|/bq) - 1, with Δ = mq - mp; with
    # r = log(bq/bp) and v = |Δ|/bq it is φ(-r) + e^r φ(v), φ(t) = e^-t - 1 + t >= 0 (two
    # non-negative terms, each exact via jelbo._special.expm1_plus).
    # Where phi(v) underflows to 0 its term is negligible next to phi(-r) (it is at most
    # e^r v^2/2 << e^r), and is dropped rather than formed as e^r * 0 (inf * 0 = NaN for a
    # scale ratio beyond e^88 in float32).
    loc_q, loc_p, scale_q, scale_p = common_float(q.loc, p.loc, q.scale, p.scale)
    v = jnp.abs(_special.standardize(loc_q, loc_p, scale_q))
    r = jnp.log(scale_q) - jnp.log(scale_p)
    phi_v = _special.expm1_plus(v)
    vanished = phi_v == 0
    scaled = jnp.where(vanished, 0.0, jnp.exp(jnp.where(vanished, 0.0, r)) * phi_v)
    kl = _special.expm1_plus(-r) + scaled
    return _event_sum(q, kl)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(q: Bernoulli, p: Bernoulli) -> Array:
    # From logits a (q) and b (p), flipped so that a >= 0 (KL(a||b) = KL(-a||-b)), with
    # s = sigma(-a) <= 1/2, d = b - a, m = expm1(-d) and y = s m:
    #     KL = log1p(y) + s d = s (expm1(-d) + d) - (y - log1p(y)),
    # two non-negative terms (the second at most half the first) that keep full relative
    # precision when both logits lie far out on the same side (d >= -1). Below (b more than
    # 1 under a) every factor is taken in log space, KL = softplus(log s + log m) + s d, so
    # that a tiny s (even 0 in float, a = 785.9) never multiplies a huge m (e^-d, inf at
    # d = -747): the first form gave 0 * inf = NaN there. Infinite logits are deterministic
    # coordinates: KL(+inf || b) = softplus(-b).
    if q._probs is not None and p._probs is not None:
        return _event_sum(q, _kl_bernoulli_probs(*common_float(q.probs, p.probs)))
    a, b = common_float(q.logits, p.logits)
    b = jnp.where(a >= 0, b, -b)
    a = jnp.abs(a)
    a_inf, b_inf = jnp.isinf(a), jnp.isinf(b)
    a_fin = jnp.where(a_inf, 0.0, a)
    b_fin = jnp.where(a_inf | b_inf, 0.0, b)
    d = b_fin - a_fin
    s = jax.nn.sigmoid(-a_fin)
    log_s = jax.nn.log_sigmoid(-a_fin)
    far = d < -1.0
    d_far = jnp.where(far, d, -2.0)
    log_m = -d_far + jnp.log(-jnp.expm1(d_far))
    far_kl = jax.nn.softplus(log_s + log_m) + s * d_far
    d_near = jnp.where(far, 0.0, d)
    near_kl = s * _special.expm1_plus(d_near) - _special.x_minus_log1p(s * jnp.expm1(-d_near))
    kl = jnp.where(far, far_kl, near_kl)
    kl = jnp.where(b_inf, jnp.inf, kl)
    kl = jnp.where(a_inf, jax.nn.softplus(-jnp.where(a_inf, b, 0.0)), kl)
    return _event_sum(q, kl)


def _kl_bernoulli_probs(q: Array, p: Array) -> Array:
    # From probabilities as given: with xm(w) = w - log1p(w) >= 0,
    #     KL = q xm((p - q)/q) + (1 - q) xm((q - p)/(1 - q)),
    # two non-negative terms, each to full relative precision (q log(q/p) = q xm(.) - (p - q)
    # and the linear parts cancel exactly). At q = 0 the first term is its limit p, at q = 1
    # the second is 1 - p; p = 0 or 1 against a q that is not makes it +inf.
    # Outside 1/2 <= (p/q, (1-p)/(1-q)) <= 2 the logarithms are taken separately
    # (_weighted_xm): 1 + w can round to 0 (q = 0.2, p = 1e-300), where log1p(w) is -inf.
    q0, q1 = q == 0, q == 1
    q_lo = jnp.where(q0, 0.5, q)
    q_hi = jnp.where(q1, 0.5, q)
    first = jnp.where(q0, p, _weighted_xm(q_lo, p - q_lo, jnp.log(q_lo), jnp.log(p)))
    second = jnp.where(
        q1, 1.0 - p, _weighted_xm(1.0 - q_hi, q_hi - p, jnp.log1p(-q_hi), jnp.log1p(-p))
    )
    return first + second


def _weighted_xm(a: Array, diff: Array, log_a: Array, log_b: Array) -> Array:
    # a xm(diff/a) = diff - a log(b/a) for a > 0, b = a + diff >= 0, with diff given exactly
    # (q - p, not (1 - p) - (1 - q), which rounds). Where b < a/2 the ratio diff/a rounds
    # towards -1 (to -1 itself for b/a < eps, where xm is +inf: KL(0.2 || 1e-300) was inf),
    # and where b > 2a it can overflow (float32 NaN at rates 1e-30 vs 1e30, and a wrong
    # derivative in float64): there the logarithms are taken separately (|log(b/a)| >=
    # log 2, the terms do not cancel).
    far = (diff < -0.5 * a) | (diff > a)  # w = diff/a outside (-1/2, 1], without forming it
    near = a * _special.x_minus_log1p(jnp.where(far, 0.0, diff) / a)
    return jnp.where(far, diff - a * (log_b - log_a), near)


@register_kl(Poisson, Poisson)
def _kl_poisson_poisson(q: Poisson, p: Poisson) -> Array:
    # KL_i = λq log(λq/λp) - λq + λp = λq φ(u), u = ηq - ηp, φ(u) = e^-u - 1 + u >= 0 (exact
    # via jelbo._special.expm1_plus) for u > -1; below, λp + (u - 1) λq, whose two terms
    # do not cancel (|(u - 1) e^u| <= 2/e) and never form inf * 0 or e^-u overflowing.
    if q._rate is not None and p._rate is not None:
        # From rates as given: KL_i = λq xm((λp - λq)/λq), xm(w) = w - log1p(w) (the same
        # φ(u) with e^-u = λp/λq, to full relative precision); λq = 0 gives λp.
        rate_q, rate_p = common_float(q.rate, p.rate)
        zero = rate_q == 0
        safe = jnp.where(zero, 1.0, rate_q)
        logs = jnp.log(safe), jnp.log(rate_p)
        kl = jnp.where(zero, rate_p, _weighted_xm(safe, rate_p - safe, *logs))
        return _event_sum(q, kl)
    eta_q, eta_p = common_float(q.log_rate, p.log_rate)
    u = eta_q - eta_p
    near = u > -1.0
    kl = jnp.where(
        near,
        jnp.exp(eta_q) * _special.expm1_plus(jnp.where(near, u, 0.0)),
        jnp.exp(eta_p) + (u - 1.0) * jnp.exp(eta_q),
    )
    return _event_sum(q, kl)


def _as_tril(dist: Normal | MultivariateNormalTriL) -> tuple[Array, Array]:
    """(loc, lower-triangular scale) of a Gaussian; a diagonal one gets diag(scale)."""
    if isinstance(dist, MultivariateNormalTriL):
        return jnp.asarray(dist.loc, dist.dtype), jnp.tril(jnp.asarray(dist.scale_tril, dist.dtype))
    loc = jnp.broadcast_to(jnp.asarray(dist.loc, dist.dtype), dist.batch_shape + dist.event_shape)
    scale = jnp.broadcast_to(jnp.asarray(dist.scale, dist.dtype), loc.shape)
    return loc, scale[..., :, None] * jnp.eye(loc.shape[-1], dtype=scale.dtype)


def _gaussian_root(dist: Distribution) -> tuple[Array, Array, Array]:
    """``(loc, S, log|Σ|)`` with ``Σ = S Sᵀ`` for the Gaussian families (S is K × m): the
    lower-triangular scale of Normal/MultivariateNormalTriL, ``[F, diag(√d)]`` of a low-rank
    one."""
    if isinstance(dist, LowRankMultivariateNormal):
        factor, diag, _ = dist.factors()
        eye = jnp.eye(diag.shape[-1], dtype=diag.dtype)
        root = jnp.concatenate([factor, jnp.sqrt(diag)[..., None] * eye], axis=-1)
        return jnp.asarray(dist.loc, dist.dtype), root, dist.log_det_covariance()
    assert isinstance(dist, (Normal, MultivariateNormalTriL))
    loc, tril = _as_tril(dist)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(tril, axis1=-2, axis2=-1))), axis=-1)
    return loc, tril, log_det


@register_kl(MultivariateNormalTriL, MultivariateNormalTriL)
@register_kl(Normal, MultivariateNormalTriL)
@register_kl(MultivariateNormalTriL, Normal)
@register_kl(LowRankMultivariateNormal, MultivariateNormalTriL)
def _kl_gaussian_tril(q: Distribution, p: Distribution) -> Array:
    # KL = ½[‖Lp⁻¹Sq‖²_F + ‖Lp⁻¹(μq-μp)‖² - K + log|Σp| - log|Σq|], Σq = Sq Sqᵀ.
    loc_q, root_q, log_det_q = _gaussian_root(q)
    loc_p, tril_p, log_det_p = _gaussian_root(p)
    k, m = root_q.shape[-2:]
    batch = jnp.broadcast_shapes(
        loc_q.shape[:-1], root_q.shape[:-2], loc_p.shape[:-1], tril_p.shape[:-2]
    )
    tril_p = jnp.broadcast_to(tril_p, batch + (k, k))
    rhs = jnp.concatenate(
        [
            jnp.broadcast_to(root_q, batch + (k, m)),
            jnp.broadcast_to(loc_q - loc_p, batch + (k,))[..., None],
        ],
        axis=-1,
    )
    solved = solve_triangular(tril_p, rhs, lower=True)
    trace_term = jnp.sum(solved[..., :m] ** 2, axis=(-2, -1))
    maha = jnp.sum(solved[..., m] ** 2, axis=-1)
    return 0.5 * (trace_term + maha - k + log_det_p - log_det_q)


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(q: Gamma, p: Gamma) -> Array:
    # KL_i = (aq - ap) psi(aq) + [lnG(ap) - lnG(aq)] + aq (e^t - 1) - ap t, t = ln(rp/rq);
    # the log-gamma difference comes from _special (no cancellation for aq ~ ap large).
    dtype = jnp.result_type(q.dtype, p.dtype)
    aq, ap = jnp.asarray(q.concentration, dtype), jnp.asarray(p.concentration, dtype)
    t = jnp.log(p.rate) - jnp.log(q.rate)
    kl = (
        (aq - ap) * digamma(aq)
        - _special.log_gamma_difference(ap - aq, aq)
        + aq * jnp.expm1(t)
        - ap * t
    )
    return _event_sum(q, kl)


@register_kl(Beta, Beta)
def _kl_beta_beta(q: Beta, p: Beta) -> Array:
    # The two-component Dirichlet: R(ap - aq, aq) + R(bp - bq, bq) - R(sp - sq, sq) with the
    # Bregman remainders R of log-gamma (_special.log_gamma_bregman), accurate also for q ~ p.
    dtype = jnp.result_type(q.dtype, p.dtype)
    aq, bq = jnp.asarray(q.concentration1, dtype), jnp.asarray(q.concentration0, dtype)
    ap, bp = jnp.asarray(p.concentration1, dtype), jnp.asarray(p.concentration0, dtype)
    da, db = ap - aq, bp - bq
    # The three remainders from one (stacked) log_gamma_bregman: one copy of its graph.
    x = jnp.stack(jnp.broadcast_arrays(da, db, da + db))
    y = jnp.stack(jnp.broadcast_arrays(aq, bq, aq + bq))
    r = _special.log_gamma_bregman(x, y)
    return _event_sum(q, r[0] + r[1] - r[2])


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(q: Dirichlet, p: Dirichlet) -> Array:
    # KL = lnB(ap) - lnB(aq) + sum_i (aq_i - ap_i)[psi(aq_i) - psi(aq_0)]
    #    = sum_i R(d_i, aq_i) - R(d_0, aq_0),  d = ap - aq, d_0 = sum_i d_i,
    # with R(x, y) = lgamma(y + x) - lgamma(y) - x psi(y) >= 0 (_special.log_gamma_bregman):
    # no log-gammas of size a log a are subtracted, so a p close to q keeps its small KL.
    dtype = jnp.result_type(q.dtype, p.dtype)
    aq, ap = jnp.asarray(q.concentration, dtype), jnp.asarray(p.concentration, dtype)
    aq, ap = jnp.broadcast_arrays(aq, ap)
    d = ap - aq
    # The totals are appended as one more coordinate: one log_gamma_bregman in the graph.
    x = jnp.concatenate([d, jnp.sum(d, axis=-1, keepdims=True)], axis=-1)
    y = jnp.concatenate([aq, jnp.sum(aq, axis=-1, keepdims=True)], axis=-1)
    r = _special.log_gamma_bregman(x, y)
    return jnp.sum(r[..., :-1], axis=-1) - r[..., -1]


@register_kl(ContinuousBernoulli, ContinuousBernoulli)
def _kl_continuous_bernoulli(q: ContinuousBernoulli, p: ContinuousBernoulli) -> Array:
    # log q - log p = (lq - lp) x - A(lq) + A(lp), so KL_i = A(lp) - A(lq) - (lp - lq) A'(lq),
    # the Bregman divergence of A(l) = l/2 + S(l/2), S(y) = log(sinh(y)/y), whose linear
    # part cancels exactly: KL_i = S(yp) - S(yq) - (yp - yq) L(yq) with y = l/2 and L = S'
    # the Langevin function. The direct form lost the ~l^2/24 KL near l = 0 (relative error
    # 1e-8 in float64, everything in float32, at l = 1e-8).
    y_q, y_p = common_float(0.5 * jnp.asarray(q.logits), 0.5 * jnp.asarray(p.logits))
    kl = _special.log_sinhc(y_p) - _special.log_sinhc(y_q) - (y_p - y_q) * _special.langevin(y_q)
    return _event_sum(q, kl)


# Kumaraswamy || Beta: E_q[log(1 - x)] has no closed form. Nalisnick & Smyth (2017) expand
# log(1 - x) = -sum_m x^m/m with E_q[x^m] = b B(1 + m/a, b), which gives
#     E_q[log(1-x)] = -T(a, b)/a,   T(a, b) = sum_{m>=1} B(m/a, b + 1)
# (b B(1+m/a, b)/m = B(m/a, b+1)/a; the paper's b B(m/a, b)/(m + ab) is the same term).
# The terms decay only like m^-(b+1) (10 terms are 0.35 nats off at b = 1, 1000 still 4e-3),
# so jelbo sums the first _KUMARASWAMY_TERMS - 1 terms exactly and the rest, m >= N, from
# their asymptotic expansion: with c = b + 1, w = m/a + b/2 (the symmetric shift),
#     Gamma(c) Gamma(m/a)/Gamma(m/a + c) = Gamma(c) w^-c exp(sum_j e_j w^-2j),
#     e_j = -2 B_{2j+1}(-b/2) / (2j (2j+1))     (DLMF 5.11.13 with Bernoulli polynomials),
# expanded to A_0 + A_1 w^-2 + A_2 w^-4 + A_3 w^-6, and each sum_{m>=N} (m/a + b/2)^-p
# = a^p zeta(p, N + ab/2) from the Euler-Maclaurin expansion of the Hurwitz zeta function
# (three Bernoulli-number terms), written in W = N/a + b/2 so nothing overflows. The error
# of the tail grows with b/W, i.e. with a b / N. Measured against mpmath quadrature of the KL
# (tests/test_continuous.py) on a in {0.1, 0.5, 1, 3, 10} x b in {1, 2, 5, 12}: at most 1.3e-7
# relative (at a = 10, b = 12), < 1e-11 for a <= 3; T alone was within 4e-8 up to a = 10,
# b = 30, but 1.5e-4 off at a = 30, b = 12: very peaked Kumaraswamys (a >~ 20 with large b)
# are approximate.
_KUMARASWAMY_TERMS = 64
_BERNOULLI_2K = (1.0 / 6.0, -1.0 / 30.0, 1.0 / 42.0)


def _kumaraswamy_series(a: Array, b: Array, alpha: Array, beta: Array) -> tuple[Array, Array]:
    """``(T(a, b), log B(alpha, beta))`` with ``T(a, b) = sum_{m>=1} B(m/a, b+1)`` (see
    above), elementwise; the second betaln rides along in the head's (one copy of betaln's
    graph in a compiled gradient instead of two)."""
    n = _KUMARASWAMY_TERMS
    c = b + 1.0
    m = jnp.arange(1, n, dtype=a.dtype)
    alpha, beta = jnp.broadcast_to(alpha, a.shape), jnp.broadcast_to(beta, a.shape)
    first = jnp.concatenate([m / a[..., None], alpha[..., None]], axis=-1)
    second = jnp.concatenate(
        [jnp.broadcast_to(c[..., None], a.shape + (n - 1,)), beta[..., None]], -1
    )
    log_b = _special.betaln(first, second)
    head = jnp.sum(jnp.exp(log_b[..., :-1]), axis=-1)
    h = -0.5 * b
    b3 = h * (h - 0.5) * (h - 1.0)  # Bernoulli polynomials B_3, B_5, B_7 at h
    b5 = h**5 - 2.5 * h**4 + (5.0 / 3.0) * h**3 - h / 6.0
    b7 = h**7 - 3.5 * h**6 + 3.5 * h**5 - (7.0 / 6.0) * h**3 + h / 6.0
    e1, e2, e3 = -b3 / 3.0, -b5 / 10.0, -b7 / 21.0
    coeffs = (1.0, e1, e2 + 0.5 * e1 * e1, e3 + e1 * e2 + e1**3 / 6.0)
    w = n / a + 0.5 * b
    log_w = jnp.log(w)
    tail = jnp.zeros_like(head)
    for j, coeff in enumerate(coeffs):
        p = c + 2.0 * j
        # a^p zeta(p, N + ab/2) = a W^(1-p)/(p-1) + W^-p/2
        #     + sum_k B_2k/(2k)! p (p+1)...(p+2k-2) a^(1-2k) W^(-p-2k+1)
        w_p = jnp.exp(-p * log_w)
        zeta = a * w * w_p / (p - 1.0) + 0.5 * w_p
        rising, fact = p, 2.0
        for k, bern in enumerate(_BERNOULLI_2K, start=1):
            zeta = zeta + bern / fact * rising * a ** (1 - 2 * k) * w_p * w ** (1 - 2 * k)
            rising = rising * (p + 2 * k - 1) * (p + 2 * k)
            fact = fact * (2 * k + 1) * (2 * k + 2)
        tail = tail + coeff * zeta
    return head + jnp.exp(jax.lax.lgamma(c)) * tail, log_b[..., -1]


@register_kl(Kumaraswamy, Beta)
def _kl_kumaraswamy_beta(q: Kumaraswamy, p: Beta) -> Array:
    # KL_i = log(ab) - (b-1)/b + H_b (alpha/a - 1) + (beta - 1) T(a, b)/a + lnB(alpha, beta),
    # H_b = psi(b+1) + gamma (Nalisnick & Smyth 2017, eq. 12, with the series above).
    dtype = jnp.result_type(q.dtype, p.dtype)
    shape = jnp.broadcast_shapes(q.param_shape, p.param_shape)
    a = jnp.broadcast_to(jnp.asarray(q.concentration1, dtype), shape)
    b = jnp.broadcast_to(jnp.asarray(q.concentration0, dtype), shape)
    alpha = jnp.asarray(p.concentration1, dtype)
    beta = jnp.asarray(p.concentration0, dtype)
    harmonic = digamma(b + 1.0) + 0.5772156649015329
    series, log_beta = _kumaraswamy_series(a, b, alpha, beta)
    kl = (
        jnp.log(a * b)
        - (b - 1.0) / b
        + harmonic * (alpha / a - 1.0)
        + (beta - 1.0) * series / a
        + log_beta
    )
    return _event_sum(q, kl)


@register_kl(Categorical, Categorical)
@register_kl(OneHotCategorical, OneHotCategorical)
def _kl_categorical(
    q: Categorical | OneHotCategorical, p: Categorical | OneHotCategorical
) -> Array:
    # Σ_k q_k (log q_k - log p_k) with 0 log 0 = 0: categories that q masks (-inf logits)
    # contribute nothing (and no NaN gradient), also where p masks them too; one that only p
    # masks makes the KL +inf.
    if q.num_categories != p.num_categories:
        raise ValueError(
            f"{type(q).__name__} KL needs the same number of categories; got "
            f"{q.num_categories} and {p.num_categories}."
        )
    prob_q, log_q, q_masked = q._masked_log_probs()
    _, log_p, p_masked = p._masked_log_probs()
    terms = prob_q * (log_q - log_p)
    kl = jnp.sum(jnp.where(q_masked, 0.0, terms), axis=-1)
    return jnp.where(jnp.any(p_masked & ~q_masked, axis=-1), jnp.inf, kl)


@register_kl(RelaxedOneHotCategorical, OneHotCategorical)
@register_kl(RelaxedOneHotCategorical, RelaxedOneHotCategorical)
def _kl_straight_through(q: Distribution, p: Distribution) -> Array:
    # A straight-through q's samples are one-hot, distributed exactly as
    # OneHotCategorical(q.logits) (the argmax of Gumbel-perturbed logits): the KL of their
    # law to a OneHotCategorical p (or to a straight-through p, likewise one-hot) is the
    # categorical KL. Relaxed (not straight-through) samples have no closed-form KL.
    assert isinstance(q, RelaxedOneHotCategorical)
    relaxed_p = isinstance(p, RelaxedOneHotCategorical) and not p.straight_through
    if not q.straight_through or relaxed_p:
        raise NotImplementedError(
            f"KL({type(q).__name__} || {type(p).__name__}) has no closed form for relaxed "
            "samples: use kl='mc' (jelbo.mc_kl) with straight_through=False on both. It is "
            "closed-form (the categorical KL of the one-hot samples) for a straight-through q "
            "against a OneHotCategorical or a straight-through prior."
        )
    return _kl_categorical(q, p)  # type: ignore[arg-type]


@register_kl(Independent, Independent)
def _kl_independent(q: Distribution, p: Distribution) -> Array:
    # KL of independent blocks is the sum of the blocks' KLs over the reinterpreted axes.
    assert isinstance(q, Independent) and isinstance(p, Independent)
    n = q.reinterpreted_batch_ndims
    if p.reinterpreted_batch_ndims != n:
        raise ValueError(
            "KL(Independent || Independent) needs the same reinterpreted_batch_ndims; got "
            f"{n} for q (base batch shape {q.base.batch_shape}) and "
            f"{p.reinterpreted_batch_ndims} for p (base batch shape {p.base.batch_shape})."
        )
    kl = kl_divergence(q.base, p.base)
    return jnp.sum(kl, axis=tuple(range(-n, 0))) if n else kl


@register_kl(PowerSpherical, HypersphericalUniform)
def _kl_power_spherical_uniform(q: PowerSpherical, p: HypersphericalUniform) -> Array:
    # KL = -H(q) + log|S^{d-1}|: the uniform log-density is the constant -log|S^{d-1}|. The
    # uniform has no parameters, so its entropy has the default float dtype: the result
    # takes q's (float32 for a float32 q also with x64 enabled).
    h_q = q.entropy()
    return jnp.asarray(p.entropy(), h_q.dtype) - h_q


@register_kl(TransformedDistribution, TransformedDistribution)
def _kl_transformed_transformed(q: Distribution, p: Distribution) -> Array:
    # KL(f#q || f#p) = KL(q || p) for one bijector f (the log-det terms cancel).
    assert isinstance(q, TransformedDistribution) and isinstance(p, TransformedDistribution)
    fq, fp = q.transform(), p.transform()
    if not same_bijector(fq, fp):
        raise NotImplementedError(
            f"KL({type(q).__name__} || {type(p).__name__}) is closed-form only when both use "
            f"the same bijector (got {fq!r} and {fp!r}; traced parameters count as the same "
            "only when they are the same object). Use jelbo.ELBO(kl='mc') or "
            "jelbo.mc_kl(key, q, p, num_samples=...)."
        )
    return kl_divergence(q.base_distribution(), p.base_distribution())


@register_kl(LowRankMultivariateNormal, LowRankMultivariateNormal)
@register_kl(Normal, LowRankMultivariateNormal)
@register_kl(MultivariateNormalTriL, LowRankMultivariateNormal)
def _kl_to_lowrank(q: Distribution, p: Distribution) -> Array:
    # KL = ½[tr(Σp⁻¹Σq) + δᵀΣp⁻¹δ - K + log|Σp| - log|Σq|], Σp⁻¹ by Woodbury (O(K m r)).
    assert isinstance(p, LowRankMultivariateNormal)
    k = p.event_shape[0]
    loc_q, root_q, log_det_q = _gaussian_root(q)
    delta = (jnp.asarray(p.loc) - loc_q)[..., None]
    trace = trace_inverse_product(p, root_q)
    maha = trace_inverse_product(p, delta)
    return 0.5 * (trace + maha - k + p.log_det_covariance() - log_det_q)


@register_kl(LowRankMultivariateNormal, Normal)
def _kl_lowrank_normal(q: Distribution, p: Distribution) -> Array:
    assert isinstance(q, LowRankMultivariateNormal) and isinstance(p, Normal)
    k = q.event_shape[0]
    factor, diag, _ = q.factors()
    # Ratios to p's scale (never its square, which underflows for a float32 scale of 1e-20
    # and made the KL inf - inf = NaN instead of inf) and log|Σp| = 2 Σ log σp.
    scale_p = jnp.asarray(p.scale, diag.dtype)
    var_q = jnp.sum(jnp.square(factor), axis=-1) + diag
    trace = jnp.sum(jnp.square(jnp.sqrt(var_q) / scale_p), axis=-1)
    delta = (jnp.asarray(p.loc, diag.dtype) - jnp.asarray(q.loc, diag.dtype)) / scale_p
    maha = jnp.sum(jnp.square(delta), axis=-1)
    shape = jnp.broadcast_shapes(jnp.shape(p.loc), scale_p.shape)
    log_det_p = 2.0 * jnp.sum(jnp.broadcast_to(jnp.log(scale_p), shape), axis=-1)
    return 0.5 * (trace + maha - k + log_det_p - q.log_det_covariance())
