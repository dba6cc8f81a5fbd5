"""Write a benchmark's table into README.md between its markers."""

from __future__ import annotations

import re
from pathlib import Path


def update_readme(path: Path, text: str, *, name: str, title: str) -> None:
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
