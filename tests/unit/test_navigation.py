"""Every dashboard page is registered once, in dashboard/navigation.py, and nothing else can
reach the page scripts (they are not in a folder Streamlit auto-discovers)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from dashboard import navigation
from dashboard.navigation import PAGES, Entry, Page

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


def test_admin_pages_answer_a_non_admin_by_url_but_stay_out_of_the_menu() -> None:
    # GIVEN what a user and an admin are offered
    user = navigation.offered(admin=False, compare=False)
    admin = navigation.offered(admin=True, compare=False)

    def hidden(sections: dict[str, list[Entry]]) -> dict[Page, bool]:
        return {e.page: e.hidden for entries in sections.values() for e in entries}

    assert [e.page for e in PAGES if e.audience == "admin"] == [Page.PIPELINE]
    # THEN a user is offered the pipeline hidden from the menu (its URL shows the page, which
    # tells him it is for admins), where an admin sees it in the menu
    assert hidden(user)[Page.PIPELINE] is True
    assert hidden(admin)[Page.PIPELINE] is False
    # and the other pages are offered alike, the compare page only in compare mode
    assert {p: h for p, h in hidden(user).items() if p != Page.PIPELINE} == {
        p: h for p, h in hidden(admin).items() if p != Page.PIPELINE
    }
    assert Page.COMPARE not in hidden(user)
    assert Page.COMPARE in hidden(navigation.offered(admin=False, compare=True))
