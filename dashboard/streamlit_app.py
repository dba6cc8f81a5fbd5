"""Labelkit dashboard entry point: routes only.

The pages on offer depend on who is signed in (see ``dashboard/navigation.py``, where every
page is registered): nobody -> sign-in; a user -> gallery, upload, labels, review, export
(and the hidden image page, opened from the gallery with ``?image=<id>``), and the compare
page once the user's images carry more than one model version (compare mode); an admin ->
also the pipeline page. Signed out, every signed-in page's URL shows the sign-in page and
returns there after sign-in (``dashboard/deep_link.py``).
"""

from __future__ import annotations

import streamlit as st

from dashboard import core, deep_link, navigation
from labelkit.db.queries import stats as stats_q
from labelkit.domain import Viewer


@st.cache_data(ttl=60, show_spinner=False)
def _model_versions(user_id: str, is_admin: bool) -> int:
    with core.db() as s:
        return stats_q.count_model_versions(session=s, viewer=Viewer(user_id=user_id, is_admin=is_admin))


st.set_page_config(page_title="Labelkit", page_icon="🏷️", layout="wide")
core.send_pending_redirect()  # a sign-out that a click interrupted

user = core.resolve_user()
if user is None:
    # Every signed-in page's URL leads to sign-in (and back there afterwards), not "Page not found".
    deep_links = [
        st.Page(run, title="Sign in", url_path=path, visibility="hidden")
        for path, run in deep_link.signed_out_pages(core.send_to_sign_in)
    ]
    nav = st.navigation([*navigation.signed_out_menu(), *deep_links], position="hidden")
else:
    compare = _model_versions(user.user_id, user.is_admin) > 1
    nav = st.navigation(navigation.menu(admin=user.is_admin, compare=compare))
    core.follow_deep_link()
    core.render_sidebar_user()
nav.run()
