"""What every contender module provides: a :class:`Runner` for one variant at one size."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Runner"]


class Runner(Protocol):
    """One contender, built for one size, holding its parameters and optimizer state."""

    def step(self) -> None:
        """Runs one training step (or one ELBO evaluation); the work is finished on return."""

    def loss(self) -> float:
        """The negative ELBO per datapoint computed by the last :meth:`step`."""
