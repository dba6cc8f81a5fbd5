"""Database outage: MariaDB unreachable for ~10 s while labelling. No message is
lost or duplicated, the listener does not exit, and within 60 s of the database
being reachable again every image is labelled.

The listener reaches MariaDB through a proxy the test can cut, so the shared
server keeps running for everything else. The local queue lives in the same
database, so receiving, labelling writes and acknowledging all fail during the cut.

Two kinds of outage:

* **refused**: the connections end on both sides and new ones are refused;
* **half-open**: the connections are abandoned silently (a network blip): the
  listener waits for answers that never come and the server keeps the sessions,
  with the row locks of any transaction they had open. The client's read timeout
  and the server's session ``wait_timeout`` (``labelkit.db.engine``) must end
  both sides, or the locked image waits for hours (MariaDB's default is 8 h).
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pymysql
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
logger = logging.getLogger(__name__)

PHOTOS = 60
CUT_AT = 40  # labelled before the cut: what is left afterwards is little work, so the
# 60 s bound below measures recovery from the fault, not the labelling speed of a busy machine
RECOVERY = 60  # seconds from the end of the cut until every image is labelled


def _server_sessions(url: str, ports: set[int]) -> set[int]:
    """Which of the server-side sessions opened from ``ports`` the server still keeps."""
    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password="")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT host FROM information_schema.processlist")
            hosts = [str(h) for (h,) in cur.fetchall()]
    finally:
        conn.close()
    alive = {int(h.rsplit(":", 1)[1]) for h in hosts if ":" in h}
    return alive & ports


@pytest.mark.parametrize("half_open", [False, True], ids=["refused", "half-open"])
def test_listener_rides_out_a_database_outage(tmp_path: Path, mysql_server_url: str, half_open: bool) -> None:
    from tests.conftest import _reset_mysql

    _reset_mysql(mysql_server_url)
    url = make_url(mysql_server_url)
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 3306))
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    settings = Settings(data_dir=tmp_path / "data", database_url=mysql_server_url, model_dir=MODEL_DIR)
    services = build_services(settings)  # the test itself talks to MariaDB directly
    ids = upload_many(services, make_owner(services), photos(PHOTOS))
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
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) >= CUT_AT,
            timeout=300,
            what="labelling to get going",
        )
        # WHEN the database becomes unreachable for ~10 s
        proxy.cut(half_open=half_open)
        cut_at = status_counts(services).get(ImageStatus.LABELLED, 0)
        abandoned = proxy.abandoned_server_ports()
        time.sleep(10)
        during = status_counts(services).get(ImageStatus.LABELLED, 0)
        assert listener.poll() is None, "the listener exited during the outage"
        proxy.restore()
        restored = time.monotonic()
        # THEN within 60 s every image is labelled, nothing lost or duplicated
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) == len(ids),
            timeout=RECOVERY,
            what=f"every image labelled within {RECOVERY}s of the outage ending",
        )
        recovered_in = time.monotonic() - restored
        if half_open:
            # The sessions the listener lost are gone from the server too (no lock outlives them).
            assert abandoned, "the listener had connections open when the link was cut"
            assert not _server_sessions(mysql_server_url, abandoned)

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
    logger.info("outage (half_open=%s): all labelled %.1fs after it ended", half_open, recovered_in)
    assert during - cut_at <= 4  # at most the jobs already past their last DB write finished
    assert_each_labelled_exactly_once(services, ids)
    if not half_open:
        # It noticed, backed off and carried on. (Half-open, a worker may notice nothing: a
        # pooled connection that was idle at the cut fails its pre-ping after the read timeout
        # and is replaced silently; the server-side sessions checked above show it was noticed.)
        text = log.read_text()
        assert "receive failed" in text or "failed (delivery" in text, text[-3000:]


def test_sigterm_is_honoured_while_the_database_link_is_half_open(
    tmp_path: Path, mysql_server_url: str
) -> None:
    # GIVEN a listener labelling through a link that then goes silent (half-open)
    from tests.conftest import _reset_mysql

    _reset_mysql(mysql_server_url)
    url = make_url(mysql_server_url)
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 3306))
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    settings = Settings(data_dir=tmp_path / "data", database_url=mysql_server_url, model_dir=MODEL_DIR)
    services = build_services(settings)
    ids = upload_many(services, make_owner(services), photos(30))
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
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) >= 3,
            timeout=300,
            what="labelling to get going",
        )
        proxy.cut(half_open=True)
        time.sleep(1)  # the workers are now blocked on answers that will never come
        # WHEN it is asked to stop
        listener.send_signal(signal.SIGTERM)
        # THEN it exits cleanly without waiting for the dead connections (a grace period,
        # not the 30 s read timeout, and never "forever")
        assert listener.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        stop(listener)
        proxy.restore()
    # AND nothing is lost: a new listener finishes the work once the database is reachable
    fresh = start_listener({**env, "LABELKIT_DATABASE_URL": mysql_server_url}, tmp_path, log)
    try:
        wait_until(
            lambda: status_counts(services).get(ImageStatus.LABELLED, 0) == len(ids),
            timeout=RECOVERY,
            what="a new listener to finish the work",
        )
    finally:
        stop(fresh)
        proxy.close()
    assert_each_labelled_exactly_once(services, ids)
