"""Every dashboard page is registered once, in dashboard/navigation.py, and nothing else can
reach the page scripts (they are not in a folder Streamlit auto-discovers)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from dashboard.navigation import PAGES, Page

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"


def test_every_page_script_is_registered_and_every_registered_page_exists() -> None:
    scripts = {f"app_pages/{p.name}" for p in (DASHBOARD / "app_pages").glob("*.py")}
    assert {p.value for p in Page} == scripts
    assert [e.page for e in PAGES] == list(Page)  # each once, in the menu's order


def test_one_default_page_signed_out_and_one_signed_in() -> None:
    defaults = Counter(e.audience for e in PAGES if e.default)
    assert defaults == {"signed_out": 1, "user": 1}
    assert all(e.section is None for e in PAGES if e.audience == "signed_out")
    assert all(e.section is not None for e in PAGES if e.audience != "signed_out")


def test_nothing_auto_discovers_the_pages_and_no_page_path_is_spelled_outside_the_registry() -> None:
    # Streamlit lists every script of a pages/ folder beside the entry point on its own.
    assert not (DASHBOARD / "pages").exists()
    spelled = [
        str(p.relative_to(DASHBOARD))
        for p in DASHBOARD.rglob("*.py")
        if p.name != "navigation.py" and re.search(r"app_pages/\w+\.py", p.read_text())
    ]
    assert spelled == []
