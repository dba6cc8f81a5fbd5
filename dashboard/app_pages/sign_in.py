"""Sign in or create an account.

Local mode: sign in and create account (the first account becomes the admin).
Cognito mode (the authenticator also offers ``AccountRecovery``): sign in,
create account with e-mail -> confirm with the e-mailed code (or send a new
one), forgot password -> reset with the code, and the new-password form for
accounts an administrator created. Which of those forms shows is kept in
``st.session_state["auth_step"]``; passwords are never kept there.
"""

from __future__ import annotations

import streamlit as st

from dashboard import core
from labelkit.auth import AccountRecovery, ConfirmationRequired, NewPasswordRequired
from labelkit.db.queries import users as user_q
from labelkit.errors import AccountLocked, AuthError

STEP_KEY, STEP_USER_KEY, NOTE_KEY = "auth_step", "auth_step_user", "auth_note"

auth = core.authenticator()
recovery = auth if isinstance(auth, AccountRecovery) else None


def _goto(step: str | None, username: str = "", note: str = "") -> None:
    """Show another form on the next run (with ``note`` above it) and rerun."""
    st.session_state[STEP_KEY] = step
    st.session_state[STEP_USER_KEY] = username
    st.session_state[NOTE_KEY] = note
    if step is None and username:
        st.session_state["signin_username"] = username  # pre-fill the sign-in form
    st.rerun()


def _show_note() -> None:
    note = st.session_state.pop(NOTE_KEY, "")
    if note:
        st.info(note, icon=":material/mail:")


