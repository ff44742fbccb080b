r"""Probabilistic PCA in closed form, in NumPy (float64), independent of jelbo.

The model (Tipping & Bishop 1999) is

.. math::
    p(z) = \mathcal N(0, I_K), \qquad p(x\mid z) = \mathcal N(Wz + b, \sigma^2 I_D),
    \qquad\text{so}\qquad p(x) = \mathcal N(x;\, b,\, C), \quad C = WW^\top + \sigma^2 I_D.

With the sample mean :math:`\bar x` and the sample covariance
:math:`S = \frac1N\sum_n (x_n-\bar x)(x_n-\bar x)^\top` (normalized by :math:`N`, the
maximum-likelihood convention) with eigenvalues :math:`\lambda_1\ge\dots\ge\lambda_D` and
eigenvectors :math:`U`, the maximum-likelihood solution is :math:`b = \bar x`,
:math:`\sigma^2_{ML} = \frac1{D-K}\sum_{j>K}\lambda_j`,
:math:`W_{ML} = U_K(\Lambda_K - \sigma^2_{ML} I)^{1/2} R` for any rotation :math:`R`, and the
maximum of the average log-likelihood is

.. math::
    \frac1N\sum_n \log p(x_n) = -\tfrac12\Big[D\ln 2\pi + \sum_{j\le K}\ln\lambda_j
        + (D-K)\ln\sigma^2_{ML} + D\Big].

Also here: the exact log-marginal of any :math:`(W, b, \sigma^2)`, the exact posterior
:math:`p(z\mid x)`, and the ELBO of a diagonal Gaussian :math:`q(z\mid x)` in closed form
(the expectation of a Gaussian log-likelihood that is linear in :math:`z` needs only the
mean and the variance of :math:`q`). The example ``fit_linear_decoder.py`` and its tests use
these as the ground truth against which jelbo's estimates are checked.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "PPCAFit",
    "exact_elbo",
    "fit",
    "log_marginal",
    "max_log_likelihood",
    "posterior",
    "sample_moments",
]

LOG_2PI = math.log(2.0 * math.pi)


class PPCAFit(NamedTuple):
    """The closed-form maximum-likelihood PPCA solution.

    Attributes:
        W: ``(D, K)`` loading matrix :math:`U_K(\\Lambda_K - \\sigma^2 I)^{1/2}` (orthogonal
            columns, so the exact posterior covariance is diagonal).
        b: ``(D,)`` mean, the sample mean.
        sigma2: observation variance :math:`\\sigma^2_{ML}`.
        eigenvalues: ``(D,)`` eigenvalues of the sample covariance, in decreasing order.
        max_log_likelihood: maximum average log-likelihood per datapoint (nats).
    """

    W: np.ndarray
    b: np.ndarray
    sigma2: float
    eigenvalues: np.ndarray
    max_log_likelihood: float


def sample_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Sample mean :math:`\bar x` and covariance
    :math:`S = \frac1N\sum_n (x_n-\bar x)(x_n-\bar x)^\top`.

    Args:
        x: ``(N, D)`` data.

    Returns:
        ``(mean (D,), cov (D, D))``, normalized by ``N`` (not ``N - 1``).
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centered = x - mean
    return mean, centered.T @ centered / x.shape[0]


def fit(x: np.ndarray, latent_dim: int) -> PPCAFit:
    """The maximum-likelihood PPCA fit of ``x`` with ``latent_dim`` latents, in closed form.

    Args:
        x: ``(N, D)`` data.
        latent_dim: :math:`K`, with ``1 <= K < D``.

    Returns:
        The :class:`PPCAFit` (see the module docstring for the formulas).

    Raises:
        ValueError: if ``K`` is out of range or the discarded eigenvalues are all zero
            (:math:`\\sigma^2_{ML} = 0`, the likelihood is unbounded).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`x` must be (N, D); got shape {x.shape}.")
    d = x.shape[1]
    k = int(latent_dim)
    if not 1 <= k < d:
        raise ValueError(f"`latent_dim` must be in [1, D - 1] = [1, {d - 1}]; got {latent_dim}.")
    mean, cov = sample_moments(x)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    # Rounding can make the eigenvalues of constant directions slightly negative.
    eigenvalues = np.maximum(eigenvalues[order], 0.0)
    eigenvectors = eigenvectors[:, order]
    sigma2 = float(eigenvalues[k:].mean())
    if sigma2 <= 0.0:
        raise ValueError(
            "The D - K smallest eigenvalues of the sample covariance are all zero: the data "
            "lie in a K-dimensional subspace and the PPCA likelihood is unbounded."
        )
    top = eigenvalues[:k]
    W = eigenvectors[:, :k] * np.sqrt(np.maximum(top - sigma2, 0.0))
    max_ll = -0.5 * (d * LOG_2PI + np.sum(np.log(top)) + (d - k) * math.log(sigma2) + d)
    return PPCAFit(W, mean, sigma2, eigenvalues, float(max_ll))


