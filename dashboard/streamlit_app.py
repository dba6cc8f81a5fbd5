"""Labelkit dashboard entry point: routes only.

The pages on offer depend on who is signed in: nobody -> sign-in; a user ->
gallery, upload, labels, review (and the hidden image page, opened from the
gallery with ``?image=<id>``), and the compare page once the user's images carry
more than one model version (compare mode); an admin -> also the pipeline page.
"""

from __future__ import annotations

import streamlit as st

from dashboard import core
from labelkit.db.queries import stats as stats_q
from labelkit.domain import Viewer

PAGE_COMPARE = "app_pages/compare.py"


@st.cache_data(ttl=60, show_spinner=False)
def _model_versions(user_id: str, is_admin: bool) -> int:
    with core.db() as s:
        return stats_q.count_model_versions(session=s, viewer=Viewer(user_id=user_id, is_admin=is_admin))


st.set_page_config(page_title="Labelkit", page_icon="🏷️", layout="wide")

user = core.resolve_user()
if user is None:
    nav = st.navigation(
        [st.Page(core.PAGE_SIGN_IN, title="Sign in", icon=":material/login:", default=True)],
        position="hidden",
    )
else:
    pages = {
        "Images": [
            st.Page(core.PAGE_GALLERY, title="Gallery", icon=":material/photo_library:", default=True),
            st.Page(core.PAGE_UPLOAD, title="Upload", icon=":material/upload:"),
            st.Page(core.PAGE_IMAGE, title="Image", icon=":material/image:", visibility="hidden"),
        ],
        "Labels": [
            st.Page(core.PAGE_LABELS, title="Labels", icon=":material/label:"),
            st.Page(core.PAGE_REVIEW, title="Review", icon=":material/fact_check:"),
            st.Page("app_pages/export.py", title="Export", icon=":material/download:"),
        ],
    }
    if _model_versions(user.user_id, user.is_admin) > 1:
        pages["Labels"].append(st.Page(PAGE_COMPARE, title="Compare labellers", icon=":material/compare:"))
    if user.is_admin:
        pages["Admin"] = [st.Page(core.PAGE_PIPELINE, title="Pipeline", icon=":material/monitoring:")]
    nav = st.navigation(pages)
    core.render_sidebar_user()
nav.run()
