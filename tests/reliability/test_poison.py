"""Poison input, end to end: an image whose stored object cannot be read is retried by a real
listener process, marked failed with its reason after the last delivery, its message
dead-lettered; once the object is readable again, Retry on the dashboard (AppTest) relabels it.

How an image is made to "always fail" with a *transient* error: its stored file is replaced
by a symlink to itself. ``LocalStore.path`` resolves the key, the kernel answers ELOOP
(Python 3.11 raises ``RuntimeError: Symlink loop``) and the store raises ``StorageError`` --
the "store unreachable" kind of failure the pipeline retries. Other ways do not fit:
``chmod 000`` does not stop root (the tests run as root); a directory or a missing file is
``ObjectNotFound`` and a non-image is an ``IntakeError``, both permanent (failed at once,
no dead letter). "Fixing" it is writing the original bytes back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.domain import system_viewer
from labelkit.errors import StorageError
from labelkit.services import Services, build_services
from labelkit.storage.local import LocalStore
from tests.dashboard.conftest import APP, texts
from tests.reliability.harness import (
    local_listener_env,
    local_settings,
    photos,
    point_dashboard_at,
    start_listener,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.model]

VISIBILITY = 2  # seconds before a failed delivery comes back
MAX_RECEIVES = 3


def _poison(store: LocalStore, key: str) -> bytes:
    """Replace the stored object by a symlink loop; return the original bytes."""
    original = store.get(key)
    path = store.path(key)
    path.unlink()
    os.symlink(path.name, path)
    with pytest.raises(StorageError) as caught:
        store.get(key)
    assert type(caught.value) is StorageError  # transient: not ObjectNotFound
    return original


def _cure(store: LocalStore, key: str, original: bytes) -> None:
    (store.root / key).unlink()
    store.put(key, original, content_type="image/jpeg")


def _status(services: Services, image_id: str) -> tuple[ImageStatus, str | None, int]:
    with transaction(services.engine) as s:
        img = image_q.get_image(session=s, viewer=_ADMIN, image_id=image_id)
        return ImageStatus(img.status), img.failure_reason, img.attempts


_ADMIN = system_viewer("system")


def _app(principal: Principal, page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["principal"] = principal
    at.run()
    at.switch_page(page)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def test_poison_image_is_dead_lettered_then_retry_from_the_dashboard_relabels_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argon2 import PasswordHasher

    from labelkit.auth.local import LocalAuth
    from labelkit.uploads import upload_image

    settings = local_settings(tmp_path / "data", visibility=VISIBILITY, max_receives=MAX_RECEIVES)
    services = build_services(settings)
    store = services.store
    assert isinstance(store, LocalStore)
    auth = LocalAuth(services.engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    admin = auth.sign_up("admin", "admin password 1")  # the first account is the admin
    owner = auth.sign_up("olga", "olga password 1")

    # GIVEN three photos of one user, two of them poisoned (the store cannot read them)
    ids = []
    for i, data in enumerate(photos(3, size=(200, 140))):
        result = upload_image(services=services, owner_id=owner.user_id, filename=f"p{i}.jpg", data=data)
        assert result.image_id
        ids.append(result.image_id)
    good, via_pipeline_page, via_image_page = ids
    keys = {}
    with transaction(services.engine) as s:
        for image_id in ids:
            keys[image_id] = image_q.get_image(session=s, viewer=owner.viewer, image_id=image_id).object_key
    originals = {i: _poison(store, keys[i]) for i in (via_pipeline_page, via_image_page)}

    # WHEN a real listener process works on the queue
    log = tmp_path / "listener.log"
    proc = start_listener(local_listener_env(settings), tmp_path, log, workers=2)
    try:
        # THEN the good photo is labelled; each poisoned one is delivered MAX_RECEIVES times,
        # ends failed with a reason a person understands, and its message is dead-lettered
        wait_until(
            lambda: (
                services.queue.stats().dead == 2
                and all(_status(services, i)[0] == ImageStatus.FAILED for i in originals)
            ),
            timeout=120,
            what="both poisoned images to be dead-lettered",
        )
        assert _status(services, good)[0] == ImageStatus.LABELLED
        for image_id in originals:
            status, reason, attempts = _status(services, image_id)
            assert attempts == MAX_RECEIVES
            assert reason and reason.startswith(f"Labelling failed after {MAX_RECEIVES} attempts")
            assert "Could not read the stored file" in reason
        assert proc.poll() is None, "the listener died"

        # ... and the dashboard shows them failed with the reason
        point_dashboard_at(settings, monkeypatch)
        pipeline = _app(admin, "app_pages/pipeline.py")
        shown = texts(pipeline)
        assert "Failed images (2)" in shown and "Dead letters (2)" in shown
        assert "p1.jpg" in shown and "p2.jpg" in shown and "Could not read the stored file" in shown
        image_page = _app(owner, "app_pages/image.py", image=via_image_page)
        assert "Labelling failed: Labelling failed after 3 attempts" in texts(image_page)

        # WHEN the objects are readable again and Retry is clicked: by the admin on the
        # Pipeline page for one, by the owner on the image page for the other
        for image_id, original in originals.items():
            _cure(store, keys[image_id], original)
        pipeline.button(key=f"retry::{via_pipeline_page}").click().run()
        # AppTest reruns the whole script on a click (a browser reruns only the fragment),
        # so the page's st.rerun(scope="fragment") after the retry raises here and only here.
        assert all("can only be specified from" in str(e.value) for e in pipeline.exception)
        image_page.button(key="retry").click().run()
        assert not image_page.exception

        # THEN both are relabelled by the same listener, and nothing is left dead-lettered
        wait_until(
            lambda: all(_status(services, i)[0] == ImageStatus.LABELLED for i in ids),
            timeout=60,
            what="the retried images to be labelled",
        )
        for image_id in originals:
            status, reason, _ = _status(services, image_id)
            assert reason is None
        with transaction(services.engine) as s:
            for image_id in ids:
                assert label_q.labels_for_image(session=s, viewer=owner.viewer, image_id=image_id)
        wait_until(lambda: services.queue.stats().in_flight == 0, timeout=120, what="in-flight to clear")
        stats = services.queue.stats()
        assert (stats.visible, stats.in_flight, stats.dead) == (0, 0, 0)
        assert proc.poll() is None, "the listener died"
        after = _app(admin, "app_pages/pipeline.py")
        assert "Failed images (0)" in texts(after) and "Dead letters (0)" in texts(after)
    finally:
        stop(proc)
