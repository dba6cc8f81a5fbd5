"""Gathering what an export holds: images, their labels and the text read in them, scoped to
the viewer, filtered by the options."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from labelkit.db.models import MACHINE_SOURCES, Image, LabelRow, LabelSource, ReviewState
from labelkit.db.queries import bulk as bulk_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import text as text_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries.people import PERSON_LABELS
from labelkit.db.queries.text import ImageText
from labelkit.domain import Viewer, system_viewer
from labelkit.errors import NotFound, PermissionDenied
from labelkit.interchange.boxes import BoxEntry, clamp_box
from labelkit.interchange.options import ExportOptions, _end, _start


@dataclass(slots=True)
class LabelEntry:
    """One label of one image from one source/model version, with its boxes."""

    name: str
    source: str
    model_version: str
    confidence: float
    parents: list[str]
    aliases: list[str]
    categories: list[str]
    review: str
    created_at: datetime | None
    boxes: list[BoxEntry] = field(default_factory=list)
    # Rejected because a person rejected this name (not their own verdict on it; see
    # labelkit.db.counts.implied_rejections): an import works it out again, it does not copy it.
    rejected_with: str | None = None


@dataclass(slots=True)
class ImageEntry:
    image: Image
    owner: str
    labels: list[LabelEntry] = field(default_factory=list)
    #: The text read in the photo, per labeller version (empty: none read).
    text: list[ImageText] = field(default_factory=list)
    #: The photo's headline label (labelkit.primary), None without labels.
    primary: str | None = None


def positive_labels(labels: Iterable[LabelEntry]) -> list[LabelEntry]:
    """The labels an image carries: a person's rejection outranks the model (and is no label)."""
    return [lab for lab in labels if lab.review != ReviewState.REJECTED.value]


def _entries(rows: Sequence[LabelRow]) -> list[LabelEntry]:
    """Rows of one image grouped into entries; model entries get the person's verdict on their name."""
    groups: dict[tuple[str, str, str], list[LabelRow]] = {}
    for row in rows:
        groups.setdefault((LabelSource(row.source).value, row.model_version, row.name), []).append(row)
    verdicts = {
        name: ReviewState(rs[0].review).value
        for (source, _, name), rs in groups.items()
        if source == LabelSource.HUMAN.value
    }
    implied = {
        name: str(rs[0].implied_by)
        for (source, _, name), rs in groups.items()
        if source == LabelSource.HUMAN.value and rs[0].implied_by
    }
    out = []
    for (source, version, name), rs in groups.items():
        rs.sort(key=lambda r: r.instance)
        head = rs[0]
        if head.implied_by:
            # A rejection no person gave (it follows from theirs, see counts.implied_rejections):
            # it marks the model's label rejected, and is worked out again on import.
            continue
        review = ReviewState(head.review).value if source == LabelSource.HUMAN.value else None
        out.append(
            LabelEntry(
                name=name,
                source=source,
                model_version=version,
                confidence=float(head.confidence) if head.instance == 0 else 100.0,
                parents=list(head.parents or []),
                aliases=list(head.aliases or []),
                categories=list(head.categories or []),
                review=review or verdicts.get(name, ReviewState.UNREVIEWED.value),
                created_at=head.created_at,
                boxes=[
                    BoxEntry(
                        *clamp_box(
                            float(r.box_left or 0.0),
                            float(r.box_top or 0.0),
                            float(r.box_width or 0.0),
                            float(r.box_height or 0.0),
                        ),
                        confidence=float(r.confidence),
                    )
                    for r in rs
                    if r.instance > 0 and r.box_left is not None
                ],
                rejected_with=implied.get(name) if source in MACHINE_SOURCES else None,
            )
        )
    # Model labels first (by version), then people's; most confident first within each.
    out.sort(key=lambda e: (e.source != "model", e.model_version, -e.confidence, e.name))
    return out


def _keep(entry: LabelEntry, options: ExportOptions, wanted: set[str]) -> bool:
    if (
        not options.people
        and entry.source == LabelSource.HUMAN.value
        and entry.model_version == PERSON_LABELS
    ):
        return False  # a person's name: personal data, exported only when asked for
    if wanted and entry.name.casefold() not in wanted and not wanted & {p.casefold() for p in entry.parents}:
        return False
    if options.reviewed_only and entry.review != ReviewState.CONFIRMED.value:
        return False
    return options.min_confidence is None or entry.confidence >= options.min_confidence


def resolve_owner(*, session: Session, viewer: Viewer, owner: str | None) -> str | None:
    """The owner's user id for a username filter. Non-admins may only name themselves."""
    if not owner:
        return None
    user = user_q.get_user_by_username(session=session, username=owner)
    if not viewer.is_admin:
        if user is None or user.id != viewer.user_id:
            raise PermissionDenied("you can only export your own images")
        return user.id
    if user is None:
        raise NotFound(f"no user {owner!r}")
    return user.id


def viewer_for(*, session: Session, username: str | None = None) -> Viewer:
    """The scope of a notebook or script: every image (as an admin) when ``username`` is None,
    else that user's own images only (even for an admin, so the numbers are theirs)."""
    if not username:
        return system_viewer("notebook")
    user = user_q.get_user_by_username(session=session, username=username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return Viewer(user_id=user.id, is_admin=False)


def collect(*, session: Session, viewer: Viewer, options: ExportOptions | None = None) -> list[ImageEntry]:
    """The viewer's images and labels that ``options`` select, oldest image first."""
    options = options or ExportOptions()
    owner_id = resolve_owner(session=session, viewer=viewer, owner=options.owner)
    images = bulk_q.export_images(
        session=session,
        viewer=viewer,
        owner_id=owner_id,
        since=_start(options.since),
        until=_end(options.until),
        terms=options.labels,
    )
    rows: dict[str, list[LabelRow]] = {}
    for row in bulk_q.export_label_rows(session=session, viewer=viewer, image_ids=[i.id for i in images]):
        rows.setdefault(row.image_id, []).append(row)
    names = user_q.usernames(session=session, user_ids={i.owner_id for i in images})
    texts = text_q.text_of_images(session=session, viewer=viewer, image_ids=[i.id for i in images])
    headline = stats_q.primary_labels(session=session, viewer=viewer, image_ids=[i.id for i in images])
    wanted = {t.strip().casefold() for t in options.labels if t.strip()}
    out = []
    for image in images:
        labels = [e for e in _entries(rows.get(image.id, [])) if _keep(e, options, wanted)]
        if labels or not options.filters_labels:
            out.append(
                ImageEntry(
                    image=image,
                    owner=names.get(image.owner_id, ""),
                    labels=labels,
                    text=texts.get(image.id, []),
                    primary=headline[image.id][0] if image.id in headline else None,
                )
            )
    return out
