r"""Pareto-smoothed importance sampling (PSIS), the k̂ diagnostic and posterior summaries.

- :func:`psis` ``(log_weights, *, axis=-1) -> (smoothed_log_weights, pareto_k)``;
  :func:`psis_tail_length` the tail size it uses;
- :func:`posterior_summary` ``(key, q, log_joint, *, num_samples, fn)`` ->
  :class:`PosteriorSummary`: draws from a fitted ``q``, their log weights, PSIS-reweighted
  means, sds and Monte Carlo standard errors of ``fn(z)`` (e.g. the constrained parameters of
  a :class:`jelbo.ParameterSpace`), ESS, :math:`\hat k`, and the ELBO and IWAE bounds
  (:class:`jelbo.Bound`) from the same draws.

:func:`psis` smooths a set of importance log weights
:math:`\log w_s = \log p(x, z_s) - \log q(z_s)` as in Vehtari, Simpson, Gelman, Yao & Gabry,
"Pareto smoothed importance sampling", JMLR 25(72), 2024 (Algorithm 1):

1. the :math:`M = \lceil\min(S/5,\ 3\sqrt S)\rceil` largest weights form the tail (rounded up,
   as the loo R package, NumPyro and ArviZ do); its threshold is the :math:`(M+1)`-th largest
   weight :math:`u` (and at least the smallest normal number of the dtype relative to the
   largest weight, so that underflowing weights never enter the tail). Only weights strictly
   above :math:`u` are fitted, so ties with the threshold shorten the tail;
2. a generalized Pareto distribution is fitted to the exceedances :math:`w - u` by the
   empirical-Bayes method of Zhang & Stephens (Technometrics 51(3), 2009), with the weakly
   informative prior of the paper's Appendix G on the shape,
   :math:`\hat k \leftarrow (n\hat k + 10\cdot 0.5)/(n + 10)`;
3. the tail weights are replaced, in rank order, by the fitted quantiles
   :math:`u + F^{-1}\big((i - \tfrac12)/n\big)`, :math:`i = 1..n`, and truncated at the
   largest raw weight.

:math:`\hat k` is the fitted shape. Rule of thumb (Vehtari et al. 2024, Sec. 3): :math:`\hat
k < 0.7` — importance-sampling (and PSIS) estimates are reliable, and the proposal ``q`` is
close enough to the target; :math:`\hat k > 0.7` — do not trust the estimates, nor ``q``.

With fewer than five weights in the tail (always for :math:`S \le 20`, where :math:`M < 5`)
there is nothing to fit: the raw weights are returned unchanged with :math:`\hat k = +\infty`,
exactly as NumPyro's ``psis_diagnostic`` and ArviZ's ``psislw`` do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jelbo import _checks, _stats
from jelbo._typing import Array, ArrayLike, PyTree
from jelbo.distributions.base import Distribution, sample_and_log_prob
from jelbo.results import Bound

__all__ = ["PosteriorSummary", "posterior_summary", "psis", "psis_tail_length"]

# Zhang & Stephens's grid constant and the weak prior on k (Vehtari et al. 2024, App. G).
_PRIOR_BS = 3.0
_PRIOR_K_STRENGTH = 10.0
_PRIOR_K_MEAN = 0.5
_MIN_TAIL = 5


def psis_tail_length(num_samples: int) -> int:
    r"""The PSIS tail length :math:`M = \lceil\min(S/5,\ 3\sqrt S)\rceil` for ``S`` draws."""
    return math.ceil(min(num_samples / 5.0, 3.0 * math.sqrt(num_samples)))


def psis(log_weights: ArrayLike, *, axis: int = -1) -> tuple[Array, Array]:
    r"""Pareto-smoothed importance sampling of log weights along ``axis``.

    See the module docstring for the algorithm (Vehtari et al., JMLR 2024). The smoothed
    weights are *not* normalized: they keep the scale of the input, so that shifting every
    log weight by a constant shifts the smoothed log weights by the same constant and leaves
    :math:`\hat k` unchanged; normalize with ``smoothed - logsumexp(smoothed, axis)``. The
    PSIS estimate of :math:`\mathbb E_p[f]` is :math:`\sum_s \tilde w_s f(z_s) / \sum_s \tilde
    w_s`.

    ``-inf`` log weights (draws with zero target density) never enter the tail and stay
    ``-inf`` (zero weight). If every weight along the axis is ``-inf``, they are returned
    unchanged with :math:`\hat k = +\infty`. A ``NaN`` anywhere along the axis gives a ``NaN``
    :math:`\hat k` for that slice.

    Args:
        log_weights: log importance weights, any shape; the draws lie along ``axis``. The
            number of draws ``S`` is static. Floating dtype (integers are promoted).
        axis: the axis of the ``S`` draws. Every other axis is batch (vectorized, no loop).

    Returns:
        ``(smoothed_log_weights, pareto_k)``: the smoothed log weights with the shape and
        dtype of ``log_weights``, and :math:`\hat k` with the draws axis removed. For
        ``S <= 20`` (tail shorter than five) the raw weights and ``+inf``.

    Raises:
        ValueError: if ``log_weights`` is a scalar or ``axis`` is out of range.
    """
    lw = jnp.asarray(log_weights)
    if not jnp.issubdtype(lw.dtype, jnp.floating):
        lw = lw.astype(jnp.result_type(float))
    if lw.ndim == 0:
        raise ValueError(
            f"psis: `log_weights` needs an axis of draws; got a scalar of dtype {lw.dtype}."
        )
    if not -lw.ndim <= axis < lw.ndim:
        raise ValueError(
            f"psis: `axis`={axis} is out of range for `log_weights` of shape {lw.shape}."
        )
    moved = jnp.moveaxis(lw, axis, -1)
    num = moved.shape[-1]
    if psis_tail_length(num) < _MIN_TAIL:
        k = jnp.full(moved.shape[:-1], jnp.inf, lw.dtype)
        return lw, jnp.where(jnp.any(jnp.isnan(moved), axis=-1), jnp.nan, k)
    smoothed, k = _psis_batched(moved)
    return jnp.moveaxis(smoothed, -1, axis), k


def _psis_1d(lw: Array) -> tuple[Array, Array]:
    """PSIS of one vector of ``S >= 21`` log weights (vmapped by :func:`psis`)."""
    dtype = lw.dtype
    num = lw.shape[0]
    tail_len = psis_tail_length(num)
    finfo = jnp.finfo(dtype)

    lw_max = jnp.max(lw)
    all_neg_inf = lw_max == -jnp.inf
    x = lw - jnp.where(all_neg_inf, 0.0, lw_max)
    order = jnp.argsort(x)
    xs = x[order]
    cutoff = jnp.maximum(xs[num - tail_len - 1], jnp.log(finfo.tiny).astype(dtype))
    tail = xs[num - tail_len :]  # ascending; the fitted tail is a suffix of it
    valid = tail > cutoff
    n = jnp.sum(valid)
    exp_cutoff = jnp.exp(cutoff)
    exceed = jnp.where(valid, jnp.exp(tail) - exp_cutoff, 0.0)

    k, sigma = _fit_generalized_pareto(exceed, valid, n, tail_len)
    fitted = (n >= _MIN_TAIL) & ~all_neg_inf
    k = jnp.where(fitted, k, jnp.inf)

    # Fitted quantiles at (i - 1/2)/n for the n valid (largest) entries, in rank order.
    rank = jnp.arange(tail_len) - (tail_len - n)
    n_safe = jnp.maximum(n, 1).astype(dtype)
    p = (rank.astype(dtype) + 0.5) / n_safe
    quantile = _generalized_pareto_quantile(jnp.clip(p, 0.0, 1.0), k, sigma)
    smooth_tail = jnp.minimum(jnp.log(quantile + exp_cutoff), 0.0)
    replace = valid & fitted & jnp.isfinite(k)
    new_tail = jnp.where(replace, smooth_tail, tail)
    xs = xs.at[num - tail_len :].set(new_tail)
    smoothed = jnp.empty_like(x).at[order].set(xs)
    smoothed = jnp.where(all_neg_inf, lw, smoothed + lw_max)
    k = jnp.where(jnp.any(jnp.isnan(lw)), jnp.nan, k)
    return smoothed, k


# One compiled program (op-by-op dispatch of the vectorized steps is ~100x slower to start).
_psis_batched = jax.jit(jnp.vectorize(_psis_1d, signature="(s)->(s),()"))


def _fit_generalized_pareto(
    exceed: Array, valid: Array, n: Array, size: int
) -> tuple[Array, Array]:
    r"""Zhang & Stephens (2009) estimate of a generalized Pareto's ``(k, sigma)``, with the weak
    prior on ``k``.

    ``exceed`` (length ``size``) is sorted ascending with its ``n`` valid entries (exceedances
    over the threshold) at the end; invalid entries are zero and masked by ``valid``. The grid
    of :math:`m = 30 + \lfloor\sqrt n\rfloor` candidates
    :math:`\theta_j = 1/x_{(n)} + (1 - \sqrt{m/(j - 1/2)})/(3 x_{(\lfloor n/4 + 1/2\rfloor)})`
    is weighted by the profile likelihood
    :math:`\ell(\theta) = n(\log(-\theta/\hat k(\theta)) - \hat k(\theta) - 1)`, with
    :math:`\hat k(\theta) = \overline{\log(1 - \theta x)}` (the sign convention of loo:
    positive ``k`` for heavy tails); weights below ``10 eps`` are dropped as in the reference
    implementations. ``sigma`` comes from the un-regularized ``k`` (as in loo and ArviZ).
    """
    dtype = exceed.dtype
    nf = jnp.maximum(n, 1).astype(dtype)
    m_max = 30 + math.isqrt(size)
    m = 30 + jnp.floor(jnp.sqrt(nf))
    j = jnp.arange(1, m_max + 1, dtype=dtype)
    grid_valid = j <= m
    q_index = (size - n) + jnp.floor(nf / 4.0 + 0.5).astype(jnp.int32) - 1
    x_quartile = exceed[jnp.clip(q_index, 0, size - 1)]
    x_max = exceed[size - 1]
    theta = 1.0 / x_max + (1.0 - jnp.sqrt(m / jnp.where(grid_valid, j - 0.5, 1.0))) / (
        _PRIOR_BS * x_quartile
    )
    theta = jnp.where(grid_valid, theta, theta[0])
    log1p_terms = jnp.where(valid, jnp.log1p(-theta[:, None] * exceed), 0.0)
    k_grid = jnp.sum(log1p_terms, axis=1) / nf
    profile = nf * (jnp.log(-theta / k_grid) - k_grid - 1.0)
    profile = jnp.where(grid_valid & ~jnp.isnan(profile), profile, -jnp.inf)
    weights = jax.nn.softmax(profile)
    weights = jnp.where(weights >= 10 * np.finfo(np.float64).eps, weights, 0.0)
    weights = weights / jnp.sum(weights)
    theta_post = jnp.sum(weights * theta)
    k = jnp.sum(jnp.where(valid, jnp.log1p(-theta_post * exceed), 0.0)) / nf
    sigma = -k / theta_post
    k = (nf * k + _PRIOR_K_STRENGTH * _PRIOR_K_MEAN) / (nf + _PRIOR_K_STRENGTH)
    return k, sigma


def _generalized_pareto_quantile(p: Array, k: Array, sigma: Array) -> Array:
    r"""Quantile :math:`\sigma\,((1-p)^{-k} - 1)/k` of the generalized Pareto (``k -> 0``:
    :math:`-\sigma\log(1-p)`), for ``0 < p < 1``; ``NaN`` when ``sigma <= 0``."""
    eps = jnp.finfo(p.dtype).eps
    small = jnp.abs(k) < eps
    k_safe = jnp.where(small, 1.0, k)
    log1m = jnp.log1p(-p)
    q = jnp.where(small, -log1m, jnp.expm1(-k_safe * log1m) / k_safe)
    return jnp.where(sigma > 0, sigma * q, jnp.nan)


# --- posterior summaries ----------------------------------------------------------------------


class PosteriorSummary(NamedTuple):
    r"""What :func:`posterior_summary` returns; ``B`` is ``q``'s batch shape, ``S`` the draws.

    Attributes:
        draws: the draws :math:`z_s \sim q`, shape ``(S, *B, *E)``.
        values: ``fn(z_s)`` for every draw, a pytree whose leaves are ``(S, *B, *leaf)``.
        log_weights: raw log weights :math:`\log p(x, z_s) - \log q(z_s)`, ``(S, *B)``.
        smoothed_log_weights: the PSIS log weights, normalized (``logsumexp`` over the draws
            is 0), ``(S, *B)``.
        pareto_k: :math:`\hat k` of the raw weights, ``B``. Below 0.7 the reweighted
            estimates are reliable; above 0.7 do not trust ``q`` (nor the reweighting).
        ess: effective sample size :math:`1/\sum_s\tilde w_s^2` of the smoothed normalized
            weights, ``B``.
        mean: PSIS estimate of :math:`\mathbb E_p[f(z)]`, :math:`\sum_s\tilde w_s f(z_s)`;
            leaves ``(*B, *leaf)``.
        sd: PSIS estimate of the posterior standard deviation of ``f``,
            :math:`\sqrt{\sum_s\tilde w_s (f(z_s) - \bar f)^2}`.
        mcse: Monte Carlo standard error of ``mean``,
            :math:`\sqrt{\sum_s\tilde w_s^2 (f(z_s) - \bar f)^2}` (Vehtari et al. 2024, eq. 6,
            with independent draws); meaningful only when :math:`\hat k < 0.7`.
        q_mean: plain Monte Carlo mean of ``f`` under ``q`` (what the variational
            approximation says, no reweighting).
        q_sd: plain Monte Carlo standard deviation of ``f`` under ``q``.
        elbo: a :class:`jelbo.Bound`: ``value`` the ELBO estimate
            :math:`\frac1S\sum_s\log w_s`, ``expected_log_likelihood``
            :math:`\frac1S\sum_s\log p(x, z_s)`, ``kl`` :math:`\frac1S\sum_s\log q(z_s)`
            (the ``prior=None`` convention of :class:`jelbo.ELBO`), ``stderr``
            :math:`\mathrm{sd}(\log w)/\sqrt S`; each ``B``.
        iwae: a :class:`jelbo.Bound`: ``value`` the importance-weighted bound
            :math:`\log\frac1S\sum_s w_s` from the same draws (raw weights), ``stderr`` its
            delta-method standard error :math:`\sqrt{(S\sum_s\bar w_s^2 - 1)/(S-1)}` and
            ``ess`` :math:`1/\sum_s\bar w_s^2` with the raw normalized weights
            :math:`\bar w_s` (as :class:`jelbo.IWAE` reports them; first order, they
            understate the error of heavy-tailed weights).
    """

    draws: Array
    values: PyTree
    log_weights: Array
    smoothed_log_weights: Array
    pareto_k: Array
    ess: Array
    mean: PyTree
    sd: PyTree
    mcse: PyTree
    q_mean: PyTree
    q_sd: PyTree
    elbo: Bound
    iwae: Bound


def posterior_summary(
    key: Array,
    q: Distribution,
    log_joint: Callable[[Array], Array],
    *,
    num_samples: int = 1000,
    fn: Callable[[Array], PyTree] | None = None,
) -> PosteriorSummary:
    r"""Draws from a fitted ``q``, PSIS-reweights them towards :math:`p(z\mid x)`, summarizes.

    With :math:`z_s \sim q` and :math:`\log w_s = \log p(x, z_s) - \log q(z_s)`, the PSIS
    weights :math:`\tilde w_s` (:func:`psis`, normalized) give self-normalized estimates
    :math:`\mathbb E_p[f] \approx \sum_s\tilde w_s f(z_s)` with their Monte Carlo standard
    errors and :math:`\hat k` (Yao, Vehtari, Simpson & Gelman, "Yes, but did it work?",
    ICML 2018; Vehtari et al., JMLR 2024). The same draws give the ELBO and the IWAE bound
    with their standard errors. Pure: ``jit`` it with ``q`` as an argument, ``vmap`` it over
    keys.

    Args:
        key: a PRNG key; split into one key per draw (so draw ``s`` does not depend on
            ``num_samples``).
        q: the fitted variational distribution over the unconstrained latent ``z`` (event
            shape ``E``, any batch shape ``B``: each batch element is summarized separately).
        log_joint: :math:`\log p(x, z)` up to a constant, a scalar function of ONE latent of
            shape ``E``; vmapped over the draws and the batch. ``-inf`` (outside the
            support) gives a zero weight.
        num_samples: number of draws ``S`` (static); at least 21 for a :math:`\hat k` (with
            fewer, :math:`\hat k = +\infty` and the weights are not smoothed).
        fn: a function of ONE latent ``z`` returning a pytree of arrays whose expectations
            are wanted, e.g. the constrained parameters
            ``lambda z: space.constrain(z)[0]``. Default: ``z`` itself.

    Returns:
        A :class:`PosteriorSummary`.

    Raises:
        TypeError: if ``q`` is not a jelbo distribution or ``key`` not a PRNG key.
        ValueError: if ``log_joint`` does not return a scalar for one latent.
    """
    _checks.check_key(key)
    if not isinstance(q, Distribution):
        raise TypeError(f"`q` must be a jelbo distribution; got {type(q).__name__}.")
    num = _checks.check_positive_int(num_samples, "num_samples")
    fn = (lambda z: z) if fn is None else fn
    batch, event = q.batch_shape, q.event_shape
    keys = jax.random.split(key, num)
    draws, log_q = jax.vmap(lambda k: sample_and_log_prob(k, q))(keys)  # (S, *B, *E), (S, *B)
    flat = draws.reshape((-1, *event))
    out = jax.eval_shape(log_joint, jax.ShapeDtypeStruct(event, draws.dtype))
    if getattr(out, "shape", None) != ():
        raise ValueError(
            "posterior_summary: `log_joint` must return a scalar for one latent of shape "
            f"{event}; it returned {getattr(out, 'shape', type(out).__name__)}."
        )
    log_p = jax.vmap(log_joint)(flat).reshape((num, *batch)).astype(draws.dtype)
    log_w = log_p - log_q
    values = jax.tree.map(lambda v: v.reshape((num, *batch, *v.shape[1:])), jax.vmap(fn)(flat))

    smoothed, k = psis(log_w, axis=0)
    smoothed = smoothed - jax.nn.logsumexp(smoothed, axis=0)
    w = jnp.exp(smoothed)

    def expand(weights: Array, v: Array) -> Array:
        return weights.reshape(weights.shape + (1,) * (v.ndim - weights.ndim)).astype(v.dtype)

    mean = jax.tree.map(lambda v: jnp.sum(expand(w, v) * v, axis=0), values)
    sq_dev = jax.tree.map(lambda v, m: jnp.square(v - m), values, mean)
    sd = jax.tree.map(lambda d: jnp.sqrt(jnp.sum(expand(w, d) * d, axis=0)), sq_dev)
    mcse = jax.tree.map(lambda d: jnp.sqrt(jnp.sum(expand(w * w, d) * d, axis=0)), sq_dev)
    elbo = Bound(
        value=jnp.mean(log_w, axis=0),
        expected_log_likelihood=jnp.mean(log_p, axis=0),
        kl=jnp.mean(log_q, axis=0),
        stderr=_stats.mean_stderr(jnp.moveaxis(log_w, 0, -1)),
        ess=None,
    )
    iwae = Bound(
        value=jax.nn.logsumexp(log_w, axis=0) - jnp.log(num).astype(log_w.dtype),
        expected_log_likelihood=None,
        kl=None,
        stderr=_stats.log_mean_stderr(jnp.moveaxis(log_w, 0, -1)),
        ess=_stats.ess(jnp.moveaxis(log_w, 0, -1)),
    )
    return PosteriorSummary(
        draws=draws,
        values=values,
        log_weights=log_w,
        smoothed_log_weights=smoothed,
        pareto_k=k,
        ess=_stats.ess(jnp.moveaxis(smoothed, 0, -1)),
        mean=mean,
        sd=sd,
        mcse=mcse,
        q_mean=jax.tree.map(lambda v: jnp.mean(v, axis=0), values),
        q_sd=jax.tree.map(lambda v: jnp.std(v, axis=0), values),
        elbo=elbo,
        iwae=iwae,
    )
