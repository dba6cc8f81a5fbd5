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

Pairs are joined into groups with union-find. The suggested keeper of a group is the copy
with the most pixels, then the sharpest (the labeller's Laplacian-variance sharpness), then the
oldest. Finding pairs compares every hash with every other (numpy, in tiles): 0.7-1.3 s for
10,000 images and 73-99 s for 100,000 on the 2-core machine under load (README table; the page caches the
groups). Candidate pairs grow with the square too (1.8 % of unrelated photos are within 22
bits), so the loose distance drops to :data:`LOOSE_BITS_LARGE` past :data:`LARGE_LIBRARY`
images; past ~100,000 an index (or pairs kept as hashes are written) would be needed.
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
    """Images that are copies of one another; ``keeper`` is the one to keep (also in ``image_ids``)."""

    keeper: str
    image_ids: tuple[str, ...]  # the keeper first, then the others oldest first

    @property
    def others(self) -> tuple[str, ...]:
        return tuple(i for i in self.image_ids if i != self.keeper)


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


def _keeper_order(im: HashedImage, sharp: dict[str, float]) -> tuple[float, float, float]:
    # Most pixels, then sharpest, then oldest (min over these keys).
    return (-(im.width * im.height), -sharp.get(im.image_id, 0.0), im.created_at.timestamp())


def group(
    images: Sequence[HashedImage],
    embeddings: dict[str, tuple[str, bytes]] | None = None,
    *,
    pairs: np.ndarray | None = None,
    sharpness: dict[str, float] | None = None,
) -> list[DuplicateGroup]:
    """Group ``images`` (all of one owner) by the rule; largest groups first.

    ``pairs`` are the candidate pairs within the loose distance (computed if not given);
    ``embeddings`` (image id -> (model, blob)) confirm those beyond :data:`STRICT_BITS`;
    ``sharpness`` (image id -> 0-100) breaks ties between keepers of equal size."""
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
    sharp = sharpness or {}
    groups: list[DuplicateGroup] = []
    for idx in members.values():
        ims = [images[i] for i in idx]
        keeper = min(ims, key=lambda im: _keeper_order(im, sharp))
        rest = sorted((im for im in ims if im is not keeper), key=lambda im: (im.created_at, im.image_id))
        groups.append(
            DuplicateGroup(keeper=keeper.image_id, image_ids=(keeper.image_id, *(r.image_id for r in rest)))
        )
    groups.sort(key=lambda g: (-len(g.image_ids), g.keeper))
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
    if not groups:
        return groups
    # Sharpness only breaks ties between equally large copies: read it for the members only.
    with transaction(engine) as s:
        sharp = dup_q.sharpness(
            session=s, viewer=viewer, owner_id=owner_id, image_ids=[i for g in groups for i in g.image_ids]
        )
    by_id = {im.image_id: im for im in images}
    members = [by_id[i] for g in groups for i in g.image_ids]
    return group(members, embeddings, sharpness=sharp) if sharp else groups


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
