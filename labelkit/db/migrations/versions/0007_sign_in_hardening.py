"""sign-in hardening: HttpOnly session handoff, idle timeout, per-client throttle, trusted devices

* ``web_sessions.last_seen_at``: the idle timeout beside the absolute lifetime (existing rows
  start from their ``created_at``).
* ``session_handoffs``: a sign-in done over the WebSocket waits here (one minute) for the same
  browser's HTTP request that sets the HttpOnly cookie.
* ``sign_in_throttle``: failures per client + account, per account and per client, counted
  atomically before a password is checked (issue #15: 20 parallel sign-ins checked 60 passwords
  before the old per-user lock held).
* ``trusted_devices``: browsers that signed in to an account before skip the account-wide
  backoff that strangers can trigger.

``users.failed_logins`` / ``users.locked_until`` are no longer used but stay: dropping a
column on SQLite rebuilds the table, and the rebuild's DROP TABLE under ``foreign_keys=ON``
would cascade to every image.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", DT, nullable=True))
    op.execute("UPDATE web_sessions SET last_seen_at = created_at")

    op.create_table(
        "session_handoffs",
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_session_handoffs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("browser_hash", name=op.f("pk_session_handoffs")),
        **MYSQL,
    )
    op.create_table(
        "sign_in_throttle",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", DT, nullable=True),
        sa.Column("updated_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_sign_in_throttle")),
        **MYSQL,
    )
    with op.batch_alter_table("sign_in_throttle", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_throttle_updated", ["updated_at"], unique=False)
    op.create_table(
        "trusted_devices",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("expires_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_trusted_devices_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", "user_id", name=op.f("pk_trusted_devices")),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("trusted_devices")
    with op.batch_alter_table("sign_in_throttle", schema=None) as batch_op:
        batch_op.drop_index("ix_sign_in_throttle_updated")
    op.drop_table("sign_in_throttle")
    op.drop_table("session_handoffs")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