def max_log_likelihood(x: np.ndarray, latent_dim: int) -> float:
    """Maximum average PPCA log-likelihood per datapoint of ``x`` (nats); see :func:`fit`."""
    return fit(x, latent_dim).max_log_likelihood


def log_marginal(x: np.ndarray, W: np.ndarray, b: np.ndarray, sigma2: float) -> np.ndarray:
    r"""Exact :math:`\log p(x_n) = \log\mathcal N(x_n;\, b,\, WW^\top + \sigma^2 I)` per row.

    Computed with a Cholesky factor :math:`C = LL^\top`:
    :math:`-\frac12[D\ln 2\pi + 2\sum_i \ln L_{ii} + \lVert L^{-1}(x_n-b)\rVert^2]`.

    Args:
        x: ``(N, D)`` data.
        W: ``(D, K)`` loadings.
        b: ``(D,)`` mean.
        sigma2: observation variance, > 0.

    Returns:
        ``(N,)`` log-densities in nats.
    """
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = x.shape[-1]
    cov = W @ W.T + float(sigma2) * np.eye(d)
    chol = np.linalg.cholesky(cov)
    white = np.linalg.solve(chol, (x - b).T)  # (D, N)
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (d * LOG_2PI + log_det + np.sum(white**2, axis=0))


def posterior(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, sigma2: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact posterior :math:`p(z\mid x_n) = \mathcal N(m_n, \Sigma)`.

    :math:`\Sigma = (I + W^\top W/\sigma^2)^{-1}`, :math:`m_n = \Sigma W^\top (x_n - b)/\sigma^2`.

    Args:
        x: ``(N, D)`` data.
        W: ``(D, K)`` loadings.
        b: ``(D,)`` mean.
        sigma2: observation variance.

    Returns:
        ``(means (N, K), cov (K, K))``.
    """
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    k = W.shape[1]
    cov = np.linalg.inv(np.eye(k) + W.T @ W / sigma2)
    means = (x - np.asarray(b, dtype=np.float64)) @ W @ cov / sigma2
    return means, cov


def exact_elbo(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    sigma2: float,
    mean: np.ndarray,
    var: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The exact ELBO of a diagonal Gaussian
    :math:`q(z\mid x_n) = \mathcal N(m_n, \mathrm{diag}(v_n))`.

    Because :math:`\log p(x\mid z)` is quadratic in :math:`z`,

    .. math::
        \mathbb E_q[\log p(x_n\mid z)] = -\tfrac D2\ln(2\pi\sigma^2)
            - \frac{\lVert x_n - Wm_n - b\rVert^2 + \sum_k v_{nk}\lVert W_{:k}\rVert^2}
                   {2\sigma^2},

    .. math::
        \mathrm{KL}(q\,\|\,\mathcal N(0, I)) = \tfrac12\sum_k (v_{nk} + m_{nk}^2 - 1 - \ln v_{nk}),

    and :math:`\mathrm{ELBO}_n = \mathbb E_q[\log p(x_n\mid z)] - \mathrm{KL}`, with no Monte
    Carlo error.

    Args:
        x: ``(N, D)`` data.
        W: ``(D, K)`` loadings.
        b: ``(D,)`` mean.
        sigma2: observation variance.
        mean: ``(N, K)`` means of q.
        var: ``(N, K)`` variances of q.

    Returns:
        ``(elbo, expected_log_likelihood, kl)``, each ``(N,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    d = x.shape[-1]
    resid = x - mean @ W.T - np.asarray(b, dtype=np.float64)
    trace = var @ np.sum(W**2, axis=0)
    expected = -0.5 * d * math.log(2.0 * math.pi * sigma2) - 0.5 * (
        np.sum(resid**2, axis=-1) + trace
    ) / float(sigma2)
    kl = 0.5 * np.sum(var + mean**2 - 1.0 - np.log(var), axis=-1)
    return expected - kl, expected, kl
