"""A real listener (``python -m sqs_listener``, the real model) fed CPU and memory bombs.

The bombs go straight into the store under rows' keys, as a client writing to S3 would,
so intake at upload never saw them: the worker's own decode must hold. Memory is the
listener's own high-water mark (``VmHWM``) against its size once warm (model loaded,
one photo labelled); its decoder children are capped and measured in
``tests/security/test_decode_bombs.py``. No timing is asserted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from labelkit.db.engine import transaction
from labelkit.db.models import Image as ImageRow
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.queue.events import make_s3_event
from labelkit.services import Services, build_services
from tests.reliability.harness import (
    local_listener_env,
    local_settings,
    make_owner,
    photos,
    start_listener,
    stop,
    unsettled,
    upload_many,
    wait_until,
)
from tests.support import bombs

pytestmark = [pytest.mark.slow, pytest.mark.model]

TARGET_MB = 600


def _status_mb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def _put_directly(services: Services, owner: str, name: str, data: bytes) -> str:
    """A row, its object and a message, bypassing intake (as a direct S3 write would)."""
    with transaction(services.engine) as s:
        img = image_q.create_image(
            session=s,
            owner_id=owner,
            original_name=name,
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=len(data),
            width=0,
            height=0,
            sha256="direct-" + hashlib.sha256(data).hexdigest()[:50],
        )
        image_id, key = img.id, img.object_key
    services.store.put(key, data, content_type="image/jpeg")
    services.queue.send(make_s3_event(bucket="local", key=key, size=len(data)))
    return image_id


def _rows(services: Services, ids: list[str]) -> dict[str, ImageRow]:
    with transaction(services.engine) as s:
        return {i.id: i for i in s.scalars(select(ImageRow).where(ImageRow.id.in_(ids)))}


def test_listener_labels_memory_bombs_within_the_target_and_refuses_cpu_bombs(tmp_path: Path) -> None:
    # GIVEN a warm listener (model loaded, one photo labelled)
    settings = local_settings(tmp_path / "data", visibility=30, max_receives=2)
    services = build_services(settings)
    owner = make_owner(services)
    log = tmp_path / "listener.log"
    proc = start_listener(local_listener_env(settings), tmp_path, log)
    try:
        warm = upload_many(services, owner, photos(1, (640, 427)))
        wait_until(lambda: unsettled(services, warm) == 0, timeout=180, what="the warm-up photo")
        idle_mb = _status_mb(proc.pid, "VmRSS")

        # WHEN bombs arrive straight in the store, then ordinary photos behind them
        corpus: dict[str, Callable[[], bytes]] = {
            "scan bomb (2,000 scans)": bombs.progressive_scan_bomb,
            "20 MB of empty APP segments": bombs.app_segment_bomb,
            "49 MP float TIFF": bombs.float_tiff,
            "49 MP RGBA PNG": bombs.rgba_png,
            "zTXt bomb": bombs.text_chunk_bomb,
            "PNG missing 90% of its rows": bombs.partial_png,
            "PNG with broken pixel data": bombs.corrupt_deflate_png,
        }
        hostile = {_put_directly(services, owner, name, make()): name for name, make in corpus.items()}
        behind = upload_many(services, owner, photos(6))
        ids = list(hostile) + behind
        wait_until(lambda: unsettled(services, ids) == 0, timeout=300, what="every image to settle")
        alive = proc.poll() is None
        peak_mb = _status_mb(proc.pid, "VmHWM") if alive else -1
    finally:
        stop(proc)
    text = log.read_text(errors="replace")

    # THEN the listener is alive and grew less than the target above its warm size
    assert alive, f"the listener died:\n{text[-3000:]}"
    assert peak_mb - idle_mb < TARGET_MB, f"listener grew from {idle_mb} MB to {peak_mb} MB"
    # AND the big-but-legal images are labelled, the bombs failed with their reasons,
    # and the photos behind them labelled
    rows = _rows(services, ids)
    outcome = {hostile[i]: (rows[i].status, rows[i].failure_reason or "") for i in hostile}
    assert outcome["49 MP float TIFF"][0] == ImageStatus.LABELLED, outcome
    assert outcome["49 MP RGBA PNG"][0] == ImageStatus.LABELLED, outcome
    expected = {
        "scan bomb (2,000 scans)": "scans over 7,000 × 7,000 pixels",
        "20 MB of empty APP segments": "too many segments",
        "zTXt bomb": "embedded text is too large",
        "PNG missing 90% of its rows": "incomplete",
        "PNG with broken pixel data": "damaged",
    }
    for name, words in expected.items():
        status, reason = outcome[name]
        assert status == ImageStatus.FAILED and words in reason, (name, status, reason)
    assert all(rows[i].status == ImageStatus.LABELLED for i in behind)
    assert "unexpected error handling message" not in text


def test_a_decode_past_the_deadline_fails_its_image_and_the_worker_goes_on(tmp_path: Path) -> None:
    # GIVEN a listener whose decodes may take 0.1 s, and two legal 12-scan progressive
    # JPEGs of 49 megapixels (under the limit of scans times pixels) that take ~0.5 s each to
    # decode, then ordinary photos
    settings = local_settings(tmp_path / "data", visibility=30, max_receives=2)
    services = build_services(settings)
    owner = make_owner(services)
    env = {**local_listener_env(settings), "LABELKIT_DECODE_TIMEOUT_SECONDS": "0.1"}
    log = tmp_path / "listener.log"
    slow = bombs.progressive_scan_bomb(repeats=6)
    proc = start_listener(env, tmp_path, log)
    try:
        hostile = [_put_directly(services, owner, f"slow-{i}", slow + bytes(i)) for i in range(2)]
        behind = upload_many(services, owner, photos(4))
        ids = hostile + behind
        # WHEN the listener works through them
        wait_until(lambda: unsettled(services, ids) == 0, timeout=240, what="every image to settle")
        alive = proc.poll() is None
    finally:
        stop(proc)
    # THEN the slow ones failed with the deadline's reason, the photos were labelled,
    # and the listener stayed up
    assert alive, log.read_text(errors="replace")[-3000:]
    rows = _rows(services, ids)
    for image_id in hostile:
        assert rows[image_id].status == ImageStatus.FAILED
        assert "takes too long to decode" in (rows[image_id].failure_reason or "")
    assert all(rows[i].status == ImageStatus.LABELLED for i in behind)
