"""A Griffe extension: jelbo's docstrings are Google style with reST roles; render them in
Markdown for mkdocstrings.

- ``:math:`x``` becomes inline math ``\\(x\\)`` and a ``.. math::`` block display math
  ``\\[ ... \\]`` (both rendered by ``pymdownx.arithmatex`` and MathJax);
- ``:func:`x```, ``:class:`x```, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``, ``:obj:``
  become code spans (``~`` prefixes dropped);
- a paragraph ending in ``::`` (a reST literal block) ends in ``:`` and its indented block is
  fenced as Python code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def convert(text: str) -> str:
    """The Markdown form of one docstring."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::") or (stripped.endswith("::") and stripped != "::"):
            base = _indent(line)
            is_math = stripped.startswith(".. math::")
            first = stripped[len(".. math::") :].strip() if is_math else ""
            block: list[str] = [first] if first else []
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            body = [b for b in block]
            inner = min((_indent(b) for b in body if b.strip()), default=base)
            pad = " " * base
            dedented = [pad + b[inner:] if b.strip() else "" for b in body]
            if is_math:
                out += [pad + "\\[", *dedented, pad + "\\]"]
            else:
                out.append(line.rstrip()[:-1])  # "Example::" -> "Example:"
                out += ["", pad + "```python", *dedented, pad + "```"]
            out.append("")
            i = j
            continue
        out.append(line)
        i += 1
    result = "\n".join(out)
    result = _MATH.sub(lambda m: "\\(" + m.group(1) + "\\)", result)
    return _ROLE.sub(lambda m: "`" + m.group(1) + "`", result)


class ReSTRoles(griffe.Extension):
    """Converts every docstring when Griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
