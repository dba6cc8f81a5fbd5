"""SQLAlchemy 2 typed models. They run on SQLite and MySQL/MariaDB (utf8mb4).

Tables:
    users          local accounts and Cognito users (id = uuid / Cognito ``sub``)
    images         one row per upload; ``status`` walks pending -> labelling -> labelled | failed
    labels         model and human labels, one row per (image, source, model version, name, instance)
    image_terms    every label name, parent and category an image has, for fast search
                   ("images with X, or with X among its parents") and counts, and the words
                   read in it (kind ``text``)
    image_text     the lines and words read in an image (DetectText-shaped), with their boxes
    queue_messages the local job queue (``LocalQueue``), live and dead letters
    web_sessions   signed-in browsers (hashed HttpOnly cookie tokens), so a reload keeps you signed in
    session_handoffs
                   a sign-in waiting for its browser to fetch the session cookie (one minute, once)
    sign_in_throttle
                   failed sign-in counts and backoffs per client + account, account and client
    trusted_devices
                   browsers that signed in to an account before (hashed device cookies): the
                   account-wide backoff, which strangers can trigger, does not apply to them
    taught_labels  per owner and label name: the classifier learned from that person's labels
                   (``labelkit.learning``), its cross-validated quality and whether it suggests
    learning_runs  per owner: the state of their labels the last training saw (debouncing)
    label_thresholds
                   per owner (or ``*``) and label name: the minimum confidence a machine label
                   of that name needs to be carried, chosen from people's reviews
    label_counts, term_counts, confidence_bins
                   running totals per owner (and for everyone, owner ``*``) behind the
                   dashboard's counts and charts; kept in step by ``labelkit.db.counts``

Migrations live in ``labelkit/db/migrations`` (Alembic) and are the only way the
schema is created; keep them in step with these models.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite and MySQL store naive)."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # MySQL's DATETIME drops fractions by default; "newest first" needs them.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class ImageStatus(enum.StrEnum):
    PENDING = "pending"
    LABELLING = "labelling"
    LABELLED = "labelled"
    FAILED = "failed"


class LabelSource(enum.StrEnum):
    MODEL = "model"
    HUMAN = "human"
    #: A suggestion from what the image's owner taught (:mod:`labelkit.learning`): a machine
    #: label like the model's (reviewed, counted and searched the same way), kept apart by source.
    LEARNED = "learned"


#: The sources of machine labels: counted, searched and reviewed alike.
MACHINE_SOURCES = (LabelSource.MODEL, LabelSource.LEARNED)


class ReviewState(enum.StrEnum):
    UNREVIEWED = "unreviewed"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class TermKind(enum.StrEnum):
    LABEL = "label"
    PARENT = "parent"
    CATEGORY = "category"
    #: A word read in the photo (lower-cased; ``image_text``): searched, never counted or listed.
    TEXT = "text"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # Stored as plain strings (no native ENUM) so adding a value needs no ALTER on MySQL.
    return Enum(cls, name=name, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # None for Cognito users
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Not used since migration 0007 (sign_in_throttle counts failures per client + account);
    # kept because dropping columns on SQLite rebuilds the table under its foreign keys.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        # "a user's images, newest first" (gallery) and duplicate detection per owner.
        Index("ix_images_owner_created", "owner_id", "created_at"),
        UniqueConstraint("owner_id", "sha256", name="uq_images_owner_sha256"),
        Index("ix_images_status_updated", "status", "updated_at"),
        Index("ix_images_created", "created_at"),
        # A user's status counts (gallery header) without scanning every image (migration 0003).
        Index("ix_images_owner_status", "owner_id", "status"),
        # Labelled per day / per minute (activity charts), for a user and for everyone (0005).
        Index("ix_images_owner_labelled", "owner_id", "labelled_at"),
        Index("ix_images_labelled", "labelled_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    object_key: Mapped[str] = mapped_column(String(512), unique=True)
    original_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[ImageStatus] = mapped_column(
        _enum(ImageStatus, "image_status"), default=ImageStatus.PENDING
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[str | None] = mapped_column(String(64))
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    labelled_at: Mapped[datetime | None]
    # When the labelling job was surely handed to the queue (None: not yet, or the upload
    # never got that far). See labelkit.reconcile.
    queued_at: Mapped[datetime | None]

    owner: Mapped[User] = relationship(lazy="raise")
    labels: Mapped[list[LabelRow]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )


class ImageFeatureRow(Base):
    """What the worker derived from an image besides its labels (migration 0009): its
    perceptual hash (near-duplicates), its embedding (similar photos) and where its gallery
    thumbnail is stored. One row per image, written when it is labelled; kept apart from
    ``images`` so that loading images never loads embeddings. ``owner_id`` is repeated
    here so a person's features are read without a join (similar photos, duplicates)."""

    __tablename__ = "image_features"
    __table_args__ = (
        Index("ix_image_features_owner", "owner_id"),
        # Similar photos: "did this owner's embeddings change?" is one seek (migration 0010).
        Index("ix_image_features_owner_model_updated", "owner_id", "embedding_model", "updated_at"),
    )

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    phash: Mapped[str | None] = mapped_column(String(16))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_model: Mapped[str | None] = mapped_column(String(64))
    thumb_key: Mapped[str | None] = mapped_column(String(600))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LabelRow(Base):
    """A label on an image.

    ``instance`` is 0 for the image-level label and 1..n for its boxes. The
    unique key (image, source, model_version, name, instance) makes re-delivery
    of the same job write nothing new. Human labels have ``source='human'`` and
    ``model_version=''``; a human confirm/reject of a model label is a human row
    of the same name with ``review`` set, stored beside the model's row. A rejection
    with ``implied_by`` set was not given by a person but follows from one (the roll-up
    parents of a rejected name); a person's own verdict on that name replaces it.
    """

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("image_id", "source", "model_version", "name", "instance", name="uq_labels_key"),
        # "count images per label" and "images with label X".
        Index("ix_labels_name_image", "name", "image_id"),
        # Review queue: unreviewed model labels, lowest confidence first.
        Index("ix_labels_source_conf", "source", "confidence"),
        # Label counts, confidence histogram, model versions: image-level model labels
        # grouped by name, read from this index alone (migration 0003).
        Index("ix_labels_model_stats", "source", "instance", "name", "image_id", "confidence"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    source: Mapped[LabelSource] = mapped_column(_enum(LabelSource, "label_source"))
    model_version: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(128))
    instance: Mapped[int] = mapped_column(SmallInteger, default=0)
    confidence: Mapped[float] = mapped_column(Float)
    parents: Mapped[list[str]] = mapped_column(JSON, default=list)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    box_left: Mapped[float | None] = mapped_column(Float)
    box_top: Mapped[float | None] = mapped_column(Float)
    box_width: Mapped[float | None] = mapped_column(Float)
    box_height: Mapped[float | None] = mapped_column(Float)
    review: Mapped[ReviewState] = mapped_column(
        _enum(ReviewState, "review_state"), default=ReviewState.UNREVIEWED
    )
    # On a human rejection that no person gave: the rejected name it follows from (a model's
    # roll-up parent ended with the label it rolled up from, see counts.implied_rejections).
    implied_by: Mapped[str | None] = mapped_column(String(128))
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship(back_populates="labels", lazy="raise")


