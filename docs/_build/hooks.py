"""MkDocs hooks: the README as the home page, repository files as pages, one reference page per
public module, and a check of every link of the built site.

- **Home.** ``index.md`` is the README, so the two cannot drift apart.
- **Links to repository files.** Pages link to files outside ``docs/`` (an example, a bench
  script, ``CONTRIBUTING.md``) by their path relative to the page's *own file in the
  repository*, so the same link works on GitHub and on the site: ``examples/vae.py`` from the
  README, ``../examples/vae.py`` from ``docs/vae.md``. Every such target gets a generated page
  under ``repo/`` (``repo/examples/vae.py.md``: the source in a code block;
  ``repo/bench/README.md``: the Markdown itself, whose own links are followed the same way),
  and the link is rewritten to it. A link that points to no file of the repository is a
  warning, so ``mkdocs build --strict`` fails on it.
- **Reference.** Every public module of ``jelbo`` (no ``_`` in its dotted name; subpackages
  included, e.g. ``jelbo.fit``) gets ``reference/<module>.md`` rendered by mkdocstrings, and
  ``reference/index.md`` lists ``jelbo.__all__`` with the page of each name. The pages are put
  into the navigation here; a new module needs no edit.
- **Built-site check.** After the build every ``href``/``src`` of every page is resolved
  against the site directory (and its ``#anchor`` against the target's ids); a broken one is a
  warning, so ``--strict`` fails.
"""

from __future__ import annotations

import html
import importlib
import logging
import pkgutil
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # mkdocs is imported where a build needs it: the tests import this module
    from mkdocs.structure.files import Files

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
REPO = "repo"  # generated pages of repository files outside docs/
ALWAYS = ("CONTRIBUTING.md", "CHANGELOG.md", "bench/README.md")  # in the nav (mkdocs.yml)
MAX_SOURCE_BYTES = 200_000  # link a summary instead of a bigger file
LANGUAGES = {".py": "python", ".toml": "toml", ".yml": "yaml", ".yaml": "yaml", ".json": "json"}

log = logging.getLogger("mkdocs.hooks.jelbo")

# A Markdown inline link or image: [text](target) / ![alt](target), target without spaces.
_LINK = re.compile(r"(!?\[(?:[^\[\]]|\[[^\]]*\])*\]\()([^()\s]+)(\))")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1", re.S)

# Generated page (src_uri) -> the repository file its Markdown comes from (for its links).
_ORIGIN: dict[str, Path] = {}


# ------------------------------------------------------------------------------------------
# Links to repository files


def _sub_links(markdown: str, repl: Any) -> str:
    """Replace each Markdown link outside fenced code blocks and code spans by ``repl(match)``.

    Paragraphs are matched whole, so a link or a code span may span lines; a link whose text
    is a code span, [`x.py`](x.py), is a link.
    """
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        text = "".join(paragraph)
        spans = [c.span() for c in _CODE_SPAN.finditer(text)]

        def one(link: re.Match[str]) -> str:
            if any(start <= link.start() < end for start, end in spans):
                return link.group(0)
            return repl(link)

        out.append(_LINK.sub(one, text))
        paragraph.clear()

    fence = ""
    for line in markdown.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                if not line.strip().lstrip(fence[0]):
                    fence = ""
            out.append(line)
        elif m:
            flush()
            fence = m.group(1)
            out.append(line)
        elif not line.strip():
            flush()
            out.append(line)
        else:
            paragraph.append(line)
    flush()
    return "".join(out)


def _local_target(target: str) -> tuple[str, str] | None:
    """``(path, '#anchor')`` of a relative link, or None for URLs, anchors and absolute paths."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    return unquote(parts.path), f"#{parts.fragment}" if parts.fragment else ""


def links(markdown: str) -> list[str]:
    """The relative link targets (path part) of a Markdown text, outside code."""
    found: list[str] = []

    def collect(m: re.Match[str]) -> str:
        local = _local_target(m.group(2))
        if local is not None:
            found.append(local[0])
        return m.group(0)

    _sub_links(markdown, collect)
    return found


def site_uri(path: Path) -> str | None:
    """The site page (src_uri) that shows the repository file ``path``, or None."""
    path = path.resolve()
    if path == README:
        return "index.md"
    if path.is_relative_to(DOCS):
        return path.relative_to(DOCS).as_posix()  # a docs page: mkdocs checks that it exists
    if not path.is_relative_to(ROOT) or not path.is_file():
        return None
    rel = path.relative_to(ROOT).as_posix()
    return f"{REPO}/{rel}" if rel.endswith(".md") else f"{REPO}/{rel}.md"


def _repo_page(path: Path) -> str:
    """The generated page of a repository file: Markdown as is, anything else as code."""
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(ROOT).as_posix()
    if path.suffix == ".md":
        return text
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))
    language = LANGUAGES.get(path.suffix, "bash" if text.startswith("#!") else "text")
    return (
        f"# `{rel}`\n\n"
        f"The file `{rel}` of the jelbo repository, as it was when this site was built.\n\n"
        f'{fence}{language} linenums="1"\n{text.rstrip()}\n{fence}\n'
    )


def _rewrite(markdown: str, origin: Path, src_uri: str) -> str:
    """Point the links of a page whose Markdown is the file ``origin`` at the site's pages."""
    here = posixpath.dirname(src_uri)

    def one(m: re.Match[str]) -> str:
        local = _local_target(m.group(2))
        if local is None:
            return m.group(0)
        path, anchor = local
        uri = site_uri(origin.parent / path)
        if uri is None:
            shown = origin.relative_to(ROOT).as_posix()
            log.warning(f"{shown} links to '{path}', which is no file of the repository")
            return m.group(0)
        return f"{m.group(1)}{posixpath.relpath(uri, here or '.')}{anchor}{m.group(3)}"

    return _sub_links(markdown, one)


