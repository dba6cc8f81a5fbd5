"""Write the table of every setting into docs/configuration.md, generated from ``Settings``.

``python scripts/settings_doc.py`` rewrites what is between the ``<!-- settings:start -->`` and
``<!-- settings:end -->`` markers; ``--check`` changes nothing and exits 1 when the page's table
is not what ``Settings`` gives now (tests/unit/test_docs.py does the same check). One row per
field: its environment variable (``LABELKIT_`` + the name in capitals), its default, and its
``description``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: labelkit is beside this folder
    sys.path.insert(0, str(ROOT))

from labelkit.settings import Settings  # noqa: E402

PAGE = ROOT / "docs" / "configuration.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(value: Any) -> str:
    """A default as it would be written in the environment, in backticks; none and empty say so."""
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "set" if value.get_secret_value() else "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table() -> str:
    """The Markdown table of every field of ``Settings``, in the order they are declared."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = field.description or ""
        rows.append(f"| `{prefix}{name.upper()}` | {_cell(_default(field.default))} | {_cell(meaning)} |")
    return "\n".join(rows)


def render(page: str) -> str:
    """``page`` with its settings table replaced by the current one."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(page):
        raise SystemExit(f"{PAGE}: no {START} ... {END} markers")
    return pattern.sub(lambda _: f"{START}\n{table()}\n{END}", page, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page's table is out of date")
    args = parser.parse_args(argv)
    current = PAGE.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(
                f"{PAGE.relative_to(ROOT)} is out of date: run python scripts/settings_doc.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if wanted != current:
        PAGE.write_text(wanted, encoding="utf-8")
        print(f"updated {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
