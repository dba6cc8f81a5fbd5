"""Fixtures for AppTest-driven dashboard tests, on SQLite and MariaDB (``db_url``).

The app reads its configuration through ``get_settings()``, so each test sets
``LABELKIT_*`` variables pointing at the test database and folder, and clears
Streamlit's caches (services are ``st.cache_resource``) so nothing leaks
between tests. Labelling is driven in-process with the fake labeller
(:func:`drain`), as in ``tests/integration/test_pipeline.py``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
from PIL import Image as PILImage
from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal
from labelkit.auth.local import LocalAuth
from labelkit.services import Services, build_pipeline, build_services
from labelkit.settings import Settings, get_settings
from labelkit.uploads import upload_image
from labelkit.worker import Listener

APP = Path(__file__).resolve().parents[2] / "dashboard" / "streamlit_app.py"
PASSWORD = "correct horse battery"


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:] = color
    arr[::7, ::5] = 255 - np.array(color, dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


RED, GREEN, BLUE = jpeg((220, 10, 10)), jpeg((10, 200, 10)), jpeg((10, 10, 230))


@pytest.fixture
def services(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """Point the app at the test database and return the same services it will build."""
    env = {
        "LABELKIT_DATA_DIR": str(settings.data_dir),
        "LABELKIT_DATABASE_URL": settings.database_url,
        "LABELKIT_LABELER": "fake",
        "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": "30",
        "LABELKIT_QUEUE_MAX_RECEIVES": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield build_services(get_settings())
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def auth(services: Services) -> LocalAuth:
    # Cheap argon2 parameters keep the suite fast; production uses the library defaults.
    from argon2 import PasswordHasher

    return LocalAuth(services.engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def alice(auth: LocalAuth) -> Principal:
    return auth.sign_up("alice", PASSWORD)  # first account: admin


@pytest.fixture
def bob(auth: LocalAuth, alice: Principal) -> Principal:
    return auth.sign_up("bob", PASSWORD)


def drain(services: Services) -> None:
    Listener(
        queue=services.queue,
        pipeline=build_pipeline(services),
        workers=1,
        wait_seconds=0,
        visibility_timeout=services.settings.queue_visibility_timeout,
    ).run(threading.Event(), drain=True)


def upload(services: Services, owner: Principal, name: str, data: bytes) -> str:
    result = upload_image(services=services, owner_id=owner.user_id, filename=name, data=data)
    assert result.image_id, result
    return result.image_id


def app(principal: Principal | None = None, page: str | None = None, **query: str) -> AppTest:
    """An AppTest of the real entry point, signed in as ``principal``, showing ``page``."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    if principal is not None:
        at.session_state["principal"] = principal
    at.run()
    if page is not None:
        at.switch_page(page)
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
    return at


def texts(at: AppTest) -> str:
    """Everything the page shows as text (markdown, captions, alerts, titles), for assertions."""
    parts: list[Any] = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
    ):
        parts.extend(getattr(e, "value", "") for e in getattr(at, kind))
    return "\n".join(str(p).replace("\\", "") for p in parts)


def elements(at: AppTest, kind: str) -> list[Any]:
    """Every element of ``kind`` (e.g. ``"vega_lite_chart"``) anywhere in the page, in order."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        for child in getattr(node, "children", {}).values():
            if getattr(child, "type", None) == kind:
                found.append(child)
            walk(child)

    walk(at._tree)
    return found
