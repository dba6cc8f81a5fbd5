"""Real workers for tests and benchmarks: settings and environments for a local run,
``python -m sqs_listener`` as a child process, uploads, and waiting on conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus
from labelkit.db.queries import users as user_q
from labelkit.services import Services
from labelkit.settings import Settings
from labelkit.testing.photos import encode, photo
from labelkit.uploads import upload_image

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "data" / "models"  # exported by `make model` before the suite runs


def photos(n: int, size: tuple[int, int] = (320, 214)) -> list[bytes]:
    """``n`` distinct real-photo JPEGs (china.jpg with different noise)."""
    return [encode(photo(*size, noise=8, seed=i), "JPEG", quality=85) for i in range(n)]


def upload_many(services: Services, owner_id: str, blobs: list[bytes]) -> list[str]:
    ids = []
    for i, data in enumerate(blobs):
        result = upload_image(services=services, owner_id=owner_id, filename=f"photo-{i}.jpg", data=data)
        if result.outcome != "accepted" or not result.image_id:
            raise AssertionError(f"upload {i} was not accepted: {result}")
        ids.append(result.image_id)
    return ids


def make_owner(services: Services, name: str = "alice") -> str:
    with transaction(services.engine) as s:
        return user_q.create_user(session=s, username=name, password_hash="x").id


def listener_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELKIT_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), LABELKIT_MODEL_DIR=str(MODEL_DIR), **extra)
    return env


def start_listener(env: dict[str, str], cwd: Path, log: Path, workers: int = 2) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sqs_listener",
                "--workers",
                str(workers),
                "--wait-seconds",
                "1",
                "--no-migrate",
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status_counts(services: Services) -> dict[ImageStatus, int]:
    with transaction(services.engine) as s:
        rows = s.execute(select(Image.status, func.count()).group_by(Image.status)).all()
    return {ImageStatus(st): int(n) for st, n in rows}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def local_settings(data_dir: Path, *, visibility: int = 120, max_receives: int = 4) -> Settings:
    """Settings for a local run (SQLite database and queue, a folder store, the real model)."""
    return Settings(
        data_dir=data_dir,
        model_dir=MODEL_DIR,
        queue_visibility_timeout=visibility,
        queue_max_receives=max_receives,
    )


def local_listener_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``python -m sqs_listener`` use the same folder, database and queue."""
    return listener_env(
        {
            "LABELKIT_DATA_DIR": str(settings.data_dir),
            "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": str(settings.queue_visibility_timeout),
            "LABELKIT_QUEUE_MAX_RECEIVES": str(settings.queue_max_receives),
        }
    )


def unsettled(services: Services, ids: list[str] | None = None) -> int:
    """How many images (of ``ids``, or all) are still pending or being labelled."""
    stmt = select(func.count()).where(Image.status.in_([ImageStatus.PENDING, ImageStatus.LABELLING]))
    if ids is not None:
        stmt = stmt.where(Image.id.in_(ids))
    with transaction(services.engine) as s:
        return int(s.scalar(stmt) or 0)
