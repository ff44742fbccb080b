r"""Distributions of transformed random variables, :math:`y = f(x)`, :math:`x \sim p_X`.

:class:`Transformed` pushes any jelbo distribution through a bijector
(:mod:`jelbo.bijectors`) by the change of variables

.. math:: \log p_Y(y) = \log p_X(f^{-1}(y)) + \log|\det J_{f^{-1}}(y)|,

and samples :math:`y = f(x)` (reparameterized whenever the base is). The log-density of its
own draws, :func:`jelbo.sample_and_log_prob`, is :math:`\log p_X(x) - \log|\det J_f(x)|` at
the base draw, so no inverse runs for them. :class:`LogNormal` is
the Normal pushed through :class:`~jelbo.bijectors.Exp`, with its closed-form moments.

Closed forms exist only where they are exact: the entropy for bijectors with a constant or
linear log-det-Jacobian (:class:`~jelbo.bijectors.Identity`, :class:`~jelbo.bijectors.Affine`:
:math:`H[Y] = H[X] + \log|\det A|`; :class:`~jelbo.bijectors.Exp`:
:math:`H[Y] = H[X] + \sum_i\mathbb E[x_i]`), and the KL between two distributions
transformed by the *same* bijector, :math:`\mathrm{KL}(f_\#q\,\|\,f_\#p) = \mathrm{KL}(q\|p)`
(registered in :mod:`jelbo.kl`; "same" is decided at trace time by
:func:`jelbo.bijectors.same_bijector`). Everything else raises, pointing to the Monte Carlo
estimators (``jelbo.ELBO(kl="mc")``, :func:`jelbo.mc_kl`).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jelbo import bijectors as _bij
from jelbo import constraints as _c
from jelbo._typing import Array, ArrayLike, Shape
from jelbo.constraints import Constraint
from jelbo.distributions.base import (
    Distribution,
    entropy,
    log_prob,
    sample,
    sample_and_log_prob,
)
from jelbo.distributions.continuous import Normal

__all__ = ["LogNormal", "Transformed", "TransformedDistribution"]


class TransformedDistribution(Distribution):
    """Base of families defined as a base distribution pushed through a bijector.

    Subclasses implement :meth:`base_distribution` and :meth:`transform`; log-density,
    sampling, shapes, reparameterization and the exact entropies follow. :class:`Transformed`
    takes both as fields; :class:`LogNormal` builds them from its parameters.
    """

    @abc.abstractmethod
    def base_distribution(self) -> Distribution:
        """The distribution of :math:`x`."""

    @abc.abstractmethod
    def transform(self) -> _bij.Bijector:
        """The bijector :math:`f`, :math:`y = f(x)`."""

    @property
    def is_reparameterized(self) -> bool:  # type: ignore[override]
        """Whether samples are differentiable in the parameters: the base's."""
        return self.base_distribution().is_reparameterized

    @property
    def dtype(self) -> Any:
        return self.base_distribution().dtype

    def _validate(self) -> None:
        base, bijector = self.base_distribution(), self.transform()
        if not isinstance(base, Distribution):
            raise TypeError(
                f"{type(self).__name__}: `base` must be a jelbo distribution; got "
                f"{type(base).__name__}."
            )
        if not isinstance(bijector, _bij.Bijector):
            raise TypeError(
                f"{type(self).__name__}: `bijector` must be a jelbo bijector; got "
                f"{type(bijector).__name__}."
            )
        if len(base.event_shape) != bijector.event_ndims_in:
            raise ValueError(
                f"{type(self).__name__}: {type(bijector).__name__} acts on events with "
                f"{bijector.event_ndims_in} axis(es), but the base "
                f"{type(base).__name__} has event shape {base.event_shape}."
            )
        self._out_shape()

    def _out_shape(self) -> Shape:
        base = self.base_distribution()
        x = jax.ShapeDtypeStruct(base.batch_shape + base.event_shape, base.dtype)
        return tuple(jax.eval_shape(lambda v: _bij.forward(self.transform(), v), x).shape)

    @property
    def event_shape(self) -> Shape:
        return self.transform().forward_shape(self.base_distribution().event_shape)

    @property
    def batch_shape(self) -> Shape:
        shape = self._out_shape()
        return shape[: len(shape) - len(self.event_shape)]

    def _log_prob(self, x: Array) -> Array:
        bijector = self.transform()
        inner = _bij.inverse(bijector, x)
        return log_prob(self.base_distribution(), inner) + _bij.inverse_log_det_jacobian(
            bijector, x
        )

    def _sample(self, key: Array, sample_shape: Shape) -> Array:
        x = sample(key, self.base_distribution(), sample_shape)
        return _bij.forward(self.transform(), x)

    def _sample_and_log_prob(self, key: Array, sample_shape: Shape) -> tuple[Array, Array]:
        # log p_Y(f(x)) = log p_X(x) - log|det J_f(x)| at the base draw: no inverse runs.
        x, log_px = sample_and_log_prob(key, self.base_distribution(), sample_shape)
        y, log_det = _bij.forward_and_log_det(self.transform(), x)
        return y, log_px - log_det

    def _sample_and_stopped_log_prob(self, key: Array, sample_shape: Shape) -> tuple[Array, Array]:
        # log q(y) with the parameters stopped: log p_X(x_hat) - log|det J_f(x_hat)| at
        # x_hat = f^{-1}(y), which the bijector's _inverse_given hook may give from the known
        # base draw x without running the inverse (its default runs it).
        x = sample(key, self.base_distribution(), sample_shape)
        y = _bij.forward(self.transform(), x)
        frozen = jax.lax.stop_gradient(self)
        bijector = frozen.transform()
        x_hat = bijector._inverse_given(y, x)
        log_px = log_prob(frozen.base_distribution(), x_hat)
        return y, log_px - _bij.forward_log_det_jacobian(bijector, x_hat)

    def _sample_density_issue(self) -> str | None:
        return self.base_distribution()._sample_density_issue()

    def _entropy(self) -> Array:
        base, bijector = self.base_distribution(), self.transform()
        if isinstance(bijector, _bij.Identity):
            return entropy(base)
        if isinstance(bijector, _bij.Affine):
            zeros = jnp.zeros(base.batch_shape + base.event_shape, base.dtype)
            return entropy(base) + _bij.forward_log_det_jacobian(bijector, zeros)
        if isinstance(bijector, _bij.Exp):
            return entropy(base) + jnp.sum(base.mean(), axis=-1)
        raise NotImplementedError(
            f"{type(self).__name__} with {type(bijector).__name__} has no closed-form entropy "
            "(it is exact only for Identity, Affine and Exp). Estimate it by Monte Carlo: "
            "jelbo.ELBO(kl='mc') or -mean(log_prob(dist, sample(key, dist, (n,))))."
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base={self.base_distribution()!r}, "
            f"bijector={self.transform()!r})"
        )


