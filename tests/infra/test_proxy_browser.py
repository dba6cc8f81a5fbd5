"""The dashboard through the rendered nginx site, in headless Chromium: the page loads and
Streamlit's WebSocket (/_stcore/stream) is upgraded by the proxy; uploads at and just over
Labelkit's size limit get Labelkit's answer, never nginx's 413; the Host header reaches the
upstream with its port."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import WebSocket, expect, sync_playwright

from infra_scripts.render import HostConfig
from labelkit.settings import Settings
from tests.e2e.conftest import CHROMIUM_ARGS, ROOT, free_port, wait_http
from tests.helpers import BROWSER_TIMEOUT_MS, sign_up_in_browser
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


def _start_nginx(tmp_path: Path, upstream_port: int) -> Iterator[tuple[int, Path]]:
    prefix = tmp_path / "nginx"
    port = free_port()
    cfg = HostConfig(listen_address="127.0.0.1:", http_port=port, ipv6=False, dashboard_port=upstream_port)
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


@pytest.fixture
def nginx(tmp_path: Path, dashboard: int) -> Iterator[tuple[int, Path]]:
    """The rendered site on a loopback port in front of the dashboard."""
    yield from _start_nginx(tmp_path, dashboard)


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


def test_uploads_at_and_just_over_the_limit_get_labelkits_answer_not_nginxs_413(
    nginx: tuple[int, Path], tmp_path: Path
) -> None:
    # GIVEN files of exactly Labelkit's limit (20 MiB = 20,971,520 bytes) and one byte over;
    # neither is an image, so intake's answer names which check refused it
    port, prefix = nginx
    limit = Settings().max_upload_bytes
    exact, over = tmp_path / "exact.jpg", tmp_path / "over.jpg"
    exact.write_bytes(b"x" * limit)
    over.write_bytes(b"x" * (limit + 1))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            sign_up_in_browser(page, "alice", "correct horse battery")
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Upload", exact=True).click()
            expect(page.get_by_role("heading", name="Upload photos")).to_be_visible()
            # The widget states the same limit in its own (decimal) megabytes.
            expect(page.get_by_test_id("stFileUploaderDropzoneInstructions")).to_contain_text("21MB per file")

            # WHEN both go through nginx to Streamlit and intake
            page.locator("input[type=file]").set_input_files([str(exact), str(over)])

            # THEN intake judged both: the exact one passed the size check (it is refused only
            # as not an image), the one over is refused with Labelkit's own reason
            expect(page.get_by_text(re.compile(r"exact\.jpg.*rejected: Not an image"))).to_be_visible()
            expect(page.get_by_text(re.compile(r"over\.jpg.*rejected: File is too big"))).to_be_visible()
            expect(page.get_by_text("413")).to_have_count(0)
        finally:
            browser.close()
    # AND nginx answered no request with 413
    access = (prefix / "logs" / "labelkit.access.log").read_text()
    uploads = [line for line in access.splitlines() if "/_stcore/upload_file" in line]
    assert len(uploads) >= 2 and not [line for line in uploads if '" 413 ' in line], access[-3000:]


class _EchoHost(BaseHTTPRequestHandler):
    """An upstream that answers with the Host header it received."""

    def do_GET(self) -> None:
        body = (self.headers.get("Host") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/", "/_stcore/stream"])
def test_a_host_with_a_port_reaches_the_upstream_intact(
    tmp_path: Path, echo_upstream: int, path: str
) -> None:
    # GIVEN the rendered site in front of an upstream that echoes the Host it gets
    for port, _prefix in _start_nginx(tmp_path, echo_upstream):
        # WHEN a browser on a non-default port asks (its Host header carries the port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers={"Host": "labelkit.example:8443"})
        resp = conn.getresponse()
        # THEN the upstream sees the Host exactly as sent (Streamlit compares it with Origin)
        assert (resp.status, resp.read().decode()) == (200, "labelkit.example:8443")
        conn.close()
