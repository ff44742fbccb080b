"""Fast, self-checking inference for Bayesian models: ``jelbo.fit``.

Every algorithm here is called ``fit(key, log_joint, init, **options)``: ``log_joint`` maps ONE
unconstrained vector of shape ``(D,)`` to a scalar :math:`\\log p(x, z)` (up to a constant) and
``init`` is a ``(D,)`` starting point. Each returns a :class:`Fit` that says whether the
algorithm's own stopping rule was met, how many evaluations of ``log_joint`` the call made, and
how good the approximation is (its ELBO and the PSIS :math:`\\hat k`).
"""

from jelbo.fit._laplace import LaplaceApproximation, laplace_approximation, multistart_laplace
from jelbo.fit._pathfinder import pathfinder
from jelbo.fit._result import Fit

__all__ = [
    "Fit",
    "LaplaceApproximation",
    "laplace_approximation",
    "multistart_laplace",
    "pathfinder",
]
