"""implied rejections: a person's rejection ends the roll-up parents that were only its evidence (issue #24)

Rejecting "Cat" used to leave the model's "Feline" (rolled up from the same leaf) on the
photo: ``feline`` still found it and the Labels page counted it. Now a rejection also ends
the model labels that were only evidence for the rejected name: ``labels.implied_by`` marks
a human rejection that follows from another (``labelkit.db.counts.implied_rejections`` says
which), written and removed with every write to the image's labels.

This adds the column, then derives the implied rejections (and with them the image's terms
and the running totals) for every image a person rejected a label on: 500 at a time, through
the same code every write runs. Offline (``alembic upgrade --sql``) there are no rows to read:
the script says to run ``python -m labelkit.db.counts --implied`` once it has been applied.

Downgrade drops the implied rows first (they are derived) and recounts, then drops the column.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.orm import Session

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("implied_by", sa.String(length=128), nullable=True))
    if context.is_offline_mode():
        op.get_context().impl.static_output(
            "-- 0013 derives the rejections implied by people's rejections: "
            "run `python -m labelkit.db.counts --implied` after applying this script."
        )
        return
    from labelkit.db.counts import imply_all

    session = Session(bind=op.get_bind())
    imply_all(session)
    session.flush()


def downgrade() -> None:
    implied = sa.table("labels", sa.column("image_id"), sa.column("implied_by"))
    if context.is_offline_mode():
        op.execute(implied.delete().where(implied.c.implied_by.is_not(None)))
    else:
        from labelkit.db.counts import derive_terms, rebuild

        # The older code does not know these rows: the images carry the roll-ups again.
        session = Session(bind=op.get_bind())
        ids = list(
            session.scalars(sa.select(implied.c.image_id).where(implied.c.implied_by.is_not(None)).distinct())
        )
        session.execute(implied.delete().where(implied.c.implied_by.is_not(None)))
        derive_terms(session, ids)
        rebuild(session)
        session.flush()
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_column("implied_by")
