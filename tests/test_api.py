"""The public surface: exported names, signatures that follow the conventions, typing."""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import jax.numpy as jnp
import pytest
from support import markdown_python_blocks

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


def test_docs_writing_your_own_family_runs_and_is_correct():
    import jax
    import numpy as np
    import scipy.stats

    code = markdown_python_blocks("docs/distributions.md", "## Writing your own family")[0]
    module = types.ModuleType("docs_family")  # dataclasses look up the class's module
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "docs/distributions.md", "exec", dont_inherit=True), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    namespace = module.__dict__
    logistic, q = namespace["Logistic"], namespace["q"]
    ref = scipy.stats.logistic(np.array([0.5, -1.0]), np.array([2.0, 0.5]))
    dist = logistic(jnp.asarray([0.5, -1.0]), jnp.asarray([2.0, 0.5]))
    x = np.array([[0.3, 2.0], [-40.0, 40.0]])
    np.testing.assert_allclose(dist.log_prob(x), ref.logpdf(x).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(jelbo.entropy)(dist), ref.entropy().sum(), rtol=1e-12)
    np.testing.assert_allclose(dist.mean(), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(dist.variance(), ref.var(), rtol=1e-12)
    assert jelbo.sample(jax.random.key(0), q, (5,)).shape == (5, 3, 2)
    assert namespace["bound"].value.shape == (3,)
    assert len(jax.tree.leaves(q)) == 2
