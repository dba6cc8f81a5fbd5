"""Sign in or create an account."""

from __future__ import annotations

import streamlit as st

from dashboard import core
from labelkit.db import repository as repo
from labelkit.errors import AccountLocked, AuthError

_, middle, _ = st.columns([1, 1.3, 1])
with middle:
    st.title(":material/label: Labelkit")
    st.caption("Upload photos, get them labelled automatically, explore and correct the labels.")

    with core.db() as s:
        first_account = repo.count_users(session=s) == 0

    sign_in_tab, sign_up_tab = st.tabs(["Sign in", "Create account"])
    with sign_in_tab:
        with st.form("sign_in_form", border=True):
            username = st.text_input("Username", key="signin_username", autocomplete="username")
            password = st.text_input(
                "Password", type="password", key="signin_password", autocomplete="current-password"
            )
            submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
        if submitted:
            try:
                principal = core.authenticator().sign_in(username, password)
            except AccountLocked as e:
                st.error(str(e), icon=":material/lock:")
            except AuthError as e:
                st.error(str(e), icon=":material/error:")
            else:
                core.sign_in(principal)
                st.rerun()

    with sign_up_tab:
        if first_account:
            st.info("No accounts yet: the first account becomes the administrator.", icon=":material/shield:")
        with st.form("sign_up_form", border=True):
            new_username = st.text_input(
                "Username",
                key="signup_username",
                help="3–32 characters: letters, digits, '.', '_' or '-'.",
                autocomplete="username",
            )
            email = st.text_input("Email (optional)", key="signup_email", autocomplete="email")
            new_password = st.text_input(
                "Password",
                type="password",
                key="signup_password",
                help="At least 8 characters.",
                autocomplete="new-password",
            )
            repeat = st.text_input(
                "Repeat password", type="password", key="signup_repeat", autocomplete="new-password"
            )
            created = st.form_submit_button("Create account", type="primary", width="stretch")
        if created:
            if new_password != repeat:
                st.error("The two passwords differ.", icon=":material/error:")
            else:
                try:
                    principal = core.authenticator().sign_up(new_username, new_password, email or None)
                except AuthError as e:
                    st.error(str(e), icon=":material/error:")
                else:
                    core.sign_in(principal)
                    st.rerun()
