"""Near-duplicates within one person's photos (issue #18): which images are copies of one
another (resized, recompressed, slightly cropped or colour-shifted, burst shots), grouped,
each group with the copy to keep.

The rule (thresholds measured by ``bench/near_duplicates.py``, table in the README): two
images of one owner are near-duplicates when

* their files are identical (same sha256: uploads refuse a second copy of a file, so this
  covers rows from before that rule or from imports), or
* their perceptual hashes (:mod:`labelkit.features.phash`) differ in at most
  :data:`STRICT_BITS` of 64 bits, or
* they differ in at most :data:`LOOSE_BITS` bits *and* both have an embedding of the same
  model whose cosine similarity is at least :data:`MIN_COSINE` (the embedding confirms the
  borderline pairs a hash alone cannot tell from look-alike photos).

Pairs are joined into groups with union-find. The suggested keeper of a group is chosen by
:func:`keeper_key`: a copy people labelled, then the most pixels, then the most bytes per pixel
(the least compressed), then the oldest. A person may choose another keeper
(:meth:`DuplicateGroup.with_keeper`); before a copy people labelled is deleted, its labels can be
copied to the keeper (:func:`copy_human_labels`).

Finding pairs compares every hash with every other (numpy, in tiles): 0.7-1.3 s for 10,000
images and 73-99 s for 100,000 on the 2-core machine under load (README table; the page caches
the groups). Candidate pairs grow with the square too (1.8 % of unrelated photos are within 22
bits), so the loose distance drops to :data:`LOOSE_BITS_LARGE` past :data:`LARGE_LIBRARY`
images; past ~100,000 an index (or pairs kept as hashes are written) would be needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
from sqlalchemy.engine import Engine

from labelkit.db.engine import transaction
from labelkit.db.models import LabelRow, LabelSource
from labelkit.db.queries import duplicates as dup_q
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries.duplicates import HashedImage, KeeperFacts
from labelkit.domain import Viewer

logger = logging.getLogger(__name__)

#: Hashes this close are near-duplicates on their own (no false positive in the bench).
STRICT_BITS = 12
#: Hashes this close are near-duplicates when their embeddings agree (>= MIN_COSINE).
LOOSE_BITS = 22
#: ... in libraries larger than LARGE_LIBRARY: 1.8 % of unrelated photos' hashes are within 22
#: bits of each other (0.12 % within 18), so at 100k images 22 bits would mean ~90 M candidate
#: pairs to check; 18 keeps that to ~6 M at a few points of recall (README table).
LOOSE_BITS_LARGE = 18
LARGE_LIBRARY = 30_000
MIN_COSINE = 0.80


def loose_bits_for(n_images: int) -> int:
    """The loose distance used for a library of ``n_images``."""
    return LOOSE_BITS if n_images <= LARGE_LIBRARY else LOOSE_BITS_LARGE


_BLOCK, _COLUMNS = 256, 4096  # the distance matrix is computed in tiles this size (10 MB of scratch)


# --------------------------------------------------------------------------- pure maths


def hash_array(hashes: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 values, mask of images that have a hash)."""
    has = np.array([h is not None for h in hashes], dtype=bool)
    values = np.array([int(h, 16) if h else 0 for h in hashes], dtype=np.uint64)
    return values, has


def close_pairs(values: np.ndarray, max_bits: int, *, valid: np.ndarray | None = None) -> np.ndarray:
    """Every pair ``(i, j)``, ``i < j``, whose hashes differ in at most ``max_bits`` bits,
    as an (m, 3) array of i, j and the distance."""
    n = len(values)
    idx = np.flatnonzero(valid) if valid is not None else np.arange(n)
    v = values[idx]
    out: list[np.ndarray] = []
    # Preallocated scratch (a block of rows x a block of columns, upper triangle only): no
    # temporaries the size of the matrix, and the scratch stays in cache.
    xor = np.empty((_BLOCK, _COLUMNS), dtype=np.uint64)
    bits = np.empty((_BLOCK, _COLUMNS), dtype=np.uint8)
    hit = np.empty((_BLOCK, _COLUMNS), dtype=bool)
    for r0 in range(0, len(v), _BLOCK):
        rows = v[r0 : r0 + _BLOCK]
        for c0 in range(r0, len(v), _COLUMNS):
            cols = v[c0 : c0 + _COLUMNS]
            x, d, h = (
                xor[: len(rows), : len(cols)],
                bits[: len(rows), : len(cols)],
                hit[: len(rows), : len(cols)],
            )
            np.bitwise_xor(rows[:, None], cols[None, :], out=x)
            np.bitwise_count(x, out=d)
            np.less_equal(d, max_bits, out=h)
            if not h.any():
                continue
            bi, bj = np.nonzero(h)
            gi, gj = r0 + bi, c0 + bj
            keep = gj > gi  # the diagonal block's lower half and diagonal are skipped
            if keep.any():
                # int32: three columns of 4 bytes, as tens of millions of pairs are possible
                out.append(
                    np.stack([idx[gi[keep]], idx[gj[keep]], d[bi[keep], bj[keep]]], axis=1).astype(np.int32)
                )
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int32)