class Transformed(TransformedDistribution):
    r"""The distribution of :math:`y = f(x)`, :math:`x\sim` ``base``, ``f`` = ``bijector``.

    :math:`\log p(y) = \log p_{\text{base}}(f^{-1}(y)) + \log|\det J_{f^{-1}}(y)|`; samples
    are ``forward(bijector, sample(key, base))``, reparameterized when the base is.
    ``batch_shape`` is the broadcast of the base's and the bijector parameters';
    ``event_shape`` is ``bijector.forward_shape(base.event_shape)``.

    Attributes:
        base: a jelbo distribution whose event has ``bijector.event_ndims_in`` axes.
        bijector: a jelbo bijector (its parameters are pytree leaves too).

    Example::

        q = jelbo.Transformed(jelbo.Normal(loc, scale), jelbo.bijectors.Softplus())
    """

    base: Distribution
    bijector: _bij.Bijector

    def base_distribution(self) -> Distribution:
        return self.base

    def transform(self) -> _bij.Bijector:
        return self.bijector


class LogNormal(TransformedDistribution):
    r"""Factorized log-normal: :math:`\log y \sim \mathcal N(\mu, \mathrm{diag}(\sigma^2))`,
    the :class:`~jelbo.Normal` pushed through :class:`~jelbo.bijectors.Exp`.

    :math:`\log p(y) = \sum_i \log\mathcal N(\log y_i;\mu_i,\sigma_i) - \log y_i`;
    :math:`\mathbb E[y] = e^{\mu+\sigma^2/2}`,
    :math:`\mathrm{Var}[y] = (e^{\sigma^2}-1)e^{2\mu+\sigma^2}`, mode :math:`e^{\mu-\sigma^2}`,
    :math:`H = \sum_i \mu_i + \tfrac12 + \tfrac12\log 2\pi + \log\sigma_i`. The KL between
    two log-normals is that of the Normals (the :class:`Transformed` rule).

    Attributes:
        loc: :math:`\mu`, shape ``(*batch, K)``.
        scale: :math:`\sigma > 0`, broadcastable to ``loc``.
    """

    loc: ArrayLike
    scale: ArrayLike
    arg_constraints: ClassVar[dict[str, Constraint]] = {"loc": _c.real, "scale": _c.positive}
    support: ClassVar[Constraint] = _c.positive

    @property
    def base(self) -> Normal:
        """The :class:`~jelbo.Normal` of :math:`\\log y`."""
        return Normal(self.loc, self.scale)

    @property
    def bijector(self) -> _bij.Exp:
        """:class:`~jelbo.bijectors.Exp`."""
        return _bij.Exp()

    def base_distribution(self) -> Distribution:
        return self.base

    def transform(self) -> _bij.Bijector:
        return _bij.Exp()

    @property
    def batch_shape(self) -> Shape:
        return self.base.batch_shape

    def _full(self, value: Array) -> Array:
        return jnp.broadcast_to(value, self.base.param_shape)

    def _mean(self) -> Array:
        return self._full(jnp.exp(self.loc + 0.5 * jnp.square(self.scale)))

    def _variance(self) -> Array:
        s2 = jnp.square(self.scale)
        return self._full(jnp.expm1(s2) * jnp.exp(2.0 * jnp.asarray(self.loc) + s2))

    def _mode(self) -> Array:
        return self._full(jnp.exp(self.loc - jnp.square(self.scale)))

    def __repr__(self) -> str:
        return Distribution.__repr__(self)
