"""Similar photos: an owner's other images nearest to one image's embedding (issue #18).

:func:`similar_images` looks the image up through the viewer's scope (``NotFound`` if they
may not see it), then searches that image's **owner's** embeddings only: a person sees their
own photos, and an admin looking at someone's photo gets that person's photos.

Search is exact-then-rerank over an in-memory matrix per (database, owner, embedding model):

* the owner's blobs are read once (the cold load) into a float16 matrix (n, 256) and a
  float32 copy of its first ``COARSE_DIM`` columns. The stored vectors are a random
  orthogonal projection (:mod:`labelkit.features.embedding`), so their first columns are
  themselves a random projection, whose inner products estimate the full ones;
* a query scores every row on the coarse columns (one BLAS matrix-vector product), keeps
  the best ``CANDIDATES``, and ranks those by the exact 256-d cosine. Below ``CANDIDATES``
  rows the search is exact. bench/similar.py measures p50/p95 at 1,000,000 images;
* before reusing a matrix, a cheap version check (the latest ``updated_at`` of the owner's
  embeddings: one seek on the index of migration 0010) tells whether they changed; if so
  the rows updated since are read (an index range) and added or replaced in place. The
  hits are checked against the database (still there, still the owner's, same model), so a
  photo deleted (or relabelled by another model) a moment ago is never returned; deleted
  rows stay in the matrix until the process restarts, and only cost a slot in the rerank.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from labelkit.db.queries import features as features_q
from labelkit.domain import Viewer
from labelkit.features.embedding import unpack

#: The cosine similarity from which two photos count as alike: picked by
#: ``bench/similar_cutoff.py`` on a tuning half of photos with known content (the scene set's
#: scene labels, the development set's objects) as the lowest similarity at which at least
#: 80% of the pairs above it are alike, and checked on the other half (docs/similar-photos.md).
#: Photos below it are still offered, behind "show less similar photos".
SIMILAR_CUTOFF = 0.74

#: Columns of the coarse pass, and how many rows it hands to the exact rerank.
COARSE_DIM = 32
CANDIDATES = 2048


#: Rows updated this long before the newest one already loaded are read again when the
#: owner's embeddings change: a labelling transaction may commit after a later one started.
REFRESH_SLACK = timedelta(minutes=2)


@dataclass(slots=True)
class _OwnerMatrix:
    ids: list[str]  # image id of each row
    full: np.ndarray  # (n, d) float16 unit rows
    coarse: np.ndarray  # (n, COARSE_DIM) float32
    latest: datetime | None  # newest updated_at loaded
    row_of: dict[str, int]

    @property
    def nbytes(self) -> int:
        return int(self.full.nbytes + self.coarse.nbytes)

    @classmethod
    def empty(cls) -> _OwnerMatrix:
        return cls(
            ids=[],
            full=np.zeros((0, 0), dtype=np.float16),
            coarse=np.zeros((0, COARSE_DIM), dtype=np.float32),
            latest=None,
            row_of={},
        )

    def apply(self, batch: list[tuple[str, bytes]]) -> None:
        """Add these rows, replacing those already here (same image id)."""
        if not batch:
            return
        vecs = np.frombuffer(b"".join(b for _, b in batch), dtype="<f2").reshape(len(batch), -1)
        if self.full.shape[0] == 0:
            self.full = np.zeros((0, vecs.shape[1]), dtype=np.float16)
        if vecs.shape[1] != self.full.shape[1]:
            raise ValueError("embeddings of one model must have one dimension")
        new_rows: list[int] = []
        for j, (image_id, _) in enumerate(batch):
            i = self.row_of.get(image_id)
            if i is None:
                self.row_of[image_id] = len(self.ids)
                self.ids.append(image_id)
                new_rows.append(j)
            else:
                self.full[i] = vecs[j]
                self.coarse[i] = vecs[j, :COARSE_DIM]
        if new_rows:
            added = vecs[new_rows]
            self.full = np.concatenate([self.full, added.astype(np.float16)])
            self.coarse = np.concatenate([self.coarse, added[:, :COARSE_DIM].astype(np.float32)])

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        # Runs outside the lock while another thread may apply() new rows: read ``coarse``
        # before ``full`` (apply replaces ``full`` first, and ``ids`` only grows), so every
        # row this search sees is in all three.
        coarse_rows = self.coarse
        full = self.full
        n = coarse_rows.shape[0]
        if n == 0 or k <= 0:
            return []
        if n <= CANDIDATES:
            candidates = np.arange(n)
        else:
            coarse = coarse_rows @ query[:COARSE_DIM]
            candidates = np.argpartition(coarse, n - CANDIDATES)[n - CANDIDATES :]
        scores = full[candidates].astype(np.float32) @ query
        top = min(k, len(candidates))
        best = np.argpartition(scores, len(scores) - top)[len(scores) - top :]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.ids[int(candidates[i])], float(scores[i])) for i in best]


_cache: dict[tuple[str, str, str], _OwnerMatrix] = {}
_locks: dict[tuple[str, str, str], threading.Lock] = {}
_guard = threading.Lock()


def _refresh(
    session: Session, matrix: _OwnerMatrix, owner_id: str, model: str, latest: datetime | None
) -> None:
    since = None if matrix.latest is None else matrix.latest - REFRESH_SLACK
    for batch in features_q.owner_embeddings(session=session, owner_id=owner_id, model=model, since=since):
        matrix.apply(batch)
    matrix.latest = latest


def _matrix(session: Session, owner_id: str, model: str) -> _OwnerMatrix:
    key = (str(session.get_bind().engine.url), owner_id, model)
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        latest = features_q.latest_update(session=session, owner_id=owner_id, model=model)
        cached = _cache.get(key)
        if cached is None:
            cached = _OwnerMatrix.empty()
            _refresh(session, cached, owner_id, model, latest)
            with _guard:
                _cache[key] = cached
        elif cached.latest != latest:
            _refresh(session, cached, owner_id, model, latest)
        return cached


def cache_bytes() -> int:
    """Memory held by the cached matrices (benchmarks report it)."""
    with _guard:
        return sum(m.nbytes for m in _cache.values())


def clear_cache() -> None:
    with _guard:
        _cache.clear()


def similar_images(
    *, session: Session, viewer: Viewer, image_id: str, limit: int = 12
) -> list[tuple[str, float]]:
    """The owner's other images most similar to ``image_id``, best first, with their cosine
    similarity. Empty when the image has no embedding yet (not labelled, or labelled without
    the local classifier). ``NotFound`` if the viewer may not see the image."""
    stored = features_q.embedding_of(session=session, viewer=viewer, image_id=image_id)
    if stored.embedding is None or stored.embedding_model is None or limit <= 0:
        return []
    query = unpack(stored.embedding)
    matrix = _matrix(session, stored.owner_id, stored.embedding_model)
    if matrix.full.shape[1] != query.shape[0]:
        return []
    # A few more than asked: the image itself and any deleted since are dropped below.
    hits = [(i, s) for i, s in matrix.search(query, limit + 1 + limit // 2) if i != image_id]
    alive = features_q.existing_of_owner(
        session=session,
        owner_id=stored.owner_id,
        model=stored.embedding_model,
        image_ids=[i for i, _ in hits],
    )
    return [(i, s) for i, s in hits if i in alive][:limit]
