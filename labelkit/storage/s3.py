"""``S3Store``: objects in an S3 bucket under an optional prefix.

The boto3 client is injected or built lazily on first use (never at import or
construction time). Callers see relative keys; :meth:`S3Store.full_key` adds the
prefix and :meth:`S3Store.relative_key` strips it again (for keys arriving in S3
event notifications). Errors are translated at this edge: a missing object is
``ObjectNotFound``, every other ``ClientError``/``BotoCoreError`` is ``StorageError``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from labelkit import aws
from labelkit.errors import ObjectNotFound, StorageError
from labelkit.storage import LIST_PAGE, StoredObject
from labelkit.storage.local import check_key, check_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Store:
    """An ``ObjectStore`` backed by ``s3://bucket/prefix``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        region: str = "us-east-1",
        sse: str = "AES256",
        client: S3Client | None = None,
    ) -> None:
        if not bucket:
            raise StorageError("S3Store needs a bucket name")
        self._bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.region = region
        self.sse = sse
        self._client = client
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store(bucket={self._bucket!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> S3Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = aws.client("s3", region=self.region)
        return self._client

    @property
    def bucket(self) -> str | None:
        return self._bucket

    def full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def relative_key(self, full_key: str) -> str:
        if self.prefix:
            head = self.prefix + "/"
            if not full_key.startswith(head):
                raise StorageError(f"key {full_key!r} is outside the prefix {self.prefix!r}")
            full_key = full_key[len(head) :]
        return check_key(full_key)

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self.full_key(key),
            "Body": data,
            "ContentType": content_type,
        }
        if self.sse:
            kwargs["ServerSideEncryption"] = self.sse
        try:
            self.client.put_object(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"cannot write s3://{self._bucket}/{kwargs['Key']}: {e}") from e

    def get(self, key: str) -> bytes:
        full = self.full_key(key)
        try:
            resp = self.client.get_object(Bucket=self._bucket, Key=full)
            return resp["Body"].read()
        except ClientError as e:
            if aws.error_code(e) in _MISSING_CODES:
                raise ObjectNotFound(key) from e
            raise StorageError(f"cannot read s3://{self._bucket}/{full}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"cannot read s3://{self._bucket}/{full}: {e}") from e

    def iter_chunks(self, key: str, *, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        """The object in pieces of at most ``chunk_bytes``, read from one GetObject as they
        are asked for (see ``ObjectStore.iter_chunks``)."""
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        full = self.full_key(key)
        where = f"s3://{self._bucket}/{full}"
        try:
            body = self.client.get_object(Bucket=self._bucket, Key=full)["Body"]
        except ClientError as e:
            if aws.error_code(e) in _MISSING_CODES:
                raise ObjectNotFound(key) from e
            raise StorageError(f"cannot read {where}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"cannot read {where}: {e}") from e
        try:
            while True:
                try:
                    chunk = body.read(chunk_bytes)
                except (ClientError, BotoCoreError, OSError) as e:
                    # botocore wraps urllib3's read errors; a bare socket error is an OSError.
                    raise StorageError(f"cannot read {where}: {e}") from e
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def delete(self, key: str) -> None:
        full = self.full_key(key)
        try:
            # S3 answers 204 for a missing key too.
            self.client.delete_object(Bucket=self._bucket, Key=full)
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"cannot delete s3://{self._bucket}/{full}: {e}") from e

    def exists(self, key: str) -> bool:
        full = self.full_key(key)
        try:
            self.client.head_object(Bucket=self._bucket, Key=full)
            return True
        except ClientError as e:
            if aws.error_code(e) in _MISSING_CODES:
                return False
            raise StorageError(f"cannot check s3://{self._bucket}/{full}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"cannot check s3://{self._bucket}/{full}: {e}") from e

    def list_objects(self, prefix: str, *, after: str = "", limit: int = LIST_PAGE) -> list[StoredObject]:
        """Up to ``limit`` objects under ``prefix`` (within the store's prefix) after ``after``,
        in key order (see ``ObjectStore.list_objects``): ListObjectsV2 pages of at most 1,000."""
        check_prefix(prefix)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": full_prefix}
        if after:  # a place in the key order, not necessarily a key: not checked as one
            kwargs["StartAfter"] = f"{self.prefix}/{after}" if self.prefix else after
        found: list[StoredObject] = []
        try:
            while len(found) < limit:
                page = self.client.list_objects_v2(**kwargs, MaxKeys=min(LIST_PAGE, limit - len(found)))
                for o in page.get("Contents", []):
                    try:
                        key = self.relative_key(o["Key"])
                    except StorageError:  # not a key Labelkit writes (e.g. "a//b"): not ours to list
                        continue
                    found.append(StoredObject(key=key, modified=o["LastModified"].timestamp()))
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"cannot list s3://{self._bucket}/{full_prefix}: {e}") from e
        return found

    def remove_stale_partials(self, *, older_than_seconds: int) -> int:
        """Nothing to do: a PutObject is atomic (the bucket's lifecycle rule aborts
        incomplete multipart uploads)."""
        return 0

    def presigned_url(self, key: str, expires: int = 3600) -> str:
        """A time-limited GET URL for ``key`` (signing is local: no request is made)."""
        full = self.full_key(key)
        try:
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": full}, ExpiresIn=expires
            )
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"cannot sign a URL for s3://{self._bucket}/{full}: {e}") from e
