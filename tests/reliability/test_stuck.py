"""Nothing stays stuck when a real worker dies on every delivery of one image (issue 15).

A real listener process is SIGKILLed each time it starts labelling one particular
photo (as the out-of-memory killer would) and restarted each time (as systemd or
``make run`` does). Before the reconciler, that photo stayed "labelling" forever
once its message was dead-lettered, with no Retry offered. Now: every other photo
is labelled, the photo is failed with a reason, its job is in the dead-letter
list, and Retry relabels it once the cause is gone.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.domain import system_viewer
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.uploads import retry_image
from tests.reliability.harness import (
    listener_env,
    make_owner,
    photos,
    start_listener,
    status_counts,
    stop,
    upload_many,
    wait_until,
)

pytestmark = [pytest.mark.slow]

MAX_RECEIVES = 3


def _lethal_listener(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reliability.lethal_listener",
                "--workers",
                "1",
                "--wait-seconds",
                "1",
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_photo_that_kills_the_worker_on_every_delivery_ends_failed(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        labeler="fake",
        queue_visibility_timeout=2,
        queue_max_receives=MAX_RECEIVES,
    )
    services: Services = build_services(settings)
    blobs = photos(6)
    owner = make_owner(services)
    ids = upload_many(services, owner, blobs)
    lethal_id = ids[2]
    base = {
        "LABELKIT_DATA_DIR": str(settings.data_dir),
        "LABELKIT_LABELER": "fake",
        "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": "2",
        "LABELKIT_QUEUE_MAX_RECEIVES": str(MAX_RECEIVES),
        "LABELKIT_RECONCILE_EVERY_SECONDS": "5",
    }
    env = listener_env({**base, "LETHAL_SHA256": hashlib.sha256(blobs[2]).hexdigest()})
    log = tmp_path / "listener.log"
    # GIVEN a worker that dies on one photo, restarted whenever it dies
    kills = 0
    proc = _lethal_listener(env, tmp_path, log)
    try:

        def settled() -> bool:
            nonlocal proc, kills
            if proc.poll() is not None:
                assert proc.returncode == -9, log.read_text()[-3000:]
                kills += 1
                proc = _lethal_listener(env, tmp_path, log)
            counts = status_counts(services)
            return counts.get(ImageStatus.LABELLED, 0) == 5 and counts.get(ImageStatus.FAILED, 0) == 1

        # WHEN it has been killed on each delivery THEN everything settles by itself
        wait_until(settled, timeout=240, what="the other photos labelled and the lethal one failed")
    finally:
        stop(proc)
    assert kills == MAX_RECEIVES  # killed on every delivery, never delivered again after that
    admin = system_viewer("system")
    with transaction(services.engine) as s:
        image = image_q.get_image(session=s, viewer=admin, image_id=lethal_id)
        status, reason = image.status, image.failure_reason or ""
    assert status == ImageStatus.FAILED
    assert f"did not finish in {MAX_RECEIVES} attempts" in reason
    assert services.queue.stats().dead == 1
    # AND Retry (the page's button) relabels it once the cause is gone
    retry_image(services=services, viewer=admin, image_id=lethal_id)
    assert services.queue.stats().dead == 0
    healthy = start_listener(listener_env(base), tmp_path, log)
    try:
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) == 6,
            timeout=120,
            what="the retried photo labelled",
        )
    finally:
        stop(healthy)
