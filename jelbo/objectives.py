r"""Variational objectives as objects: :class:`ELBO`, :class:`IWAE` and :class:`Renyi`.

An objective holds the *choices* (number of samples, KL estimator, gradient estimator,
β, chunking); calling it evaluates the bound::

    objective = jelbo.IWAE(num_samples=16, grad_estimator="dreg")
    bound = objective(key, q, log_likelihood, prior, data)     # a jelbo.Bound
    loss = -bound.value.mean()

Impossible combinations (analytic KL with STL, VIMCO with one sample, a baseline without
the score estimator, unknown strings, an ``alpha`` out of range) raise when the objective
is constructed; a pathwise estimator (reparam, STL, DReG, Rényi) on a ``q`` that cannot be
reparameterized raises when it is called, at trace time. Objectives are pytrees whose
options are static auxiliary data and whose ``beta`` and ``baseline`` are leaves, so an
objective is a valid ``jax.jit`` argument and a traced ``beta`` (KL annealing) does not
recompile; see ``docs/objectives.md`` for the design.

Every bound returns a :class:`Bound` with its Monte Carlo standard error, computed from the
per-sample terms it already has (no extra model evaluations).

Sampling scheme (shared by all): ``key`` is split into one key per Monte Carlo sample;
sample :math:`s` draws :math:`z_s \sim q` for the whole batch of posteriors at once, so
every datapoint and every sample gets its own random stream, and the draws do not depend on
how the samples are chunked. The user's ``log_likelihood(z, x)`` is written for one latent
and one datapoint; it is vmapped **once**, over a single flattened ``batch × samples`` axis,
so that a decoder ``W @ z`` becomes one matrix–matrix product (and so does its gradient).
With ``sample_chunk_size`` the samples are evaluated that many at a time in a ``lax.map``
(each chunk rematerialized in the backward pass), so peak memory no longer grows with
``num_samples`` beyond one scalar per sample and datapoint.

``prior=None`` means that ``log_likelihood`` is the log joint :math:`\log p(x, z)` (for
example an unnormalized posterior density of a Bayesian model in an unconstrained space):
the KL term becomes :math:`\mathbb E_q[\log q] = -H(q)` and the log weights
:math:`\log p(x, z) - \log q(z)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp

from jelbo import _checks, _random, _stats, score
from jelbo._typing import Array, ArrayLike, PyTree
from jelbo.distributions.base import (
    Distribution,
    check_sample_density,
    entropy,
    log_prob,
    sample,
    sample_and_log_prob,
    sample_and_stopped_log_prob,
)
from jelbo.kl import kl_divergence
from jelbo.module import Module, static_field
from jelbo.results import Bound as Bound  # its 0.2 home; jelbo.Bound is the public path

LogLikelihood = Callable[..., Array]

#: ``kl`` of :class:`ELBO`: closed form (or the closed-form entropy without a prior) or Monte
#: Carlo on the bound's own samples.
KLEstimator = Literal["analytic", "mc"]
#: ``grad_estimator`` of :class:`ELBO`.
ELBOGradEstimator = Literal["reparam", "stl", "score"]
#: ``grad_estimator`` of :class:`IWAE`.
IWAEGradEstimator = Literal["reparam", "dreg", "vimco"]

__all__ = ["ELBO", "IWAE", "ELBOGradEstimator", "IWAEGradEstimator", "KLEstimator", "Renyi"]

_sg = jax.lax.stop_gradient


# --- checked arguments ----------------------------------------------------------------------


class _Problem(NamedTuple):
    """The checked call arguments shared by the objectives."""

    q: Distribution
    prior: Distribution | None
    log_likelihood: LogLikelihood
    data: PyTree
    num_samples: int
    chunk: int | None


def _check_problem(
    key: Any,
    q: Any,
    log_likelihood: Any,
    prior: Any,
    data: Any,
    num_samples: int,
    chunk: int | None,
    log_q_at_samples: bool = True,
) -> _Problem:
    _checks.check_key(key)
    _checks.check_instance(q, Distribution, "q")
    _checks.check_callable(log_likelihood, "log_likelihood")
    if log_q_at_samples:  # a straight-through relaxed q has no density at its samples
        check_sample_density(q)
    batch = q.batch_shape
    if prior is not None:
        _checks.check_instance(prior, Distribution, "prior", "a jelbo distribution or None")
        _checks.check_same_event(q, prior, names=("q", "prior"))
        _checks.check_broadcasts_to(
            prior.batch_shape, "prior.batch_shape", batch, "`q`'s batch shape"
        )
    _checks.check_leading_axes(data, "data", batch)
    return _Problem(q, prior, log_likelihood, data, num_samples, chunk)


# --- sampling and evaluating the model ------------------------------------------------------


def _scale_gradient(x: Array, scale: Array) -> Array:
    """Returns ``x`` unchanged in value; its gradient is multiplied by ``scale``."""
    return _sg(x) + scale * (x - _sg(x))


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
    if not isinstance(ll, jax.Array):
        # e.g. a tuple (value, aux): describe what one call returned, per latent
        returned = jax.tree_util.tree_map(lambda leaf: _checks.describe(leaf[0]), ll)
        raise TypeError(
            "`log_likelihood` must return one scalar array log p(x|z) for one latent and one "
            f"datapoint; it returned a {type(ll).__name__}: {returned}."
        )
    ll = jnp.asarray(ll)
    _checks.check_scalar_per_example(ll, "log_likelihood", n)
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

    Returns ``(log p(x|z),)``, or ``(log p(x|z), log q(z), log p(z))`` with ``with_log_q``
    (``log p(z) = 0`` without a prior). ``stop_q`` evaluates ``log q`` with q's parameters
    behind a stop-gradient (STL, DReG); ``stop_z`` puts the samples themselves behind one
    (score-function estimators); ``weights`` (``(*batch, C)``) scale the gradient that
    reaches each ``z`` (DReG).
    """
    q, prior = problem.q, problem.prior
    n_batch = len(q.batch_shape)

    def per_key(key: Array, weight: Array | None) -> tuple[Array, ...]:
        # log q at q's own draw comes with the draw (sample_and_log_prob: no bijector inverse
        # for a Transformed q), except for the score-function estimators, whose log q is taken
        # at a stop-gradiented z (its gradient must reach q's parameters directly).
        log_q = None
        if not with_log_q:
            z = sample(key, q)
        elif stop_z:
            z = _sg(sample(key, q))
            log_q = log_prob(q, z)
        elif stop_q:
            z, log_q = sample_and_stopped_log_prob(key, q)
        else:
            z, log_q = sample_and_log_prob(key, q)
        if weight is not None:
            # DReG: every gradient that reaches z is scaled by its weight; log q (parameters
            # stopped) depends on the parameters through z only, so its gradient is scaled
            # as a whole.
            z = _scale_gradient(z, jnp.reshape(weight, weight.shape + (1,) * len(q.event_shape)))
            if log_q is not None:
                log_q = _scale_gradient(log_q, weight)
        if log_q is None:
            return (z,)
        log_p = jnp.zeros_like(log_q) if prior is None else log_prob(prior, z)
        return z, log_q, log_p

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


