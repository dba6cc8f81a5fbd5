"""``python -m sqs_listener`` as a real process: labels, logs JSON lines, stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer
from labelkit.services import build_services
from labelkit.settings import Settings
from labelkit.uploads import upload_image
from tests.integration.test_pipeline import jpeg

# The listener as a real process: `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_help_explains_the_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sqs_listener", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for option in ("--workers", "--wait-seconds", "--drain", "LABELKIT_QUEUE_URL"):
        assert option in out


def test_listener_labels_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "LABELKIT_DATA_DIR": str(tmp_path / "data"), "LABELKIT_LABELER": "fake"}
    env["PYTHONPATH"] = str(ROOT)
    settings = Settings(data_dir=tmp_path / "data", labeler="fake")
    services = build_services(settings)
    with transaction(services.engine) as s:
        owner = user_q.create_user(session=s, username="alice", password_hash="x")
        viewer = Viewer(user_id=owner.id)
    ids = [
        upload_image(
            services=services, owner_id=owner.id, filename=f"{i}.jpg", data=jpeg((40 * i, 10, 10))
        ).image_id
        for i in range(1, 4)
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqs_listener", "--workers", "2", "--wait-seconds", "1"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with transaction(services.engine) as s:
                statuses = {image_q.get_image(session=s, viewer=viewer, image_id=i or "").status for i in ids}
            if statuses == {ImageStatus.LABELLED}:
                break
            time.sleep(0.2)
        assert statuses == {ImageStatus.LABELLED}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    per_image = [doc for doc in lines if doc.get("event") == "image"]
    assert sorted(doc["image_id"] for doc in per_image) == sorted(ids)
    assert all(doc["status"] == "labelled" and doc["total_ms"] > 0 for doc in per_image)
    assert any("stopping" in doc.get("msg", "") for doc in lines)
