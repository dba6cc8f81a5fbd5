"""``LocalStore``: objects as files under one folder.

Keys are checked twice: syntactically (:func:`check_key`, shared with
``S3Store``) and, after resolving symlinks, by verifying the final path is
still inside the root. Writes are atomic: a temporary file in the same folder is
written, flushed to disk and renamed over the target with ``os.replace``, so a
reader never sees half an image.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from labelkit.errors import ObjectNotFound, StorageError
from labelkit.storage import LIST_PAGE, StoredObject

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 1024  # S3's limit, in UTF-8 bytes


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative '/'-separated key, else raise ``StorageError``.

    Rejected: empty keys, absolute keys, backslashes, NUL and other control
    characters, empty segments (``a//b``, a trailing ``/``), ``.`` and ``..``.
    """
    if not isinstance(key, str) or not key:
        raise StorageError("empty object key")
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_LENGTH:
        raise StorageError("object key is too long")
    if key.startswith("/"):
        raise StorageError(f"absolute object key refused: {key!r}")
    if "\\" in key:
        raise StorageError(f"backslash in object key refused: {key!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise StorageError(f"control character in object key refused: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise StorageError(f"object key has an empty, '.' or '..' segment: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is '' or a safe folder of keys (a key ending in '/'), else raise
    ``StorageError``."""
    if prefix:
        if not prefix.endswith("/"):
            raise StorageError(f"a listing prefix is a folder ending in '/': {prefix!r}")
        check_key(prefix[:-1])
    return prefix


def _is_partial(name: str) -> bool:
    """A temporary file of a write in progress (or cut short), not an object."""
    return name.startswith(".tmp-") and name.endswith(".part")


class LocalStore:
    """An ``ObjectStore`` backed by a folder (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    @property
    def bucket(self) -> str | None:
        return None

    def full_key(self, key: str) -> str:
        return check_key(key)

    def relative_key(self, full_key: str) -> str:
        return check_key(full_key)

    def path(self, key: str) -> Path:
        """The resolved file path for ``key``; refuses anything outside the root."""
        check_key(key)
        candidate = self.root.joinpath(*key.split("/"))
        try:
            # Resolving follows symlinks in every existing component, so a
            # link pointing outside the root is caught here.
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as e:  # RuntimeError: symlink loop on older Pythons
            raise StorageError(f"cannot resolve object key {key!r}: {e}") from e
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise StorageError(f"object key escapes the store: {key!r}")
        return resolved

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        # The content type is not stored: local readers sniff images from their bytes.
        target = self.path(key)
        tmp_name: str | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Re-check after creating folders: a component may be a fresh symlink.
            if not target.parent.resolve().is_relative_to(self.root):
                raise StorageError(f"object key escapes the store: {key!r}")
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
            tmp_name = None
        except OSError as e:
            raise StorageError(f"cannot write {key!r}: {e}") from e
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    logger.warning("could not remove temporary file %s", tmp_name)

    def get(self, key: str) -> bytes:
        target = self.path(key)
        try:
            return target.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise ObjectNotFound(key) from e
        except OSError as e:
            raise StorageError(f"cannot read {key!r}: {e}") from e

    def iter_chunks(self, key: str, *, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        """The file in pieces of at most ``chunk_bytes`` (see ``ObjectStore.iter_chunks``)."""
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        target = self.path(key)
        try:
            f = target.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise ObjectNotFound(key) from e
        except OSError as e:
            raise StorageError(f"cannot read {key!r}: {e}") from e
        with f:
            while True:
                try:
                    chunk = f.read(chunk_bytes)
                except OSError as e:
                    raise StorageError(f"cannot read {key!r}: {e}") from e
                if not chunk:
                    return
                yield chunk

    def delete(self, key: str) -> None:
        target = self.path(key)
        try:
            target.unlink(missing_ok=True)
        except (NotADirectoryError, IsADirectoryError):
            return  # no object by that key
        except OSError as e:
            raise StorageError(f"cannot delete {key!r}: {e}") from e

    def exists(self, key: str) -> bool:
        target = self.path(key)
        try:
            return target.is_file()
        except OSError as e:
            raise StorageError(f"cannot check {key!r}: {e}") from e

    def list_objects(self, prefix: str, *, after: str = "", limit: int = LIST_PAGE) -> list[StoredObject]:
        """Up to ``limit`` files under the folder ``prefix`` with keys after ``after``, in key
        order (see ``ObjectStore.list_objects``). Walked folder by folder, each folder's entries
        sorted as their keys sort (a folder ``a`` as ``a/``), skipping folders whose keys all
        sort at or before ``after``: a page costs the folders on its way, not the whole tree.
        Symbolic links and temporary files are not objects."""
        folder = self.path(check_prefix(prefix)[:-1]) if prefix else self.root
        found: list[StoredObject] = []
        if limit < 1:
            return found
        try:
            for key, entry in self._walk(folder, prefix, after):
                found.append(StoredObject(key=key, modified=entry.stat(follow_symlinks=False).st_mtime))
                if len(found) >= limit:
                    break
        except OSError as e:
            raise StorageError(f"cannot list {prefix!r}: {e}") from e
        return found

    def _walk(self, folder: Path, prefix: str, after: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        named: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                named.append((f"{prefix}{entry.name}/", entry, True))
            elif entry.is_file(follow_symlinks=False) and not _is_partial(entry.name):
                named.append((prefix + entry.name, entry, False))
        for key, entry, is_dir in sorted(named, key=lambda n: n[0]):
            if is_dir:
                if after > key and not after.startswith(key):
                    continue  # every key in it sorts before ``after``
                yield from self._walk(Path(entry.path), key, after)
            elif key > after:
                yield key, entry

    def remove_stale_partials(self, *, older_than_seconds: int) -> int:
        """Remove ``.tmp-*.part`` files (writes cut short by a kill) older than the given age."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for tmp in self.root.rglob(".tmp-*.part"):
            try:
                if tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except OSError:
                logger.warning("could not remove stale temporary file %s", tmp, exc_info=True)
        return removed