def _log_weights(
    problem: _Problem, key: Array, weights: Array | None = None, *, stop_q: bool
) -> Array:
    r"""Per-sample :math:`\log w_s = \log p(x|z_s) + \log p(z_s) - \log q(z_s)`, ``(*B, S)``."""
    log_lik, log_q, log_p = _map_over_samples(problem, key, weights, with_log_q=True, stop_q=stop_q)
    return log_lik + log_p - log_q


def _analytic_kl(problem: _Problem) -> Array:
    """``KL(q || prior)`` in closed form, or ``-H(q)`` without a prior; shape ``batch``."""
    q = problem.q
    if problem.prior is not None:
        return jnp.broadcast_to(kl_divergence(q, problem.prior), q.batch_shape)
    try:
        neg_entropy = -entropy(q)
    except NotImplementedError as error:
        raise NotImplementedError(
            f"{error} With prior=None, kl='analytic' needs the entropy of q in closed form; "
            "use kl='mc' to estimate E_q[log q] from the samples."
        ) from None
    return jnp.broadcast_to(neg_entropy, q.batch_shape)


# --- the objectives -------------------------------------------------------------------------


class _Objective(Module, eq=True):
    """Shared base of the objectives: a :class:`jelbo.Module` with value equality.

    The options that change the program (``num_samples``, ``kl``, ``grad_estimator``,
    ``alpha``, ``sample_chunk_size``) are static fields (hashable Python values, part of
    the compiled function's identity); ``beta`` and ``baseline`` are children (may be
    traced). Objectives compare and hash by their fields.
    """


