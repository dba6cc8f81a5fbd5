"""Object storage: the ``ObjectStore`` protocol and its adapters.

``LocalStore`` keeps objects in a folder (the default, ``./data/images``);
``S3Store`` keeps them in an S3 bucket under a prefix. :func:`make_store`
picks one from the settings' ``storage_url``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from labelkit.settings import Settings

CHUNK_BYTES = 1024 * 1024
"""How much of an object :meth:`ObjectStore.iter_chunks` hands out at a time by default."""


LIST_PAGE = 1000  # S3's largest ListObjectsV2 page


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as a listing sees it: its relative key and when it was last written
    (POSIX seconds, the store's clock)."""

    key: str
    modified: float


@runtime_checkable
class ObjectStore(Protocol):
    """Keys are relative, '/'-separated (``users/{owner}/{image_id}.jpg``).

    Errors: ``ObjectNotFound`` for a missing key, ``StorageError`` for anything
    else (including a key that tries to escape the store, e.g. ``../x``).
    """

    @property
    def bucket(self) -> str | None:
        """The S3 bucket name, or None for stores that are not S3."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def iter_chunks(self, key: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The object's bytes in pieces of at most ``chunk_bytes``, read as they are asked
        for (never the whole object at once). ``ObjectNotFound`` comes at the first piece,
        before any byte; ``StorageError`` at any piece. A missing or empty object is not
        told apart by the pieces: an empty object gives none."""
        ...

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        ...

    def exists(self, key: str) -> bool: ...

    def full_key(self, key: str) -> str:
        """The key as it appears in the backing store (with the S3 prefix)."""
        ...

    def relative_key(self, full_key: str) -> str:
        """Inverse of :meth:`full_key` (for keys arriving in S3 events)."""
        ...

    def remove_stale_partials(self, *, older_than_seconds: int) -> int:
        """Remove what writes cut short left behind; returns how many were removed."""
        ...

    def list_objects(self, prefix: str, *, after: str = "", limit: int = LIST_PAGE) -> list[StoredObject]:
        """Up to ``limit`` objects whose keys start with ``prefix`` (a folder: ending in '/')
        and sort after ``after`` (the last key of the previous page; '' for the first), in key
        order (code point order, which is S3's UTF-8 byte order). Fewer than ``limit`` means
        the listing is complete. Temporary files of writes in progress are not objects."""
        ...


LOCAL_BUCKET = "local"
"""The pseudo-bucket name the local queue's S3 events carry for a ``LocalStore``."""


def event_bucket(store: ObjectStore) -> str:
    """The bucket name S3 events about ``store``'s objects carry: the S3 bucket, or the
    local store's pseudo-bucket. The pipeline labels nothing named by another bucket."""
    return store.bucket or LOCAL_BUCKET


def make_store(settings: Settings) -> ObjectStore:
    """The store the settings ask for (no network calls are made here)."""
    url = settings.resolved_storage_url
    if url.startswith("s3://"):
        from labelkit.storage.s3 import S3Store

        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Store(bucket=bucket, prefix=prefix, region=settings.aws_region, sse=settings.s3_sse)
    from labelkit.storage.local import LocalStore

    return LocalStore(url)
