"""Near-duplicates within one person's photos (issue #18): which images are copies of one
another (resized, recompressed, slightly cropped or colour-shifted, burst shots), grouped,
each group with the copy to keep.

The rule (thresholds measured by ``bench/near_duplicates.py``, table in the README): two
images of one owner are near-duplicates when

* their files are identical (same sha256), or
* their perceptual hashes (:mod:`labelkit.features.phash`) differ in at most
  :data:`STRICT_BITS` of 64 bits, or
* they differ in at most :data:`LOOSE_BITS` bits *and* both have an embedding of the same
  model whose cosine similarity is at least :data:`MIN_COSINE` (the embedding confirms the
  borderline pairs a hash alone cannot tell from look-alike photos).

Pairs are joined into groups with union-find. The suggested keeper of a group is the copy
with the most pixels, then the sharpest (the labeller's Laplacian-variance sharpness), then the
oldest. Finding pairs compares every hash with every other (numpy, in blocks): about 9 ns a
pair, i.e. 0.4 s for 10,000 images and ~45 s for 100,000 (the page caches the answer); past
that an index (or pairs kept as hashes are written) would be needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.engine import Engine

from labelkit.db.engine import transaction
from labelkit.db.queries import duplicates as dup_q
from labelkit.db.queries.duplicates import HashedImage
from labelkit.domain import Viewer

logger = logging.getLogger(__name__)

#: Hashes this close are near-duplicates on their own (no false positive in the bench).
STRICT_BITS = 12
#: Hashes this close are near-duplicates when their embeddings agree (>= MIN_COSINE).
LOOSE_BITS = 22
MIN_COSINE = 0.9

_BLOCK = 1024  # rows of the distance matrix computed at once (1024 x n bytes of scratch)


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
    for start in range(0, len(v), _BLOCK):
        block = v[start : start + _BLOCK]
        rest = v[start:]  # the upper triangle only: j >= i
        dist = np.bitwise_count(block[:, None] ^ rest[None, :])
        bi, bj = np.nonzero(dist <= max_bits)
        keep = bj > bi  # j > i (the block's own diagonal and below are skipped)
        bi, bj = bi[keep], bj[keep]
        if len(bi):
            out.append(np.stack([idx[start + bi], idx[start + bj], dist[bi, bj].astype(np.int64)], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


def decode_embedding(blob: bytes) -> np.ndarray:
    """A stored embedding (little-endian float16, unit length) as float32."""
    return np.frombuffer(blob, "<f2").astype(np.float32)


def is_near_duplicate(bits: int, cosine: float | None) -> bool:
    """The rule for one pair of hashed images (``cosine`` None: no comparable embeddings)."""
    if bits <= STRICT_BITS:
        return True
    return cosine is not None and bits <= LOOSE_BITS and cosine >= MIN_COSINE


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Images that are copies of one another; ``keeper`` is the one to keep (also in ``image_ids``)."""

    keeper: str
    image_ids: tuple[str, ...]  # the keeper first, then the others oldest first

    @property
    def others(self) -> tuple[str, ...]:
        return tuple(i for i in self.image_ids if i != self.keeper)


def _keeper_order(im: HashedImage) -> tuple[float, float, float]:
    # Most pixels, then sharpest, then oldest (min over these keys).
    return (-(im.width * im.height), -(im.sharpness or 0.0), im.created_at.timestamp())


def group(
    images: Sequence[HashedImage],
    embeddings: dict[str, tuple[str, bytes]] | None = None,
    *,
    pairs: np.ndarray | None = None,
) -> list[DuplicateGroup]:
    """Group ``images`` (all of one owner) by the rule; largest groups first.

    ``pairs`` are the candidate pairs within :data:`LOOSE_BITS` (computed if not given);
    ``embeddings`` (image id -> (model, blob)) confirm those beyond :data:`STRICT_BITS`."""
    values, has = hash_array([im.phash for im in images])
    if pairs is None:
        pairs = close_pairs(values, LOOSE_BITS, valid=has)
    embeddings = embeddings or {}
    uf = _UnionFind(len(images))
    for i, j, bits in pairs.tolist():
        cosine = None
        if bits > STRICT_BITS:
            a, b = embeddings.get(images[i].image_id), embeddings.get(images[j].image_id)
            if a is not None and b is not None and a[0] == b[0]:
                va, vb = decode_embedding(a[1]), decode_embedding(b[1])
                if va.shape == vb.shape:
                    cosine = float(va @ vb)
        if is_near_duplicate(bits, cosine):
            uf.union(i, j)
    by_sha: dict[str, int] = {}
    for i, im in enumerate(images):  # identical files (the same bytes under two ids)
        if im.sha256 in by_sha:
            uf.union(by_sha[im.sha256], i)
        else:
            by_sha[im.sha256] = i
    members: dict[int, list[int]] = {}
    for i in range(len(images)):
        members.setdefault(uf.find(i), []).append(i)
    groups: list[DuplicateGroup] = []
    for idx in members.values():
        if len(idx) < 2:
            continue
        ims = [images[i] for i in idx]
        keeper = min(ims, key=_keeper_order)
        rest = sorted((im for im in ims if im is not keeper), key=lambda im: (im.created_at, im.image_id))
        groups.append(
            DuplicateGroup(keeper=keeper.image_id, image_ids=(keeper.image_id, *(r.image_id for r in rest)))
        )
    groups.sort(key=lambda g: (-len(g.image_ids), g.keeper))
    return groups


def nearest(phash: str, candidates: Sequence[tuple[str, str]]) -> tuple[str, int] | None:
    """The candidate (image id, hash) closest to ``phash`` within :data:`STRICT_BITS`, with its
    distance. Used at upload, when the new photo has no embedding yet: the hash alone must be sure."""
    if not candidates:
        return None
    values = np.array([int(h, 16) for _, h in candidates], dtype=np.uint64)
    dist = np.bitwise_count(values ^ np.uint64(int(phash, 16)))
    k = int(np.argmin(dist))
    return (candidates[k][0], int(dist[k])) if int(dist[k]) <= STRICT_BITS else None


# --------------------------------------------------------------------------- use cases


def find_groups(*, engine: Engine, viewer: Viewer, owner_id: str) -> list[DuplicateGroup]:
    """The near-duplicate groups among ``owner_id``'s images, as ``viewer`` may see them
    (nothing for an owner the viewer may not read)."""
    with transaction(engine) as s:
        images = dup_q.hashed_images(session=s, viewer=viewer, owner_id=owner_id)
    values, has = hash_array([im.phash for im in images])
    pairs = close_pairs(values, LOOSE_BITS, valid=has)
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
    return group(images, embeddings, pairs=pairs)


def hash_upload(*, engine: Engine, image_id: str, owner_id: str, thumbnail: bytes) -> str | None:
    """At upload: hash the new photo's thumbnail, record the hash, and return the id of an image
    the owner already has that it looks like (within :data:`STRICT_BITS`), or None."""
    from labelkit.features.phash import phash_of_thumbnail

    phash = phash_of_thumbnail(thumbnail)
    owner = Viewer(user_id=owner_id)
    with transaction(engine) as s:
        others = [
            (i, h) for i, h in dup_q.owner_hashes(session=s, viewer=owner, owner_id=owner_id) if i != image_id
        ]
        dup_q.save_upload_hash(session=s, image_id=image_id, owner_id=owner_id, phash=phash)
    near = nearest(phash, others)
    return near[0] if near else None
