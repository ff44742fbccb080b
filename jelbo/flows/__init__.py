r"""Normalizing flows as jelbo bijectors: parameters are plain arrays in the pytree.

- :class:`RationalQuadraticSpline`: the elementwise monotone rational-quadratic spline of
  Durkan et al. (2019), identity tails, exact inverse.
- :func:`masked_autoregressive`: MAF (Papamakarios et al. 2017) or, with ``inverse=True``,
  IAF (Kingma et al. 2016), with MADE conditioners (Germain et al. 2015).
- :func:`coupling`: RealNVP-style affine and neural-spline couplings (Dinh et al. 2017;
  Durkan et al. 2019).

Every flow is a :class:`jelbo.bijectors.Bijector` (compose with
:class:`~jelbo.bijectors.Chain`, push a base through it with :class:`jelbo.Transformed`),
every leaf an inexact array (``jax.grad`` and optax apply directly), the structure (masks,
orders, sizes, activation) static, and a fresh flow the identity. See ``docs/flows.md``.
"""

from jelbo.flows._layers import (
    Coupling,
    InverseAutoregressive,
    MaskedAutoregressive,
    coupling,
    masked_autoregressive,
)
from jelbo.flows._spline import RationalQuadraticSpline

__all__ = [
    "Coupling",
    "InverseAutoregressive",
    "MaskedAutoregressive",
    "RationalQuadraticSpline",
    "coupling",
    "masked_autoregressive",
]
