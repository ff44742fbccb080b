"""Fast, self-checking inference for Bayesian models: ``jelbo.fit``.

Every algorithm here is called ``fit(key, log_joint, init, **options)``: ``log_joint`` maps ONE
unconstrained vector of shape ``(D,)`` to a scalar :math:`\\log p(x, z)` (up to a constant) and
``init`` is a ``(D,)`` starting point. Each returns a :class:`Fit` that says whether the
algorithm's own stopping rule was met, how many evaluations of ``log_joint`` the call made, and
how good the approximation is (its ELBO and the PSIS :math:`\\hat k`).

- :func:`pathfinder`: Pathfinder (Zhang, Carpenter, Gelman & Vehtari, JMLR 2022), several
  vmapped paths, PSIS, importance-weighted moment matching;
- :func:`laplace_approximation`, :func:`multistart_laplace`: the mode by L-BFGS and Newton
  steps, the Gaussian of the Hessian there (also ``jelbo.laplace_approximation``; they
  return a :class:`LaplaceApproximation`, not a :class:`Fit`).

The conventions (what one evaluation is, the diagnostic draws) are in
``jelbo/fit/_common.py`` and ``docs/fit.md``.
"""

from jelbo.fit._advi import advi
from jelbo.fit._bam import batch_and_match
from jelbo.fit._dadvi import dadvi
from jelbo.fit._laplace import LaplaceApproximation, laplace_approximation, multistart_laplace
from jelbo.fit._pathfinder import pathfinder
from jelbo.fit._result import Fit

__all__ = [
    "Fit",
    "LaplaceApproximation",
    "advi",
    "batch_and_match",
    "dadvi",
    "laplace_approximation",
    "multistart_laplace",
    "pathfinder",
]
