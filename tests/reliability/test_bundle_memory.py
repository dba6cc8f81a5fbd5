"""A 1 GB export bundle through the dashboard's own code keeps the process under 300 MB.

The red team's finding: bundles were built in memory (120 photos of 4 MB gave a 503 MB zip and
660 MB of dashboard RSS). Here 64 incompressible "photos" of 16 MiB (1 GiB in all; random
bytes behind a JPEG marker, stored straight into the folder store under rows made with
``labelkit.db.queries``: they are never decoded) are bundled by the real Export page in a
fresh process (AppTest of ``dashboard/streamlit_app.py``), then downloaded the way the page
offers it, as the server would send it: a link to ``/download/<token>`` is fetched from the
mounted route (a bare ASGI call writing the body to a file), a ``st.download_button`` has
its deferred callable run, as Streamlit does when it is clicked. The process's high-water
mark (VmHWM) must stay under 300 MB. Everything written (about 3 GB) is removed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelkit.db.engine import transaction
from labelkit.db.queries import images as image_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.services import build_services
from labelkit.settings import Settings
from tests.dashboard.conftest import APP

# Writing and reading about 3 GB: well under a minute here, more on a busy disk.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = 64
PHOTO_BYTES = 16 * 1024 * 1024  # 64 x 16 MiB = 1 GiB
LIMIT_MB = 300

_SCRIPT = r"""
import asyncio, json, sys, time
from pathlib import Path

from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal

app_path, principal_json, out_path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
principal = Principal(**json.loads(principal_json))

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)

# What a deferred st.download_button would hand out when clicked (Streamlit runs the callable
# then): remembered here, because AppTest's media manager lives only for one run.
offered = {}
register = MediaFileManager.add_deferred
def remember(self, data, *args, **kwargs):
    file_id = register(self, data, *args, **kwargs)
    offered[file_id] = data
    return file_id
MediaFileManager.add_deferred = remember

# The download route, mounted as dashboard/web.py mounts it (when the dashboard has one).
server = None
try:
    from dashboard import downloads
except ImportError:
    downloads = None
if downloads is not None:
    from starlette.applications import Starlette

    from dashboard import web

    server = Starlette(
        routes=[downloads.route(lambda request: principal if request.cookies.get("s") == "me" else None)]
    )
    web.SERVED = True  # as dashboard/asgi.py's middleware says once installed

def fetch(path):
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"x"), (b"cookie", b"s=me")],
             "client": ("127.0.0.1", 1), "server": ("x", 80)}
    status_code = []
    with out_path.open("wb") as out:
        async def receive():
            await asyncio.Event().wait()
        async def send(message):
            if message["type"] == "http.response.start":
                status_code.append(message["status"])
            elif message["type"] == "http.response.body":
                out.write(message.get("body", b""))
        asyncio.run(server(scope, receive, send))
    assert status_code == [200], status_code

at = AppTest.from_file(app_path, default_timeout=900)
at.session_state["principal"] = principal
at.run()
at.switch_page("app_pages/export.py")
at.run()
at.selectbox(key="export_format").set_value("coco").run()
at.toggle(key="export_bundle").set_value(True).run()
assert not at.exception, at.exception
idle = status("VmRSS")
started = time.monotonic()

# WHEN the person asks for the bundle and downloads what the page offers
prepare = [b for b in at.button if b.key == "export_bundle_prepare"]
if prepare:
    prepare[0].click().run()
    assert not at.exception, at.exception
links = at.get("link_button")
buttons = at.get("download_button")
if links:
    how = "link"
    fetch(links[0].proto.url)
else:
    how = "download_button"
    data = offered[buttons[0].proto.deferred_file_id]()
    data = data if isinstance(data, bytes) else data.read()
    out_path.write_bytes(data)
    del data
print(json.dumps({"how": how, "idle_mb": idle, "peak_mb": status("VmHWM"),
                  "seconds": time.monotonic() - started}))
"""


@pytest.fixture
def big_library(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, object], dict[str, str]]]:
    """1 GiB of photos of one owner in a throwaway data folder (removed afterwards)."""
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, labeler="fake")
    services = build_services(settings)
    noise = os.urandom(PHOTO_BYTES)
    digests: dict[str, str] = {}
    try:
        with transaction(services.engine) as s:
            owner = user_q.create_user(session=s, username="alice", password_hash="x", is_admin=False)
            for n in range(PHOTOS):
                # Every photo different (its first bytes), none compressible.
                body = b"\xff\xd8\xff\xe0" + n.to_bytes(4, "big") + noise[8:]
                image = image_q.create_image(
                    session=s,
                    owner_id=owner.id,
                    original_name=f"holiday-{n:02d}.jpg",
                    content_type="image/jpeg",
                    extension=".jpg",
                    size_bytes=len(body),
                    width=4000,
                    height=3000,
                    sha256=hashlib.sha256(body).hexdigest(),
                )
                path = Path(settings.resolved_storage_url, image.object_key)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
                worker_q.mark_labelled(session=s, image_id=image.id, model_version="test-1", properties=None)
                digests[f"images/holiday-{n:02d}.jpg"] = hashlib.sha256(body).hexdigest()
            principal = {"user_id": owner.id, "username": "alice", "is_admin": False}
        services.engine.dispose()
        yield settings, principal, digests
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # about 3 GB: never left for pytest to keep


def test_a_one_gigabyte_bundle_keeps_the_dashboard_under_300_mb(
    big_library: tuple[Settings, dict[str, object], dict[str, str]], tmp_path: Path
) -> None:
    settings, principal, digests = big_library
    out = tmp_path / "downloaded.zip"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELKIT_")}
    env.update(PYTHONPATH=str(ROOT), LABELKIT_DATA_DIR=str(settings.data_dir), LABELKIT_LABELER="fake")
    # GIVEN 1 GiB of photos; WHEN the Export page bundles them and the bundle is downloaded
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(APP), json.dumps(principal), str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # THEN the download is the whole bundle: every photo, byte for byte
    with zipfile.ZipFile(out) as zf:
        photos = [i for i in zf.infolist() if i.filename.startswith("images/")]
        assert len(photos) == PHOTOS and sum(i.file_size for i in photos) == PHOTOS * PHOTO_BYTES
        for info in photos:
            digest = hashlib.sha256()
            with zf.open(info) as member:
                while chunk := member.read(1 << 20):
                    digest.update(chunk)
            assert digest.hexdigest() == digests[info.filename], info.filename
    assert out.stat().st_size > PHOTOS * PHOTO_BYTES
    # and the process that made and sent it never held much of it
    assert result["peak_mb"] < LIMIT_MB, (
        f"the dashboard reached {result['peak_mb']} MB (idle {result['idle_mb']} MB) "
        f"bundling and sending {PHOTOS * PHOTO_BYTES >> 20} MiB ({result['how']})"
    )
    # and nothing of it is left on the server once downloaded
    leftovers = sorted(p.name for p in (settings.data_dir / "downloads").glob("*.bin"))
    assert leftovers == [], leftovers
