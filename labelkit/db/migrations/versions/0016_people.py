"""people: faces grouped into persons (issue #29)

Four new tables. ``people``: per owner, one person their photos show (named or not, hidden or
not, with the face shown for them). ``faces``: one row per face in a photo, with its box, its
128-d descriptor and its person; deleted with the photo (and the account). ``face_cluster_runs``:
per owner, the state of their faces the worker's last re-cluster saw. ``face_grouping_off``:
the people (or ``*``, everyone) for whom faces are not grouped.

A named person's photos carry the human label ``Person: <name>`` (``labels`` rows of source
``human``, model version ``people``). Downgrade drops the four tables and keeps those labels:
they are what the person named, and older code shows and searches them as human labels.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 23:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("cover_face_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("updated_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_people_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        **MYSQL,
    )
    op.create_index("ix_people_owner", "people", ["owner_id"])
    op.create_table(
        "faces",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=True),
        sa.Column("box_left", sa.Float(), nullable=False),
        sa.Column("box_top", sa.Float(), nullable=False),
        sa.Column("box_width", sa.Float(), nullable=False),
        sa.Column("box_height", sa.Float(), nullable=False),
        sa.Column("descriptor", sa.LargeBinary(), nullable=False),
        sa.Column("face_model", sa.String(length=64), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("not_person_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_faces_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_faces_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_faces_person_id_people"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faces")),
        **MYSQL,
    )
    op.create_index("ix_faces_owner_model", "faces", ["owner_id", "face_model"])
    op.create_index("ix_faces_person", "faces", ["person_id"])
    op.create_index("ix_faces_image", "faces", ["image_id"])
    op.create_table(
        "face_cluster_runs",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("clustered_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_face_cluster_runs_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_face_cluster_runs")),
        **MYSQL,
    )
    op.create_table(
        "face_grouping_off",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=True),
        sa.Column("set_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_face_grouping_off")),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("face_grouping_off")
    op.drop_table("face_cluster_runs")
    op.drop_table("faces")
    op.drop_table("people")
