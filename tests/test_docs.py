"""The documentation: the README's code runs, its commands are CI's, every link resolves.

The site itself is built by CI with the README's command (``mkdocs build --strict``), which
fails on any warning, broken links and anchors included. These tests check, without mkdocs,
what can be checked in a few seconds: the README's Python blocks and the PSIS tutorial run
and say what the text says, every relative link of the Markdown points to a file, and
``docs/_build/hooks.py`` rewrites links and finds broken ones in built HTML.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re

import jax.numpy as jnp
import numpy as np
from support import ROOT, markdown_python_blocks

import jelbo

README = ROOT / "README.md"
MARKDOWN = [
    README,
    ROOT / "CONTRIBUTING.md",
    ROOT / "CHANGELOG.md",
    ROOT / "bench" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs/_build/hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


def test_readme_is_at_most_250_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_readme_python_blocks_run_in_order_and_say_what_the_text_says():
    blocks = markdown_python_blocks("README.md")
    assert len(blocks) == 2
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec", dont_inherit=True), namespace)
    bound = namespace["bound"]  # the quick start: one bound per datapoint
    assert bound.value.shape == bound.stderr.shape == (128,)
    assert bool(jnp.isfinite(namespace["loss"]))
    exec(compile(blocks[1], "README.md", "exec", dont_inherit=True), namespace)
    # The Bayesian block's q is the exact posterior: the ELBO is log pi for every key.
    np.testing.assert_allclose(namespace["bound"].value, math.log(math.pi), rtol=1e-5)
    assert float(namespace["summary"].pareto_k) < 0.7


def test_diagnostics_psis_example_says_what_the_text_says():
    code = markdown_python_blocks("docs/diagnostics.md", "## Did it work? PSIS diagnostics")[0]
    summaries = []
    namespace: dict = {"print": lambda *args: summaries.append(namespace["s"])}
    exec(compile(code, "docs/diagnostics.md", "exec", dont_inherit=True), namespace)
    wide, narrow = summaries
    assert float(wide.pareto_k) < 0.7 < float(narrow.pareto_k)
    # The reweighted mean of the trusted q is right (E[exp z0] = e^0.5), within 4 of its mcse.
    assert abs(float(wide.mean["exp_z0"]) - math.exp(0.5)) < 4 * float(wide.mcse["exp_z0"])
    # The narrow q has the higher ELBO and the wrong answer, which only k-hat reveals.
    assert float(narrow.elbo.value) > float(wide.elbo.value)
    assert abs(float(narrow.mean["exp_z0"]) - math.exp(0.5)) > 0.3


def test_ci_runs_every_readme_command_as_written():
    readme = README.read_text(encoding="utf-8")
    block = re.search(r"## Install and run\n\n```bash\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(commands) == 3
    ci = {line.strip() for line in (ROOT / ".ci/run").read_text(encoding="utf-8").splitlines()}
    for command in commands:
        assert command in ci, f".ci/run does not run the README's {command!r} as written"


def test_every_relative_link_points_to_a_file():
    reference = set(hooks.public_modules())
    for page in MARKDOWN:
        for link in hooks.links(page.read_text(encoding="utf-8")):
            target = (page.parent / link).resolve()
            where = f"{page.relative_to(ROOT)} links to {link!r}"
            assert target.is_relative_to(ROOT), where
            generated = target.relative_to(ROOT).as_posix()
            if generated.startswith("docs/reference/"):  # pages generated from the package
                name = generated.removeprefix("docs/reference/").removesuffix(".md")
                assert name == "index" or name in reference, where
            else:
                assert target.is_file(), where


def test_links_to_repository_files_become_site_pages(caplog):
    text = (
        "[`examples/vae.py`](examples/vae.py), [n](docs/numerics.md#the-audit), "
        "[web](https://jax.dev), [top](#quick-start), `[code](examples/vae.py)`, [over two\n"
        "lines](examples/vae.py)\n```\n[fenced](examples/vae.py)\n```\n"
    )
    out = hooks._rewrite(text, README, "index.md")
    assert "[`examples/vae.py`](repo/examples/vae.py.md)" in out
    assert "[n](numerics.md#the-audit)" in out
    assert "[web](https://jax.dev)" in out and "[top](#quick-start)" in out
    assert "`[code](examples/vae.py)`" in out and "[fenced](examples/vae.py)" in out
    assert "[over two\nlines](repo/examples/vae.py.md)" in out
    # From a docs page, and from a generated page of a repository Markdown file.
    assert hooks._rewrite("[v](../examples/vae.py)", hooks.DOCS / "vae.md", "vae.md") == (
        "[v](repo/examples/vae.py.md)"
    )
    bench = ROOT / "bench" / "README.md"
    assert hooks._rewrite(
        "[r](results/vm-2026-11-24.md) [c](../CONTRIBUTING.md) [d](../docs/vae.md)",
        bench,
        "repo/bench/README.md",
    ) == ("[r](results/vm-2026-11-24.md) [c](../CONTRIBUTING.md) [d](../../vae.md)")
    # A link to no file is left alone and reported (a warning: the strict build fails).
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.jelbo"):
        assert hooks._rewrite("[m](examples/nope.py)", README, "index.md") == (
            "[m](examples/nope.py)"
        )
    assert "examples/nope.py" in caplog.text


def test_check_site_reports_missing_files_and_anchors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text('<h2 id="x">x</h2><a href="../">up</a>')
    (tmp_path / "index.html").write_text(
        '<a href="a/">ok</a> <a href="a/#x">ok</a> <a href="#top" id="top">ok</a>'
        '<a href="https://jax.dev/x">ok</a> <img src="b.png"> <a href="a/#y">bad</a>'
        '<a href="c/">bad</a>'
    )
    problems = hooks.check_site(tmp_path)
    assert len(problems) == 3, problems
    assert any("'b.png'" in p and "missing file" in p for p in problems)
    assert any("'a/#y'" in p and "missing anchor" in p for p in problems)
    assert any("'c/'" in p and "missing file" in p for p in problems)


def test_every_public_module_and_name_has_a_reference_page():
    modules = hooks.public_modules()
    assert {"kl", "objectives", "fit"} <= set(modules)
    assert not [m for m in modules if any(part.startswith("_") for part in m.split("."))]
    index = hooks._reference_index(modules)
    for name in jelbo.__all__:
        row = next(line for line in index.splitlines() if line.startswith(f"| `{name}` |"))
        assert re.search(r"\]\([a-z_.]+\.md\)", row), row


def test_contributing_describes_every_module():
    table = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8").split("## Module layout")[1]
    table = table.split("\n## ")[0]
    package = ROOT / "jelbo"
    entries = [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()]
    entries += [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    missing = sorted(e for e in entries if f"`{e}`" not in table)
    assert not missing, f"CONTRIBUTING.md's module table does not describe {missing}"
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    named = [n for cell in first_cells for n in re.findall(r"`([\w/]+(?:\.py|/))`", cell)]
    gone = sorted(n for n in named if not (package / n).exists())
    assert not gone, f"CONTRIBUTING.md's module table describes missing modules {gone}"
