"""Database outage: MariaDB unreachable for ~10 s while labelling. No message is
lost, labelling resumes by itself, and the listener does not exit.

The listener reaches MariaDB through a proxy the test can cut, so the shared
server keeps running for everything else. The local queue lives in the same
database, so receiving, labelling writes and acknowledging all fail during the cut.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from labelkit.db.models import ImageStatus
from labelkit.services import build_services
from labelkit.settings import Settings
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
from tests.reliability.tcp_proxy import CuttableProxy

pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.mysql]


def test_listener_rides_out_a_database_outage(tmp_path: Path, mysql_server_url: str) -> None:
    from tests.conftest import _reset_mysql

    _reset_mysql(mysql_server_url)
    url = make_url(mysql_server_url)
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 3306))
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    settings = Settings(data_dir=tmp_path / "data", database_url=mysql_server_url, model_dir=MODEL_DIR)
    services = build_services(settings)  # the test itself talks to MariaDB directly
    ids = upload_many(services, make_owner(services), photos(120))
    env = listener_env(
        {
            "LABELKIT_DATA_DIR": str(settings.data_dir),
            "LABELKIT_DATABASE_URL": proxied,
            "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": "5",
            "LABELKIT_QUEUE_MAX_RECEIVES": "10",
        }
    )
    log = tmp_path / "listener.log"
    listener = start_listener(env, tmp_path, log)
    try:
        # GIVEN labelling under way
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) >= 5,
            timeout=120,
            what="labelling to start",
        )
        # WHEN the database becomes unreachable for ~10 s
        proxy.cut()
        cut_at = status_counts(services).get(ImageStatus.LABELLED, 0)
        time.sleep(10)
        during = status_counts(services).get(ImageStatus.LABELLED, 0)
        assert listener.poll() is None, "the listener exited during the outage"
        proxy.restore()
        # THEN labelling resumes by itself and finishes, with nothing lost or duplicated
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) == len(ids),
            timeout=300,
            what="labelling to finish after the outage",
        )

        # A message whose delete failed during the cut comes back after its visibility
        # timeout (at least once); the listener finds its image labelled and deletes it.
        def drained() -> bool:
            stats = services.queue.stats()
            return (stats.visible, stats.in_flight, stats.dead) == (0, 0, 0)

        wait_until(drained, timeout=60, what="the queue to drain (redeliveries acknowledged)")
        assert listener.poll() is None
    finally:
        stop(listener)
        proxy.close()
    assert during - cut_at <= 4  # at most the jobs already past their last DB write finished
    assert_each_labelled_exactly_once(services, ids)
    assert "receive failed" in log.read_text()  # it noticed, backed off and carried on
