"""MkDocs hooks: the README as the home page, and one reference page per public module.

The reference is generated at build time from the package itself: every public module of
``jelbo`` (no leading underscore) gets ``reference/<module>.md`` rendered by mkdocstrings, and
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


def _public_modules() -> list[str]:
    import jelbo

    names = [m.name for m in pkgutil.iter_modules(jelbo.__path__) if not m.name.startswith("_")]
    return sorted(names)


def _readme() -> str:
    """The README, with its links to ``docs/x.md`` made relative to the site's pages."""
    return re.sub(r"\]\(docs/", "](", (ROOT / "README.md").read_text())


def _reference_index(modules: list[str]) -> str:
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


def on_files(files: Files, config: Any) -> Files:
    modules = _public_modules()
    files.append(File.generated(config, "index.md", content=_readme()))
    files.append(File.generated(config, "reference/index.md", content=_reference_index(modules)))
    for name in modules:
        importlib.import_module(f"jelbo.{name}")
        content = f"# `jelbo.{name}`\n\n::: jelbo.{name}\n"
        files.append(File.generated(config, f"reference/{name}.md", content=content))
    return files
