r"""Deprecated: the jelbo 0.1 bound functions :func:`elbo`, :func:`iwae_bound`,
:func:`renyi_bound` (and :class:`ELBOTerms`).

Deprecated since jelbo 0.3, to be removed in 0.4: each call warns with a
``DeprecationWarning`` that says what to write instead. They keep their 0.1 signatures and
return types and are thin over the objectives (the same numbers for the same key):
``elbo(key, q, ll, prior, x, num_samples=S, kl=..., ...)`` is
``jelbo.ELBO(num_samples=S, kl=..., ...)(key, q, ll, prior, x)`` without the standard
error; :func:`iwae_bound` and :func:`renyi_bound` are the ``.value`` of
:class:`jelbo.IWAE` and :class:`jelbo.Renyi`. The objectives return a :class:`jelbo.Bound`
with the Monte Carlo standard error and the effective sample size.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, cast

from jelbo._typing import Array, ArrayLike, PyTree
from jelbo.distributions.base import Distribution
from jelbo.objectives import (
    ELBO,
    IWAE,
    ELBOGradEstimator,
    IWAEGradEstimator,
    KLEstimator,
    LogLikelihood,
    Renyi,
)

__all__ = ["ELBOTerms", "elbo", "iwae_bound", "renyi_bound"]


def _deprecated(name: str, instead: str) -> None:
    warnings.warn(
        f"jelbo.{name} is deprecated since jelbo 0.3 and will be removed in 0.4; use {instead}.",
        DeprecationWarning,
        stacklevel=3,
    )


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


def elbo(
    key: Array,
    q: Distribution,
    log_likelihood: LogLikelihood,
    prior: Distribution | None = None,
    data: PyTree = None,
    *,
    num_samples: int = 1,
    kl: KLEstimator = "analytic",
    grad_estimator: ELBOGradEstimator = "reparam",
    beta: ArrayLike = 1.0,
    sample_chunk_size: int | None = None,
    baseline: ArrayLike | None = None,
) -> ELBOTerms:
    r"""Deprecated (0.1 API): use :class:`jelbo.ELBO`. Monte Carlo evidence lower bound, one
    value per datapoint.

    .. math::
        \mathrm{ELBO}(x) = \frac1S\sum_{s=1}^S \log p(x\mid z_s) - \beta\,\mathrm{KL}(q\|p),
        \qquad z_s \sim q(z\mid x).

    The same as ``jelbo.ELBO(num_samples=..., kl=..., grad_estimator=..., beta=...,
    sample_chunk_size=..., baseline=...)(key, q, log_likelihood, prior, data)`` (the same
    numbers for the same key), returning its terms without the standard error. See
    :class:`jelbo.ELBO` for every option.

    Args:
        key: PRNG key.
        q: variational posterior, batch shape ``B`` (one posterior per datapoint), event
            shape ``E``. Must be reparameterizable unless ``grad_estimator="score"``.
        log_likelihood: ``log_likelihood(z, x) -> scalar`` for ONE latent ``z`` of shape
            ``E`` and ONE datapoint ``x`` (a slice of ``data``); ``log_likelihood(z)`` if
            ``data`` is ``None``. jelbo vmaps it over samples and batch.
        prior: prior :math:`p(z)`, event shape ``E``, batch shape broadcastable to ``B``;
            or ``None``: ``log_likelihood`` is then the log joint :math:`\log p(x, z)` and
            the KL term is :math:`-H(q)` (closed form with ``kl="analytic"``, Monte Carlo
            :math:`\frac1S\sum_s\log q(z_s)` with ``kl="mc"``).
        data: pytree whose leaves have leading axes ``B``, or ``None``.
        num_samples: number of samples :math:`S` per datapoint (static).
        kl: ``"analytic"`` or ``"mc"`` (static).
        grad_estimator: ``"reparam"``, ``"stl"`` (needs ``kl="mc"``) or ``"score"``
            (static); see :class:`jelbo.ELBO`.
        beta: weight of the KL term (β-VAE, KL annealing); may be traced; broadcastable to
            ``B``.
        sample_chunk_size: evaluate samples this many at a time (static); ``None`` for all
            at once. Results equal the unchunked ones.
        baseline: control variate for ``grad_estimator="score"`` (may be traced;
            broadcastable to ``B``); see :class:`jelbo.ELBO`.

    Returns:
        :class:`ELBOTerms` of arrays with shape ``B``.

    Raises:
        ValueError, TypeError: at trace time, for mismatched shapes or invalid options.
    """
    _deprecated(
        "elbo",
        "jelbo.ELBO(num_samples=..., kl=..., grad_estimator=..., beta=...)(key, q, "
        "log_likelihood, prior, data): it returns a jelbo.Bound whose value, "
        "expected_log_likelihood and kl are the three ELBOTerms (and adds the standard error)",
    )
    bound = ELBO(
        num_samples=num_samples,
        kl=kl,
        grad_estimator=grad_estimator,
        beta=beta,
        sample_chunk_size=sample_chunk_size,
        baseline=baseline,
    )(key, q, log_likelihood, prior, data)
    return ELBOTerms(bound.value, cast(Array, bound.expected_log_likelihood), cast(Array, bound.kl))


def iwae_bound(
    key: Array,
    q: Distribution,
    log_likelihood: LogLikelihood,
    prior: Distribution | None = None,
    data: PyTree = None,
    *,
    num_samples: int,
    grad_estimator: IWAEGradEstimator = "reparam",
    sample_chunk_size: int | None = None,
) -> Array:
    r"""Deprecated (0.1 API): use :class:`jelbo.IWAE`. Importance-weighted bound (Burda et
    al. 2016), one value per datapoint.

    The same as ``jelbo.IWAE(num_samples, grad_estimator, sample_chunk_size)(key, q,
    log_likelihood, prior, data).value``.

    .. math::
        \mathcal L_K(x) = \log \frac1K\sum_{k=1}^K w_k, \qquad
        w_k = \frac{p(x\mid z_k)\,p(z_k)}{q(z_k\mid x)},\quad z_k \sim q,

    computed with ``logsumexp``. :math:`\mathrm{ELBO} \le \mathbb E\,\mathcal L_K \le
    \mathbb E\,\mathcal L_{K+1} \le \log p(x)`.

    Args:
        key, q, log_likelihood, prior, data, sample_chunk_size: as in :func:`elbo`
            (``prior=None``: ``log_likelihood`` is the log joint).
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
    _deprecated(
        "iwae_bound",
        "jelbo.IWAE(num_samples, grad_estimator)(key, q, log_likelihood, prior, data).value",
    )
    objective = IWAE(num_samples, grad_estimator, sample_chunk_size)
    return objective(key, q, log_likelihood, prior, data).value