def decode_embedding(blob: bytes) -> np.ndarray:
    """A stored embedding (little-endian float16, unit length) as float32."""
    return np.frombuffer(blob, "<f2").astype(np.float32)


def is_near_duplicate(bits: int, cosine: float | None) -> bool:
    """The rule for one pair of hashed images (``cosine`` None: no comparable embeddings)."""
    if bits <= STRICT_BITS:
        return True
    return cosine is not None and bits <= LOOSE_BITS and cosine >= MIN_COSINE


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Union-find over ``edges`` ((m, 2) indices), vectorised: each node's root (the smallest
    index of its group), by hooking each edge's larger root under the smaller and jumping
    pointers until nothing changes."""
    parent = np.arange(n)
    if len(edges) == 0:
        return parent
    a, b = edges[:, 0], edges[:, 1]
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            return parent
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        np.minimum.at(parent, hi, lo)
        while True:  # path compression: everyone points at a root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Images that are copies of one another. ``keeper`` is the one to keep: the suggested one
    (:func:`keeper_key`, first in ``image_ids``) or the one a person chose (:meth:`with_keeper`)."""

    keeper: str
    image_ids: tuple[str, ...]  # the suggested keeper first, then the others oldest first
    #: per ``image_ids`` entry: label names people added, confirmed or rejected on it (empty: not read)
    human_labels: tuple[int, ...] = ()

    @property
    def suggested(self) -> str:
        return self.image_ids[0]

    @property
    def others(self) -> tuple[str, ...]:
        """Every copy but the keeper: what "delete the rest" deletes."""
        return tuple(i for i in self.image_ids if i != self.keeper)

    def labels_by_people(self, image_id: str) -> int:
        """How many label names people added, confirmed or rejected on ``image_id`` (0 if unknown)."""
        if not self.human_labels or image_id not in self.image_ids:
            return 0
        return self.human_labels[self.image_ids.index(image_id)]

    def with_keeper(self, image_id: str) -> DuplicateGroup:
        """The same group with ``image_id`` (one of its copies) as the keeper."""
        if image_id not in self.image_ids:
            raise ValueError(f"{image_id!r} is not in this group")
        return replace(self, keeper=image_id)


def _confirmed(
    images: Sequence[HashedImage], pairs: np.ndarray, embeddings: dict[str, tuple[str, bytes]]
) -> np.ndarray:
    """Which borderline ``pairs`` (beyond STRICT_BITS) both have same-model embeddings with
    cosine >= MIN_COSINE, vectorised per model and dimension."""
    ok = np.zeros(len(pairs), dtype=bool)
    if not embeddings or not len(pairs):
        return ok
    index = {im.image_id: k for k, im in enumerate(images)}
    kinds: dict[tuple[str, int], int] = {}
    kind = np.full(len(images), -1)
    rows: dict[int, np.ndarray] = {}
    for image_id, (model, blob) in embeddings.items():
        k = index.get(image_id)
        if k is None:
            continue
        vec = decode_embedding(blob)
        kind[k] = kinds.setdefault((model, len(vec)), len(kinds))
        rows[k] = vec
    ka, kb = kind[pairs[:, 0]], kind[pairs[:, 1]]
    for m in range(len(kinds)):
        sel = np.flatnonzero((ka == m) & (kb == m))
        if not len(sel):
            continue
        members = np.unique(pairs[sel, :2])
        where = np.searchsorted(members, pairs[sel, :2])
        matrix = np.stack([rows[int(k)] for k in members])
        for start in range(0, len(sel), 200_000):  # bounded scratch
            part = slice(start, start + 200_000)
            cos = np.einsum("ij,ij->i", matrix[where[part, 0]], matrix[where[part, 1]])
            ok[sel[part]] = cos >= MIN_COSINE
    return ok


def keeper_key(
    *, human_labels: int, width: int, height: int, nbytes: int, created_at: datetime, image_id: str
) -> tuple[bool, int, float, datetime, str]:
    """The keeper rule, as a sort key (the smallest is kept):

    1. a copy people labelled (any label added, confirmed or rejected by a person, or a box),
       so that deleting the rest never drops human work;
    2. then the most pixels (``width * height``);
    3. then the most bytes per pixel: of copies of one size, the least compressed (a quality-35
       re-save of a photo is a third of the original's bytes, and looks it);
    4. then the oldest (``created_at``), then the image id, so the choice never depends on order.
    """
    pixels = width * height
    per_pixel = nbytes / pixels if pixels > 0 else 0.0
    return (human_labels <= 0, -pixels, -per_pixel, created_at, image_id)


