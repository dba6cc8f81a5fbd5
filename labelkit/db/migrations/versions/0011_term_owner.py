"""search at scale: image_terms carries its image's owner, indexed with the term (issue #18)

A person's search read every matching ``image_terms`` row of every user (the ``(kind, term,
image_id)`` index) and then dropped the other users' rows: the cost of "dog" for someone with
200 photos grew with everyone's dogs. With ``owner_id`` on the row and an ``(owner_id, kind,
term, confidence)`` index, the search reads the viewer's own matches only, from the index
alone (InnoDB's secondary index entries end with the primary key, ``image_id``).

The column is filled from ``images`` (an image never changes owner), then made NOT NULL
(SQLite rebuilds the table for that; the table's shape is given, so ``alembic upgrade --sql``
works without reading the database).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _table(*, owner: bool, owner_nullable: bool = True) -> sa.Table:
    """``image_terms`` as 0010 left it (``owner=False``) or with the owner column: what
    SQLite's table rebuild copies (``copy_from``), so offline SQL needs no reflection."""
    columns: list[sa.Column[Any]] = [
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("label", "parent", "category", name="term_kind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("term", sa.String(length=128), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
    ]
    if owner:
        columns.append(sa.Column("owner_id", sa.String(length=64), nullable=owner_nullable))
    return sa.Table(
        "image_terms",
        sa.MetaData(),
        *columns,
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name="fk_image_terms_image_id_images", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_id", "kind", "term", name="pk_image_terms"),
        sa.Index("ix_image_terms_term", "kind", "term", "image_id"),
    )


def upgrade() -> None:
    with op.batch_alter_table("image_terms", schema=None, copy_from=_table(owner=False)) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.execute("UPDATE image_terms t JOIN images i ON i.id = t.image_id SET t.owner_id = i.owner_id")
    else:
        op.execute(
            "UPDATE image_terms SET owner_id ="
            " (SELECT images.owner_id FROM images WHERE images.id = image_terms.image_id)"
        )
    with op.batch_alter_table("image_terms", schema=None, copy_from=_table(owner=True)) as batch_op:
        batch_op.alter_column("owner_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(
            "ix_image_terms_owner_term", ["owner_id", "kind", "term", "confidence"], unique=False
        )


def downgrade() -> None:
    table = _table(owner=True, owner_nullable=False)
    c = table.c
    sa.Index("ix_image_terms_owner_term", c.owner_id, c.kind, c.term, c.confidence)  # joins the table
    with op.batch_alter_table("image_terms", schema=None, copy_from=table) as batch_op:
        batch_op.drop_index("ix_image_terms_owner_term")
        batch_op.drop_column("owner_id")