class ELBO(_Objective):
    r"""The evidence lower bound, one value per datapoint.

    .. math::
        \mathrm{ELBO}(x) = \frac1S\sum_{s=1}^S \log p(x\mid z_s) - \beta\,\mathrm{KL}(q\|p),
        \qquad z_s \sim q(z\mid x),

    a lower bound on :math:`\log p(x)` for :math:`\beta = 1`. With ``prior=None``,
    ``log_likelihood`` is the log joint and the bound is
    :math:`\frac1S\sum_s\log p(x, z_s) + \beta H(q)`.

    Args:
        num_samples: :math:`S` samples per datapoint (static).
        kl: ``"analytic"`` (:func:`jelbo.kl_divergence`, or :math:`-H(q)` in closed form
            without a prior) or ``"mc"`` (:math:`\frac1S\sum_s\log q(z_s) - \log p(z_s)` on
            the same samples) (static).
        grad_estimator: (static)

            - ``"reparam"``: the pathwise gradient through :math:`z = g_\phi(\epsilon)`;
            - ``"stl"``: sticking the landing (Roeder et al. 2017): :math:`\log q(z)` with
              q's parameters behind a stop-gradient, dropping the zero-mean score term; its
              gradient vanishes at the exact posterior. Needs ``kl="mc"``;
            - ``"score"``: the score-function (REINFORCE) estimator, for any ``q``
              (``Bernoulli``, ``Categorical``): the samples are stop-gradiented and q's
              parameters get :math:`\frac1S\sum_s (f_s - b_s)\nabla_\phi\log q(z_s)` with
              :math:`f_s = \log p(x|z_s)` (``kl="analytic"``, whose KL gradient stays
              exact) or :math:`f_s = \log p(x|z_s) - \beta(\log q(z_s) - \log p(z_s))`
              (``kl="mc"``) and the leave-one-out baseline
              :math:`b_s = \frac1{S-1}\sum_{j\ne s} f_j` (:math:`S \ge 2`) or ``baseline``;
              see :func:`jelbo.score.elbo_surrogate`.
        beta: weight of the KL term (β-VAE, KL annealing); a pytree leaf, so it may be
            traced; a scalar or an array that broadcasts to ``q``'s batch shape.
        sample_chunk_size: evaluate the samples this many at a time (static); ``None`` for
            all at once. Values equal the unchunked ones.
        baseline: only with ``grad_estimator="score"``: a control variate :math:`c(x)`
            (a pytree leaf, may be traced; broadcastable to ``q``'s batch shape) used as
            :math:`b_s = c` instead of the leave-one-out mean, e.g. a learned scalar or a
            network of the datapoint for one sample (NVIL, Mnih & Gregor 2014); ``0.0``
            gives the plain score function. The returned value also carries, at zero
            value, the gradient of :math:`-\frac12\frac1S\sum_s(f_s - c)^2` with respect to
            :math:`c`, so a learned baseline is fitted by least squares by the same
            ``jax.grad`` that trains the model. ``None``: leave-one-out for
            ``num_samples > 1``, no baseline for one sample.

    Raises:
        ValueError, TypeError: at construction, for unknown strings, a non-positive
            ``num_samples``, ``grad_estimator="stl"`` with ``kl="analytic"``, or a
            ``baseline`` without ``grad_estimator="score"``.

    Calling it: see :meth:`__call__`.
    """

    num_samples: int = static_field(default=1)
    kl: KLEstimator = static_field(default="analytic")
    grad_estimator: ELBOGradEstimator = static_field(default="reparam")
    beta: ArrayLike = 1.0
    sample_chunk_size: int | None = static_field(default=None)
    baseline: ArrayLike | None = None

    def __post_init__(self) -> None:
        _set(self, "num_samples", _checks.check_positive_int(self.num_samples, "num_samples"))
        _set(self, "sample_chunk_size", _check_chunk(self.sample_chunk_size))
        _checks.check_choice(self.kl, "kl", get_args(KLEstimator))
        _checks.check_choice(self.grad_estimator, "grad_estimator", get_args(ELBOGradEstimator))
        if self.kl == "analytic" and self.grad_estimator == "stl":
            raise ValueError(
                "grad_estimator='stl' drops the score term of log q(z), which only exists in "
                "the Monte Carlo KL: use kl='mc' with it (with kl='analytic' STL is not "
                "defined)."
            )
        _checks.check_real(self.beta, "beta")
        if self.baseline is not None:
            if self.grad_estimator != "score":
                raise ValueError(
                    "`baseline` is a control variate for the score-function estimator; it "
                    f"needs grad_estimator='score' (got grad_estimator={self.grad_estimator!r})."
                )
            _checks.check_real(self.baseline, "baseline")

    def __call__(
        self,
        key: Array,
        q: Distribution,
        log_likelihood: LogLikelihood,
        prior: Distribution | None = None,
        data: PyTree = None,
    ) -> Bound:
        r"""Evaluates the bound.

        Args:
            key: PRNG key.
            q: variational posterior, batch shape ``B`` (one per datapoint), event ``E``.
            log_likelihood: ``log_likelihood(z, x) -> scalar`` for ONE latent ``z`` of shape
                ``E`` and ONE datapoint ``x`` (a slice of ``data``); ``log_likelihood(z)`` if
                ``data`` is ``None``. jelbo vmaps it over samples and batch. With
                ``prior=None`` it is the log joint :math:`\log p(x, z)`.
            prior: :math:`p(z)` with event ``E`` and a batch shape broadcastable to ``B``,
                or ``None`` (``log_likelihood`` is then the log joint).
            data: pytree whose leaves have leading axes ``B``, or ``None``.

        Returns:
            :class:`Bound` with ``value``, ``expected_log_likelihood``, ``kl`` and
            ``stderr`` of shape ``B``; ``ess`` is ``None``.

        Raises:
            ValueError, TypeError: at trace time, for mismatched shapes (naming them), a
                ``beta`` or ``baseline`` that does not broadcast to ``B``, or a pathwise
                estimator on a ``q`` that cannot be reparameterized.
        """
        mc = self.kl == "mc"
        problem = _check_problem(
            key,
            q,
            log_likelihood,
            prior,
            data,
            self.num_samples,
            self.sample_chunk_size,
            log_q_at_samples=mc or self.grad_estimator != "reparam",
        )
        batch = q.batch_shape
        _checks.check_broadcasts_to(jnp.shape(self.beta), "beta", batch, "`q`'s batch shape")
        beta = self.beta
        beta_per_sample = jnp.expand_dims(jnp.asarray(beta), -1)
        if self.grad_estimator == "score":
            baseline = self.baseline
            if baseline is not None:
                _checks.check_broadcasts_to(
                    jnp.shape(baseline), "baseline", batch, "`q`'s batch shape"
                )
            log_lik, log_q, log_p = _map_over_samples(
                problem, key, with_log_q=True, stop_q=False, stop_z=True
            )
            kl_value = None if mc else _analytic_kl(problem)
            value, expected, kl_value = score.elbo_surrogate(
                log_lik, log_q, log_p, kl=kl_value, beta=beta, baseline=baseline
            )
            per_sample = log_lik - beta_per_sample * (log_q - log_p) if mc else log_lik
        else:
            _checks.check_reparameterized(q, f"grad_estimator={self.grad_estimator!r}")
            if mc:
                log_lik, log_q, log_p = _map_over_samples(
                    problem, key, with_log_q=True, stop_q=self.grad_estimator == "stl"
                )
                kl_value = jnp.mean(log_q - log_p, axis=-1)
                per_sample = log_lik - beta_per_sample * (log_q - log_p)
            else:
                (log_lik,) = _map_over_samples(problem, key, with_log_q=False, stop_q=False)
                kl_value = _analytic_kl(problem)
                per_sample = log_lik  # the closed-form KL has no Monte Carlo error
            expected = jnp.mean(log_lik, axis=-1)
            value = expected - beta * kl_value
        return Bound(value, expected, kl_value, _stats.mean_stderr(per_sample), None)


