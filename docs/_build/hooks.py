"""MkDocs hooks: the README as the home page, and one reference page per public module.

The reference is generated at build time from the package itself: every public module of
``jelbo`` (no leading underscore), subpackages' modules included (``jelbo.distributions.base``
gets ``reference/distributions.base.md``), gets ``reference/<module>.md`` rendered by
mkdocstrings (a package's page shows its docstring; its members are on their modules'
pages), and
``reference/index.md`` lists ``jelbo.__all__`` with the module each name comes from. A new
module shows up without editing anything here; ``mkdocs build --strict`` fails on a broken
docstring reference.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def _public_modules() -> dict[str, bool]:
    """``{dotted name below jelbo: is a package}`` of every public module."""
    import jelbo

    found = {}
    for info in pkgutil.walk_packages(jelbo.__path__, "jelbo."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found[info.name.removeprefix("jelbo.")] = info.ispkg
    return dict(sorted(found.items()))


def _readme() -> str:
    """The README, with its links to ``docs/x.md`` made relative to the site's pages."""
    return re.sub(r"\]\(docs/", "](", (ROOT / "README.md").read_text())


def _reference_index(modules: dict[str, bool]) -> str:
    import jelbo

    lines = [
        "# API reference",
        "",
        "Every public module has a page (generated from the docstrings). The names exported at",
        "the top level, `jelbo.<name>`, and where each is documented:",
        "",
        "| name | module |",
        "| --- | --- |",
    ]
    for name in sorted(jelbo.__all__, key=str.lower):
        module = getattr(getattr(jelbo, name), "__module__", "jelbo") or "jelbo"
        short = module.removeprefix("jelbo.")
        page = f"[`{module}`]({short}.md)" if short in modules else f"`{module}`"
        lines.append(f"| `{name}` | {page} |")
    return "\n".join(lines) + "\n"


def _own_members(package: str, modules: dict[str, bool]) -> list[str] | bool:
    """The names of ``jelbo.<package>.__all__`` not defined in a public submodule (those
    are documented on that submodule's page); ``False`` for none."""
    module = importlib.import_module(f"jelbo.{package}")
    own = []
    for name in getattr(module, "__all__", []):
        home = getattr(getattr(module, name), "__module__", None) or ""
        if home.removeprefix("jelbo.") not in modules or home == module.__name__:
            own.append(name)
    return own or False


def on_files(files: Files, config: Any) -> Files:
    modules = _public_modules()
    files.append(File.generated(config, "index.md", content=_readme()))
    files.append(File.generated(config, "reference/index.md", content=_reference_index(modules)))
    for name, is_package in modules.items():
        importlib.import_module(f"jelbo.{name}")
        content = f"# `jelbo.{name}`\n\n::: jelbo.{name}\n"
        if is_package:  # members documented on a public submodule's page are not repeated
            content += f"    options:\n      members: {_own_members(name, modules)}\n"
        files.append(File.generated(config, f"reference/{name}.md", content=content))
    return files