def _add_repo_pages(files: Files, config: Any, origins: list[Path]) -> None:
    """Generate a page for every repository file the given Markdown files link to (and
    for the files those pages link to, and for ``ALWAYS``)."""
    from mkdocs.structure.files import File, InclusionLevel

    pending = [ROOT / p for p in ALWAYS]
    for origin in origins:
        pending += [origin.parent / p for p in links(origin.read_text(encoding="utf-8"))]
    done: set[Path] = set()
    while pending:
        path = pending.pop().resolve()
        uri = site_uri(path)
        if path in done or uri is None or path.is_relative_to(DOCS) or path == README:
            continue  # missing targets are reported when the links are rewritten
        done.add(path)
        if path.stat().st_size > MAX_SOURCE_BYTES:
            log.warning(f"a page links to {path.relative_to(ROOT)}, larger than 200 kB")
            continue
        files.append(
            File.generated(
                config, uri, content=_repo_page(path), inclusion=InclusionLevel.NOT_IN_NAV
            )
        )
        if path.suffix == ".md":
            _ORIGIN[uri] = path
            pending += [path.parent / p for p in links(path.read_text(encoding="utf-8"))]


# ------------------------------------------------------------------------------------------
# The API reference


def public_modules() -> list[str]:
    """Dotted names (without ``jelbo.``) of every public module, subpackages' included."""
    import jelbo

    names = []
    for m in pkgutil.walk_packages(jelbo.__path__, prefix="jelbo."):
        short = m.name.removeprefix("jelbo.")
        if not any(part.startswith("_") for part in short.split(".")):
            names.append(short)
    return sorted(names)


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
        obj = getattr(jelbo, name)
        module = obj.__name__ if type(obj).__name__ == "module" else obj.__module__
        short = (module or "jelbo").removeprefix("jelbo").removeprefix(".")
        # A name defined in a private module is documented where it is re-exported.
        while short and short not in modules:
            short = short.rpartition(".")[0]
        page = f"[`jelbo.{short}`]({short}.md)" if short else "`jelbo`"
        lines.append(f"| `{name}` | {page} |")
    return "\n".join(lines) + "\n"


def on_config(config: Any) -> Any:
    nav = config.nav if config.nav is not None else []
    modules = public_modules()
    reference = [{"Index": "reference/index.md"}]
    reference += [{f"jelbo.{name}": f"reference/{name}.md"} for name in modules]
    config.nav = [*nav, {"API reference": reference}]
    return config


def on_files(files: Files, config: Any) -> Files:
    from mkdocs.structure.files import File

    _ORIGIN.clear()
    _ORIGIN["index.md"] = README
    files.append(File.generated(config, "index.md", content=README.read_text(encoding="utf-8")))
    pages = [f for f in files.documentation_pages() if f.abs_src_path]
    for f in pages:
        _ORIGIN[f.src_uri] = Path(f.abs_src_path)
    _add_repo_pages(files, config, [README, *(_ORIGIN[f.src_uri] for f in pages)])

    modules = public_modules()
    files.append(File.generated(config, "reference/index.md", content=_reference_index(modules)))
    for name in modules:
        importlib.import_module(f"jelbo.{name}")
        content = f"# `jelbo.{name}`\n\n::: jelbo.{name}\n"
        files.append(File.generated(config, f"reference/{name}.md", content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    origin = _ORIGIN.get(page.file.src_uri)
    if origin is None:
        return markdown
    return _rewrite(markdown, origin, page.file.src_uri)


# ------------------------------------------------------------------------------------------
# The built site: every relative href/src resolves, and so does its anchor


_HREF = re.compile(r"""<(?:a|img|link|script)\b[^>]*?\s(?:href|src)="([^"]*)\"""")
_ID = re.compile(r"""\sid="([^"]*)\"""")


def check_site(site: Path) -> list[str]:
    """Broken relative links of the HTML pages under ``site``, as messages."""
    ids: dict[Path, set[str]] = {}

    def ids_of(page: Path) -> set[str]:
        if page not in ids:
            ids[page] = {html.unescape(i) for i in _ID.findall(page.read_text(encoding="utf-8"))}
        return ids[page]

    problems = []
    for page in sorted(site.rglob("*.html")):
        if page.name == "404.html":
            continue  # its links are absolute to the site's root by design
        for raw in _HREF.findall(page.read_text(encoding="utf-8")):
            href = html.unescape(raw)
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("/", "mailto:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = page.relative_to(site).as_posix()
            if not target.is_file():
                problems.append(f"{where}: link '{href}' points to a missing file")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in ids_of(target):
                    problems.append(f"{where}: link '{href}' points to a missing anchor")
    return problems


def on_post_build(config: Any) -> None:
    for problem in check_site(Path(config.site_dir)):
        log.warning(problem)
