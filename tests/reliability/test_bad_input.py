"""A corpus of bad and odd inputs (generated from ``labelkit/testing/photos.py`` and
``tests/support/bombs.py``) through every way in: ``upload_image``, the dashboard's upload
page (AppTest file_uploader), and the worker (bytes put straight into the store under a
row's key, labelled by a real ``python -m sqs_listener`` process with the real local model).

Every input ends either labelled or refused/failed with a reason a person can read; a
refused upload leaves no row, no object and no message; the worker never dies.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import Image as ImageRow
from labelkit.db.models import ImageStatus, QueueMessageRow
from labelkit.db.queries import images as image_q
from labelkit.domain import Viewer
from labelkit.queue.events import make_s3_event
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.testing import photos as f
from labelkit.uploads import upload_image
from tests.dashboard.conftest import APP
from tests.reliability.harness import (
    MODEL_DIR,
    local_listener_env,
    make_owner,
    point_dashboard_at,
    start_listener,
    stop,
    unsettled,
    wait_until,
)
from tests.support import bombs

MAX_UPLOAD_BYTES = 3 * 1024 * 1024  # small, so one corpus entry is "too big" cheaply
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


@dataclass(frozen=True)
class Case:
    kind: str
    filename: str
    data: bytes
    accepted: bool  # by upload intake


def _photo(seed: int) -> bytes:
    return f.encode(f.photo(160, 107, noise=8, seed=100 + seed), "JPEG", quality=85)


def _png(im: Image.Image) -> bytes:
    return f.encode(im, "PNG")


_REFUSED: dict[str, Callable[[], bytes]] = {
    "zero bytes": lambda: b"",
    "random bytes": f.random_bytes,
    "HTML named .jpg": f.html,
    "SVG named .jpg": f.svg,
    "PDF named .jpg": f.pdf,
    "ZIP named .jpg": f.zip_archive,
    "Word document named .jpg": f.docx,
    "plain text named .jpg": f.text,
    "ELF program named .jpg": f.elf,
    "Windows program named .jpg": f.windows_exe,
    "HEIC": f.heic_header,
    "truncated JPEG": lambda: f.truncated(f.jpeg(320, 214)),
    "truncated PNG": lambda: f.truncated(f.png(64, 48)),
    "PNG decompression bomb": f.png_bomb,
    "GIF decompression bomb (screen)": f.gif_bomb,
    "GIF decompression bomb (frame)": f.gif_frame_bomb,
    "TIFF decompression bomb": f.tiff_bomb,
    "JPEG header bomb": f.jpeg_header_bomb,
    "too many bytes (4 MB PNG, limit 3 MB)": lambda: f.png_with_big_exif_chunk(4),
    # issue 15: CPU and memory bombs, broken PNGs that look whole (tests/support/bombs.py)
    "progressive JPEG with 2,000 repeated scans": bombs.progressive_scan_bomb,
    "JPEG of 700,000 empty APP segments": lambda: bombs.app_segment_bomb(700_000),
    "PNG with good CRCs and broken pixel data": bombs.corrupt_deflate_png,
    "PNG missing 90% of its rows": bombs.partial_png,
    "PNG zTXt chunk inflating to 50 MB": bombs.text_chunk_bomb,
    "PNG colour profile inflating to 50 MB": lambda: bombs.text_chunk_bomb(b"iCCP"),
    "PNG with 70 MB of text in 1 MB chunks": bombs.many_text_chunks_png,
    "PNG of 150,000 chunks": bombs.many_chunks_png,
}

_ACCEPTED: dict[str, Callable[[], bytes]] = {
    "1x1 image": lambda: _png(Image.new("RGB", (1, 1), (200, 30, 30))),
    "100000x1 image": lambda: _png(Image.new("L", (100_000, 1), 128)),
    "1x20000 JPEG": lambda: f.encode(Image.new("RGB", (1, 20_000), (30, 90, 200)), "JPEG"),
    "CMYK JPEG": f.cmyk_jpeg,
    "16-bit grey PNG": f.png16_grey,
    "16-bit RGB PNG": f.png16_rgb_raw,
    "animated GIF": f.animated_gif,
    "animated WebP": f.animated_webp,
    "multi-page TIFF": f.multipage_tiff,
    "EXIF-rotated JPEG": f.exif_rotated_jpeg,
    "huge EXIF JPEG": f.huge_exif_jpeg,
    "broken EXIF JPEG": f.broken_exif_jpeg,
    "PNG with 2 MB eXIf chunk": lambda: f.png_with_big_exif_chunk(2),
    "palette PNG with transparency": f.palette_png_transparent,
    "grey+alpha PNG": f.la_png,
    "JPEG with an early end marker": lambda: f.flipped_bytes(f.jpeg(320, 214)),
    "49 MP float TIFF (311 kB)": bombs.float_tiff,
    "49 MP RGBA PNG (208 kB)": bombs.rgba_png,
}

_NAMES: dict[str, str] = {
    "name with ../": "../../../etc/passwd.jpg",
    "name with a backslash path": "..\\..\\windows\\win.ini.jpg",
    "name with NUL": "photo\x00.php.jpg",
    "name of 300 characters": "a" * 296 + ".jpg",
    "name with RTL override": "invoice\u202egpj.exe",
    "name in Hebrew (RTL)": "תמונה של חתול.jpg",
    "name with emoji": "🐱 cat 👩‍👩‍👧.jpg",
    "name with <script>": "<script>alert(1)</script>.jpg",
    "name with <img onerror>": "<img src=x onerror=alert(1)>.jpg",
    "name with newlines and tabs": "two\nlines\tand\rreturns.jpg",
}


def corpus() -> list[Case]:
    cases = [Case(k, f"{k}.jpg", make(), False) for k, make in _REFUSED.items()]
    cases += [Case(k, f"{k}.jpg", make(), True) for k, make in _ACCEPTED.items()]
    cases += [Case(k, name, _photo(i), True) for i, (k, name) in enumerate(_NAMES.items())]
    assert len({hashlib.sha256(c.data).digest() for c in cases}) == len(cases), "duplicate bytes"
    return cases


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return corpus()


def _settings(tmp_path: Path, **extra: int) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", model_dir=MODEL_DIR, max_upload_bytes=MAX_UPLOAD_BYTES, **extra
    )


def _footprint(services: Services) -> tuple[int, int, int]:
    """(image rows, stored files, queue messages): what an upload may write."""
    with transaction(services.engine) as s:
        rows = int(s.scalar(select(func.count()).select_from(ImageRow)) or 0)
        messages = int(s.scalar(select(func.count()).select_from(QueueMessageRow)) or 0)
    root = Path(services.settings.resolved_storage_url)
    files = sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    return rows, files, messages


def _assert_safe_name(name: str) -> None:
    assert name and len(name) <= 200
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not BIDI.search(name) and not any(ord(c) < 0x20 for c in name)


def test_corpus_has_at_least_25_kinds(cases: list[Case]) -> None:
    assert len(cases) >= 25
    assert sum(not c.accepted for c in cases) >= 15 and sum(c.accepted for c in cases) >= 15


def test_upload_path_labels_or_refuses_each_and_writes_nothing_half_way(
    tmp_path: Path, cases: list[Case]
) -> None:
    # GIVEN an empty Labelkit and one user
    services = build_services(_settings(tmp_path))
    owner = make_owner(services)
    for case in cases:
        before = _footprint(services)
        # WHEN each file of the corpus is uploaded
        result = upload_image(services=services, owner_id=owner, filename=case.filename, data=case.data)
        after = _footprint(services)
        # THEN it is accepted with one row, one object and one message, or refused with a
        # reason and nothing written at all
        _assert_safe_name(result.name)
        if case.accepted:
            assert result.outcome == "accepted", (case.kind, result)
            assert after == tuple(n + 1 for n in before), case.kind
            with transaction(services.engine) as s:
                img = image_q.get_image(
                    session=s, viewer=Viewer(user_id=owner), image_id=result.image_id or ""
                )
            assert re.fullmatch(rf"users/{owner}/[0-9a-f]{{32}}\.(jpg|png|gif|webp|tiff?)", img.object_key)
            assert img.original_name == result.name and img.status == ImageStatus.PENDING
        else:
            assert result.outcome == "rejected", (case.kind, result)
            assert result.image_id is None and result.reason and len(result.reason) > 10, case.kind
            assert "Traceback" not in result.reason and "Error" not in result.reason
            assert after == before, f"{case.kind}: a refused upload wrote {after} (was {before})"


def test_dashboard_upload_page_reports_each_file(
    tmp_path: Path, cases: list[Case], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the dashboard's upload page, signed in
    settings = _settings(tmp_path)
    services = build_services(settings)
    point_dashboard_at(settings, monkeypatch)
    monkeypatch.setenv("LABELKIT_MAX_UPLOAD_BYTES", str(MAX_UPLOAD_BYTES))
    owner = make_owner(services, "uploader")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["principal"] = Principal(user_id=owner, username="uploader")
    at.run()
    at.switch_page("app_pages/upload.py").run()
    # WHEN the whole corpus is dropped on the file uploader at once
    at.file_uploader[0].set_value([(c.filename, c.data, "image/jpeg") for c in cases]).run()
    # THEN the page lists every file with its outcome, and the database holds the accepted only
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    n_ok = sum(c.accepted for c in cases)
    assert metrics == {"Accepted": str(n_ok), "Duplicates": "0", "Rejected": str(len(cases) - n_ok)}
    # (grouped: the accepted files, queued as no worker runs here, then the rejected ones with
    # their reasons, each group in upload order)
    queued = [m.value for m in at.markdown if "queued for labelling" in m.value]
    refused = [m.value for m in at.markdown if "rejected:" in m.value]
    assert len(queued) == n_ok and len(refused) == len(cases) - n_ok
    for case, line in zip([c for c in cases if not c.accepted], refused, strict=True):
        reason = line.split("rejected:", 1)[1].strip()
        assert len(reason) > 10, (case.kind, line)
    assert _footprint(services) == (n_ok, n_ok, n_ok)


@pytest.mark.slow
@pytest.mark.model
def test_worker_labels_or_fails_each_and_never_dies(tmp_path: Path, cases: list[Case]) -> None:
    # GIVEN the corpus twice: uploaded (the accepted ones are queued), and put straight into
    # the store under rows' keys with a message each (as a client writing to S3 would)
    settings = _settings(tmp_path, queue_visibility_timeout=2, queue_max_receives=2)
    services = build_services(settings)
    owner = make_owner(services)
    uploaded = []
    for case in cases:
        result = upload_image(services=services, owner_id=owner, filename=case.filename, data=case.data)
        if result.image_id:
            uploaded.append(result.image_id)
    direct: dict[str, Case] = {}
    for case in cases:
        with transaction(services.engine) as s:
            img = image_q.create_image(
                session=s,
                owner_id=owner,
                original_name=case.kind,
                content_type="image/jpeg",
                extension=".jpg",
                size_bytes=len(case.data),
                width=0,
                height=0,
                sha256="direct-" + hashlib.sha256(case.data).hexdigest()[:50],
            )
            direct[img.id], key = case, img.object_key
        services.store.put(key, case.data, content_type="image/jpeg")
        services.queue.send(make_s3_event(bucket="local", key=key, size=len(case.data)))
    ids = uploaded + list(direct)

    # WHEN one real listener process works through all of it
    proc = start_listener(local_listener_env(settings), tmp_path, tmp_path / "listener.log")
    try:
        wait_until(lambda: unsettled(services, ids) == 0, timeout=150, what="every image to settle")
        alive = proc.poll() is None
    finally:
        stop(proc)
    log = (tmp_path / "listener.log").read_text(errors="replace")

    # THEN the worker is still alive, and every image ended labelled or failed with a reason
    assert alive, f"the listener died:\n{log[-3000:]}"
    with transaction(services.engine) as s:
        rows = {i.id: i for i in s.scalars(select(ImageRow).where(ImageRow.id.in_(ids)))}
    for image_id in uploaded:
        assert rows[image_id].status == ImageStatus.LABELLED, (
            rows[image_id].original_name,
            rows[image_id].failure_reason,
        )
    for image_id, case in direct.items():
        row = rows[image_id]
        assert row.status in (ImageStatus.LABELLED, ImageStatus.FAILED), case.kind
        if row.status == ImageStatus.FAILED:
            assert row.failure_reason and len(row.failure_reason) > 10, case.kind
            assert "Traceback" not in row.failure_reason
        if case.accepted:
            assert row.status == ImageStatus.LABELLED, (case.kind, row.failure_reason)
        elif not case.kind.startswith("too many bytes"):  # the byte limit is an upload limit
            assert row.status == ImageStatus.FAILED, case.kind
    assert "unexpected error handling message" not in log
