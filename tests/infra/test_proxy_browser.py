"""The dashboard through the rendered nginx site, in headless Chromium: the page loads and
Streamlit's WebSocket (/_stcore/stream) is upgraded by the proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import WebSocket, sync_playwright

from infra_scripts.render import HostConfig
from tests.e2e.conftest import CHROMIUM_ARGS, ROOT, free_port, wait_http
from tests.helpers import BROWSER_TIMEOUT_MS
from tests.infra.nginx_helpers import NGINX, nginx_test, render_site

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The product as ``make run`` starts it (no model: the fake labeller), dashboard only."""
    work = tmp_path_factory.mktemp("product")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELKIT_", "AWS_"))}
    env.update(LABELKIT_DATA_DIR=str(work / "data"), LABELKIT_LABELER="fake", PYTHONPATH=str(ROOT))
    log = work / "product.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labelkit.run", "--port", str(port), "--no-listener"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield port
    except TimeoutError:
        pytest.fail(f"the dashboard did not start:\n{log.read_text()[-3000:]}")
    finally:
        _stop(proc)


@pytest.fixture
def nginx(tmp_path: Path, dashboard: int) -> Iterator[tuple[int, Path]]:
    """The rendered site on a loopback port in front of the dashboard."""
    prefix = tmp_path / "nginx"
    port = free_port()
    cfg = HostConfig(listen_address="127.0.0.1:", http_port=port, ipv6=False, dashboard_port=dashboard)
    conf = render_site(prefix, cfg)
    checked = nginx_test(conf, prefix)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield port, prefix
    finally:
        _stop(proc, signal.SIGQUIT)  # graceful stop


def test_dashboard_loads_through_nginx_with_websocket(nginx: tuple[int, Path]) -> None:
    port, prefix = nginx
    sockets: list[WebSocket] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("websocket", lambda ws: sockets.append(ws))
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            # Streamlit draws the app only after its WebSocket session is up.
            page.wait_for_function(
                """() => {
                    const app = document.querySelector('[data-testid="stAppViewContainer"]');
                    return app && app.innerText.trim().length > 0;
                }"""
            )
            text = page.locator('[data-testid="stAppViewContainer"]').inner_text().strip()
        finally:
            browser.close()

    assert text, "the app rendered no text"
    streams = [ws.url for ws in sockets if ws.url.endswith("/_stcore/stream")]
    assert streams and all(u.startswith(f"ws://127.0.0.1:{port}/") for u in streams)
    access = (prefix / "logs" / "labelkit.access.log").read_text()
    upgraded = [line for line in access.splitlines() if "/_stcore/stream" in line and '" 101 ' in line]
    assert upgraded, access[-2000:]
