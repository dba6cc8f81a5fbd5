"""taught labels and thresholds from reviews (issue #27)

Three new tables. ``taught_labels``: per owner and label name, the linear classifier learned from
the photos where that person added or confirmed the name (and rejected it), with its
cross-validated precision and recall, its threshold and whether it suggests. Its suggestions
are ``labels`` rows of a new source, ``learned`` (a plain string column: no ALTER needed).
``learning_runs``: per owner, the state of their labels the last training saw, so the worker
trains again only after they changed (debounced). ``label_thresholds``: per person (or ``*``,
everyone) and label name, the minimum confidence a machine label needs to be carried, chosen
from people's reviews; below it the label is not searched, counted or shown.

Downgrade drops the tables and the ``learned`` label rows (the older code knows neither), then
derives the terms of the photos that had suggestions (every photo's, if floors were set) and
rebuilds the running totals.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Session

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "taught_labels",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("embedding_model", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("negatives", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("cv_precision", sa.Float(), nullable=True),
        sa.Column("cv_recall", sa.Float(), nullable=True),
        sa.Column("platt_a", sa.Float(), nullable=False),
        sa.Column("platt_b", sa.Float(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=True),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("suggested", sa.Integer(), nullable=False),
        sa.Column("trained_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_taught_labels_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner_id", "name", name=op.f("pk_taught_labels")),
        **MYSQL,
    )
    op.create_table(
        "learning_runs",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("trained_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_learning_runs_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_learning_runs")),
        **MYSQL,
    )
    op.create_table(
        "label_thresholds",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("min_confidence", sa.Float(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=True),
        sa.Column("set_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "name", name=op.f("pk_label_thresholds")),
        **MYSQL,
    )


def downgrade() -> None:
    labels = sa.table("labels", sa.column("image_id"), sa.column("source"))
    bind = op.get_bind()
    offline = context.is_offline_mode()
    touched: list[str] = []
    floors = False
    if not offline:
        learned = sa.select(labels.c.image_id).where(labels.c.source == "learned").distinct()
        touched = [str(r[0]) for r in bind.execute(learned)]
        floors = bool(bind.execute(sa.text("SELECT COUNT(*) FROM label_thresholds")).scalar())
    op.execute(labels.delete().where(labels.c.source == "learned"))
    op.drop_table("label_thresholds")
    op.drop_table("learning_runs")
    op.drop_table("taught_labels")
    if offline:
        op.get_context().impl.static_output(
            "-- 0015 down: run `python -m labelkit.db.counts --terms` after applying this script."
        )
        return
    from labelkit.db.counts import derive_all_terms, derive_terms, rebuild, schema_changed

    # The photos that had suggestions, or every photo when floors hid labels, carry their
    # terms again without them; then the totals follow the terms.
    schema_changed(bind)
    session = Session(bind=bind)
    if floors:
        derive_all_terms(session)
    else:
        derive_terms(session, touched)
    rebuild(session)
    session.flush()
