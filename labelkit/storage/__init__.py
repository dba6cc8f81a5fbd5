"""Object storage: the ``ObjectStore`` protocol and its adapters.

``LocalStore`` keeps objects in a folder (the default, ``./data/images``);
``S3Store`` keeps them in an S3 bucket under a prefix. :func:`make_store`
picks one from the settings' ``storage_url``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from labelkit.settings import Settings


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
