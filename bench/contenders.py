"""The registry of contenders: which module builds each row, and what it needs installed."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["BASELINE", "CONTENDERS", "Contender", "by_key"]


@dataclass(frozen=True)
class Contender:
    """One row of the table.

    Attributes:
        key: short id used on the command line and in the JSON.
        label: the row's name in the table.
        module: module with ``make_runner(variant, size) -> Runner``.
        variant: passed to ``make_runner``.
        kind: ``"step"`` (value + gradient + Adam update) or ``"value"`` (ELBO value only).
        uses_jax: run once per allocator (default, and tcmalloc where found).
        requires: top-level packages that must be importable; otherwise "not installed".
    """

    key: str
    label: str
    module: str
    variant: str
    kind: str
    uses_jax: bool
    requires: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """The required packages that cannot be found."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]


BASELINE = "jax-b"

CONTENDERS: tuple[Contender, ...] = (
    Contender("numpy-loop", "numpy-loop", "bench.numpy_loop", "value", "value", False),
    Contender(
        "numpy-vectorized", "numpy-vectorized", "bench.numpy_vectorized", "value", "value", False
    ),
    Contender(
        "jelbo-classic",
        "jelbo.classic.compute_elbo",
        "bench.jelbo_user",
        "classic",
        "value",
        True,
        ("jax",),
    ),
    Contender(
        "jelbo-value", "jelbo.elbo (value)", "bench.jelbo_user", "value", "value", True, ("jax",)
    ),
    Contender(
        "jelbo-noise",
        "jelbo noise only: z ~ q, S·B·K draws (floor)",
        "bench.jelbo_user",
        "noise",
        "value",
        True,
        ("jax",),
    ),
    Contender(
        "jax-a",
        "jax-handwritten 3(a) (S,B,K)@(K,D)",
        "bench.jax_handwritten",
        "a",
        "step",
        True,
        ("jax", "optax"),
    ),
    Contender(
        BASELINE,
        "jax-handwritten 3(b) (S·B,K)@(K,D)",
        "bench.jax_handwritten",
        "b",
        "step",
        True,
        ("jax", "optax"),
    ),
    Contender("jelbo", "jelbo.elbo", "bench.jelbo_user", "step", "step", True, ("jax", "optax")),
    Contender(
        "numpyro-trace",
        "numpyro Trace_ELBO",
        "bench.numpyro_svi",
        "trace",
        "step",
        True,
        ("numpyro",),
    ),
    Contender(
        "numpyro-meanfield",
        "numpyro TraceMeanField_ELBO",
        "bench.numpyro_svi",
        "meanfield",
        "step",
        True,
        ("numpyro",),
    ),
    Contender("torch", "torch (CPU)", "bench.torch_step", "step", "step", False, ("torch",)),
    Contender(
        "tfp-jax",
        "tfp-jax",
        "bench.tfp_jax",
        "step",
        "step",
        True,
        ("tensorflow_probability", "optax"),
    ),
)


def by_key(key: str) -> Contender:
    """The contender with this key."""
    for contender in CONTENDERS:
        if contender.key == key:
            return contender
    raise KeyError(f"unknown contender {key!r}; known: {[c.key for c in CONTENDERS]}")
