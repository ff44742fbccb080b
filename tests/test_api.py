"""The public surface: exported names, signatures that follow the conventions, typing."""

from __future__ import annotations

import inspect
from pathlib import Path

import jax.numpy as jnp
import pytest

import jelbo

PUBLIC_FUNCTIONS = [name for name in jelbo.__all__ if inspect.isfunction(getattr(jelbo, name))]
RANDOM_FUNCTIONS = ["sample", "mc_kl", "elbo", "iwae_bound", "renyi_bound"]


def test_all_names_exist_and_are_documented():
    for name in jelbo.__all__:
        obj = getattr(jelbo, name)
        assert inspect.getdoc(obj), f"jelbo.{name} has no docstring"


@pytest.mark.parametrize("name", RANDOM_FUNCTIONS)
def test_key_comes_first(name):
    params = list(inspect.signature(getattr(jelbo, name)).parameters)
    assert params[0] == "key"


@pytest.mark.parametrize("name", ["elbo", "iwae_bound", "renyi_bound", "mc_kl"])
def test_options_are_keyword_only(name):
    kinds = {p.name: p.kind for p in inspect.signature(getattr(jelbo, name)).parameters.values()}
    for option in ("num_samples", "kl", "grad_estimator", "alpha", "beta", "sample_chunk_size"):
        if option in kinds:
            assert kinds[option] is inspect.Parameter.KEYWORD_ONLY, option


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_functions_are_type_hinted(name):
    signature = inspect.signature(getattr(jelbo, name))
    assert signature.return_annotation is not inspect.Signature.empty
    for param in signature.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name})"


def test_package_ships_py_typed():
    assert (Path(jelbo.__file__).parent / "py.typed").is_file()


def test_classic_exports_the_recipe_names():
    assert set(jelbo.classic.__all__) == {
        "gaussian_log_prob",
        "kl_divergence_gaussians",
        "compute_elbo",
        "reparameterize",
    }


def test_readme_quick_start_runs():
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["terms"].elbo.shape == (128,)
    assert bool(jnp.isfinite(namespace["loss"]))