class IWAE(_Objective):
    r"""The importance-weighted bound (Burda et al. 2016), one value per datapoint.

    .. math::
        \mathcal L_K(x) = \log \frac1K\sum_{k=1}^K w_k, \qquad
        w_k = \frac{p(x\mid z_k)\,p(z_k)}{q(z_k\mid x)},\quad z_k \sim q,

    computed with ``logsumexp``; :math:`\mathrm{ELBO} \le \mathbb E\,\mathcal L_K \le
    \mathbb E\,\mathcal L_{K+1} \le \log p(x)`. With ``prior=None``,
    :math:`w_k = p(x, z_k)/q(z_k)` from the log joint.

    Args:
        num_samples: :math:`K` (static).
        grad_estimator: (static)

            - ``"reparam"``: the plain reparameterized gradient;
            - ``"dreg"``: the doubly-reparameterized gradient (Tucker et al. 2019): for q's
              parameters :math:`\sum_k \tilde w_k^2\,\partial_z\log w_k\,\partial_\phi z_k`
              with normalized weights :math:`\tilde w_k` and ``log q`` stop-gradiented; for
              the model's the usual :math:`\sum_k \tilde w_k \nabla_\theta \log w_k`. It
              evaluates the model twice per sample;
            - ``"vimco"`` (Mnih & Rezende 2016): the score-function estimator with
              leave-one-out control variates, for any ``q`` including ``Bernoulli`` and
              ``Categorical``; needs ``num_samples >= 2``. See
              :func:`jelbo.score.iwae_surrogate`.
        sample_chunk_size: as in :class:`ELBO` (static).

    Raises:
        ValueError, TypeError: at construction, for an unknown ``grad_estimator``, a
            non-positive ``num_samples``, or ``"vimco"`` with one sample.
    """

    num_samples: int = static_field()
    grad_estimator: IWAEGradEstimator = static_field(default="reparam")
    sample_chunk_size: int | None = static_field(default=None)

    def __post_init__(self) -> None:
        _set(self, "num_samples", _checks.check_positive_int(self.num_samples, "num_samples"))
        _set(self, "sample_chunk_size", _check_chunk(self.sample_chunk_size))
        _checks.check_choice(self.grad_estimator, "grad_estimator", get_args(IWAEGradEstimator))
        if self.grad_estimator == "vimco" and self.num_samples < 2:
            raise ValueError(
                "grad_estimator='vimco' uses the other samples as control variates: it needs "
                f"num_samples >= 2; got num_samples={self.num_samples}. For one sample use "
                "jelbo.ELBO(grad_estimator='score') (optionally with a `baseline`)."
            )

    def __call__(
        self,
        key: Array,
        q: Distribution,
        log_likelihood: LogLikelihood,
        prior: Distribution | None = None,
        data: PyTree = None,
    ) -> Bound:
        """Evaluates the bound; arguments as in :meth:`ELBO.__call__`.

        Returns:
            :class:`Bound` with ``value``, ``stderr`` and ``ess`` of shape ``B``;
            ``expected_log_likelihood`` and ``kl`` are ``None``.
        """
        problem = _check_problem(
            key, q, log_likelihood, prior, data, self.num_samples, self.sample_chunk_size
        )
        log_k = math.log(self.num_samples)
        if self.grad_estimator == "vimco":
            log_lik, log_q, log_p = _map_over_samples(
                problem, key, with_log_q=True, stop_q=False, stop_z=True
            )
            log_w = log_lik + log_p - log_q
            value = score.iwae_surrogate(log_w, log_q)
        elif self.grad_estimator == "reparam":
            _checks.check_reparameterized(q, "grad_estimator='reparam'")
            log_w = _log_weights(problem, key, stop_q=False)
            value = jax.nn.logsumexp(log_w, axis=-1) - log_k
        else:
            _checks.check_reparameterized(q, "grad_estimator='dreg'")
            log_w = _sg(_log_weights(problem, key, stop_q=True))
            bound = jax.nn.logsumexp(log_w, axis=-1) - log_k
            # Zero weights (log w = -inf, e.g. a likelihood with bounded support) take no part:
            # never 0 * (-inf), also when every weight is zero (the bound is then -inf).
            positive = log_w > -jnp.inf
            normalized = jnp.where(positive, jax.nn.softmax(log_w, axis=-1), 0.0)
            # Same samples again, with each z's gradient scaled by its normalized weight, so
            # that d/dφ Σ w̃ log w = Σ w̃² ∂log w/∂z ∂z/∂φ (DReG) while d/dθ stays Σ w̃ ∇θ log w.
            again = _log_weights(problem, key, normalized, stop_q=True)
            surrogate = jnp.sum(normalized * jnp.where(positive, again, 0.0), axis=-1)
            value = bound + (surrogate - _sg(surrogate))
        return Bound(value, None, None, _stats.log_mean_stderr(log_w), _stats.ess(log_w))


