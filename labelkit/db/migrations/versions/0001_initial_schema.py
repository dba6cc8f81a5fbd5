"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 12:02:44.152994
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Timestamps are naive UTC; MySQL keeps microseconds only with fsp=6.
DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# Every table is utf8mb4 on MySQL/MariaDB, whatever the server default.
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("queue", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("receive_count", sa.Integer(), nullable=False),
        sa.Column("receipt_handle", sa.String(length=64), nullable=True),
        sa.Column("visible_at", sa.Double(), nullable=False),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_messages")),
        sa.UniqueConstraint("message_id", name=op.f("uq_queue_messages_message_id")),
        sa.UniqueConstraint("receipt_handle", name=op.f("uq_queue_messages_receipt_handle")),
        **MYSQL,
    )
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.create_index("ix_queue_messages_ready", ["queue", "dead", "visible_at"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", DT, nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("last_login_at", DT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
        **MYSQL,
    )
    op.create_table(
        "images",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "labelling",
                "labelled",
                "failed",
                name="image_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("updated_at", DT, nullable=False),
        sa.Column("labelled_at", DT, nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_images_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("object_key", name=op.f("uq_images_object_key")),
        sa.UniqueConstraint("owner_id", "sha256", name="uq_images_owner_sha256"),
        **MYSQL,
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_created", ["created_at"], unique=False)
        batch_op.create_index("ix_images_owner_created", ["owner_id", "created_at"], unique=False)
        batch_op.create_index("ix_images_status_updated", ["status", "updated_at"], unique=False)

    op.create_table(
        "image_terms",
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("label", "parent", "category", name="term_kind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("term", sa.String(length=128), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_terms_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_id", "kind", "term", name=op.f("pk_image_terms")),
        **MYSQL,
    )
    with op.batch_alter_table("image_terms", schema=None) as batch_op:
        batch_op.create_index("ix_image_terms_term", ["kind", "term", "image_id"], unique=False)

    op.create_table(
        "labels",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column(
            "source",
            sa.Enum("model", "human", name="label_source", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.SmallInteger(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("box_left", sa.Float(), nullable=True),
        sa.Column("box_top", sa.Float(), nullable=True),
        sa.Column("box_width", sa.Float(), nullable=True),
        sa.Column("box_height", sa.Float(), nullable=True),
        sa.Column(
            "review",
            sa.Enum("unreviewed", "confirmed", "rejected", name="review_state", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_labels_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_labels_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("image_id", "source", "model_version", "name", "instance", name="uq_labels_key"),
        **MYSQL,
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_index("ix_labels_name_image", ["name", "image_id"], unique=False)
        batch_op.create_index("ix_labels_source_conf", ["source", "confidence"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index("ix_labels_source_conf")
        batch_op.drop_index("ix_labels_name_image")

    op.drop_table("labels")
    with op.batch_alter_table("image_terms", schema=None) as batch_op:
        batch_op.drop_index("ix_image_terms_term")

    op.drop_table("image_terms")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_status_updated")
        batch_op.drop_index("ix_images_owner_created")
        batch_op.drop_index("ix_images_created")

    op.drop_table("images")
    op.drop_table("users")
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_messages_ready")

    op.drop_table("queue_messages")