def _facts_key(f: KeeperFacts) -> tuple[bool, int, float, datetime, str]:
    return keeper_key(
        human_labels=f.human_labels,
        width=f.width,
        height=f.height,
        nbytes=f.bytes,
        created_at=f.created_at,
        image_id=f.image_id,
    )


def _ordered(members: Sequence[KeeperFacts]) -> DuplicateGroup:
    """A group of ``members``: the keeper by :func:`keeper_key`, then the others oldest first."""
    keeper = min(members, key=_facts_key)
    rest = sorted((f for f in members if f is not keeper), key=lambda f: (f.created_at, f.image_id))
    ordered = (keeper, *rest)
    return DuplicateGroup(
        keeper=keeper.image_id,
        image_ids=tuple(f.image_id for f in ordered),
        human_labels=tuple(f.human_labels for f in ordered),
    )


def _group_order(g: DuplicateGroup) -> tuple[int, str]:
    # Largest first; then by the earliest id, which a change of keeper does not move.
    return (-len(g.image_ids), min(g.image_ids))


def group(
    images: Sequence[HashedImage],
    embeddings: dict[str, tuple[str, bytes]] | None = None,
    *,
    pairs: np.ndarray | None = None,
    human_labels: Mapping[str, int] | None = None,
) -> list[DuplicateGroup]:
    """Group ``images`` (all of one owner) by the rule; largest groups first, each with its
    keeper by :func:`keeper_key`.

    ``pairs`` are the candidate pairs within the loose distance (computed if not given);
    ``embeddings`` (image id -> (model, blob)) confirm those beyond :data:`STRICT_BITS`;
    ``human_labels`` (image id -> label names people labelled it with) puts a copy people
    labelled first (:func:`choose_keepers` reads them for the members)."""
    if pairs is None:
        values, has = hash_array([im.phash for im in images])
        pairs = close_pairs(values, loose_bits_for(len(images)), valid=has)
    strict = pairs[:, 2] <= STRICT_BITS
    keep = strict.copy()
    keep[~strict] = _confirmed(images, pairs[~strict], embeddings or {})
    edges = [pairs[keep, :2]]
    by_sha: dict[str, int] = {}
    same: list[tuple[int, int]] = []
    for i, im in enumerate(images):  # identical files (the same bytes under two ids)
        first = by_sha.setdefault(im.sha256, i)
        if first != i:
            same.append((first, i))
    if same:
        edges.append(np.array(same, dtype=np.int64))
    roots = _components(len(images), np.concatenate(edges).astype(np.int64))
    sizes = np.bincount(roots, minlength=len(images))
    members: dict[int, list[int]] = {}
    for i in np.flatnonzero(sizes[roots] > 1).tolist():
        members.setdefault(int(roots[i]), []).append(i)
    human = human_labels or {}
    groups = [
        _ordered(
            [
                KeeperFacts(
                    image_id=im.image_id,
                    width=im.width,
                    height=im.height,
                    bytes=im.bytes,
                    created_at=im.created_at,
                    human_labels=human.get(im.image_id, 0),
                )
                for im in (images[i] for i in idx)
            ]
        )
        for idx in members.values()
    ]
    groups.sort(key=_group_order)
    return groups


def nearest(phash: str, candidates: Sequence[str]) -> tuple[str, int] | None:
    """The candidate hash closest to ``phash`` if within :data:`STRICT_BITS`, with its distance.
    Used at upload, when the new photo has no embedding yet: the hash alone must be sure."""
    if not candidates:
        return None
    values = np.array([int(h, 16) for h in candidates], dtype=np.uint64)
    dist = np.bitwise_count(values ^ np.uint64(int(phash, 16)))
    k = int(np.argmin(dist))
    return (candidates[k], int(dist[k])) if int(dist[k]) <= STRICT_BITS else None


# --------------------------------------------------------------------------- use cases


def find_groups(*, engine: Engine, viewer: Viewer, owner_id: str) -> list[DuplicateGroup]:
    """The near-duplicate groups among ``owner_id``'s images, as ``viewer`` may see them
    (nothing for an owner the viewer may not read)."""
    with transaction(engine) as s:
        images = dup_q.hashed_images(session=s, viewer=viewer, owner_id=owner_id)
    values, has = hash_array([im.phash for im in images])
    pairs = close_pairs(values, loose_bits_for(len(images)), valid=has)
    borderline = {int(x) for x in pairs[pairs[:, 2] > STRICT_BITS][:, :2].ravel()} if len(pairs) else set()
    embeddings: dict[str, tuple[str, bytes]] = {}
    if borderline:
        with transaction(engine) as s:
            embeddings = dup_q.embeddings(
                session=s,
                viewer=viewer,
                owner_id=owner_id,
                image_ids=[images[i].image_id for i in borderline],
            )
    groups = group(images, embeddings, pairs=pairs)
    return choose_keepers(engine=engine, viewer=viewer, owner_id=owner_id, groups=groups)


