"""Write a benchmark's table into docs/benchmarks.md, between its markers.

Benchmarks write only that page: every script takes ``--doc [PATH]`` (:func:`add_doc_option`;
``--doc`` alone means :data:`DEFAULT_DOC`) and, when given, calls :func:`update_doc`.
Without ``--doc`` a run writes no page (a quick or partial run cannot overwrite the figures).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

#: The one page benchmarks write.
DEFAULT_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def add_doc_option(parser: argparse.ArgumentParser, name: str) -> None:
    """``--doc [PATH]``: write the table between the ``bench-NAME`` markers of PATH."""
    parser.add_argument(
        "--doc",
        type=Path,
        nargs="?",
        const=DEFAULT_DOC,
        default=None,
        metavar="PATH",
        help=f"write the table between the bench-{name} markers of PATH (just --doc: {DEFAULT_DOC.name} "
        "in docs/); without it no page is written",
    )


def update_doc(path: Path, text: str, *, name: str, title: str) -> None:
    """Replace what is between ``<!-- bench-NAME:start -->`` and ``...:end -->``.

    If the markers are missing, a section titled ``title`` holding them is appended.
    """
    start, end = f"<!-- bench-{name}:start -->", f"<!-- bench-{name}:end -->"
    block = f"{start}\n{text}\n{end}"
    content = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(content):
        content = pattern.sub(lambda _: block, content, count=1)
    else:
        sep = "" if not content or content.endswith("\n\n") else ("\n" if content.endswith("\n") else "\n\n")
        content += f"{sep}## {title}\n\n`make bench-{name}` writes this table.\n\n{block}\n"
    path.write_text(content, encoding="utf-8")
