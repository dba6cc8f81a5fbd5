"""What the query modules share: scoping a statement to a viewer, whose running totals a
viewer reads, insert-or-ignore, the "awaiting review" condition and the size of IN lists.

A person sees only their own images (admins see all); rows that belong to an image are
scoped through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session

from labelkit.db import counts
from labelkit.db.models import ALL_OWNERS, Image, TermCount
from labelkit.domain import Viewer

_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")


def _scoped(stmt: _S, viewer: Viewer) -> _S:
    return stmt if viewer.is_admin else stmt.where(Image.owner_id == viewer.user_id)


def _totals_owner(viewer: Viewer) -> str:
    """Whose running totals the viewer reads: their own, or everyone's (``*``) for admins."""
    return ALL_OWNERS if viewer.is_admin else viewer.user_id


def _owned(stmt: _S, viewer: Viewer, image_id: Any) -> _S:
    """Scope rows that belong to an image (``image_id``) to the viewer's images.

    Admins see every row and need no join to ``images``: the foreign key (ON DELETE
    CASCADE, plus the explicit deletes in :func:`~labelkit.db.queries.images.delete_image`)
    means every row's image exists. Without the join the aggregates read one covering index.
    """
    if viewer.is_admin:
        return stmt
    return stmt.join(Image, Image.id == image_id).where(Image.owner_id == viewer.user_id)


def _insert_ignore(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, silently skipping those that hit a unique key."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite_dialect.insert(table).on_conflict_do_nothing()
    elif dialect in ("mysql", "mariadb"):
        # "pk = pk" changes nothing, so MySQL reports 0 rows for a duplicate (and,
        # unlike INSERT IGNORE, other errors such as truncation still raise).
        first_pk = next(iter(table.primary_key.columns))
        stmt = mysql_dialect.insert(table).on_duplicate_key_update({first_pk.name: first_pk})
    else:  # pragma: no cover - other backends are not supported
        raise NotImplementedError(dialect)
    session.execute(stmt, list(rows))


def _term_total(session: Session, owner: str, kind: str, term: str) -> int:
    stmt = select(TermCount.images).where(
        TermCount.owner_id == owner, TermCount.kind == kind, TermCount.term == term
    )
    return int(session.scalar(stmt) or 0)


def _awaiting_review() -> list[Any]:
    """Image-level model labels with no human row of the same name on the image."""
    return counts.awaiting_review()


_IN_CHUNK = 500  # ids per IN (...) list, well under every backend's parameter limit
