"""What every contender module provides: a :class:`Runner` for one variant at one size."""

from __future__ import annotations

from typing import Protocol

__all__ = ["LastLoss", "Runner", "check_variant"]


class Runner(Protocol):
    """One contender, built for one size, holding its parameters and optimizer state."""

    def step(self) -> None:
        """Runs one training step (or one ELBO evaluation); the work is finished on return."""

    def loss(self) -> float:
        """The negative ELBO per datapoint computed by the last :meth:`step`."""


class LastLoss:
    """Mixin of the runners that keep the last loss as a Python float in ``self._loss``."""

    _loss: float = float("nan")

    def loss(self) -> float:
        """The loss computed by the last step (at the parameters before its update)."""
        return self._loss


def check_variant(contender: str, variant: str, variants: tuple[str, ...]) -> None:
    """Raises ``ValueError`` unless ``variant`` is one of the contender's ``variants``."""
    if variant not in variants:
        raise ValueError(f"{contender} has the variants {variants}; got {variant!r}")
