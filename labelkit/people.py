"""People (issue #29): faces grouped into persons, per owner, named once, found everywhere.

* **Incremental** (:func:`add_faces`, in the worker's write of each labelled photo): a new face
  joins the person of its nearest grouped face when that face is within :data:`JOIN_DISTANCE`
  (Euclidean, between dlib descriptors) and at least half of that person's faces are within
  :data:`SUPPORT_DISTANCE`; otherwise it starts a new, unnamed person.
* **Re-cluster** (:func:`recluster`, ``labelkit people --recluster``): every face the owner did
  not place by hand is grouped again with Chinese whispers (dlib's graph clustering, made for
  these descriptors) over the edges shorter than :data:`CLUSTER_DISTANCE`; each group keeps
  the person most of its faces had (a named one first), so names survive. This fixes the
  drift of the incremental rule (the order photos came in, two workers at once).
* **Naming** puts the human label ``Person: <name>`` (category People, alias the name) on
  every photo of the person, and keeps it in step as faces join or leave (merge, split,
  re-cluster, photo deleted).

Everything is one owner's; the dashboard and the CLI pass the owner they resolved.
The thresholds were chosen on ``../shared/data/faces`` (``make bench-people``; docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from labelkit.db.engine import transaction
from labelkit.db.models import Person
from labelkit.db.queries import people as people_q
from labelkit.domain import FaceVector, ImageFeatures
from labelkit.errors import NotFound
from labelkit.features.faces import unpack_many
from labelkit.learning import still_changing

#: A new face joins its nearest grouped face's person within this distance, when at least half
#: of that person's faces are within SUPPORT_DISTANCE (chosen on the tuning half of
#: ../shared/data/faces, ``make bench-people``).
JOIN_DISTANCE = 0.575
SUPPORT_DISTANCE = 0.675
#: Re-clustering links faces within this distance (chosen the same way).
CLUSTER_DISTANCE = 0.55
MAX_NAME = 100
P = TypeVar("P")  # whatever names a person: an id here, a group number in the benchmark

#: The worker re-clusters an owner's faces once no new face came for this long.
QUIET_SECONDS = 30.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Grouped:
    faces: int = 0
    new_people: int = 0
    joined: int = 0


def add_faces(session: Session, *, image_id: str, owner_id: str, features: ImageFeatures) -> Grouped:
    """Store a labelled photo's faces and group them (the worker's write). Idempotent: a photo
    whose faces of this model are stored keeps them (and their people)."""
    if features.faces is None or features.face_model is None:
        return Grouped()
    if people_q.grouping_off(session=session, owner_id=owner_id):
        return Grouped()
    stored = people_q.image_face_model(session=session, image_id=image_id)
    if stored == features.face_model:
        return Grouped()
    touched = people_q.delete_image_faces(session=session, image_ids=[image_id]) if stored else set()
    if not features.faces:
        _after_change(session, owner_id, touched)
        return Grouped()
    ids = people_q.insert_faces(
        session=session,
        image_id=image_id,
        owner_id=owner_id,
        faces=features.faces,
        face_model=features.face_model,
    )
    result = _assign(session, owner_id, features.face_model, ids, list(features.faces))
    _after_change(session, owner_id, touched | result[1])
    return result[0]


def _assign(
    session: Session, owner_id: str, face_model: str, new_ids: list[str], faces: list[FaceVector]
) -> tuple[Grouped, set[str]]:
    ids, persons, nots, blobs, _ = people_q.grouped_descriptors(
        session=session, owner_id=owner_id, face_model=face_model, exclude=new_ids
    )
    known = [(i, p, b) for i, p, b in zip(ids, persons, blobs, strict=True) if p is not None]
    matrix = unpack_many([b for _, _, b in known])
    owners = [p for _, p, _ in known]
    new_people = joined = 0
    touched: set[str] = set()
    for face_id, face in zip(new_ids, faces, strict=True):
        vec = unpack_many([face.descriptor])[0]
        person: str | None = None
        if len(owners):
            person = join_target(np.linalg.norm(matrix - vec, axis=1), owners)
        if person is None:
            person = people_q.new_person(session=session, owner_id=owner_id, cover_face_id=face_id)
            new_people += 1
        else:
            joined += 1
        people_q.set_person(session=session, owner_id=owner_id, face_ids=[face_id], person_id=person)
        touched.add(person)
        # Later faces of the same photo can join this one's person (two photos of one group).
        matrix = np.vstack([matrix, vec[None, :]]) if len(owners) else vec[None, :]
        owners.append(person)
    return Grouped(faces=len(new_ids), new_people=new_people, joined=joined), touched


def join_target(
    dist: np.ndarray,
    owners: Sequence[P],
    *,
    join: float = JOIN_DISTANCE,
    support: float = SUPPORT_DISTANCE,
) -> P | None:
    """The person a new face joins, given its distances to the grouped faces (``owners``: each
    face's person): its nearest face's, if that face is within ``join`` and at least half of
    that person's faces are within ``support``; else None. The second test keeps one
    look-alike face from chaining two people together. (``make bench-people`` sweeps both.)"""
    j = int(np.argmin(dist))
    if dist[j] > join:
        return None
    person = owners[j]
    members = np.fromiter((o == person for o in owners), dtype=bool, count=len(owners))
    return person if 2 * int((dist[members] <= support).sum()) >= int(members.sum()) else None


def _after_change(session: Session, owner_id: str, person_ids: set[str]) -> None:
    """After faces moved: names follow (labels), empty people go, covers stay on their person."""
    if not person_ids:
        return
    names = {
        p.name
        for pid in person_ids
        if (p := people_q.get_person(session=session, owner_id=owner_id, person_id=pid)) is not None
    }
    people_q.fix_covers(session=session, owner_id=owner_id, person_ids=person_ids)
    people_q.delete_empty_people(session=session, owner_id=owner_id)
    people_q.sync_labels(session=session, owner_id=owner_id, names=names)


def cluster(descriptors: np.ndarray, threshold: float = CLUSTER_DISTANCE) -> list[int]:
    """Group descriptors (n, 128) by Chinese whispers over edges within ``threshold``."""
    if len(descriptors) == 0:
        return []
    if len(descriptors) == 1:
        return [0]
    import dlib

    vectors = [dlib.vector(np.asarray(v, dtype=np.float64).tolist()) for v in descriptors]
    return [int(c) for c in dlib.chinese_whispers_clustering(vectors, float(threshold))]


def recluster(session: Session, *, owner_id: str) -> dict[str, int]:
    """Group the owner's faces again (faces placed by hand stay); returns counts."""
    changed = 0
    before = {p.id: p.name for p in people_q.people_of(session=session, owner_id=owner_id)}
    for face_model in people_q.face_models(session=session, owner_id=owner_id):
        ids, persons, nots, blobs, pinned = people_q.grouped_descriptors(
            session=session, owner_id=owner_id, face_model=face_model, lock=True
        )
        free = [i for i, p in enumerate(pinned) if not p]
        if not free:
            continue
        groups = cluster(unpack_many([blobs[i] for i in free]))
        members: dict[int, list[int]] = {}
        for i, g in zip(free, groups, strict=True):
            members.setdefault(g, []).append(i)
        taken: set[str] = set()
        # Largest groups choose first: a person goes to the group holding most of their faces.
        for group in sorted(members.values(), key=len, reverse=True):
            votes = Counter(persons[i] for i in group if persons[i] is not None)
            ranked = sorted(
                votes.items(), key=lambda kv: (before.get(kv[0] or "") is None, -kv[1], kv[0] or "")
            )
            target = next((p for p, _ in ranked if p not in taken), None)
            if target is None:
                target = people_q.new_person(session=session, owner_id=owner_id, cover_face_id=ids[group[0]])
            taken.add(target)
            for i in group:
                # A face split from this person ("not Alice") stays with the one it was given.
                want = persons[i] if nots[i] == target else target
                if want is None:
                    want = people_q.new_person(session=session, owner_id=owner_id, cover_face_id=ids[i])
                if want != persons[i]:
                    people_q.set_person(session=session, owner_id=owner_id, face_ids=[ids[i]], person_id=want)
                    changed += 1
    session.flush()
    after = people_q.people_of(session=session, owner_id=owner_id)
    touched = set(before) | {p.id for p in after}
    people_q.fix_covers(session=session, owner_id=owner_id, person_ids=touched)
    people_q.delete_empty_people(session=session, owner_id=owner_id)
    people_q.sync_labels(
        session=session, owner_id=owner_id, names=set(before.values()) | {p.name for p in after}
    )
    return {"faces_moved": changed, "people": len(people_q.people_of(session=session, owner_id=owner_id))}


# --- what a person does on the People page (or the CLI) -------------------------------------


def _person(session: Session, owner_id: str, person_id: str) -> Person:
    person = people_q.get_person(session=session, owner_id=owner_id, person_id=person_id)
    if person is None:
        raise NotFound("No such person.")
    return person


def clean_name(name: str) -> str:
    clean = " ".join(name.split())[:MAX_NAME]
    if not clean:
        raise ValueError("A person needs a name.")
    return clean


def name_person(session: Session, *, owner_id: str, person_id: str, name: str | None) -> None:
    """Name (or, with None/"", unname) a person; their photos' labels follow."""
    person = _person(session, owner_id, person_id)
    old = person.name
    new = clean_name(name) if name and name.strip() else None
    people_q.update_person(session=session, owner_id=owner_id, person_id=person_id, name=new)
    session.flush()
    people_q.sync_labels(session=session, owner_id=owner_id, names={old, new})


def hide_person(session: Session, *, owner_id: str, person_id: str, hidden: bool) -> None:
    _person(session, owner_id, person_id)
    people_q.update_person(session=session, owner_id=owner_id, person_id=person_id, hidden=hidden)


def merge(session: Session, *, owner_id: str, keep_id: str, other_id: str) -> None:
    """Every face of ``other_id`` becomes ``keep_id``'s (placed by hand: re-clustering keeps it)."""
    if keep_id == other_id:
        raise ValueError("Pick two different people to merge.")
    keep = _person(session, owner_id, keep_id)
    other = _person(session, owner_id, other_id)
    name = keep.name or other.name
    faces = [f.id for f in people_q.person_faces(session=session, owner_id=owner_id, person_id=other_id)]
    people_q.set_person(session=session, owner_id=owner_id, face_ids=faces, person_id=keep_id, pinned=True)
    if keep.name is None and name:
        people_q.update_person(session=session, owner_id=owner_id, person_id=keep_id, name=name)
    old_names = {keep.name, other.name, name}
    session.flush()
    people_q.delete_empty_people(session=session, owner_id=owner_id)
    people_q.sync_labels(session=session, owner_id=owner_id, names=old_names)


def split_face(session: Session, *, owner_id: str, face_id: str) -> str:
    """ "Not this person": the face leaves its person for a new one of its own, and is never
    grouped with them again. Returns the new person's id."""
    face = people_q.get_face(session=session, owner_id=owner_id, face_id=face_id)
    if face is None:
        raise NotFound("No such face.")
    old = face.person_id
    new = people_q.new_person(session=session, owner_id=owner_id, cover_face_id=face_id)
    people_q.set_person(
        session=session, owner_id=owner_id, face_ids=[face_id], person_id=new, pinned=True, not_person_id=old
    )
    session.flush()
    _after_change(session, owner_id, {new} | ({old} if old else set()))
    return new


def remove_person(session: Session, *, owner_id: str, person_id: str) -> None:
    """Forget a person: their faces (the personal data) and their name's labels."""
    person = _person(session, owner_id, person_id)
    people_q.delete_person(session=session, owner_id=owner_id, person_id=person_id)
    session.flush()
    people_q.sync_labels(session=session, owner_id=owner_id, names={person.name})


def set_grouping(session: Session, *, owner_id: str, on: bool, by: str | None = None) -> None:
    """Turn face grouping on or off for one person; off deletes their faces, people and the
    labels naming wrote (face data is personal data)."""
    people_q.set_grouping_off(session=session, owner_id=owner_id, off=not on, by=by)
    if not on:
        people_q.delete_owner_people(session=session, owner_id=owner_id)
        people_q.delete_person_labels(session=session, owner_id=owner_id)


def set_grouping_for_everyone(session: Session, *, on: bool, by: str | None) -> None:
    """An admin's switch: off, no one's new faces are grouped (what is stored stays until each
    person turns it off for themselves or removes it)."""
    people_q.set_grouping_off(session=session, owner_id=people_q.ALL_OWNERS, off=not on, by=by)


def recluster_changed(engine: Engine, *, quiet_seconds: float = QUIET_SECONDS) -> int:
    """Re-cluster the owners whose faces changed since their last re-cluster and then stayed
    unchanged for ``quiet_seconds`` (the worker's debounce); returns how many were."""
    done = 0
    with transaction(engine) as s:
        changed = people_q.changed_owners(session=s)
    for owner_id, state in changed.items():
        if still_changing(state, quiet_seconds):
            continue  # photos still coming: wait for a quiet moment
        try:
            with transaction(engine) as s:
                result = recluster(s, owner_id=owner_id)
                people_q.record_cluster_run(session=s, owner_id=owner_id, signature=state)
        except Exception:
            logger.warning("re-clustering %s's faces failed; trying again later", owner_id, exc_info=True)
            continue
        done += 1
        logger.info("re-clustered %s's faces: %s", owner_id, result)
    return done
