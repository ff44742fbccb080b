r"""Variational bounds on :math:`\log p(x)`: the ELBO, the IWAE bound and the Rényi bound.

All estimators share one sampling scheme. ``key`` is split into one key per Monte Carlo
sample; sample :math:`s` draws :math:`z_s \sim q` for the whole batch of posteriors at once,
so every datapoint and every sample gets its own random stream, and the draws do not depend
on how the samples are chunked. The user's ``log_likelihood(z, x)`` is written for one
latent and one datapoint; it is vmapped **once**, over a single flattened
``batch × samples`` axis, so that a decoder ``W @ z`` becomes one matrix–matrix product
(and so does its gradient) instead of a batched contraction.

For latents that cannot be reparameterized (``Bernoulli``, ``Categorical``),
``elbo(..., grad_estimator="score")`` and ``iwae_bound(..., grad_estimator="vimco")`` return
surrogates whose value is the bound and whose gradient is a score-function estimator with
leave-one-out control variates; the estimator math lives in :mod:`jelbo.score`.

With ``sample_chunk_size`` the samples are evaluated ``sample_chunk_size`` at a time in a
``lax.map`` (each chunk rematerialized in the backward pass), so peak memory no longer grows
with ``num_samples`` beyond one scalar per sample and datapoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jelbo import _checks, _random, score
from jelbo.distributions import Distribution, _check_distribution, log_prob, sample
from jelbo.kl import check_same_event, kl_divergence

Array = jax.Array
PyTree = Any
LogLikelihood = Callable[..., Array]

__all__ = ["ELBOTerms", "elbo", "iwae_bound", "renyi_bound"]


class ELBOTerms(NamedTuple):
    """The ELBO and its two terms, each with ``q``'s batch shape (one value per datapoint).

    Attributes:
        elbo: ``expected_log_likelihood - beta * kl``.
        expected_log_likelihood: Monte Carlo estimate of :math:`\\mathbb E_q[\\log p(x|z)]`.
        kl: :math:`\\mathrm{KL}(q\\|p)`, closed form or Monte Carlo (``kl="mc"``).
    """

    elbo: Array
    expected_log_likelihood: Array
    kl: Array


class _Problem(NamedTuple):
    """The checked arguments shared by the estimators."""

    q: Distribution
    prior: Distribution
    log_likelihood: LogLikelihood
    data: PyTree
    num_samples: int
    chunk: int | None


def _check_problem(
    key: Any,
    q: Any,
    log_likelihood: LogLikelihood,
    prior: Any,
    data: Any,
    num_samples: Any,
    sample_chunk_size: Any,
) -> _Problem:
    _checks.check_key(key)
    _check_distribution(q, "q")
    _check_distribution(prior, "prior")
    if not callable(log_likelihood):
        raise TypeError(f"`log_likelihood` must be callable; got {type(log_likelihood).__name__}.")
    num_samples = _checks.check_positive_int(num_samples, "num_samples")
    if sample_chunk_size is not None:
        sample_chunk_size = _checks.check_positive_int(sample_chunk_size, "sample_chunk_size")
    check_same_event(q, prior, names=("q", "prior"))
    batch = q.batch_shape
    try:
        joint = np.broadcast_shapes(batch, prior.batch_shape)
    except ValueError:
        joint = None
    if joint != batch:
        raise ValueError(
            f"`prior` batch shape {prior.batch_shape} must broadcast to `q`'s batch shape "
            f"{batch} (one prior for all datapoints, or one per datapoint)."
        )
    if data is not None:
        for path, leaf in jax.tree_util.tree_leaves_with_path(data):
            shape = tuple(jnp.shape(leaf))
            if shape[: len(batch)] != batch:
                raise ValueError(
                    f"`data`{jax.tree_util.keystr(path)} has shape {shape}, but its leading axes "
                    f"must equal `q`'s batch shape {batch}: one datapoint per posterior."
                )
    return _Problem(q, prior, log_likelihood, data, num_samples, sample_chunk_size)


def _check_reparameterized(q: Distribution, grad_estimator: str) -> None:
    if not q.is_reparameterized:
        raise ValueError(
            f"grad_estimator={grad_estimator!r} differentiates through samples of q, but "
            f"{type(q).__name__} cannot be reparameterized. Use the score-function "
            "estimators, which work for any q: jelbo.elbo(..., grad_estimator='score') or "
            "jelbo.iwae_bound(..., grad_estimator='vimco'); or a continuous q (Normal, "
            "MultivariateNormalTriL, Laplace, StudentT)."
        )


def _scale_gradient(x: Array, scale: Array) -> Array:
    """Returns ``x`` unchanged in value; its gradient is multiplied by ``scale``."""
    return jax.lax.stop_gradient(x) + scale * (x - jax.lax.stop_gradient(x))


def _log_likelihood_flat(problem: _Problem, z: Array) -> Array:
    """Evaluates ``log_likelihood`` on ``z`` of shape ``(*batch, C, *event)`` -> ``(*batch, C)``.

    Batch and sample axes are flattened into one axis (batch-major, so that a sharded batch
    axis stays contiguous) and the user's function is vmapped once over it.
    """
    batch = problem.q.batch_shape
    lead = z.shape[: len(batch) + 1]
    n = math.prod(lead)
    z_flat = z.reshape((n,) + z.shape[len(lead) :])
    if problem.data is None:
        ll = jax.vmap(problem.log_likelihood)(z_flat)
    else:

        def repeat_per_sample(leaf: Array) -> Array:
            leaf = jnp.asarray(leaf)
            rest = leaf.shape[len(batch) :]
            tiled = jnp.broadcast_to(jnp.expand_dims(leaf, len(batch)), lead + rest)
            return tiled.reshape((n,) + rest)

        x_flat = jax.tree_util.tree_map(repeat_per_sample, problem.data)
        ll = jax.vmap(problem.log_likelihood)(z_flat, x_flat)
    ll = jnp.asarray(ll)
    if ll.shape != (n,):
        raise ValueError(
            "`log_likelihood` must return a scalar log p(x|z) for one latent and one "
            f"datapoint; it returned shape {ll.shape[1:]}. Sum over the data dimensions."
        )
    return ll.reshape(lead)


def _sample_terms(
    problem: _Problem,
    keys: Array,
    weights: Array | None,
    *,
    with_log_q: bool,
    stop_q: bool,
    stop_z: bool = False,
) -> tuple[Array, ...]:
    """Draws one ``z`` per key and returns per-sample terms, each ``(*batch, C)``.

    Returns ``(log p(x|z),)``, or ``(log p(x|z), log q(z), log p(z))`` with ``with_log_q``.
    ``stop_q`` evaluates ``log q`` with q's parameters behind a stop-gradient (STL, DReG);
    ``stop_z`` puts the samples themselves behind one (score-function estimators);
    ``weights`` (``(*batch, C)``) scale the gradient that reaches each ``z`` (DReG).
    """
    q, prior = problem.q, problem.prior
    n_batch = len(q.batch_shape)
    q_for_log_q = jax.lax.stop_gradient(q) if stop_q else q

    def per_key(key: Array, weight: Array | None) -> tuple[Array, ...]:
        z = sample(key, q)
        if stop_z:
            z = jax.lax.stop_gradient(z)
        if weight is not None:
            z = _scale_gradient(z, jnp.reshape(weight, weight.shape + (1,) * len(q.event_shape)))
        if not with_log_q:
            return (z,)
        return z, log_prob(q_for_log_q, z), log_prob(prior, z)

    z, *log_densities = jax.vmap(per_key, in_axes=(0, n_batch), out_axes=n_batch)(keys, weights)
    return (_log_likelihood_flat(problem, z), *log_densities)


def _map_over_samples(
    problem: _Problem,
    key: Array,
    weights: Array | None = None,
    **options: bool,
) -> tuple[Array, ...]:
    """Runs :func:`_sample_terms` over all samples, in chunks when asked; ``(*batch, S)``."""
    num_samples, chunk = problem.num_samples, problem.chunk
    keys = _random.split(key, num_samples)
    terms = lambda k, w: _sample_terms(problem, k, w, **options)
    if chunk is None or chunk >= num_samples:
        return terms(keys, weights)

    n_batch = len(problem.q.batch_shape)
    n_chunks, rest = divmod(num_samples, chunk)
    head = n_chunks * chunk
    head_keys = keys[:head].reshape((n_chunks, chunk) + keys.shape[1:])
    head_weights = None
    if weights is not None:
        w = weights[..., :head].reshape(weights.shape[:-1] + (n_chunks, chunk))
        head_weights = jnp.moveaxis(w, -2, 0)
    mapped = jax.lax.map(lambda kw: jax.checkpoint(terms)(*kw), (head_keys, head_weights))
    out = [jnp.moveaxis(m, 0, n_batch).reshape(m.shape[1:-1] + (head,)) for m in mapped]
    if rest:
        tail_weights = None if weights is None else weights[..., head:]
        tail = terms(keys[head:], tail_weights)
        out = [jnp.concatenate([o, t], axis=-1) for o, t in zip(out, tail, strict=True)]
    return tuple(out)


def elbo(
    key: Array,
    q: Distribution,
    log_likelihood: LogLikelihood,
    prior: Distribution,
    data: PyTree = None,
    *,
    num_samples: int = 1,
    kl: str = "analytic",
    grad_estimator: str = "reparam",
    beta: float | Array = 1.0,
    sample_chunk_size: int | None = None,
    baseline: float | Array | None = None,
) -> ELBOTerms:
    r"""Monte Carlo evidence lower bound, one value per datapoint.

    .. math::
        \mathrm{ELBO}(x) = \frac1S\sum_{s=1}^S \log p(x\mid z_s) - \beta\,\mathrm{KL}(q\|p),
        \qquad z_s \sim q(z\mid x),

    a lower bound on :math:`\log p(x)` for :math:`\beta = 1`. With ``kl="analytic"`` the KL
    is the closed form :func:`jelbo.kl_divergence`; with ``kl="mc"`` it is
    :math:`\frac1S\sum_s \log q(z_s) - \log p(z_s)` on the same samples.

    Args:
        key: PRNG key.
        q: variational posterior, batch shape ``B`` (one posterior per datapoint), event
            shape ``E``. Must be reparameterizable unless ``grad_estimator="score"``.
        log_likelihood: ``log_likelihood(z, x) -> scalar`` for ONE latent ``z`` of shape
            ``E`` and ONE datapoint ``x`` (a slice of ``data``); ``log_likelihood(z)`` if
            ``data`` is ``None``. jelbo vmaps it over samples and batch.
        prior: prior :math:`p(z)`, event shape ``E``, batch shape broadcastable to ``B``.
        data: pytree whose leaves have leading axes ``B``, or ``None``.
        num_samples: number of samples :math:`S` per datapoint (static).
        kl: ``"analytic"`` or ``"mc"`` (static).
        grad_estimator: ``"reparam"``, or ``"stl"`` (sticking the landing, Roeder et al.
            2017: ``log q(z)`` is evaluated with q's parameters stop-gradiented, dropping
            the zero-mean score term; needs ``kl="mc"``), or ``"score"`` (static). The
            score-function (REINFORCE) estimator works for any ``q``, including
            ``Bernoulli`` and ``Categorical``: the samples are stop-gradiented and q's
            parameters get
            :math:`\frac1S\sum_s (f_s - b_s)\nabla_\phi\log q(z_s)` with
            :math:`f_s = \log p(x|z_s)` (``kl="analytic"``, whose KL gradient stays exact)
            or :math:`f_s = \log p(x|z_s) - \beta(\log q(z_s) - \log p(z_s))` (``kl="mc"``),
            and baseline :math:`b_s` = the leave-one-out mean
            :math:`\frac1{S-1}\sum_{j\ne s} f_j` when ``num_samples > 1`` (unbiased) or
            ``baseline``; see :func:`jelbo.score.elbo_surrogate`. The value is the ELBO.
        beta: weight of the KL term (β-VAE, KL annealing); may be traced.
        sample_chunk_size: evaluate samples this many at a time (static); ``None`` for all
            at once. Results equal the unchunked ones.
        baseline: only with ``grad_estimator="score"``: a control variate :math:`c(x)`
            (may be traced; shape broadcastable to ``B``) used as :math:`b_s = c` instead of
            the leave-one-out mean, e.g. a learned scalar or a network of the datapoint for
            the single-sample case (NVIL, Mnih & Gregor 2014); ``0.0`` gives the plain
            score function. The returned ``elbo`` also carries, at zero value, the gradient
            of :math:`-\frac12\frac1S\sum_s(f_s - c)^2` with respect to ``c``, so a learned
            baseline is fitted by least squares by the same ``jax.grad`` that trains the
            model. ``None`` (default): leave-one-out for ``num_samples > 1``, no baseline
            for ``num_samples == 1``.

    Returns:
        :class:`ELBOTerms` of arrays with shape ``B``.

    Raises:
        ValueError, TypeError: at trace time, for mismatched shapes or invalid options.
    """
    problem = _check_problem(key, q, log_likelihood, prior, data, num_samples, sample_chunk_size)
    _checks.check_choice(kl, "kl", ("analytic", "mc"))
    _checks.check_choice(grad_estimator, "grad_estimator", ("reparam", "stl", "score"))
    if kl == "analytic" and grad_estimator == "stl":
        raise ValueError(
            "grad_estimator='stl' drops the score term of log q(z), which only exists in the "
            "Monte Carlo KL: use kl='mc' with it (with kl='analytic' STL is not defined)."
        )
    if grad_estimator == "score":
        if baseline is not None:
            baseline = score.check_baseline(baseline, q.batch_shape)
        log_lik, log_q, log_p = _map_over_samples(
            problem, key, with_log_q=True, stop_q=False, stop_z=True
        )
        kl_value = None
        if kl == "analytic":
            kl_value = jnp.broadcast_to(kl_divergence(q, prior), q.batch_shape)
        terms = score.elbo_surrogate(
            log_lik, log_q, log_p, kl=kl_value, beta=beta, baseline=baseline
        )
        return ELBOTerms(*terms)
    if baseline is not None:
        raise ValueError(
            "`baseline` is a control variate for the score-function estimator; it needs "
            f"grad_estimator='score' (got grad_estimator={grad_estimator!r})."
        )
    _check_reparameterized(q, grad_estimator)
    if kl == "analytic":
        (log_lik,) = _map_over_samples(problem, key, with_log_q=False, stop_q=False)
        kl_value = jnp.broadcast_to(kl_divergence(q, prior), q.batch_shape)
    else:
        log_lik, log_q, log_p = _map_over_samples(
            problem, key, with_log_q=True, stop_q=grad_estimator == "stl"
        )
        kl_value = jnp.mean(log_q - log_p, axis=-1)
    expected = jnp.mean(log_lik, axis=-1)
    return ELBOTerms(expected - beta * kl_value, expected, kl_value)


def _log_weights(
    problem: _Problem, key: Array, weights: Array | None = None, *, stop_q: bool
) -> Array:
    r"""Per-sample :math:`\log w_s = \log p(x|z_s) + \log p(z_s) - \log q(z_s)`, ``(*B, S)``."""
    log_lik, log_q, log_p = _map_over_samples(problem, key, weights, with_log_q=True, stop_q=stop_q)
    return log_lik + log_p - log_q


def iwae_bound(
    key: Array,
    q: Distribution,
    log_likelihood: LogLikelihood,
    prior: Distribution,
    data: PyTree = None,
    *,
    num_samples: int,
    grad_estimator: str = "reparam",
    sample_chunk_size: int | None = None,
) -> Array:
    r"""Importance-weighted bound (Burda et al. 2016), one value per datapoint.

    .. math::
        \mathcal L_K(x) = \log \frac1K\sum_{k=1}^K w_k, \qquad
        w_k = \frac{p(x\mid z_k)\,p(z_k)}{q(z_k\mid x)},\quad z_k \sim q,

    computed with ``logsumexp``. :math:`\mathrm{ELBO} \le \mathbb E\,\mathcal L_K \le
    \mathbb E\,\mathcal L_{K+1} \le \log p(x)`.

    Args:
        key, q, log_likelihood, prior, data, sample_chunk_size: as in :func:`jelbo.elbo`.
        num_samples: :math:`K` (static).
        grad_estimator: ``"reparam"`` (plain reparameterized gradient) or ``"dreg"``,
            the doubly-reparameterized gradient (Tucker et al. 2019): for q's parameters
            :math:`\sum_k \tilde w_k^2\, \partial_z \log w_k\, \partial_\phi z_k` with
            normalized weights :math:`\tilde w_k` and ``log q`` stop-gradiented; for the
            model's parameters the usual :math:`\sum_k \tilde w_k \nabla_\theta \log w_k`.
            DReG evaluates the model twice per sample. Or ``"vimco"`` (Mnih & Rezende
            2016), the score-function estimator with leave-one-out control variates, for
            any ``q`` including ``Bernoulli`` and ``Categorical`` (the samples are
            stop-gradiented):
            :math:`\sum_k (\mathcal L_K - \hat{\mathcal L}_{-k})\nabla_\phi\log q(z_k)
            + \sum_k \tilde w_k \nabla \log w_k|_{z_k\ \mathrm{fixed}}`, where
            :math:`\hat{\mathcal L}_{-k}` is the bound with :math:`w_k` replaced by the
            geometric mean of the other weights; needs ``num_samples >= 2``. See
            :func:`jelbo.score.iwae_surrogate`. The value is the bound in every case.

    Returns:
        Array of shape ``q.batch_shape``.
    """
    problem = _check_problem(key, q, log_likelihood, prior, data, num_samples, sample_chunk_size)
    _checks.check_choice(grad_estimator, "grad_estimator", ("reparam", "dreg", "vimco"))
    if grad_estimator == "vimco":
        if problem.num_samples < 2:
            raise ValueError(
                "grad_estimator='vimco' uses the other samples as control variates: it needs "
                f"num_samples >= 2; got num_samples={problem.num_samples}. For one sample use "
                "jelbo.elbo(..., grad_estimator='score') (optionally with a `baseline`)."
            )
        log_lik, log_q, log_p = _map_over_samples(
            problem, key, with_log_q=True, stop_q=False, stop_z=True
        )
        return score.iwae_surrogate(log_lik + log_p - log_q, log_q)
    _check_reparameterized(q, grad_estimator)
    log_k = math.log(problem.num_samples)
    if grad_estimator == "reparam":
        log_w = _log_weights(problem, key, stop_q=False)
        return jax.nn.logsumexp(log_w, axis=-1) - log_k

    log_w = jax.lax.stop_gradient(_log_weights(problem, key, stop_q=True))
    bound = jax.nn.logsumexp(log_w, axis=-1) - log_k
    normalized = jax.nn.softmax(log_w, axis=-1)
    # Same samples again, with each z's gradient scaled by its normalized weight, so that
    # d/dφ Σ w̃ log w = Σ w̃² ∂log w/∂z ∂z/∂φ (DReG) while d/dθ stays Σ w̃ ∇θ log w.
    surrogate = jnp.sum(normalized * _log_weights(problem, key, normalized, stop_q=True), axis=-1)
    return bound + (surrogate - jax.lax.stop_gradient(surrogate))


def renyi_bound(
    key: Array,
    q: Distribution,
    log_likelihood: LogLikelihood,
    prior: Distribution,
    data: PyTree = None,
    *,
    alpha: float,
    num_samples: int,
    sample_chunk_size: int | None = None,
) -> Array:
    r"""Monte Carlo Rényi-α variational bound (Li & Turner 2016), one value per datapoint.

    .. math::
        \mathcal L_\alpha(x) = \frac{1}{1-\alpha}\log\frac1K\sum_{k=1}^K w_k^{1-\alpha},
        \qquad w_k = \frac{p(x\mid z_k)\,p(z_k)}{q(z_k\mid x)},

    with the limit :math:`\alpha\to1` the ELBO :math:`\frac1K\sum_k\log w_k` (equal to
    ``elbo(..., kl="mc")`` for the same key) and :math:`\alpha=0` the IWAE bound. For
    :math:`\alpha \ge 0` its expectation lower-bounds :math:`\log p(x)` and decreases in α.
    Gradients are reparameterized.

    Args:
        key, q, log_likelihood, prior, data, sample_chunk_size: as in :func:`jelbo.elbo`.
        alpha: finite Python float :math:`\alpha \ge 0` (static).
        num_samples: :math:`K` (static).

    Returns:
        Array of shape ``q.batch_shape``.
    """
    problem = _check_problem(key, q, log_likelihood, prior, data, num_samples, sample_chunk_size)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise TypeError(
            f"`alpha` must be a Python float (it is static); got {type(alpha).__name__}."
        )
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"`alpha` must be finite and >= 0 for a lower bound; got {alpha}.")
    _check_reparameterized(q, "reparam")
    log_w = _log_weights(problem, key, stop_q=False)
    if alpha == 1:
        return jnp.mean(log_w, axis=-1)
    one_minus = 1.0 - float(alpha)
    scaled = jax.nn.logsumexp(one_minus * log_w, axis=-1) - math.log(problem.num_samples)
    return scaled / one_minus
