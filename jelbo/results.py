"""Result types shared by the objectives, the diagnostics and :mod:`jelbo.fit`: :class:`Bound`.

A low module (it imports nothing of jelbo but the array types), so that whatever returns a
bound, e.g. :func:`jelbo.posterior_summary`, need not import the objectives for it.
"""

from __future__ import annotations

from typing import NamedTuple

from jelbo._typing import Array

__all__ = ["Bound"]


class Bound(NamedTuple):
    r"""A variational bound and its diagnostics, each with ``q``'s batch shape.

    Attributes:
        value: the bound per datapoint (for the score-function estimators, a surrogate
            whose value is the bound and whose gradient is the estimator).
        expected_log_likelihood: :class:`~jelbo.ELBO` only (else ``None``): the Monte Carlo
            estimate of :math:`\mathbb E_q[\log p(x\mid z)]` (of :math:`\mathbb E_q[\log
            p(x, z)]` with ``prior=None``).
        kl: :class:`~jelbo.ELBO` only (else ``None``): :math:`\mathrm{KL}(q\|p)`, closed form or
            Monte Carlo; :math:`-H(q)` resp. :math:`\frac1S\sum_s\log q(z_s)` with
            ``prior=None``.
        stderr: Monte Carlo standard error of ``value`` per datapoint, estimated from the
            same samples (no extra model evaluations; no gradient flows through it). For
            the ELBO, :math:`\mathrm{sd}(f_s)/\sqrt S` over the per-sample terms
            :math:`f_s = \log p(x|z_s) - \beta(\log q(z_s) - \log p(z_s))` (only the
            likelihood varies with the analytic KL). For the importance-weighted bounds
            the delta method on :math:`\log\bar v`, :math:`\bar v = \frac1K\sum_k v_k`:
            :math:`\mathrm{se} = \frac{1}{|1-\alpha|}\sqrt{(K\sum_k\tilde v_k^2 - 1)/(K-1)}`
            with the normalized :math:`\tilde v_k \propto v_k = w_k^{1-\alpha}`
            (:math:`\alpha = 0` for IWAE). It is a first-order estimate: with heavy-tailed
            weights it understates the error, as does the ESS. With one sample there is
            no spread to estimate it from and it is ``nan``.
        ess: importance-weighted bounds only (else ``None``): the effective sample size
            :math:`1/\sum_k\tilde w_k^2` of the normalized importance weights
            :math:`\tilde w_k = w_k/\sum_j w_j`, between 1 and ``num_samples``.
    """

    value: Array
    expected_log_likelihood: Array | None
    kl: Array | None
    stderr: Array
    ess: Array | None
