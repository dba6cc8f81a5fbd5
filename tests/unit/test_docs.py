"""The documentation stays true: the README is short, ``docs/`` builds strictly (a broken link or
anchor, or a page missing from the nav, fails), the settings table is what ``Settings`` gives
now, every module the docs name exists, and benchmarks write only ``docs/benchmarks.md``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bench.docs_page import DEFAULT_DOC, add_doc_option, update_doc

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: Folders at the top of the tree that hold code; a path or dotted name starting with one is checked.
TOP = (
    "labelkit",
    "dashboard",
    "sqs_listener",
    "lambda_labeler",
    "infra_scripts",
    "bench",
    "tests",
    "scripts",
)
#: Pages whose bare module names (``counts.py`` in a row about ``db/``) are checked too: the module
#: tables. Elsewhere only full paths (``labelkit/db/counts.py``) and dotted names are.
MODULE_MAPS = ("README.md", "docs/architecture.md")

_CODE = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_PATH = re.compile(r"^[\w.-]+(?:/[\w.-]+)*/?$")
_DOTTED = re.compile(r"(?<![\w/.-])((?:" + "|".join(TOP) + r")(?:\.[A-Za-z_]\w*)+)(?![\w/-])")
_RELATIVE_DOTTED = re.compile(r"^([A-Za-z_]\w*)\.([A-Za-z_]\w*)$")


# --- the README and the build --------------------------------------------------------------


def test_the_readme_is_at_most_150_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail to a page in docs/"


def test_the_readme_links_every_docs_page() -> None:
    # GIVEN the README and the pages at the top of docs/
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md") if p.name != "index.md")
    # THEN the README links each of them ("where to read next")
    missing = [p for p in pages if f"]({p}" not in readme]
    assert not missing, f"README.md links no {missing}"


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    # GIVEN the docs and mkdocs.yml (strict: every warning fails the build)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # WHEN MkDocs builds the site into a scratch folder
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
        + ["--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    # THEN it succeeds with no warning, and every page became a page of the site
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "WARNING" not in output, output[-4000:]
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS).with_suffix("")
        built = tmp_path / "site" / ("index.html" if rel.name == "index" else rel / "index.html")
        assert built.is_file(), f"{page.relative_to(ROOT)} was not built"
    # AND the pages load no web fonts (Material's Google Fonts are off: theme.font is false)
    for html in (tmp_path / "site").rglob("*.html"):
        assert "fonts.googleapis.com" not in html.read_text(encoding="utf-8"), html


# --- the settings table ----------------------------------------------------------------------


def _settings_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "scripts" / "settings_doc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_settings_table_is_what_settings_gives_now() -> None:
    # GIVEN the committed configuration page and the generator
    settings_doc = _settings_doc()
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    # THEN the table between the markers is what the generator writes from Settings today
    stale = "docs/configuration.md is out of date: run python scripts/settings_doc.py"
    assert settings_doc.render(page) == page, stale


def test_the_settings_table_has_every_field_with_a_meaning() -> None:
    from labelkit.settings import Settings

    # GIVEN the generated table
    table = _settings_doc().table()
    # THEN every field is a row, and every row says what the setting does
    for name in Settings.model_fields:
        row = next((r for r in table.splitlines() if r.startswith(f"| `LABELKIT_{name.upper()}` |")), None)
        assert row is not None, name
        assert row.rstrip(" |").split("|")[-1].strip(), f"Settings.{name} has no description"


# --- module names ----------------------------------------------------------------------------


def _blocks(text: str) -> list[str]:
    """Paragraphs, with each table row a block of its own; fenced code left out."""
    blocks: list[str] = []
    for paragraph in re.split(r"\n\s*\n", _FENCE.sub("", text)):
        lines = paragraph.splitlines()
        if lines and all(line.lstrip().startswith("|") for line in lines):
            blocks.extend(lines)
        else:
            blocks.append(paragraph)
    return blocks


def _top_level_names(module: Path) -> set[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _module_file(folder: Path, dotted: list[str]) -> Path | None:
    path = folder.joinpath(*dotted)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted_exists(root: Path, parts: list[str]) -> bool:
    """``a.b.c``: the longest prefix that is a module exists, and what follows is a name it defines."""
    for cut in range(len(parts), 0, -1):
        module = _module_file(root, parts[:cut])
        if module is not None:
            return cut == len(parts) or parts[cut] in _top_level_names(module)
    return False


def missing_modules(text: str, root: Path = ROOT, *, module_map: bool = False) -> tuple[list[str], int]:
    """The module paths and dotted names ``text`` names that do not exist under ``root``, and how
    many it names. With ``module_map``, bare names resolve against the folders already named in the
    same paragraph or table row (``db/`` (``counts.py``)), else against the root or ``labelkit/``."""
    missing: list[str] = []
    checked = 0
    for block in _blocks(text):
        bases: list[Path] = []  # the folders named so far in this block, the latest first
        for token in _CODE.findall(block):
            for dotted in _DOTTED.findall(token):
                checked += 1
                if not _dotted_exists(root, dotted.split(".")):
                    missing.append(dotted)
            if not _PATH.match(token) or not token.endswith((".py", "/")) or token in ("./", "../"):
                relative = _RELATIVE_DOTTED.match(token)
                if module_map and relative and not token.startswith(TOP):
                    # ``duplicates.keeper_key``: checked when its first part is a module here
                    for folder in (*bases, root / "labelkit"):
                        module = _module_file(folder, [relative.group(1)])
                        if module is not None:
                            checked += 1
                            if relative.group(2) not in _top_level_names(module):
                                missing.append(token)
                            break
                continue
            full = token.startswith(tuple(f"{t}/" for t in TOP))
            if not full and not module_map:
                continue
            checked += 1
            candidates = [root / token] if full else [c / token for c in (*bases, root, root / "labelkit")]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                missing.append(token)
            else:
                bases.insert(0, found if found.is_dir() else found.parent)
    return missing, checked


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md"))]
)
def test_every_module_the_docs_name_exists(page: str) -> None:
    # GIVEN a page of the docs (the README and docs/architecture.md hold the module tables)
    text = (ROOT / page).read_text(encoding="utf-8")
    # WHEN every module path and dotted name it names is looked up in the tree
    missing, checked = missing_modules(text, module_map=page in MODULE_MAPS)
    # THEN each exists
    assert not missing, f"{page} names modules that do not exist: {missing}"
    if page in MODULE_MAPS:
        assert checked >= 8, f"{page}: only {checked} module names found; is the table still there?"


def test_the_architecture_page_maps_the_modules() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    _, checked = missing_modules(text, module_map=True)
    assert checked >= 60, checked


def test_the_module_check_finds_what_does_not_exist(tmp_path: Path) -> None:
    # GIVEN a small tree: labelkit/db/counts.py defining effective_terms
    (tmp_path / "labelkit" / "db").mkdir(parents=True)
    (tmp_path / "labelkit" / "__init__.py").write_text("")
    (tmp_path / "labelkit" / "db" / "__init__.py").write_text("")
    (tmp_path / "labelkit" / "db" / "counts.py").write_text("def effective_terms():\n    pass\n")
    page = (
        "| data layer | `db/` (`counts.py`, `totals.py`, `counts.effective_terms`, `counts.nothing`) |\n"
        "| totals | `labelkit/db/counts.py`, `labelkit/db/gone.py`, `labelkit.db.counts.effective_terms`,"
        " `labelkit.db.counts.recount`, `python -m labelkit.db.tally` |\n\n"
        "Not modules: `users/{owner}/x.jpg`, `infra_scripts/labelkit.yaml`, `image_features.embedding`.\n"
    )
    # WHEN the page is checked as a module map
    missing, checked = missing_modules(page, tmp_path, module_map=True)
    # THEN exactly the names that are not in the tree are reported
    assert missing == [
        "totals.py",
        "counts.nothing",
        "labelkit/db/gone.py",
        "labelkit.db.counts.recount",
        "labelkit.db.tally",
    ]
    assert checked == 10
    # AND outside a module map only full paths and dotted names count
    missing, checked = missing_modules(page, tmp_path)
    assert missing == ["labelkit/db/gone.py", "labelkit.db.counts.recount", "labelkit.db.tally"]
    assert checked == 5


# --- benchmarks write only docs/benchmarks.md -----------------------------------------------


def _doc_writers() -> dict[str, str]:
    """bench module -> the marker name it writes (``add_doc_option(parser, "NAME")``)."""
    found = {}
    for path in sorted((ROOT / "bench").glob("*.py")):
        m = re.search(r'add_doc_option\(\s*\w+,\s*"([\w-]+)"\s*\)', path.read_text(encoding="utf-8"))
        if m:
            found[path.stem] = m.group(1)
    return found


def test_every_benchmark_table_lives_in_the_benchmarks_page() -> None:
    # GIVEN the benchmarks that write a table, and the pages
    writers = _doc_writers()
    page = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    assert DEFAULT_DOC == DOCS / "benchmarks.md"
    assert {"queries", "e2e", "search", "similar", "dashboard", "duplicates"} <= set(writers.values())
    # THEN each one's markers are in docs/benchmarks.md (a run replaces them in place)
    for module, name in writers.items():
        assert page.count(f"<!-- bench-{name}:start -->") == 1, module
        assert page.count(f"<!-- bench-{name}:end -->") == 1, module
    # AND no other page, nor the README, holds a benchmark's markers
    for other in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        if other != DOCS / "benchmarks.md":
            assert "<!-- bench-" not in other.read_text(encoding="utf-8"), other


def test_the_make_targets_write_benchmarks_only_into_the_benchmarks_page() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    runs = [line for line in makefile.splitlines() if "-m bench." in line or "--db-url" in line]
    assert runs
    assert not [line for line in runs if "--readme" in line or "README" in line]
    writes = [line for line in makefile.splitlines() if "--doc" in line]
    assert len(writes) >= 6 and all("--doc docs/benchmarks.md" in line for line in writes), writes


def test_doc_option_and_update(tmp_path: Path) -> None:
    import argparse

    # GIVEN a benchmark's parser with the --doc option
    parser = argparse.ArgumentParser()
    add_doc_option(parser, "demo")
    # THEN no --doc writes nothing, --doc alone means docs/benchmarks.md, --doc PATH that path
    assert parser.parse_args([]).doc is None
    assert parser.parse_args(["--doc"]).doc == DEFAULT_DOC
    assert parser.parse_args(["--doc", str(tmp_path / "x.md")]).doc == tmp_path / "x.md"
    # WHEN a table is written twice into a page with other text
    page = tmp_path / "x.md"
    page.write_text("# Benchmarks\n\nhand-written\n", encoding="utf-8")
    update_doc(page, "first", name="demo", title="Demo")
    update_doc(page, "second", name="demo", title="Demo")
    # THEN the page keeps its text and holds the latest table once, under its title
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nhand-written\n")
    assert text.count("## Demo") == 1 and "second" in text and "first" not in text