def choose_keepers(
    *, engine: Engine, viewer: Viewer, owner_id: str, groups: Sequence[DuplicateGroup]
) -> list[DuplicateGroup]:
    """``groups`` with each keeper chosen again by :func:`keeper_key` from what the database
    says now (one query for every member: people's labels change without changing any hash,
    so a cached grouping is passed through here on every read). A member deleted meanwhile
    drops out, and a group left with one photo is no group."""
    ids = [i for g in groups for i in g.image_ids]
    if not ids:
        return []
    with transaction(engine) as s:
        facts = dup_q.keeper_facts(session=s, viewer=viewer, owner_id=owner_id, image_ids=ids)
    out = []
    for g in groups:
        members = [facts[i] for i in g.image_ids if i in facts]
        if len(members) > 1:
            out.append(_ordered(members))
    out.sort(key=_group_order)
    return out


def _box(row: LabelRow) -> tuple[float, float, float, float, float] | None:
    """A box row as ``import_human_label`` takes it (None for the image-level row)."""
    left, top, width, height = row.box_left, row.box_top, row.box_width, row.box_height
    if row.instance == 0 or left is None or top is None or width is None or height is None:
        return None
    return (left, top, width, height, row.confidence)


def copy_human_labels(*, engine: Engine, viewer: Viewer, source_id: str, keeper_id: str) -> int:
    """Copy what people did on ``source_id`` (a copy about to be deleted) onto ``keeper_id``:
    every label they added, confirmed or rejected, with its parents, aliases, categories and
    boxes. The keeper's own verdicts win: a name a person already labelled the keeper with
    (in any case) is left as it is. Returns how many label names were copied.

    Scoped by the viewer: either image not theirs is ``NotFound`` and nothing is written; two
    images of different owners are refused (``ValueError``). One transaction, each label
    written through :func:`labelkit.db.queries.labels.import_human_label` (inside
    ``counts.counting``, so totals and search terms follow)."""
    with transaction(engine) as s:
        source = image_q.get_image(session=s, viewer=viewer, image_id=source_id)
        keeper = image_q.get_image(session=s, viewer=viewer, image_id=keeper_id)
        if source.owner_id != keeper.owner_id:
            raise ValueError("the copy and the keeper belong to different people")
        if source.id == keeper.id:
            return 0
        # A rejection with ``implied_by`` set was no person's verdict but follows from one
        # (counts.implied_rejections): not copied, and it does not stop a person's own verdict
        # being copied; the keeper's follow from what it ends up with.
        by_name: dict[str, list[LabelRow]] = {}
        for row in label_q.labels_for_image(session=s, viewer=viewer, image_id=source.id):
            if row.source == LabelSource.HUMAN and row.implied_by is None:
                by_name.setdefault(row.name, []).append(row)
        kept = {
            row.name.casefold()
            for row in label_q.labels_for_image(session=s, viewer=viewer, image_id=keeper.id)
            if row.source == LabelSource.HUMAN and row.implied_by is None
        }
        copied = 0
        for name, rows in by_name.items():
            if name.casefold() in kept:
                continue
            rows.sort(key=lambda r: r.instance)
            head = rows[0]  # the image-level row (instance 0) when there is one
            boxes = [b for b in map(_box, rows) if b is not None]
            label_q.import_human_label(
                session=s,
                viewer=viewer,
                image_id=keeper.id,
                name=name,
                review=head.review,
                parents=list(head.parents),
                aliases=list(head.aliases),
                categories=list(head.categories),
                boxes=boxes,
            )
            kept.add(name.casefold())
            copied += 1
    logger.info("copied %d people's labels from %s to %s", copied, source_id, keeper_id)
    return copied


def hash_upload(*, engine: Engine, image_id: str, owner_id: str, thumbnail: bytes) -> str | None:
    """At upload: hash the new photo's thumbnail, record the hash, and return the id of an image
    the owner already has that it looks like (within :data:`STRICT_BITS`), or None."""
    from labelkit.features.phash import phash_of_thumbnail

    phash = phash_of_thumbnail(thumbnail)
    owner = Viewer(user_id=owner_id)
    with transaction(engine) as s:
        near = nearest(phash, dup_q.owner_hashes(session=s, viewer=owner, owner_id=owner_id))
        match = None
        if near is not None:
            match = dup_q.image_with_hash(
                session=s, viewer=owner, owner_id=owner_id, phash=near[0], exclude=image_id
            )
        dup_q.save_upload_hash(session=s, image_id=image_id, owner_id=owner_id, phash=phash)
    return match
