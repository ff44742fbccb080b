"""The result type shared by every algorithm of :mod:`jelbo.fit`."""

from __future__ import annotations

from typing import Any, NamedTuple

from jelbo._typing import Array
from jelbo.distributions import Distribution
from jelbo.results import Bound


class Fit(NamedTuple):
    r"""What a :mod:`jelbo.fit` algorithm returns (a pytree: ``jit``-compatible).

    Attributes:
        q: the approximation of :math:`p(z\mid x)` over :math:`\mathbb R^D`, a jelbo
            distribution with event shape ``(D,)`` (a full-rank or low-rank Gaussian, or a
            mixture for multi-path Pathfinder).
        converged: bool scalar: the algorithm's own stopping criterion was met (not an
            iteration or evaluation cap).
        num_evals: int scalar: every evaluation of ``log_joint`` the call made, value or
            gradient (a value-and-gradient evaluation counts once), the final diagnostics
            included.
        num_iters: int scalar: iterations of the algorithm's main loop.
        bound: the ELBO of ``q`` on ``log_joint`` from fresh draws (a :class:`jelbo.Bound`,
            with its Monte Carlo standard error).
        pareto_k: the PSIS :math:`\hat k` of ``q`` against ``log_joint`` on the same draws
            (below 0.7: importance-reweighted estimates are reliable).
        info: algorithm-specific diagnostics (a dict of arrays), e.g. the final gradient
            norm or the ELBO trace; documented by each algorithm.
    """

    q: Distribution
    converged: Array
    num_evals: Array
    num_iters: Array
    bound: Bound
    pareto_k: Array
    info: dict[str, Any]
