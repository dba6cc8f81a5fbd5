"""Large files the dashboard makes for one person (export bundles), kept on disk and sent from
disk by an authenticated route, never held whole in memory.

Why not ``st.download_button``: Streamlit 1.67 keeps every download in memory (bytes as
given; a file object is read whole; a callable's result is stored in its
``MemoryMediaFileStorage``), so a 1 GB bundle would cost the dashboard 1 GB.

How: the page writes the file inside :func:`prepare`, into ``<data_dir>/downloads/`` (mode
0700) under a random 256-bit token (no part of any name on disk comes from a person), with
a small JSON record beside it: whose it is, the name to save it under, when it was made.
``GET /download/<token>`` (:func:`route`) sends it in 1 MiB pieces, only to a request whose
session is that person's (anyone else, signed in or not, gets 404, as for a file that does
not exist), and removes it once it has been sent whole (a second try is told so: 410). A
download cut short leaves the file for another try. Files are removed at the latest
:data:`KEEP_SECONDS` after they were made (swept at every :func:`prepare` and every
request); a person keeps one prepared file: preparing another removes the earlier ones.

Mounting (``dashboard/web.py``)::

    from dashboard import downloads

    def _download_principal(request: Request) -> Principal | None:
        name = cookie_name(COOKIE_NAME, secure=_is_https(request.scope))
        return session_store().resume(request.cookies.get(name))

    ROUTES = [..., downloads.route(_download_principal)]

``principal_of`` is called in a worker thread with the request and returns who is signed in
(or None; a database error answers 503). Unless the route is served (:func:`served`: a
dashboard run as ``streamlit run dashboard/streamlit_app.py``, or AppTest), the page offers
the file through Streamlit's download button instead (read whole: the only way it has).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final
from urllib.parse import quote

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from labelkit.auth import Principal
from labelkit.settings import Settings, get_settings

logger = logging.getLogger(__name__)

PATH_PREFIX: Final = "/download/"
KEEP_SECONDS: Final = 3600
CHUNK_BYTES: Final = 1024 * 1024
# Room left on the disk besides the file itself, so a download never fills it up.
SPARE_BYTES: Final = 200 * 1024 * 1024
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_DATA: Final = ".bin"
_RECORD: Final = ".json"

# Set by route(): the route is among the app's routes (see served()).
MOUNTED = False


def served() -> bool:
    """Whether this process answers ``/download/<token>``: the route was made (:func:`route`,
    in ``dashboard.web.ROUTES``) and the app runs as ``dashboard/asgi.py`` serves it (its
    middleware is installed: ``dashboard.web.SERVED``). Read without importing ``web``."""
    web = sys.modules.get("dashboard.web")
    return MOUNTED and bool(getattr(web, "SERVED", False))


def directory(settings: Settings) -> Path:
    """Where prepared downloads are kept: ``<data_dir>/downloads``."""
    return settings.data_dir / "downloads"


class NotEnoughSpace(OSError):
    """The disk has not room for the file (checked before a byte is written)."""


@dataclass(slots=True)
class Prepared:
    """One file being written (inside :func:`prepare`) or ready to be fetched (after it)."""

    token: str
    file_name: str
    mime: str
    path: Path
    file: BinaryIO | None = field(default=None, repr=False)
    size: int = 0

    @property
    def url(self) -> str:
        return url(self.token)


def url(token: str) -> str:
    """Where the route serves the download ``token``."""
    return f"{PATH_PREFIX}{token}"


def file_path(root: Path, token: str) -> Path:
    """The prepared file of ``token`` (``ValueError`` for anything that is not a token)."""
    return _paths(root, token)[0]


def _paths(root: Path, token: str) -> tuple[Path, Path]:
    if not _TOKEN.fullmatch(token):
        raise ValueError("not a download token")
    return root / f"{token}{_DATA}", root / f"{token}{_RECORD}"


def discard(root: Path, token: str) -> None:
    """Remove a prepared download (nothing happens if it is gone already)."""
    for path in _paths(root, token):
        path.unlink(missing_ok=True)


def _remove_data(root: Path, token: str) -> None:
    _paths(root, token)[0].unlink(missing_ok=True)


def sweep(root: Path, *, keep_seconds: int = KEEP_SECONDS, now: float | None = None) -> int:
    """Remove downloads (finished or cut short) untouched for ``keep_seconds``; how many."""
    if not root.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - keep_seconds
    removed = 0
    for path in root.iterdir():
        if path.suffix not in (_DATA, _RECORD) or not _TOKEN.fullmatch(path.stem):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += path.suffix == _DATA
        except FileNotFoundError:
            continue  # removed meanwhile (sent, or another sweep)
    return removed


def _records(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in root.glob(f"*{_RECORD}"):
        record = _read_record(root, path.stem)
        if record is not None:
            yield path.stem, record


def _read_record(root: Path, token: str) -> dict[str, Any] | None:
    if not _TOKEN.fullmatch(token):
        return None
    try:
        record = json.loads(_paths(root, token)[1].read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        logger.warning("unreadable download record %s ignored", token, exc_info=True)
        return None
    return record if isinstance(record, dict) else None


@contextmanager
def prepare(
    root: Path, *, owner_id: str, file_name: str, mime: str, expected_bytes: int = 0
) -> Iterator[Prepared]:
    """A new file for ``owner_id`` to download as ``file_name``: write it to ``.file`` inside
    the block. Afterwards it can be fetched at ``.url`` (by that person only) and ``.size``
    says how big it is; if the block fails (or the page's run is stopped) nothing is left.
    Raises :class:`NotEnoughSpace` first if the disk has not ``expected_bytes`` to spare."""
    sweep(root)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if expected_bytes and free < expected_bytes + SPARE_BYTES:
        raise NotEnoughSpace(
            f"the server has {free / 1e9:.1f} GB of free disk, not enough for a "
            f"{expected_bytes / 1e9:.1f} GB file and {SPARE_BYTES / 1e9:.1f} GB to spare"
        )
    for token, record in list(_records(root)):
        if record.get("owner_id") == owner_id:
            discard(root, token)  # one prepared file a person
    token = secrets.token_urlsafe(32)
    data_path, record_path = _paths(root, token)
    prepared = Prepared(token=token, file_name=file_name, mime=mime, path=data_path)
    try:
        with data_path.open("xb") as f:
            os.chmod(data_path, 0o600)
            prepared.file = f
            yield prepared
        prepared.file = None
        prepared.size = data_path.stat().st_size
        partial = record_path.with_name(record_path.name + ".part")
        partial.write_text(
            json.dumps(
                {
                    "owner_id": owner_id,
                    "file_name": file_name,
                    "mime": mime,
                    "size": prepared.size,
                    "created": time.time(),
                }
            ),
            encoding="utf-8",
        )
        partial.replace(record_path)
    except BaseException:
        # Failed, or the page's run was stopped (a rerun raises inside the block): keep nothing.
        data_path.unlink(missing_ok=True)
        record_path.with_name(record_path.name + ".part").unlink(missing_ok=True)
        raise


def is_ready(root: Path, token: str, *, owner_id: str) -> bool:
    """Whether ``token`` is still there for ``owner_id`` to fetch (not sent, not expired)."""
    record = _read_record(root, token)
    return bool(
        record is not None
        and record.get("owner_id") == owner_id
        and time.time() - float(record.get("created", 0)) < KEEP_SECONDS
        and _paths(root, token)[0].is_file()
    )


def _content_disposition(file_name: str) -> str:
    ascii_name = file_name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name)}"


def _not_found() -> Response:
    return PlainTextResponse("Not found", status_code=404, headers={"cache-control": "no-store"})


async def _send_file(fd: BinaryIO, root: Path, token: str) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(fd.read, CHUNK_BYTES)
            if not chunk:
                break
            yield chunk
        # Reached only once every piece was handed on: a download cut short (the client
        # went away, the task was cancelled) stops at a yield above and keeps the file. The
        # record stays until swept, so a second click is told the file was downloaded.
        await anyio.to_thread.run_sync(_remove_data, root, token)
    finally:
        fd.close()


def route(
    principal_of: Callable[[Request], Principal | None],
    *,
    root: Callable[[], Path] | None = None,
) -> Route:
    """``GET /download/<token>``: the prepared file, to its owner only (see the module)."""
    global MOUNTED
    folder = root or (lambda: directory(get_settings()))

    async def download(request: Request) -> Response:
        token = str(request.path_params.get("token", ""))
        if not _TOKEN.fullmatch(token):
            return _not_found()
        try:
            who = await anyio.to_thread.run_sync(principal_of, request)
        except SQLAlchemyError:
            logger.warning("download: the database did not answer", exc_info=True)
            return PlainTextResponse(
                "The service is temporarily unavailable: try again in a minute.",
                status_code=503,
                headers={"cache-control": "no-store", "retry-after": "30"},
            )
        if who is None:
            return _not_found()
        where = folder()
        record = await anyio.to_thread.run_sync(_read_record, where, token)
        await anyio.to_thread.run_sync(sweep, where)
        if record is None or record.get("owner_id") != who.user_id:
            return _not_found()
        try:
            if time.time() - float(record.get("created", 0)) >= KEEP_SECONDS:
                await anyio.to_thread.run_sync(_remove_data, where, token)
                raise FileNotFoundError(token)
            fd = await anyio.to_thread.run_sync(_paths(where, token)[0].open, "rb")
        except FileNotFoundError:
            return PlainTextResponse(
                "This download is gone: it was downloaded already, or made more than an hour ago. "
                "Prepare it again on the Export page.",
                status_code=410,
                headers={"cache-control": "no-store"},
            )
        headers = {
            "content-disposition": _content_disposition(str(record.get("file_name") or "download")),
            "content-length": str(os.fstat(fd.fileno()).st_size),
            "cache-control": "private, no-store",
        }
        media_type = str(record.get("mime") or "application/octet-stream")
        if request.method == "HEAD":
            fd.close()
            return Response(headers=headers, media_type=media_type)
        return StreamingResponse(_send_file(fd, where, token), headers=headers, media_type=media_type)

    MOUNTED = True
    return Route(PATH_PREFIX + "{token}", download, methods=["GET"])
