"""Accounts: create and find users (the first account becomes the admin), mirror a user
from an outside identity provider, usernames by id (to show who made a human label) and
the owners an admin can narrow the gallery to.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelkit.db.models import User, new_id, utcnow


def normalize_username(username: str) -> str:
    return username.strip().casefold()


def count_users(*, session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def create_user(
    *,
    session: Session,
    username: str,
    password_hash: str | None,
    email: str | None = None,
    is_admin: bool | None = None,
    user_id: str | None = None,
) -> User:
    """Create an account. With ``is_admin=None`` the first account becomes admin."""
    if is_admin is None:
        is_admin = count_users(session=session) == 0
    user = User(
        id=user_id or new_id(),
        username=normalize_username(username),
        email=email,
        password_hash=password_hash,
        is_admin=is_admin,
    )
    session.add(user)
    session.flush()
    return user


def get_user(*, session: Session, user_id: str) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(*, session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == normalize_username(username)))


def upsert_external_user(
    *, session: Session, user_id: str, username: str, email: str | None, is_admin: bool
) -> User:
    """Mirror a user from an outside identity provider (Cognito ``sub``)."""
    user = session.get(User, user_id)
    if user is None:
        return create_user(
            session=session,
            username=username,
            password_hash=None,
            email=email,
            is_admin=is_admin,
            user_id=user_id,
        )
    user.username, user.email, user.is_admin = normalize_username(username), email, is_admin
    user.last_login_at = utcnow()
    return user


def usernames(*, session: Session, user_ids: Iterable[str]) -> dict[str, str]:
    """Usernames by id (to show who made a human label)."""
    ids = sorted({i for i in user_ids if i})
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {str(uid): str(name) for uid, name in rows}