class ImageTerm(Base):
    """Every term (label name, parent, category) an image carries, once.

    Derived from ``labels`` on every write (:func:`labelkit.db.counts.derive_terms`) from the
    image's *effective* labels: the model's minus the names a person rejected, plus people's
    confirmed and added labels (confidence 100). Indexed by term so "images with Animal"
    finds cats (whose parents include Animal) without scanning JSON, and by owner and term
    (with the confidence) so one person's search reads only their own matches, however many
    other people's photos carry the term. ``owner_id`` repeats the image's owner (an image
    never changes owner).
    """

    __tablename__ = "image_terms"
    __table_args__ = (
        Index("ix_image_terms_term", "kind", "term", "image_id"),
        Index("ix_image_terms_owner_term", "owner_id", "kind", "term", "confidence"),
        Index("ix_image_terms_term_confidence", "kind", "term", "confidence"),
    )

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[TermKind] = mapped_column(_enum(TermKind, "term_kind"), primary_key=True)
    term: Mapped[str] = mapped_column(String(128), primary_key=True)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)  # best confidence behind the term
    owner_id: Mapped[str] = mapped_column(String(64))


class ImageTextRow(Base):
    """A line or a word read in an image (migration 0014), as Rekognition's DetectText gives them.

    ``detection_id`` numbers one labeller's detections of the image (lines first, then words);
    a word's ``parent_id`` is its line's. Written by the worker with the image's labels,
    replacing that labeller family's earlier rows (idempotent); the words are searchable
    through ``image_terms`` (kind ``text``, :func:`labelkit.db.counts.derive_text_terms`).
    """

    __tablename__ = "image_text"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    detection_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    parent_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # LINE | WORD
    text: Mapped[str] = mapped_column(String(1024))
    confidence: Mapped[float] = mapped_column(Float)
    box_left: Mapped[float] = mapped_column(Float)
    box_top: Mapped[float] = mapped_column(Float)
    box_width: Mapped[float] = mapped_column(Float)
    box_height: Mapped[float] = mapped_column(Float)
    polygon: Mapped[list[Any] | None] = mapped_column(JSON)


