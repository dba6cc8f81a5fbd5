"""Every page of the dashboard, in one place: its script, title, icon, menu section and who is
offered it. The entry point builds ``st.navigation`` from :func:`menu`; pages link to each
other with :class:`Page` (``st.page_link(Page.GALLERY)``, ``st.switch_page(Page.SIGN_IN)``).

The scripts live in ``app_pages/``, a folder Streamlit does not auto-discover (it would scan
``pages/`` beside the entry point); a page is reachable only once it is listed here.

Who is offered what: nobody signed in -> sign-in only; a user -> the Images and Labels
sections (the image page is hidden from the menu: the gallery opens it with ``?image=<id>``),
plus Compare once the user's images carry more than one model version (compare mode); an
admin -> also the Admin section. A user who is not an admin is offered the admin pages too,
hidden from the menu, so that their URL shows the page's own notice ("Only admins can see the
pipeline") instead of silently showing the gallery (the page checks who is signed in).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    PEOPLE = "app_pages/people.py"
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
    Entry(Page.PEOPLE, "People", ":material/groups:", "Images", "user"),
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


def offered(*, admin: bool, compare: bool) -> dict[str, list[Entry]]:
    """The entries a signed-in user is offered, by section (hidden ones by URL only)."""
    audiences: set[Audience] = {"user"}
    if compare:
        audiences.add("compare")
    if admin:
        audiences.add("admin")
    sections: dict[str, list[Entry]] = {}
    for e in PAGES:
        if e.section is None:
            continue
        if e.audience in audiences:
            sections.setdefault(e.section, []).append(e)
        elif e.audience == "admin":
            # Reachable by URL only (a section of hidden pages shows no heading in the menu):
            # the page tells a non-admin it is for admins, where Streamlit would show the gallery.
            sections.setdefault(e.section, []).append(replace(e, hidden=True))
    return sections


def menu(*, admin: bool, compare: bool) -> dict[str, list[StreamlitPage]]:
    """What ``st.navigation`` offers a signed-in user, by section."""
    return {
        section: [_st_page(e) for e in entries]
        for section, entries in offered(admin=admin, compare=compare).items()
    }
