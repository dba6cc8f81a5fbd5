"""running totals: label counts, term counts and confidence bins per owner (issue #9)

The dashboard's counts and charts read these instead of counting label rows (seconds
at a million images); ``labelkit.db.counts`` keeps them in step on every write and
fills them here from the existing rows. Owner ``*`` holds everyone's totals (admins).

Key lengths on utf8mb4: label_counts 64*4 + 128*4 = 768 bytes; term_counts
64*4 + 16*4 + 128*4 = 832 bytes; both under InnoDB's 3,072.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 15:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.orm import Session

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OFFLINE_NOTE = (
    "-- 0004: offline SQL does not fill label_counts, term_counts and confidence_bins from\n"
    "-- existing rows. If the database already holds images, run `python -m labelkit.db.counts`\n"
    "-- once after applying this script."
)


def upgrade() -> None:
    op.create_table(
        "label_counts",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.Column("model_rows", sa.BigInteger(), nullable=False),
        sa.Column("confidence_milli", sa.BigInteger(), nullable=False),
        sa.Column("confirmed", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("awaiting", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "name", name=op.f("pk_label_counts")),
    )
    op.create_index("ix_label_counts_owner_images", "label_counts", ["owner_id", "images"], unique=False)
    op.create_table(
        "term_counts",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("term", sa.String(length=128), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "kind", "term", name=op.f("pk_term_counts")),
    )
    op.create_index(
        "ix_term_counts_owner_kind_images", "term_counts", ["owner_id", "kind", "images"], unique=False
    )
    op.create_table(
        "confidence_bins",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("bin", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("labels", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "bin", name=op.f("pk_confidence_bins")),
    )
    if context.is_offline_mode():
        # `alembic upgrade --sql` has no rows to read: the totals are filled by Python code,
        # so the script says what to run instead (on a database this script creates there
        # are no rows, and nothing is missing).
        op.get_context().impl.static_output(OFFLINE_NOTE)
        return
    # Fill from the rows already there (the same code as `python -m labelkit.db.counts`).
    from labelkit.db.counts import rebuild

    rebuild(Session(bind=op.get_bind()))


def downgrade() -> None:
    op.drop_table("confidence_bins")
    op.drop_index("ix_term_counts_owner_kind_images", table_name="term_counts")
    op.drop_table("term_counts")
    op.drop_index("ix_label_counts_owner_images", table_name="label_counts")
    op.drop_table("label_counts")
