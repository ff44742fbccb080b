r"""Distributions as immutable pytrees, organized by kind, and the pure functions on them.

Every family is a :class:`Distribution` (a :class:`jelbo.Module`: a frozen dataclass and a
JAX pytree whose leaves are its parameters) and is exported here and at the top level
(``jelbo.Normal`` is ``jelbo.distributions.Normal``). The modules group the families by kind:

- :mod:`jelbo.distributions.base`: :class:`Distribution`, :class:`Factorized` (the base of
  families with independent coordinates) and the free functions :func:`log_prob`,
  :func:`sample`, :func:`sample_and_log_prob`, :func:`sample_and_stopped_log_prob`,
  :func:`entropy`;
- :mod:`jelbo.distributions.continuous`: ``Normal``, ``Laplace``, ``StudentT``, ``Gamma``,
  ``Beta``, ``Dirichlet``, ``Kumaraswamy``, ``ContinuousBernoulli``;
- :mod:`jelbo.distributions.discrete`: ``Bernoulli``, ``Categorical``,
  ``OneHotCategorical``, ``Poisson``, ``NegativeBinomial``;
- :mod:`jelbo.distributions.relaxed`: ``RelaxedBernoulli``, ``RelaxedOneHotCategorical``;
- :mod:`jelbo.distributions.directional`: ``PowerSpherical``, ``HypersphericalUniform``;
- :mod:`jelbo.distributions.multivariate`: ``MultivariateNormalTriL``,
  ``LowRankMultivariateNormal``, ``LKJCholesky``;
- :mod:`jelbo.distributions.mixture`: ``MixtureSameFamily``;
- :mod:`jelbo.distributions.transformed`: ``TransformedDistribution``, ``Transformed``,
  ``LogNormal``;
- :mod:`jelbo.distributions.independent`: ``Independent`` (batch axes reinterpreted as
  event axes).

Each family declares its parameters' constraints in ``arg_constraints`` and its samples' set
in ``support`` (:mod:`jelbo.constraints`); parameterizations are named as NumPyro and torch
name them (``Bernoulli(probs= | logits=)``, ``Poisson(rate= | log_rate=)``).

Closed-form KL divergences between them live one level up, in :mod:`jelbo.kl`.

Shape convention: leading axes are batch axes and the **last axis is the event axis**
(except for :class:`Categorical`, whose event is a scalar index). ``log_prob`` sums over the
event and returns the batch shape; ``sample`` returns
``sample_shape + batch_shape + event_shape``.
"""

from jelbo.distributions.base import (
    Distribution,
    Factorized,
    entropy,
    keyword_parameter,
    log_prob,
    sample,
    sample_and_log_prob,
    sample_and_stopped_log_prob,
)
from jelbo.distributions.continuous import (
    Beta,
    ContinuousBernoulli,
    Dirichlet,
    Gamma,
    Kumaraswamy,
    Laplace,
    Normal,
    StudentT,
)
from jelbo.distributions.directional import HypersphericalUniform, PowerSpherical
from jelbo.distributions.discrete import (
    Bernoulli,
    Categorical,
    NegativeBinomial,
    OneHotCategorical,
    Poisson,
)
from jelbo.distributions.independent import Independent
from jelbo.distributions.mixture import MixtureSameFamily
from jelbo.distributions.multivariate import (
    LKJCholesky,
    LowRankMultivariateNormal,
    MultivariateNormalTriL,
)
from jelbo.distributions.relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from jelbo.distributions.transformed import LogNormal, Transformed, TransformedDistribution
from jelbo.module import static_field as static_field  # 0.2 import path, kept

__all__ = [
    "Bernoulli",
    "Beta",
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
    "LogNormal",
    "LowRankMultivariateNormal",
    "MixtureSameFamily",
    "MultivariateNormalTriL",
    "NegativeBinomial",
    "Normal",
    "OneHotCategorical",
    "Poisson",
    "PowerSpherical",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
    "StudentT",
    "Transformed",
    "TransformedDistribution",
    "entropy",
    "keyword_parameter",
    "log_prob",
    "sample",
    "sample_and_log_prob",
    "sample_and_stopped_log_prob",
]


def __getattr__(name: str) -> object:
    if name == "_check_distribution":  # 0.2 helper that family modules may have imported
        import warnings

        from jelbo import _checks

        warnings.warn(
            "jelbo.distributions._check_distribution is deprecated since jelbo 0.3 and will "
            "be removed; jelbo's free functions check their arguments themselves.",
            DeprecationWarning,
            stacklevel=2,
        )

        def _check_distribution(dist: object, name: str) -> None:
            _checks.check_instance(dist, Distribution, name)

        globals()["_check_distribution"] = _check_distribution  # warn once, not per use
        return _check_distribution
    raise AttributeError(f"module 'jelbo.distributions' has no attribute {name!r}")
