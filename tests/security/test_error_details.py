"""Visitors never see tracebacks or server paths (issue 15, errors shown to visitors).

The real server as ``make run`` starts it (dashboard only, the fake labeller); its
database is then broken under it (the SQLite file overwritten with garbage, as a
disk fault would), and an anonymous visitor opens the sign-in page in headless
Chromium. The page says something went wrong; the traceback goes to the log only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.conftest import CHROMIUM_ARGS, ROOT
from tests.helpers import BROWSER_TIMEOUT_MS, free_port, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_broken_database_shows_no_traceback_to_an_anonymous_visitor(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELKIT_", "AWS_"))}
    env.update(LABELKIT_DATA_DIR=str(data), LABELKIT_LABELER="fake", PYTHONPATH=str(ROOT))
    log = tmp_path / "product.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labelkit.run", "--port", str(port), "--no-listener"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        # GIVEN a database that is broken under the running server
        for f in data.glob("labelkit.db*"):
            f.write_bytes(b"this is not a database " * 512)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(BROWSER_TIMEOUT_MS)
                # WHEN an anonymous visitor opens the site
                page.goto(f"http://127.0.0.1:{port}/")
                # THEN the page says an error happened, without its details
                notice = page.get_by_test_id("stException")
                expect(notice).to_be_visible(timeout=BROWSER_TIMEOUT_MS)
                shown = page.locator('[data-testid="stAppViewContainer"]').inner_text()
            finally:
                browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "redacted" in shown
    for leak in ("Traceback", 'File "', str(ROOT), str(tmp_path), "site-packages", "sqlalchemy", "sqlite3"):
        assert leak not in shown, f"{leak!r} shown to the visitor:\n{shown}"
    # AND the operator still gets the details in the server log
    assert "Traceback" in log.read_text()