class Renyi(_Objective):
    r"""The Rényi-α variational bound (Li & Turner 2016), one value per datapoint.

    .. math::
        \mathcal L_\alpha(x) = \frac{1}{1-\alpha}\log\frac1K\sum_{k=1}^K w_k^{1-\alpha},
        \qquad w_k = \frac{p(x\mid z_k)\,p(z_k)}{q(z_k\mid x)},

    with the limit :math:`\alpha\to1` the ELBO :math:`\frac1K\sum_k\log w_k` (equal to
    ``ELBO(num_samples=K, kl="mc")`` for the same key) and :math:`\alpha=0` the IWAE bound.
    For :math:`\alpha \ge 0` its expectation lower-bounds :math:`\log p(x)` and decreases
    in α. Gradients are reparameterized.

    Args:
        alpha: finite Python float :math:`\alpha \ge 0` (static).
        num_samples: :math:`K` (static).
        sample_chunk_size: as in :class:`ELBO` (static).

    Raises:
        ValueError, TypeError: at construction, for an ``alpha`` that is not a finite
            number >= 0 or a non-positive ``num_samples``.
    """

    alpha: float = static_field()
    num_samples: int = static_field()
    sample_chunk_size: int | None = static_field(default=None)

    def __post_init__(self) -> None:
        _set(self, "alpha", _checks.check_alpha(self.alpha))
        _set(self, "num_samples", _checks.check_positive_int(self.num_samples, "num_samples"))
        _set(self, "sample_chunk_size", _check_chunk(self.sample_chunk_size))

    def __call__(
        self,
        key: Array,
        q: Distribution,
        log_likelihood: LogLikelihood,
        prior: Distribution | None = None,
        data: PyTree = None,
    ) -> Bound:
        """Evaluates the bound; arguments as in :meth:`ELBO.__call__`.

        Returns:
            :class:`Bound` with ``value``, ``stderr`` and ``ess`` (of the importance weights
            :math:`w_k`) of shape ``B``; ``expected_log_likelihood`` and ``kl`` are ``None``.
        """
        problem = _check_problem(
            key, q, log_likelihood, prior, data, self.num_samples, self.sample_chunk_size
        )
        _checks.check_reparameterized(q, "jelbo.Renyi")
        log_w = _log_weights(problem, key, stop_q=False)
        if self.alpha == 1:
            value = jnp.mean(log_w, axis=-1)
            stderr = _stats.mean_stderr(log_w)
        else:
            value, stderr = _renyi(log_w, 1.0 - self.alpha)
        return Bound(value, None, None, stderr, _stats.ess(log_w))


