"""jelbo 0.2 import paths that moved in 0.3, kept working for one release with a warning.

**Moved modules.** ``jelbo.continuous``, ``jelbo.discrete``, ``jelbo.relaxed``,
``jelbo.spherical``, ``jelbo.mixture``, ``jelbo.lowrank``, ``jelbo.lkj``,
``jelbo.transformed`` (now :mod:`jelbo.distributions`), ``jelbo.psis`` (now
:mod:`jelbo.diagnostics`) and ``jelbo.elbo`` (now :mod:`jelbo.compat`) have no file any
more. :func:`install`, run when this module is imported (the first thing ``import jelbo``
does), puts one small alias module per old path into ``sys.modules``. An alias holds nothing
itself: reading one of the old module's public names (``from jelbo.continuous import Beta``,
``jelbo.continuous.Beta``) warns with a
``DeprecationWarning`` that names the new path, and returns the object from its new module.
So nothing warns for code that only uses ``jelbo.X``, and importing jelbo imports none of
the old paths' code.

Why aliases in ``sys.modules`` and not files or an import hook: ``import jelbo.psis`` finds
the alias in ``sys.modules`` without *loading* anything, and only loading a submodule makes
Python bind it as an attribute of its package. A file ``jelbo/psis.py`` (or a finder that
loads one) would rebind ``jelbo.psis`` from the function :func:`jelbo.psis` to the module
on first import, which is the very hiding of a top-level name by a module that 0.3 removes.
And with no file at the old paths, git sees the moves as renames.

**Moved top-level names.** :data:`MOVED_NAMES` lists names that left ``jelbo``'s namespace
(the sharding helpers, now in :mod:`jelbo.sharding`); ``jelbo.__getattr__`` serves them
with a warning.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
import warnings
from typing import Any

_DIST = "jelbo.distributions"

# old module (under jelbo) -> {public name -> the module that holds it now}
MOVED_MODULES: dict[str, dict[str, str]] = {
    "continuous": dict.fromkeys(
        ("Beta", "ContinuousBernoulli", "Dirichlet", "Gamma", "Kumaraswamy"), f"{_DIST}.continuous"
    ),
    "discrete": {
        "NegativeBinomial": f"{_DIST}.discrete",
        "OneHotCategorical": f"{_DIST}.discrete",
        "masked_log_softmax": f"{_DIST}._util",
    },
    "relaxed": dict.fromkeys(("RelaxedBernoulli", "RelaxedOneHotCategorical"), f"{_DIST}.relaxed"),
    "spherical": dict.fromkeys(("HypersphericalUniform", "PowerSpherical"), f"{_DIST}.directional"),
    "mixture": {"MixtureSameFamily": f"{_DIST}.mixture"},
    "lowrank": dict.fromkeys(
        ("LowRankMultivariateNormal", "trace_inverse_product"), f"{_DIST}.multivariate"
    ),
    "lkj": {"LKJCholesky": f"{_DIST}.multivariate"},
    "transformed": dict.fromkeys(
        ("LogNormal", "Transformed", "TransformedDistribution"), f"{_DIST}.transformed"
    ),
    "psis": dict.fromkeys(
        ("PosteriorSummary", "posterior_summary", "psis", "psis_tail_length"), "jelbo.diagnostics"
    ),
    "elbo": dict.fromkeys(("ELBOTerms", "elbo", "iwae_bound", "renyi_bound"), "jelbo.compat"),
}

# top-level name -> the module that holds it now
MOVED_NAMES: dict[str, str] = dict.fromkeys(
    ("check_partitionable_threefry", "data_parallel_mesh", "replicate", "shard_batch"),
    "jelbo.sharding",
)


def _advice(name: str, module: str) -> str:
    """Where to get ``name`` now: ``jelbo.name`` if it is a top-level name, else its module."""
    for package in ("jelbo", _DIST):
        if name in getattr(sys.modules[package], "__all__", ()):
            return f"use {package}.{name}"
    if "._" in module:
        return "it is internal to jelbo now"
    return f"use {module}.{name}"


class _MovedModule(types.ModuleType):
    """Stands for a jelbo 0.2 module path; reading a name warns and forwards to its new home."""

    def __init__(self, old: str, targets: dict[str, str]) -> None:
        super().__init__(f"jelbo.{old}", f"Deprecated since jelbo 0.3: the old path of {old}.")
        self.__spec__ = importlib.machinery.ModuleSpec(f"jelbo.{old}", None)
        self.__all__ = sorted(targets)
        self._jelbo_targets = targets

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        module = self._jelbo_targets.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        warnings.warn(
            f"{self.__name__}.{name}: the module path {self.__name__} is deprecated since "
            f"jelbo 0.3 and will be removed in 0.4; {_advice(name, module)}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)

    def __dir__(self) -> list[str]:
        return sorted(self._jelbo_targets)


def install() -> None:
    """Registers the alias of every moved module in ``sys.modules`` (once)."""
    for old, targets in MOVED_MODULES.items():
        sys.modules.setdefault(f"jelbo.{old}", _MovedModule(old, targets))


def moved_attribute(name: str) -> Any:
    """``jelbo.<name>`` for a name that moved: a moved module's alias (it warns when its
    contents are read) or a moved top-level name (it warns now). ``AttributeError`` else."""
    if name in MOVED_MODULES:
        return sys.modules[f"jelbo.{name}"]
    module = MOVED_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'jelbo' has no attribute {name!r}")
    warnings.warn(
        f"jelbo.{name} is deprecated since jelbo 0.3 and will be removed in 0.4; use "
        f"{module}.{name}.",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(module), name)


install()