def renyi_bound(
    key: Array,
    q: Distribution,
    log_likelihood: LogLikelihood,
    prior: Distribution | None = None,
    data: PyTree = None,
    *,
    alpha: float,
    num_samples: int,
    sample_chunk_size: int | None = None,
) -> Array:
    r"""Deprecated (0.1 API): use :class:`jelbo.Renyi`. Monte Carlo Rényi-α variational
    bound (Li & Turner 2016), per datapoint.

    The same as ``jelbo.Renyi(alpha, num_samples, sample_chunk_size)(key, q,
    log_likelihood, prior, data).value``.

    .. math::
        \mathcal L_\alpha(x) = \frac{1}{1-\alpha}\log\frac1K\sum_{k=1}^K w_k^{1-\alpha},
        \qquad w_k = \frac{p(x\mid z_k)\,p(z_k)}{q(z_k\mid x)},

    with the limit :math:`\alpha\to1` the ELBO :math:`\frac1K\sum_k\log w_k` (equal to
    ``elbo(..., kl="mc")`` for the same key) and :math:`\alpha=0` the IWAE bound. For
    :math:`\alpha \ge 0` its expectation lower-bounds :math:`\log p(x)` and decreases in α.
    Gradients are reparameterized.

    Args:
        key, q, log_likelihood, prior, data, sample_chunk_size: as in :func:`elbo`
            (``prior=None``: ``log_likelihood`` is the log joint).
        alpha: finite Python float :math:`\alpha \ge 0` (static).
        num_samples: :math:`K` (static).

    Returns:
        Array of shape ``q.batch_shape``.
    """
    _deprecated(
        "renyi_bound",
        "jelbo.Renyi(alpha, num_samples)(key, q, log_likelihood, prior, data).value",
    )
    objective = Renyi(alpha, num_samples, sample_chunk_size)
    return objective(key, q, log_likelihood, prior, data).value
