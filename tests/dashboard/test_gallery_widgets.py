"""The gallery's widgets through the real app (AppTest), on SQLite and MariaDB (issue 24):
a search longer than 200 characters keeps its first 200 and says so (item 6), and no flow
through the gallery makes Streamlit log its "created with a default value but also had its
value set via the Session State API" warning with a stack trace (item 8)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from streamlit.elements.lib import policies

from labelkit.auth import Principal
from labelkit.services import Services
from tests.dashboard.conftest import app, drain, jpeg, texts, upload

CUT = "Search is limited to 200 characters"
# 272 characters; its first 200 end after a whole phrase, so they still find the red photo
LONG = "thing   " + '"red thing" ' * 22
assert len(LONG) == 272 and LONG[:200].endswith('"red thing" ')


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def widget_warnings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What Streamlit's widget-policy logger warns while the test runs. Streamlit says it once
    per process: the flag that remembers it is cleared, so an earlier test cannot hide it."""
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    records = _Records()
    logger = logging.getLogger(policies.__name__)  # Streamlit's loggers do not propagate
    logger.addHandler(records)
    try:
        yield records.messages
    finally:
        logger.removeHandler(records)


def _names(at) -> list[str]:
    return [m.value.strip("*").replace("\\", "") for m in at.main.markdown if m.value.startswith("**")]


def test_no_gallery_flow_sets_a_widget_given_a_default(
    services: Services, alice: Principal, widget_warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 30 labelled photos: a second page of 6
    for i in range(30):
        upload(services, alice, f"p{i:02d}.jpg", jpeg((250 - 5 * i, 10, 10)))
    drain(services)
    # WHEN the gallery opens from a URL with dates and a page (a bookmark, the back button)
    at = app(alice)
    at.switch_page("app_pages/gallery.py")
    at.query_params.update({"from": "2020-01-01", "to": "2099-12-31", "page": "2"})
    at.run()
    assert not at.exception, at.exception
    assert len(_names(at)) == 6 and at.pagination[0].value == 2
    # AND a filter changes (back to page 1), the next page is chosen, and the gallery is left
    # and found again
    at.selectbox(key="flt_status").set_value("labelled").run()
    assert len(_names(at)) == 24 and at.pagination[0].value == 1
    at.pagination[0].set_value(2).run()
    assert len(_names(at)) == 6 and at.query_params["page"] == "2"
    at.switch_page("app_pages/labels.py").run()
    at.switch_page("app_pages/gallery.py").run()
    assert len(_names(at)) == 6 and at.pagination[0].value == 2
    # AND a search that finds nothing offers a label, which is taken
    at.text_input(key="flt_label").set_value("red thingy").run()
    at.button(key="suggest_Red Thing").click().run()
    assert len(_names(at)) == 24 and at.pagination[0].value == 1
    # THEN Streamlit warned about no widget, and nothing failed
    assert not at.exception, at.exception
    assert widget_warnings == []


def test_a_long_search_keeps_its_first_200_characters_and_says_so(
    services: Services, alice: Principal
) -> None:
    upload(services, alice, "red.jpg", jpeg((220, 10, 10)))
    drain(services)
    # GIVEN a link whose search is 260 characters long
    at = app(alice, "app_pages/gallery.py", label=LONG)
    assert not at.exception, at.exception
    # THEN the search box holds its first 200 characters (it was emptied), and says so
    assert at.text_input(key="flt_label").value == LONG[:200].strip()
    assert CUT in texts(at)
    assert at.query_params["label"] == LONG[:200].strip()  # the URL names what is searched
    assert _names(at) == ["red.jpg"]
    # WHEN a short search is typed, the note goes
    at.text_input(key="flt_label").set_value("red").run()
    assert CUT not in texts(at)
    # WHEN 260 characters are typed or pasted into the box
    at.text_input(key="flt_label").set_value(LONG).run()
    # THEN the box keeps the first 200 and says so
    assert not at.exception, at.exception
    assert at.text_input(key="flt_label").value == LONG[:200]
    assert CUT in texts(at)
    assert _names(at) == ["red.jpg"]
