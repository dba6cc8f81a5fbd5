"""People (issue #29): faces, the persons they are grouped into, and the ``Person: <name>`` labels.

Every read and write here is one owner's: the caller passes the owner it resolved (a
signed-in person's own id, an admin's choice, or an account named on the command line), and
a person, face or photo of anyone else is never read, changed or named. Labels are written
through :func:`labelkit.db.counts.counting`, so search and counts follow them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from labelkit.db import counts
from labelkit.db.models import (
    ALL_OWNERS,
    FaceClusterRun,
    FaceGroupingOff,
    FaceRow,
    Image,
    LabelRow,
    LabelSource,
    Person,
    ReviewState,
    utcnow,
)
from labelkit.db.queries._scope import _IN_CHUNK
from labelkit.domain import BoundingBox, FaceVector

#: The ``model_version`` of the human ``Person: <name>`` rows naming wrote (kept apart from
#: labels a person typed, so that keeping them in step never touches those).
PERSON_LABELS = "people"
PERSON_PREFIX = "Person: "


def person_label(name: str) -> str:
    return f"{PERSON_PREFIX}{name}"[:128]


@dataclass(frozen=True, slots=True)
class FaceRecord:
    id: str
    image_id: str
    person_id: str | None
    box: BoundingBox
    pinned: bool
    not_person_id: str | None


@dataclass(frozen=True, slots=True)
class PersonSummary:
    id: str
    name: str | None
    hidden: bool
    faces: int
    photos: int
    cover_face_id: str | None


# --- settings -------------------------------------------------------------------------


def grouping_off(*, session: Session, owner_id: str) -> bool:
    """Whether faces are not grouped for this owner (their own setting, or everyone's)."""
    found = session.scalar(
        select(func.count())
        .select_from(FaceGroupingOff)
        .where(FaceGroupingOff.owner_id.in_([owner_id, ALL_OWNERS]))
    )
    return bool(found)


def own_grouping_off(*, session: Session, owner_id: str) -> bool:
    """Whether this person turned grouping off for themselves."""
    return session.get(FaceGroupingOff, owner_id) is not None


def grouping_off_for_everyone(*, session: Session) -> bool:
    return session.get(FaceGroupingOff, ALL_OWNERS) is not None


def set_grouping_off(*, session: Session, owner_id: str, off: bool, by: str | None) -> None:
    """Turn grouping off (or on again) for ``owner_id`` (``*``: everyone)."""
    session.execute(delete(FaceGroupingOff).where(FaceGroupingOff.owner_id == owner_id))
    if off:
        session.add(FaceGroupingOff(owner_id=owner_id, set_by=by, set_at=utcnow()))
    session.flush()


# --- faces ----------------------------------------------------------------------------


def image_face_model(*, session: Session, image_id: str) -> str | None:
    """The model of the faces stored for this photo (None: none stored)."""
    return session.scalar(select(FaceRow.face_model).where(FaceRow.image_id == image_id).limit(1))


def delete_image_faces(*, session: Session, image_ids: Sequence[str]) -> set[str]:
    """Delete these photos' faces; returns the people they belonged to."""
    people: set[str] = set()
    for start in range(0, len(image_ids), _IN_CHUNK):
        chunk = image_ids[start : start + _IN_CHUNK]
        people.update(
            p
            for p in session.scalars(select(FaceRow.person_id).where(FaceRow.image_id.in_(chunk)).distinct())
            if p is not None
        )
        session.execute(delete(FaceRow).where(FaceRow.image_id.in_(chunk)))
    return people


def insert_faces(
    *, session: Session, image_id: str, owner_id: str, faces: Sequence[FaceVector], face_model: str
) -> list[str]:
    """Store a photo's faces (no person yet); returns their ids, in order."""
    rows = [
        FaceRow(
            image_id=image_id,
            owner_id=owner_id,
            person_id=None,
            box_left=f.box.left,
            box_top=f.box.top,
            box_width=f.box.width,
            box_height=f.box.height,
            descriptor=f.descriptor,
            face_model=face_model,
            pinned=False,
            created_at=utcnow(),
        )
        for f in faces
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def grouped_descriptors(
    *, session: Session, owner_id: str, face_model: str, exclude: Iterable[str] = (), lock: bool = False
) -> tuple[list[str], list[str | None], list[str | None], list[bytes], list[bool]]:
    """The owner's faces of this model: ids, person ids, not-person ids, descriptors, pinned.
    ``lock``: hold them (a re-cluster) so a merge or split meanwhile waits rather than is undone."""
    skip = set(exclude)
    ids: list[str] = []
    persons: list[str | None] = []
    nots: list[str | None] = []
    blobs: list[bytes] = []
    pinned: list[bool] = []
    stmt = (
        select(FaceRow.id, FaceRow.person_id, FaceRow.not_person_id, FaceRow.descriptor, FaceRow.pinned)
        .where(FaceRow.owner_id == owner_id, FaceRow.face_model == face_model)
        .order_by(FaceRow.created_at, FaceRow.id)
    )
    for row in session.execute(stmt.with_for_update() if lock else stmt):
        if row.id in skip:
            continue
        ids.append(row.id)
        persons.append(row.person_id)
        nots.append(row.not_person_id)
        blobs.append(row.descriptor)
        pinned.append(bool(row.pinned))
    return ids, persons, nots, blobs, pinned


def face_models(*, session: Session, owner_id: str) -> list[str]:
    return list(session.scalars(select(FaceRow.face_model).where(FaceRow.owner_id == owner_id).distinct()))


def get_face(*, session: Session, owner_id: str, face_id: str) -> FaceRecord | None:
    row = session.scalar(select(FaceRow).where(FaceRow.id == face_id, FaceRow.owner_id == owner_id))
    return _record(row) if row is not None else None


def _record(row: FaceRow) -> FaceRecord:
    return FaceRecord(
        id=row.id,
        image_id=row.image_id,
        person_id=row.person_id,
        box=BoundingBox.clamped(row.box_left, row.box_top, row.box_width, row.box_height),
        pinned=bool(row.pinned),
        not_person_id=row.not_person_id,
    )


def set_person(
    *,
    session: Session,
    owner_id: str,
    face_ids: Sequence[str],
    person_id: str | None,
    pinned: bool | None = None,
    not_person_id: str | None = None,
) -> None:
    values: dict[str, Any] = {"person_id": person_id}
    if pinned is not None:
        values["pinned"] = pinned
    if not_person_id is not None:
        values["not_person_id"] = not_person_id
    for start in range(0, len(face_ids), _IN_CHUNK):
        session.execute(
            update(FaceRow)
            .where(FaceRow.owner_id == owner_id, FaceRow.id.in_(face_ids[start : start + _IN_CHUNK]))
            .values(**values)
        )


def person_faces(*, session: Session, owner_id: str, person_id: str) -> list[FaceRecord]:
    rows = session.scalars(
        select(FaceRow)
        .where(FaceRow.owner_id == owner_id, FaceRow.person_id == person_id)
        .order_by(FaceRow.created_at, FaceRow.id)
    )
    return [_record(r) for r in rows]


def image_faces(*, session: Session, owner_id: str, image_id: str) -> list[tuple[FaceRecord, str | None]]:
    """The faces on one of the owner's photos, each with its person's name (None: unnamed)."""
    rows = session.execute(
        select(FaceRow, Person.name)
        .outerjoin(Person, Person.id == FaceRow.person_id)
        .where(FaceRow.owner_id == owner_id, FaceRow.image_id == image_id)
        .order_by(FaceRow.box_left)
    )
    return [(_record(face), name) for face, name in rows]


# --- people ---------------------------------------------------------------------------


def new_person(*, session: Session, owner_id: str, cover_face_id: str | None) -> str:
    person = Person(owner_id=owner_id, name=None, hidden=False, cover_face_id=cover_face_id)
    session.add(person)
    session.flush()
    return person.id


def get_person(*, session: Session, owner_id: str, person_id: str) -> Person | None:
    return session.scalar(select(Person).where(Person.id == person_id, Person.owner_id == owner_id))


def people_of(*, session: Session, owner_id: str) -> list[PersonSummary]:
    """The owner's people with faces, named ones first, then by photo count."""
    faces = (
        select(
            FaceRow.person_id,
            func.count().label("faces"),
            func.count(FaceRow.image_id.distinct()).label("photos"),
        )
        .where(FaceRow.owner_id == owner_id, FaceRow.person_id.is_not(None))
        .group_by(FaceRow.person_id)
        .subquery()
    )
    rows = session.execute(
        select(Person, faces.c.faces, faces.c.photos)
        .join(faces, faces.c.person_id == Person.id)
        .where(Person.owner_id == owner_id)
    ).all()
    out = [
        PersonSummary(
            id=p.id,
            name=p.name,
            hidden=bool(p.hidden),
            faces=int(n),
            photos=int(m),
            cover_face_id=p.cover_face_id,
        )
        for p, n, m in rows
    ]
    out.sort(key=lambda p: (p.name is None, -p.photos, (p.name or "").casefold(), p.id))
    return out


def update_person(*, session: Session, owner_id: str, person_id: str, **values: Any) -> None:
    session.execute(
        update(Person)
        .where(Person.id == person_id, Person.owner_id == owner_id)
        .values(**values, updated_at=utcnow())
    )


def delete_empty_people(*, session: Session, owner_id: str) -> int:
    """Delete the owner's people no face belongs to any more; returns how many."""
    used = select(FaceRow.person_id).where(FaceRow.owner_id == owner_id, FaceRow.person_id.is_not(None))
    result: Any = session.execute(
        delete(Person)
        .where(Person.owner_id == owner_id, Person.id.not_in(used))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def fix_covers(*, session: Session, owner_id: str, person_ids: Iterable[str]) -> None:
    """A person whose cover face left them shows their first face instead."""
    for person_id in person_ids:
        person = get_person(session=session, owner_id=owner_id, person_id=person_id)
        if person is None:
            continue
        current = person.cover_face_id
        ok = current is not None and session.scalar(
            select(func.count())
            .select_from(FaceRow)
            .where(FaceRow.id == current, FaceRow.person_id == person_id)
        )
        if not ok:
            person.cover_face_id = session.scalar(
                select(FaceRow.id)
                .where(FaceRow.person_id == person_id)
                .order_by(FaceRow.box_width.desc(), FaceRow.id)
                .limit(1)
            )


def delete_owner_people(*, session: Session, owner_id: str) -> list[str]:
    """Delete every face and person of the owner; returns the names the people had."""
    names = [n for n in session.scalars(select(Person.name).where(Person.owner_id == owner_id)) if n]
    session.execute(delete(FaceRow).where(FaceRow.owner_id == owner_id))
    session.execute(delete(Person).where(Person.owner_id == owner_id))
    return names


def delete_person(*, session: Session, owner_id: str, person_id: str) -> None:
    session.execute(delete(FaceRow).where(FaceRow.owner_id == owner_id, FaceRow.person_id == person_id))
    session.execute(delete(Person).where(Person.owner_id == owner_id, Person.id == person_id))


def listing(*, session: Session, owner_id: str) -> list[dict[str, Any]]:
    """Every person of the owner with their faces (the ``labelkit people --json`` records)."""
    people = {p.id: p for p in people_of(session=session, owner_id=owner_id)}
    faces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for face, original in session.execute(
        select(FaceRow, Image.original_name)
        .join(Image, Image.id == FaceRow.image_id)
        .where(FaceRow.owner_id == owner_id, FaceRow.person_id.is_not(None))
        .order_by(Image.created_at, Image.id, FaceRow.box_left)
    ):
        faces[str(face.person_id)].append(
            {
                "image_id": face.image_id,
                "original_name": original,
                "box": {
                    "left": round(face.box_left, 4),
                    "top": round(face.box_top, 4),
                    "width": round(face.box_width, 4),
                    "height": round(face.box_height, 4),
                },
            }
        )
    return [{"person_id": pid, "name": p.name, "faces": faces.get(pid, [])} for pid, p in people.items()]


# --- the Person: <name> labels --------------------------------------------------------


def _person_label_rows(session: Session, owner_id: str, label: str | None = None) -> list[Any]:
    """(id, image_id) of the ``Person:`` label rows naming wrote on the owner's photos (of one
    label, or all)."""
    stmt = (
        select(LabelRow.id, LabelRow.image_id)
        .join(Image, Image.id == LabelRow.image_id)
        .where(
            Image.owner_id == owner_id,
            LabelRow.source == LabelSource.HUMAN,
            LabelRow.model_version == PERSON_LABELS,
        )
    )
    return list(session.execute(stmt if label is None else stmt.where(LabelRow.name == label)).all())


def sync_labels(*, session: Session, owner_id: str, names: Iterable[str | None]) -> int:
    """Make the owner's ``Person: <name>`` labels match their named people's photos, for these
    names (a renamed person's old and new name): every photo with a face of a visible or hidden
    person of that name carries it, and no other photo does. Returns the rows changed."""
    changed = 0
    for name in sorted({n for n in names if n}):
        label = person_label(name)
        want = set(
            session.scalars(
                select(FaceRow.image_id)
                .join(Person, Person.id == FaceRow.person_id)
                .where(FaceRow.owner_id == owner_id, Person.owner_id == owner_id, Person.name == name)
                .distinct()
            )
        )
        have_rows = _person_label_rows(session, owner_id, label)
        have = {r.image_id for r in have_rows}
        gone = [r for r in have_rows if r.image_id not in want]
        add, drop = sorted(want - have), [r.id for r in gone]
        if not add and not drop:
            continue
        touched = sorted(set(add) | {r.image_id for r in gone})
        with counts.counting(session, touched):
            for start in range(0, len(drop), _IN_CHUNK):
                session.execute(delete(LabelRow).where(LabelRow.id.in_(drop[start : start + _IN_CHUNK])))
            if add:
                now = utcnow()
                session.execute(
                    insert(LabelRow),
                    [
                        {
                            "image_id": image_id,
                            "source": LabelSource.HUMAN,
                            "model_version": PERSON_LABELS,
                            "name": label,
                            "instance": 0,
                            "confidence": 100.0,
                            "parents": ["Person"],
                            "aliases": [name],
                            "categories": ["People"],
                            "review": ReviewState.CONFIRMED,
                            "created_by": owner_id,
                            "created_at": now,
                        }
                        for image_id in add
                    ],
                )
        changed += len(add) + len(drop)
    return changed


def delete_person_labels(*, session: Session, owner_id: str) -> int:
    """Remove every ``Person: <name>`` label naming wrote on the owner's photos."""
    rows = _person_label_rows(session, owner_id)
    if not rows:
        return 0
    with counts.counting(session, sorted({r.image_id for r in rows})):
        ids = [r.id for r in rows]
        for start in range(0, len(ids), _IN_CHUNK):
            session.execute(delete(LabelRow).where(LabelRow.id.in_(ids[start : start + _IN_CHUNK])))
    return len(rows)


def cover_faces(*, session: Session, owner_id: str) -> dict[str, FaceRecord]:
    """{person id: the face shown for them} for the owner's people."""
    rows = session.scalars(
        select(FaceRow)
        .join(Person, Person.cover_face_id == FaceRow.id)
        .where(Person.owner_id == owner_id, FaceRow.owner_id == owner_id)
    )
    return {str(r.person_id): _record(r) for r in rows if r.person_id is not None}


# --- the worker's re-cluster ------------------------------------------------------------


def changed_owners(*, session: Session) -> dict[str, str]:
    """{owner: the state of their faces} for owners whose faces changed since their last
    re-cluster (one grouped read); the state is ``<faces>:<newest face's time>``."""
    seen = {r.owner_id: r.signature for r in session.scalars(select(FaceClusterRun))}
    out: dict[str, str] = {}
    for owner_id, n, newest in session.execute(
        select(FaceRow.owner_id, func.count(), func.max(FaceRow.created_at)).group_by(FaceRow.owner_id)
    ):
        state = f"{int(n)}:{newest.isoformat() if newest is not None else ''}"[:64]
        if seen.get(owner_id) != state:
            out[owner_id] = state
    return out


def record_cluster_run(*, session: Session, owner_id: str, signature: str) -> None:
    row = session.get(FaceClusterRun, owner_id)
    if row is None:
        session.add(FaceClusterRun(owner_id=owner_id, signature=signature, clustered_at=utcnow()))
    else:
        row.signature, row.clustered_at = signature, utcnow()
    session.flush()