def _sign_in_form() -> None:
    with st.form("sign_in_form", border=True):
        username = st.text_input("Username", key="signin_username", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="signin_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
    if submitted:
        try:
            principal = auth.sign_in(username, password, client=core.sign_in_client())
        except NewPasswordRequired as e:
            _goto("new_password", e.username, str(e))
        except ConfirmationRequired as e:
            _goto("confirm", e.username, str(e))
        except AccountLocked as e:
            st.error(str(e), icon=":material/lock:")
        except AuthError as e:
            st.error(str(e), icon=":material/error:")
        else:
            core.sign_in(principal)  # ends the run


def _sign_up_form(*, first_account: bool) -> None:
    if first_account:
        st.info("No accounts yet: the first account becomes the administrator.", icon=":material/shield:")
    with st.form("sign_up_form", border=True):
        new_username = st.text_input(
            "Username",
            key="signup_username",
            help="3–32 characters: letters, digits, '.', '_' or '-'." if recovery is None else None,
            autocomplete="username",
        )
        email = st.text_input(
            "Email (optional)" if recovery is None else "Email",
            key="signup_email",
            autocomplete="email",
            help=None if recovery is None else "We send a confirmation code to this address.",
        )
        new_password = st.text_input(
            "Password",
            type="password",
            key="signup_password",
            help="At least 8 characters, not easy to guess (a few unrelated words work well)."
            if recovery is None
            else "The password rules of the account pool apply.",
            autocomplete="new-password",
        )
        repeat = st.text_input(
            "Repeat password", type="password", key="signup_repeat", autocomplete="new-password"
        )
        created = st.form_submit_button("Create account", type="primary", width="stretch")
    if created:
        if new_password != repeat:
            st.error("The two passwords differ.", icon=":material/error:")
            return
        try:
            principal = auth.sign_up(new_username, new_password, email or None, client=core.sign_in_client())
        except ConfirmationRequired as e:
            _goto("confirm", e.username, str(e))
        except AuthError as e:
            st.error(str(e), icon=":material/error:")
        else:
            core.sign_in(principal)  # ends the run


def _forgot_form(rec: AccountRecovery) -> None:
    with st.form("forgot_form", border=True):
        st.caption("We e-mail you a code to set a new password.")
        username = st.text_input("Username", key="forgot_username", autocomplete="username")
        sent = st.form_submit_button("Send reset code", type="primary", width="stretch")
    if sent:
        if not username.strip():
            st.error("Type your username first.", icon=":material/error:")
            return
        try:
            rec.forgot_password(username)
        except AuthError as e:
            st.error(str(e), icon=":material/error:")
        else:
            _goto(
                "reset",
                username.strip(),
                "If that account exists, a code is on its way to its e-mail address.",
            )


def _back_button() -> None:
    if st.button("Back to sign in", key="auth_back", icon=":material/arrow_back:", type="tertiary"):
        _goto(None)


def _confirm_form(rec: AccountRecovery, username: str) -> None:
    st.subheader("Confirm your e-mail")
    _show_note()
    with st.form("confirm_form", border=True):
        st.caption(f"Account: **{core.md(username)}**")
        code = st.text_input("Confirmation code", key="confirm_code", autocomplete="one-time-code")
        confirmed = st.form_submit_button("Confirm", type="primary", width="stretch")
    if confirmed:
        try:
            rec.confirm_sign_up(username, code)
        except AuthError as e:
            st.error(str(e), icon=":material/error:")
        else:
            _goto(None, username, "Your account is confirmed — sign in.")
    if st.button("Send a new code", key="resend_code", icon=":material/forward_to_inbox:"):
        try:
            where = rec.resend_code(username)
        except AuthError as e:
            st.error(str(e), icon=":material/error:")
        else:
            st.success(
                f"A new code was sent to {core.md(where or 'your e-mail address')}.", icon=":material/mail:"
            )
    _back_button()


def _reset_form(rec: AccountRecovery, username: str) -> None:
    st.subheader("Choose a new password")
    _show_note()
    with st.form("reset_form", border=True):
        st.caption(f"Account: **{core.md(username)}**")
        code = st.text_input("Reset code", key="reset_code", autocomplete="one-time-code")
        new_password = st.text_input(
            "New password", type="password", key="reset_password", autocomplete="new-password"
        )
        repeat = st.text_input(
            "Repeat new password", type="password", key="reset_repeat", autocomplete="new-password"
        )
        done = st.form_submit_button("Set new password", type="primary", width="stretch")
    if done:
        if new_password != repeat:
            st.error("The two passwords differ.", icon=":material/error:")
        else:
            try:
                rec.reset_password(username, code, new_password)
            except AuthError as e:
                st.error(str(e), icon=":material/error:")
            else:
                _goto(None, username, "Password changed — sign in with the new one.")
    _back_button()


def _new_password_form(rec: AccountRecovery, username: str) -> None:
    st.subheader("Set your password")
    _show_note()
    with st.form("new_password_form", border=True):
        st.caption(f"Account: **{core.md(username)}**")
        current = st.text_input(
            "Temporary password", type="password", key="newpw_current", autocomplete="current-password"
        )
        new_password = st.text_input(
            "New password", type="password", key="newpw_new", autocomplete="new-password"
        )
        repeat = st.text_input(
            "Repeat new password", type="password", key="newpw_repeat", autocomplete="new-password"
        )
        done = st.form_submit_button("Set password and sign in", type="primary", width="stretch")
    if done:
        if new_password != repeat:
            st.error("The two passwords differ.", icon=":material/error:")
        else:
            try:
                principal = rec.complete_new_password(username, current, new_password)
            except AuthError as e:
                st.error(str(e), icon=":material/error:")
            else:
                for key in (STEP_KEY, STEP_USER_KEY):
                    st.session_state.pop(key, None)
                core.sign_in(principal)  # ends the run
    _back_button()


_, middle, _ = st.columns([1, 1.3, 1])
with middle:
    st.title(":material/label: Labelkit")
    st.caption("Upload photos, get them labelled automatically, explore and correct the labels.")

    step = st.session_state.get(STEP_KEY) if recovery is not None else None
    step_user = str(st.session_state.get(STEP_USER_KEY) or "")
    if recovery is not None and step == "confirm" and step_user:
        _confirm_form(recovery, step_user)
    elif recovery is not None and step == "reset" and step_user:
        _reset_form(recovery, step_user)
    elif recovery is not None and step == "new_password" and step_user:
        _new_password_form(recovery, step_user)
    elif recovery is not None:
        # Cognito: admins come from the pool's "admin" group, never from being first.
        _show_note()
        sign_in_tab, sign_up_tab, forgot_tab = st.tabs(["Sign in", "Create account", "Forgot password"])
        with sign_in_tab:
            _sign_in_form()
        with sign_up_tab:
            _sign_up_form(first_account=False)
        with forgot_tab:
            _forgot_form(recovery)
    else:
        with core.db() as s:
            first = user_q.count_users(session=s) == 0
        sign_in_tab, sign_up_tab = st.tabs(["Sign in", "Create account"])
        with sign_in_tab:
            _sign_in_form()
        with sign_up_tab:
            _sign_up_form(first_account=first)
