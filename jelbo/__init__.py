"""jelbo: pure, jit-compiled, vmap-friendly variational inference in JAX.

Distributions are immutable pytrees; every function is pure and takes an explicit PRNG key
where it draws. Bounds are chosen as objectives (:class:`ELBO`, :class:`IWAE`,
:class:`Renyi`) and return a :class:`Bound` with their Monte Carlo standard error. See the
README for a quick start and ``docs/`` (the documentation site) for the math.
"""

from jelbo import bijectors, classic, continuous, fit, objectives, parameters, sharding
from jelbo.continuous import Beta, ContinuousBernoulli, Dirichlet, Gamma, Kumaraswamy
from jelbo.discrete import NegativeBinomial, OneHotCategorical
from jelbo.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Laplace,
    MultivariateNormalTriL,
    Normal,
    Poisson,
    StudentT,
    entropy,
    log_prob,
    sample,
)
from jelbo.elbo import ELBOTerms, elbo, iwae_bound, renyi_bound
from jelbo.kl import kl_divergence, mc_kl, register_kl
from jelbo.laplace import (
    LaplaceApproximation,
    PreconditionedParams,
    laplace_approximation,
    multistart_laplace,
    preconditioned_init,
    preconditioned_q,
)
from jelbo.lkj import LKJCholesky
from jelbo.lowrank import LowRankMultivariateNormal
from jelbo.mixture import MixtureSameFamily
from jelbo.objectives import ELBO, IWAE, Bound, Renyi
from jelbo.parameters import ParameterSpace
from jelbo.psis import PosteriorSummary, posterior_summary, psis, psis_tail_length
from jelbo.relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from jelbo.sharding import (
    check_partitionable_threefry,
    data_parallel_mesh,
    replicate,
    shard_batch,
)
from jelbo.spherical import HypersphericalUniform, PowerSpherical
from jelbo.transformed import LogNormal, Transformed
from jelbo.validation import check_parameters, checked

__version__ = "0.1.0"

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
    "ELBOTerms",
    "Gamma",
    "HypersphericalUniform",
    "Kumaraswamy",
    "LKJCholesky",
    "Laplace",
    "LaplaceApproximation",
    "LogNormal",
    "LowRankMultivariateNormal",
    "MixtureSameFamily",
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
    "check_partitionable_threefry",
    "checked",
    "classic",
    "continuous",
    "data_parallel_mesh",
    "elbo",
    "entropy",
    "fit",
    "iwae_bound",
    "kl_divergence",
    "laplace_approximation",
    "log_prob",
    "mc_kl",
    "multistart_laplace",
    "objectives",
    "parameters",
    "posterior_summary",
    "preconditioned_init",
    "preconditioned_q",
    "psis",
    "psis_tail_length",
    "register_kl",
    "renyi_bound",
    "replicate",
    "sample",
    "shard_batch",
    "sharding",
]