class TaughtLabel(Base):
    """A label one person taught (migration 0015): a linear classifier over the image
    embeddings (``image_features``), trained from the photos where they added or confirmed
    the name and the photos where they rejected it (plus others sampled as background).

    ``weights`` are little-endian float32, the embedding's dimensions then the bias; a photo's
    confidence is ``100 * sigmoid(platt_a * (w . x + b) + platt_b)`` (Platt scaling fitted on
    the cross-validation's held-out scores) and it is suggested at ``threshold`` (0-100) or
    above. ``cv_precision`` / ``cv_recall`` are the cross-validation's at that threshold.
    ``status`` is ``active`` (it suggests) or ``refused`` (``reason`` says why: too few
    photos, or precision below the floor). ``model_version`` names the training snapshot and
    is the ``model_version`` of the ``learned`` label rows it wrote.
    """

    __tablename__ = "taught_labels"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    embedding_model: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    positives: Mapped[int] = mapped_column(Integer, default=0)
    negatives: Mapped[int] = mapped_column(Integer, default=0)
    threshold: Mapped[float] = mapped_column(Float, default=50.0)
    cv_precision: Mapped[float | None] = mapped_column(Float)
    cv_recall: Mapped[float | None] = mapped_column(Float)
    platt_a: Mapped[float] = mapped_column(Float, default=1.0)
    platt_b: Mapped[float] = mapped_column(Float, default=0.0)
    weights: Mapped[bytes | None] = mapped_column(LargeBinary)
    parents: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    suggested: Mapped[int] = mapped_column(Integer, default=0)
    trained_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelThreshold(Base):
    """A minimum confidence for one label name (migration 0015), chosen from people's reviews
    (:mod:`labelkit.thresholds`): a machine label (model or learned) of that name below it is
    not carried (no search term, filter, count or card), as if the labeller had not given it.
    ``owner_id`` is the person it applies to, or ``*`` for everyone (set by an admin; a
    person's own threshold wins). ``name`` is case-folded."""

    __tablename__ = "label_thresholds"

    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    min_confidence: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str | None] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class LearningRun(Base):
    """Per owner: the state of their labels the last training saw (migration 0015). The
    worker trains again once ``signature`` (how many human label rows, and the newest) has
    changed and stayed unchanged for a while (debounced)."""

    __tablename__ = "learning_runs"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    signature: Mapped[str] = mapped_column(String(64))
    trained_at: Mapped[datetime] = mapped_column(default=utcnow)


