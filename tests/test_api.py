"""The public surface: exported names, signatures that follow the conventions, typing."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import re
import subprocess
import sys
import types
import typing
import warnings
from pathlib import Path

import jax.numpy as jnp
import pytest
from support import markdown_python_blocks

import jelbo
from jelbo import _deprecation

ROOT = Path(__file__).resolve().parents[1]

PUBLIC_FUNCTIONS = [name for name in jelbo.__all__ if inspect.isfunction(getattr(jelbo, name))]
RANDOM_FUNCTIONS = ["sample", "sample_and_log_prob", "mc_kl", "elbo", "iwae_bound", "renyi_bound"]


def _public_modules() -> list[types.ModuleType]:
    """jelbo and every public (sub)module and subpackage below it, imported."""
    found = [jelbo]
    for info in pkgutil.walk_packages(jelbo.__path__, "jelbo."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(importlib.import_module(info.name))
    return found


def test_all_names_exist_and_are_documented():
    for name in jelbo.__all__:
        obj = getattr(jelbo, name)
        assert inspect.getdoc(obj), f"jelbo.{name} has no docstring"


def test_every_all_entry_of_every_public_module_exists():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and none of them is a deprecated name
        for module in _public_modules():
            for name in getattr(module, "__all__", ()):
                assert hasattr(module, name), f"{module.__name__}.__all__ lists a missing {name}"


def test_no_public_name_hides_a_submodule():
    # `package.name` must be the submodule `package/name.py` itself, never another object of
    # the same name (a function jelbo.psis beside a module jelbo/psis.py hides the module).
    for package in _public_modules():
        for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
            submodule = importlib.import_module(f"{package.__name__}.{info.name}")
            assert getattr(package, info.name) is submodule, f"{submodule.__name__} is hidden"
    # and the old module paths that are served as aliases have no file any more
    files = {info.name for info in pkgutil.iter_modules(jelbo.__path__)}
    assert not files & set(_deprecation.MOVED_MODULES)


def test_importing_jelbo_and_using_its_names_does_not_warn():
    code = (
        "import jelbo, jelbo.distributions\n"
        "for m in (jelbo, jelbo.distributions):\n"
        "    [getattr(m, n) for n in m.__all__]\n"
        "from jelbo.distributions import Normal, static_field\n"
    )
    subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"},
    )


@pytest.mark.parametrize("old", sorted(_deprecation.MOVED_MODULES))
def test_old_module_paths_keep_working_with_a_warning(old):
    alias = sys.modules[f"jelbo.{old}"]
    for name, home in _deprecation.MOVED_MODULES[old].items():
        with pytest.warns(DeprecationWarning, match=rf"jelbo\.{old}\.{name}.*deprecated.*0\.3"):
            obj = getattr(alias, name)
        assert obj is getattr(importlib.import_module(home), name)
    namespace: dict = {}
    with pytest.warns(DeprecationWarning):
        exec(f"from jelbo.{old} import {name}", namespace)
    assert namespace[name] is obj
    with pytest.raises(ImportError):
        exec(f"from jelbo.{old} import no_such_name", {})


def test_old_module_paths_as_attributes_and_the_functions_they_do_not_hide():
    with pytest.warns(DeprecationWarning, match="use jelbo.Beta"):
        assert jelbo.continuous.Beta is jelbo.Beta  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="use jelbo.psis"):
        from jelbo.psis import psis  # type: ignore[import-not-found]
    assert psis is jelbo.psis is jelbo.diagnostics.psis and inspect.isfunction(jelbo.psis)
    assert inspect.isfunction(jelbo.elbo)  # the deprecated 0.1 function, not a module
    import jelbo.psis as old  # type: ignore[import-not-found]  # noqa: F401

    assert inspect.isfunction(jelbo.psis)  # importing the old path rebinds nothing


@pytest.mark.parametrize("name", sorted(_deprecation.MOVED_NAMES))
def test_sharding_helpers_moved_to_jelbo_sharding(name):
    with pytest.warns(DeprecationWarning, match=f"jelbo.{name} is deprecated.*jelbo.sharding"):
        obj = getattr(jelbo, name)
    assert obj is getattr(jelbo.sharding, name) and name not in jelbo.__all__
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        jelbo.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_version_comes_from_the_package_metadata():
    assert jelbo.__version__ == importlib.metadata.version("jelbo")
    assert re.search(r'^version = "0\.3\.0"$', (ROOT / "pyproject.toml").read_text(), re.M)


def test_option_strings_are_literal_types_and_match_the_checks():
    hints = typing.get_type_hints(jelbo.ELBO)
    assert typing.get_args(hints["kl"]) == ("analytic", "mc")
    assert typing.get_args(hints["grad_estimator"]) == ("reparam", "stl", "score")
    assert typing.get_args(typing.get_type_hints(jelbo.IWAE)["grad_estimator"]) == (
        "reparam",
        "dreg",
        "vimco",
    )
    with pytest.raises(ValueError, match="'analytic', 'mc'"):
        jelbo.ELBO(kl="closed")  # type: ignore[arg-type]


def test_result_type_lives_in_a_low_module():
    assert jelbo.Bound is jelbo.results.Bound and jelbo.Bound.__module__ == "jelbo.results"
    assert jelbo.Factorized is jelbo.distributions.Factorized


def test_no_raw_control_characters_in_sources():
    bad = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
    paths = [
        p for d in ("jelbo", "tests", "examples", "bench", "docs") for p in (ROOT / d).rglob("*")
    ]
    offenders = [
        str(p.relative_to(ROOT))
        for p in paths
        if p.suffix in (".py", ".md") and bad.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def _python_files(*dirs: str) -> list[Path]:
    return [
        p for d in dirs for p in sorted((ROOT / d).rglob("*.py")) if "__pycache__" not in p.parts
    ]


def test_no_test_example_or_bench_file_edits_sys_path():
    # They reach each other through pytest's `pythonpath`, `python -m bench.X` and the
    # `bench` package; before 0.3, twelve files did sys.path.insert(...).
    edit = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend|remove)\b|\[.*\]\s*=|\s*[+]?=)")
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in _python_files("tests", "examples", "bench")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if edit.search(line) and p.name != "test_api.py"
    ]
    assert offenders == []
    assert edit.search("sys.path.insert(0, str(ROOT))") and edit.search("sys.path = [x]")
    assert not edit.search("Nothing here edits sys.path: pytest's pythonpath")


def test_example_outputs_default_to_the_ignored_runs_directory():
    import vae

    assert vae.parse_args([]).out == str(Path("runs") / "vae")  # 0.2: ./vae_out
    assert "runs/" in (ROOT / ".gitignore").read_text().splitlines()
    # every output option of every example defaults under runs/ (or to no output)
    options = [
        (p.name, m.group(1))
        for p in _python_files("examples")
        for m in re.finditer(
            r'(?:"--out"|"--save[-\w]*"|\bout: str = tr\.option\()[^)]*?(?:default=)?'
            r"(os\.path\.join\(\"\w+\"|\"[^\"]*\"|None)",
            p.read_text(),
        )
    ]
    assert {name for name, _ in options} >= {"vae.py", "estimator_snr.py", "fit_linear_decoder.py"}
    for name, default in options:
        assert default == "None" or re.match(r'(os\.path\.join\()?"runs\b', default), (
            name,
            default,
        )


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
    # its declared constraints give the checks and the unconstrained parameterization
    with pytest.raises(ValueError, match="Logistic `scale` must be > 0"):
        jelbo.check_parameters(logistic(jnp.zeros(2), -jnp.ones(2)))
    rebuilt = logistic.from_unconstrained_params(loc=jnp.zeros(2), scale=jnp.zeros(2))
    np.testing.assert_array_equal(rebuilt.scale, 1.0)
