"""Every page of the dashboard, in one place: its script, title, icon, menu section and who is
offered it. The entry point builds ``st.navigation`` from :func:`menu`; pages link to each
other with :class:`Page` (``st.page_link(Page.GALLERY)``, ``st.switch_page(Page.SIGN_IN)``).

The scripts live in ``app_pages/``, a folder Streamlit does not auto-discover (it would scan
``pages/`` beside the entry point); a page is reachable only once it is listed here.

Who is offered what: nobody signed in -> sign-in only; a user -> the Images and Labels
sections (the image page is hidden from the menu: the gallery opens it with ``?image=<id>``),
plus Compare once the user's images carry more than one model version (compare mode); an
admin -> also the Admin section.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import streamlit as st
from streamlit.navigation.page import StreamlitPage


class Page(StrEnum):
    """A page's script, relative to ``streamlit_app.py`` (what ``st.page_link`` and
    ``st.switch_page`` take)."""

    SIGN_IN = "app_pages/sign_in.py"
    GALLERY = "app_pages/gallery.py"
    UPLOAD = "app_pages/upload.py"
    IMAGE = "app_pages/image.py"
    DUPLICATES = "app_pages/duplicates.py"
    LABELS = "app_pages/labels.py"
    REVIEW = "app_pages/review.py"
    EXPORT = "app_pages/export.py"
    COMPARE = "app_pages/compare.py"
    PIPELINE = "app_pages/pipeline.py"


Audience = Literal["signed_out", "user", "compare", "admin"]


@dataclass(frozen=True, slots=True)
class Entry:
    page: Page
    title: str
    icon: str
    section: str | None  # None: the signed-out menu, which has no sections
    audience: Audience
    default: bool = False
    hidden: bool = False  # reachable by link only, not in the menu


# Menu order is this order.
PAGES: tuple[Entry, ...] = (
    Entry(Page.SIGN_IN, "Sign in", ":material/login:", None, "signed_out", default=True),
    Entry(Page.GALLERY, "Gallery", ":material/photo_library:", "Images", "user", default=True),
    Entry(Page.UPLOAD, "Upload", ":material/upload:", "Images", "user"),
    Entry(Page.IMAGE, "Image", ":material/image:", "Images", "user", hidden=True),
    Entry(Page.DUPLICATES, "Duplicates", ":material/content_copy:", "Images", "user"),
    Entry(Page.LABELS, "Labels", ":material/label:", "Labels", "user"),
    Entry(Page.REVIEW, "Review", ":material/fact_check:", "Labels", "user"),
    Entry(Page.EXPORT, "Export", ":material/download:", "Labels", "user"),
    Entry(Page.COMPARE, "Compare labellers", ":material/compare:", "Labels", "compare"),
    Entry(Page.PIPELINE, "Pipeline", ":material/monitoring:", "Admin", "admin"),
)


def _st_page(e: Entry) -> StreamlitPage:
    return st.Page(
        e.page.value,
        title=e.title,
        icon=e.icon,
        default=e.default,
        visibility="hidden" if e.hidden else "visible",
    )


def signed_out_menu() -> list[StreamlitPage]:
    """What ``st.navigation`` offers nobody signed in (shown without a menu)."""
    return [_st_page(e) for e in PAGES if e.audience == "signed_out"]


def menu(*, admin: bool, compare: bool) -> dict[str, list[StreamlitPage]]:
    """What ``st.navigation`` offers a signed-in user, by section."""
    offered: set[Audience] = {"user"}
    if compare:
        offered.add("compare")
    if admin:
        offered.add("admin")
    sections: dict[str, list[StreamlitPage]] = {}
    for e in PAGES:
        if e.audience in offered and e.section is not None:
            sections.setdefault(e.section, []).append(_st_page(e))
    return sections