class Person(Base):
    """One person in someone's photos (migration 0016): the faces grouped together
    (:mod:`labelkit.people`), named or not. ``cover_face_id`` is the face shown for them.
    Named, every photo of theirs carries the human label ``Person: <name>``."""

    __tablename__ = "people"
    __table_args__ = (Index("ix_people_owner", "owner_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(100))
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    cover_face_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FaceRow(Base):
    """One face in a photo (migration 0016): its box (fractions of the photo), its descriptor
    (128 little-endian float32, ``face_model``) and the person it belongs to. ``pinned``: a
    person put it there (merge, split), so re-clustering leaves it; ``not_person_id``: the
    person it was split from ("not Alice"), whom it never joins again. Personal data: never
    shown to anyone but the owner, deleted with the photo."""

    __tablename__ = "faces"
    __table_args__ = (
        Index("ix_faces_owner_model", "owner_id", "face_model"),
        Index("ix_faces_person", "person_id"),
        Index("ix_faces_image", "image_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    person_id: Mapped[str | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    box_left: Mapped[float] = mapped_column(Float)
    box_top: Mapped[float] = mapped_column(Float)
    box_width: Mapped[float] = mapped_column(Float)
    box_height: Mapped[float] = mapped_column(Float)
    descriptor: Mapped[bytes] = mapped_column(LargeBinary)
    face_model: Mapped[str] = mapped_column(String(64))
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    not_person_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FaceClusterRun(Base):
    """Per owner: the state of their faces the last re-cluster saw (migration 0016). The worker
    groups them again once ``signature`` (how many faces, and the newest) has changed and
    stayed unchanged for a while (debounced), as it does for taught labels."""

    __tablename__ = "face_cluster_runs"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    signature: Mapped[str] = mapped_column(String(64))
    clustered_at: Mapped[datetime] = mapped_column(default=utcnow)


class FaceGroupingOff(Base):
    """Face grouping turned off (migration 0016): for one person (their own setting, which
    also deleted their faces and people) or, with ``owner_id`` ``*``, for everyone (an admin's)."""

    __tablename__ = "face_grouping_off"

    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    set_by: Mapped[str | None] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


ALL_OWNERS = "*"  # the owner id of the everyone-totals in the count tables (admins read these)


class LabelCount(Base):
    """Per owner and label name: what :func:`~labelkit.db.queries.stats.label_stats` reports.

    ``images``: images carrying the name as an effective label or a parent (``image_terms``;
    the gallery filter's count); ``model_rows`` and ``confidence_milli`` (sum of
    floor(confidence * 1000)) over image-level model labels no person rejected give the
    mean confidence; ``confirmed``/``rejected``: people's reviews (image level);
    ``awaiting``: model labels no person has reviewed (the review queue). No foreign key: owner ``*``
    holds everyone's totals.
    """

    __tablename__ = "label_counts"
    __table_args__ = (Index("ix_label_counts_owner_images", "owner_id", "images"),)

    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger, default=0)
    model_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    confidence_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmed: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    awaiting: Mapped[int] = mapped_column(BigInteger, default=0)


class TermCount(Base):
    """Per owner, kind and term: how many images carry the term (``image_terms`` counted).

    ``kind`` is a :class:`TermKind` value, ``any`` for "a label name or a parent"
    (what the gallery's label filter and its suggestions match), or ``model_version``
    (``term`` is a model version; ``images`` the images it labelled).
    """

    __tablename__ = "term_counts"
    __table_args__ = (Index("ix_term_counts_owner_kind_images", "owner_id", "kind", "images"),)

    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    term: Mapped[str] = mapped_column(String(128), primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger, default=0)


class ConfidenceBin(Base):
    """Per owner: image-level model labels no person rejected, per whole confidence point
    (0..99; 100 counts as 99)."""

    __tablename__ = "confidence_bins"

    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    labels: Mapped[int] = mapped_column(BigInteger, default=0)


class WebSession(Base):
    """A signed-in browser: the dashboard's session cookie, stored as a SHA-256 hash."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user", "user_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # The idle timeout counts from here (touched at most once a minute, not on every rerun).
    last_seen_at: Mapped[datetime | None]


class SessionHandoff(Base):
    """A sign-in done over the WebSocket, waiting for the same browser's HTTP request that
    turns it into an HttpOnly session cookie. Keyed by the hash of the cookie the browser
    already holds, so only that browser can collect it (no token in any URL)."""

    __tablename__ = "session_handoffs"

    browser_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]


class SignInThrottle(Base):
    """Sign-in attempts counted under one key (a SHA-256 of, e.g., client + username:
    neither is stored in clear). ``failures`` is raised atomically before a password is
    checked; ``blocked_until`` refuses attempts without checking them."""

    __tablename__ = "sign_in_throttle"
    __table_args__ = (Index("ix_sign_in_throttle_updated", "updated_at"),)  # pruning old keys

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrustedDevice(Base):
    """A browser (its device cookie, hashed) that signed in to ``user_id`` before."""

    __tablename__ = "trusted_devices"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class QueueMessageRow(Base):
    """One message of the local queue. ``dead`` marks the dead-letter queue."""

    __tablename__ = "queue_messages"
    __table_args__ = (Index("ix_queue_messages_ready", "queue", "dead", "visible_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    queue: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    receive_count: Mapped[int] = mapped_column(Integer, default=0)
    receipt_handle: Mapped[str | None] = mapped_column(String(64), unique=True)
    visible_at: Mapped[float] = mapped_column(Double)  # unix time; ready when <= now
    dead: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
