"""Crash safety: listeners killed with SIGKILL at random moments lose nothing and
duplicate nothing. Real listener processes, the real local model, real queues
(the local SQLite queue; SQS on a moto server with MariaDB)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from labelkit.db.models import ImageStatus
from labelkit.queue.sqs import ensure_queues
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from tests.helpers import free_port
from tests.reliability.harness import (
    MODEL_DIR,
    assert_each_labelled_exactly_once,
    listener_env,
    make_owner,
    photos,
    start_listener,
    status_counts,
    stop,
    upload_many,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.model]

N_IMAGES = 200
KILLS = 3
VISIBILITY = 4  # seconds before a killed worker's message is delivered again


def _run_with_kills(services: Services, env: dict[str, str], work: Path, ids: list[str]) -> int:
    """Two listeners; SIGKILL the first three times at random moments; wait for the end.

    Returns how many kills hit a listener while images were being labelled."""
    rng = random.Random(1234)
    log = work / "listeners.log"
    victim = start_listener(env, work, log)
    survivor = start_listener(env, work, log)
    kills_mid_work = 0
    try:
        # Let both load the model and start working before the first kill.
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) > 0,
            timeout=120,
            what="labelling to start",
        )
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            kills_mid_work += int(status_counts(services).get(ImageStatus.LABELLING, 0) > 0)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            victim = start_listener(env, work, log)
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) == len(ids),
            timeout=300,
            what=f"all {len(ids)} images to be labelled",
        )
    finally:
        stop(victim)
        stop(survivor)
    return kills_mid_work


def test_local_queue_survives_sigkill(tmp_path: Path) -> None:
    # GIVEN 200 photos uploaded and queued locally (SQLite database and queue)
    settings = Settings(
        data_dir=tmp_path / "data",
        model_dir=MODEL_DIR,
        queue_visibility_timeout=VISIBILITY,
        queue_max_receives=10,
    )
    services = build_services(settings)
    ids = upload_many(services, make_owner(services), photos(N_IMAGES))
    env = listener_env(
        {
            "LABELKIT_DATA_DIR": str(settings.data_dir),
            "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": str(VISIBILITY),
            "LABELKIT_QUEUE_MAX_RECEIVES": "10",
        }
    )
    # WHEN two listeners label them and one is SIGKILLed three times
    kills_mid_work = _run_with_kills(services, env, tmp_path, ids)
    # THEN every image is labelled exactly once and the queue is empty
    assert_each_labelled_exactly_once(services, ids)
    stats = services.queue.stats()
    assert (stats.visible, stats.in_flight, stats.dead) == (0, 0, 0)
    assert kills_mid_work >= 1, "no kill landed while work was in progress; the test proved nothing"


@pytest.fixture
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.aws
@pytest.mark.mysql
def test_sqs_survives_sigkill(
    tmp_path: Path, moto_server: str, mysql_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import _reset_mysql

    _reset_mysql(mysql_server_url)
    aws_env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in aws_env.items():
        monkeypatch.setenv(k, v)
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url, _ = ensure_queues("crash-jobs", client=sqs, max_receives=10, visibility_timeout=VISIBILITY)
    # GIVEN 200 photos stored locally, their jobs on SQS, the database on MariaDB
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=mysql_server_url,
        queue_url=queue_url,
        model_dir=MODEL_DIR,
        queue_visibility_timeout=VISIBILITY,
        queue_max_receives=10,
    )
    services = build_services(settings)
    ids = upload_many(services, make_owner(services), photos(N_IMAGES))
    env = listener_env(
        {
            **aws_env,
            "LABELKIT_DATA_DIR": str(settings.data_dir),
            "LABELKIT_DATABASE_URL": mysql_server_url,
            "LABELKIT_QUEUE_URL": queue_url,
            "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": str(VISIBILITY),
            "LABELKIT_QUEUE_MAX_RECEIVES": "10",
        }
    )
    # WHEN two listeners label them and one is SIGKILLed three times
    kills_mid_work = _run_with_kills(services, env, tmp_path, ids)
    # THEN every image is labelled exactly once and nothing is left on the queues
    assert_each_labelled_exactly_once(services, ids)
    wait_until(
        lambda: services.queue.stats().visible + services.queue.stats().in_flight == 0,
        timeout=VISIBILITY * 3,
        what="the queue to empty",
    )
    assert services.queue.stats().dead == 0
    assert kills_mid_work >= 1
