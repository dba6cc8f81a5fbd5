"""``dashboard.downloads``: prepared files (export bundles) kept on disk under random names and
sent by ``/download/<token>`` to their owner only, then removed; through Starlette's TestClient
and, for downloads cut short, a bare ASGI call."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from dashboard import downloads
from labelkit.auth import Principal

ALICE = Principal(user_id="u-alice", username="alice")
BOB = Principal(user_id="u-bob", username="bob")
SESSIONS = {"alice-session-token-0123456789": ALICE, "bob-session-token-0123456789": BOB}
PAYLOAD = os.urandom(3 * downloads.CHUNK_BYTES + 123)


def _principal_of(request: Request) -> Principal | None:
    if request.cookies.get("session") == "database-down":
        raise OperationalError("SELECT 1", {}, Exception("gone away"))
    return SESSIONS.get(request.cookies.get("session", ""))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "downloads"


@pytest.fixture
def app(root: Path, monkeypatch: pytest.MonkeyPatch) -> Starlette:
    monkeypatch.setattr(downloads, "MOUNTED", False)
    return Starlette(routes=[downloads.route(_principal_of, root=lambda: root)])


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _as(client: TestClient, principal: Principal | None) -> TestClient:
    client.cookies.clear()
    token = next((t for t, p in SESSIONS.items() if p == principal), None)
    if token:
        client.cookies.set("session", token)
    return client


def _prepare(root: Path, owner: Principal = ALICE, data: bytes = PAYLOAD) -> downloads.Prepared:
    with downloads.prepare(
        root, owner_id=owner.user_id, file_name="labelkit-coco-bundle.zip", mime="application/zip"
    ) as prepared:
        assert prepared.file is not None
        prepared.file.write(data)
    return prepared


def test_the_route_is_served_once_mounted_behind_the_http_layer(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboard import web

    monkeypatch.setattr(downloads, "MOUNTED", False)
    monkeypatch.setattr(web, "SERVED", True)
    assert not downloads.served()
    route = downloads.route(_principal_of, root=lambda: root)
    assert route.path == "/download/{token}" and downloads.served()
    monkeypatch.setattr(web, "SERVED", False)  # streamlit_app.py served without dashboard/asgi.py
    assert not downloads.served()


def test_the_owner_downloads_the_file_once_then_it_is_gone(root: Path, client: TestClient) -> None:
    # GIVEN a prepared file of alice's
    prepared = _prepare(root)
    assert prepared.size == len(PAYLOAD) and prepared.url == f"/download/{prepared.token}"
    assert downloads.is_ready(root, prepared.token, owner_id=ALICE.user_id)
    # WHEN alice fetches it
    response = _as(client, ALICE).get(prepared.url)
    # THEN she gets it whole, as an attachment under its name, never cached
    assert response.status_code == 200 and response.content == PAYLOAD
    assert response.headers["content-length"] == str(len(PAYLOAD))
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="labelkit-coco-bundle.zip"'
    )
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["cache-control"] == "private, no-store"
    # and the file is removed from the server; a second try says why it is gone
    assert not downloads.file_path(root, prepared.token).exists()
    assert not downloads.is_ready(root, prepared.token, owner_id=ALICE.user_id)
    again = client.get(prepared.url)
    assert again.status_code == 410 and "downloaded already" in again.text


def test_nobody_else_gets_it(root: Path, client: TestClient) -> None:
    prepared = _prepare(root)
    # WHEN bob (signed in), someone signed out, or a made-up token asks
    assert _as(client, BOB).get(prepared.url).status_code == 404
    assert _as(client, None).get(prepared.url).status_code == 404
    alice = _as(client, ALICE)
    for junk in ("x", "A" * 43 + "/..", "..%2F..%2Fetc%2Fpasswd", "A" * 43, prepared.token + "A"):
        assert alice.get(f"/download/{junk}").status_code == 404, junk
    # THEN they get "not found", as for a file that does not exist, and the file stays for alice
    assert downloads.is_ready(root, prepared.token, owner_id=ALICE.user_id)
    assert not downloads.is_ready(root, prepared.token, owner_id=BOB.user_id)


def test_a_head_request_does_not_use_the_download_up(root: Path, client: TestClient) -> None:
    prepared = _prepare(root)
    head = _as(client, ALICE).head(prepared.url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(PAYLOAD))
    assert downloads.is_ready(root, prepared.token, owner_id=ALICE.user_id)


def test_a_database_that_does_not_answer_gives_503(root: Path, client: TestClient) -> None:
    prepared = _prepare(root)
    client.cookies.set("session", "database-down")
    response = client.get(prepared.url)
    assert response.status_code == 503 and "temporarily unavailable" in response.text
    assert downloads.is_ready(root, prepared.token, owner_id=ALICE.user_id)


def _call(app: Starlette, path: str, *, spec: str, fail_after: int) -> int:
    """A bare ASGI GET whose client goes away after ``fail_after`` pieces of the body; how many
    pieces it received."""
    received = 0
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), (b"cookie", b"session=alice-session-token-0123456789")],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    gone = anyio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal received
        if message["type"] == "http.response.body" and message.get("body"):
            if received >= fail_after:
                gone.set()
                if spec >= "2.4":
                    raise OSError("connection reset by peer")
                await anyio.sleep_forever()  # cancelled once the disconnect is seen
            received += 1

    async def main() -> None:
        try:
            await app(scope, receive, send)
        except Exception as e:  # the server logs a client that went away; here it is expected
            assert type(e).__name__ == "ClientDisconnect", e

    anyio.run(main)
    return received


@pytest.mark.parametrize("spec", ["2.4", "2.3"])
def test_a_download_cut_short_keeps_the_file_for_another_try(root: Path, app: Starlette, spec: str) -> None:
    prepared = _prepare(root)
    # WHEN the client goes away after one of four pieces
    assert _call(app, prepared.url, spec=spec, fail_after=1) == 1
    # THEN the file is still there, whole, and a full download then removes it
    assert downloads.is_ready(root, prepared.token, owner_id=ALICE.user_id)
    assert downloads.file_path(root, prepared.token).read_bytes() == PAYLOAD
    assert _call(app, prepared.url, spec=spec, fail_after=99) == 4
    assert not downloads.file_path(root, prepared.token).exists()


def test_files_have_random_private_names_and_one_per_person(root: Path) -> None:
    # GIVEN alice prepares twice and bob once
    first = _prepare(root)
    bobs = _prepare(root, BOB)
    second = _prepare(root)
    # THEN only alice's latest and bob's are kept, named by their tokens alone, readable by no one else
    assert not downloads.file_path(root, first.token).exists()
    assert downloads.is_ready(root, second.token, owner_id=ALICE.user_id)
    assert downloads.is_ready(root, bobs.token, owner_id=BOB.user_id)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        f"{t}{ext}" for t in (second.token, bobs.token) for ext in (".bin", ".json")
    )
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(downloads.file_path(root, second.token).stat().st_mode) == 0o600
    record = json.loads((root / f"{second.token}.json").read_text())
    assert record["owner_id"] == ALICE.user_id and record["size"] == len(PAYLOAD)
    with pytest.raises(ValueError):
        downloads.file_path(root, "../../etc/passwd")


def test_a_failed_or_stopped_preparation_leaves_nothing(root: Path) -> None:
    class Stopped(BaseException):  # what Streamlit raises into a page's run when it reruns
        pass

    for error in (OSError("No space left on device"), Stopped()):
        with (
            pytest.raises(type(error)),
            downloads.prepare(
                root, owner_id=ALICE.user_id, file_name="b.zip", mime="application/zip"
            ) as prepared,
        ):
            assert prepared.file is not None
            prepared.file.write(b"half a bundle")
            raise error
    assert list(root.iterdir()) == []
    # and a file that cannot fit is refused before anything is written
    with (
        pytest.raises(downloads.NotEnoughSpace, match="free disk"),
        downloads.prepare(
            root, owner_id=ALICE.user_id, file_name="b.zip", mime="application/zip", expected_bytes=10**18
        ),
    ):
        pytest.fail("nothing is written")
    assert list(root.iterdir()) == []


def test_files_older_than_an_hour_are_swept(root: Path, client: TestClient) -> None:
    # GIVEN bob's file made 61 minutes ago and alice's made 61 minutes ago (by its record)
    old_bob = _prepare(root, BOB)
    hour_ago = time.time() - downloads.KEEP_SECONDS - 60
    for path in root.iterdir():
        os.utime(path, (hour_ago, hour_ago))
    stale = _prepare(root)
    record_path = root / f"{stale.token}.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "created": hour_ago}))
    # WHEN alice asks for hers
    response = _as(client, ALICE).get(stale.url)
    # THEN it has expired (and says so) and is removed, and bob's old file is gone too
    assert response.status_code == 410 and "more than an hour ago" in response.text
    assert not downloads.file_path(root, stale.token).exists()
    assert not downloads.file_path(root, old_bob.token).exists()
    # and an hour on, nothing at all is left
    assert downloads.sweep(root, now=time.time() + downloads.KEEP_SECONDS + 1) == 0
    assert list(root.iterdir()) == []