def _renyi(log_w: Array, beta: float) -> tuple[Array, Array]:
    r"""Rényi bound :math:`\frac1\beta\log\frac1K\sum_k w_k^\beta` (:math:`\beta = 1-\alpha`)
    and its delta-method standard error, exact also as :math:`\beta\to0`.

    The direct form divides a ``logsumexp`` that is :math:`\log K` plus a term of order
    :math:`\beta` by :math:`\beta`, losing :math:`\epsilon\log K/|\beta|` (0.1 nats in
    float32 at :math:`\alpha = 1 - 10^{-6}`). Where every :math:`|\beta(\log w_k - m)| < 1`,
    with :math:`m` the mean log-weight, it is evaluated centred instead:
    :math:`m + \mathrm{log1p}(\overline{\mathrm{expm1}(\beta(\log w - m))})/\beta`, which tends
    to the ELBO :math:`m` with full precision.
    """
    k = log_w.shape[-1]
    scaled = (jax.nn.logsumexp(beta * log_w, axis=-1) - math.log(k)) / beta
    stderr = _stats.log_mean_stderr(beta * log_w) / abs(beta)
    finite = jnp.all(jnp.isfinite(log_w), axis=-1, keepdims=True)
    safe = jnp.where(finite, log_w, 0.0)
    m = jnp.mean(safe, axis=-1, keepdims=True)
    d = beta * (safe - m)
    near = finite[..., 0] & (jnp.max(jnp.abs(d), axis=-1) < 1.0)
    e = jnp.expm1(jnp.where(near[..., None], d, 0.0))
    e_mean = jnp.mean(e, axis=-1, keepdims=True)
    centred = m[..., 0] + jnp.log1p(e_mean[..., 0]) / beta
    # K sum(v~^2) - 1 = sum((e - mean e)^2) / (K (1 + mean e)^2), without cancellation.
    spread = _sg(jnp.sum(jnp.square(e - e_mean), axis=-1) / (k * jnp.square(1.0 + e_mean[..., 0])))
    centred_stderr = jnp.sqrt(spread / (k - 1)) / abs(beta) if k > 1 else stderr
    return jnp.where(near, centred, scaled), jnp.where(near, centred_stderr, stderr)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _check_chunk(chunk: Any) -> int | None:
    if chunk is None:
        return None
    return _checks.check_positive_int(chunk, "sample_chunk_size")
