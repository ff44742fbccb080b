"""jelbo: pure, jit-compiled, vmap-friendly variational inference in JAX.

Distributions are immutable pytrees; every function is pure and takes an explicit PRNG key
where it draws. Bounds are chosen as objectives (:class:`ELBO`, :class:`IWAE`,
:class:`Renyi`) and return a :class:`Bound` with their Monte Carlo standard error. See the
README for a quick start and ``docs/`` (the documentation site) for the math.
"""

import importlib.metadata as _metadata

# First: importing _deprecation registers the 0.2 module paths (jelbo.psis, jelbo.continuous),
# so code still on them imports, with a warning, even from inside jelbo (tests/test_api.py
# checks that jelbo's own imports do not warn).
from jelbo import _deprecation  # isort: skip
from jelbo import (
    bijectors,
    classic,
    constraints,
    diagnostics,
    distributions,
    fit,
    flows,
    kl,
    laplace,
    module,
    objectives,
    parameters,
    results,
    score,
    sharding,
    validation,
)

# The 0.1 bound functions: deprecated (they warn when called), not in __all__.
from jelbo.compat import ELBOTerms as ELBOTerms
from jelbo.compat import elbo as elbo
from jelbo.compat import iwae_bound as iwae_bound
from jelbo.compat import renyi_bound as renyi_bound
from jelbo.diagnostics import PosteriorSummary, posterior_summary, psis, psis_tail_length
from jelbo.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    ContinuousBernoulli,
    Dirichlet,
    Distribution,
    Factorized,
    Gamma,
    HypersphericalUniform,
    Independent,
    Kumaraswamy,
    Laplace,
    LKJCholesky,
    LogNormal,
    LowRankMultivariateNormal,
    MixtureSameFamily,
    MultivariateNormalTriL,
    NegativeBinomial,
    Normal,
    OneHotCategorical,
    Poisson,
    PowerSpherical,
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
    StudentT,
    Transformed,
    entropy,
    log_prob,
    sample,
    sample_and_log_prob,
)
from jelbo.kl import kl_divergence, mc_kl, register_kl
from jelbo.laplace import (
    LaplaceApproximation,
    PreconditionedParams,
    laplace_approximation,
    multistart_laplace,
    preconditioned_init,
    preconditioned_q,
)
from jelbo.module import Module, static_field
from jelbo.objectives import ELBO, IWAE, Renyi
from jelbo.parameters import ParameterSpace
from jelbo.results import Bound
from jelbo.validation import check_parameters, checked

try:
    __version__ = _metadata.version("jelbo")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ELBO",
    "IWAE",
    "Bernoulli",
    "Beta",
    "Bound",
    "Categorical",
    "ContinuousBernoulli",
    "Dirichlet",
    "Distribution",
    "Factorized",
    "Gamma",
    "HypersphericalUniform",
    "Independent",
    "Kumaraswamy",
    "LKJCholesky",
    "Laplace",
    "LaplaceApproximation",
    "LogNormal",
    "LowRankMultivariateNormal",
    "MixtureSameFamily",
    "Module",
    "MultivariateNormalTriL",
    "NegativeBinomial",
    "Normal",
    "OneHotCategorical",
    "ParameterSpace",
    "Poisson",
    "PosteriorSummary",
    "PowerSpherical",
    "PreconditionedParams",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
    "Renyi",
    "StudentT",
    "Transformed",
    "bijectors",
    "check_parameters",
    "checked",
    "classic",
    "constraints",
    "diagnostics",
    "distributions",
    "entropy",
    "fit",
    "flows",
    "kl",
    "kl_divergence",
    "laplace",
    "laplace_approximation",
    "log_prob",
    "mc_kl",
    "module",
    "multistart_laplace",
    "objectives",
    "parameters",
    "posterior_summary",
    "preconditioned_init",
    "preconditioned_q",
    "psis",
    "psis_tail_length",
    "register_kl",
    "results",
    "sample",
    "sample_and_log_prob",
    "score",
    "sharding",
    "static_field",
    "validation",
]


def __getattr__(name: str) -> object:
    # jelbo 0.2 names that moved (old module paths, the sharding helpers): see _deprecation.
    return _deprecation.moved_attribute(name)
