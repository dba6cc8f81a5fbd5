"""Refused uploads must not make the dashboard bigger for good.

A real Streamlit server and Debian's Chromium: one user uploads four batches of five
19 MB files that intake refuses (380 MB in all), clearing the list between batches, and
the server's resident size is read from /proc before and after. Before the fix every
uploaded byte stayed in Streamlit's file manager for the life of the session, and
glibc kept the freed buffers of the rest (+445 MB here); now each handled file is
released and large buffers are unmapped when freed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.conftest import CHROMIUM_ARGS, ROOT
from tests.helpers import free_port, sign_up_in_browser, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FILE_MB = 19
FILES_PER_BATCH = 5
BATCHES = 4
TIMEOUT = 120_000  # ms: uploading 95 MB through the browser on a busy machine


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise KeyError("VmRSS")


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The dashboard alone (no listener: nothing here is ever queued) on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELKIT_")}
    env.update(LABELKIT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "dashboard" / "streamlit_app.py"),
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.maxUploadSize",
                "200",
                "--browser.gatherUsageStats",
                "false",
            ],  # fmt: skip
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_refused_uploads_leave_the_dashboard_no_bigger(
    dashboard: tuple[str, int], browser: Browser, tmp_path: Path
) -> None:
    url, pid = dashboard
    # GIVEN five 19 MB files that are not images (refused from their first bytes, so what
    # is measured is what the upload itself leaves behind)
    files = []
    for i in range(FILES_PER_BATCH):
        path = tmp_path / f"holiday-{i}.jpg"
        noise = np.random.default_rng(i).integers(0, 256, FILE_MB << 20, dtype=np.uint8).tobytes()
        path.write_bytes(b"\x13\x37" + noise[2:])
        files.append(str(path))
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    sign_up_in_browser(page, "alice", "correct horse battery")
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Upload", exact=True).click()
    expect(page.get_by_role("heading", name="Upload photos")).to_be_visible()
    before = _rss_mb(pid)

    # WHEN they are uploaded four times over (380 MB), the list cleared after each batch
    for _ in range(BATCHES):
        page.locator("input[type=file]").set_input_files(files)
        rejected = page.get_by_test_id("stMetric").filter(has_text="Rejected")
        expect(rejected).to_contain_text(str(FILES_PER_BATCH))
        page.get_by_role("button", name="Clear this list").click()
        expect(page.get_by_text("Last upload")).to_have_count(0)
    after = _rss_mb(pid)
    context.close()

    # THEN the server is about as big as before (it kept 445 MB of the 380 MB before the fix)
    assert after - before < 100, f"the dashboard grew from {before} MB to {after} MB"
