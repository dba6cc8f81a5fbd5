"""Signing in over HTTPS, through the rendered nginx TLS site, in headless Chromium (issue #25
finding 3): the cookies are ``__Host-labelkit_session`` / ``__Host-labelkit_device`` (Secure,
Path=/, no Domain), which no sibling subdomain or plain-HTTP page can plant; the page's
WebSocket reads the same names (it tells HTTPS from the handshake's Origin), so a reload stays
signed in and the sign-in hand-off works as over plain HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, expect, sync_playwright

from infra_scripts.render import HostConfig
from tests.e2e.conftest import CHROMIUM_ARGS, ROOT
from tests.helpers import BROWSER_TIMEOUT_MS, free_port, sign_up_in_browser, wait_http
from tests.infra.nginx_helpers import NGINX, nginx_test, render_site
from tests.infra.test_render import _self_signed

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The dashboard (fake labeller, no listener) behind the rendered nginx site with TLS."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELKIT_", "AWS_"))}
    env.update(LABELKIT_DATA_DIR=str(tmp_path / "data"), LABELKIT_LABELER="fake", PYTHONPATH=str(ROOT))
    with (tmp_path / "dashboard.log").open("wb") as out:
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "labelkit.run", "--port", str(port), "--no-listener"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    nginx: subprocess.Popen[bytes] | None = None
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        cert, key = _self_signed(tmp_path)
        prefix = tmp_path / "nginx"
        https_port = free_port()
        cfg = HostConfig(
            listen_address="127.0.0.1:",
            http_port=free_port(),
            https_port=https_port,
            ipv6=False,
            tls=True,
            ssl_certificate=str(cert),
            ssl_certificate_key=str(key),
            acme_root=str(tmp_path / "acme"),
            dashboard_port=port,
        )
        conf = render_site(prefix, cfg)
        checked = nginx_test(conf, prefix)
        assert checked.returncode == 0, checked.stderr
        nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield f"https://127.0.0.1:{https_port}"
    finally:
        if nginx is not None:
            _stop(nginx, signal.SIGQUIT)
        _stop(dashboard)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def _cookies(context: BrowserContext) -> dict[str, dict[str, object]]:
    """Labelkit's cookies by name (not Streamlit's own XSRF cookie)."""
    return {str(c["name"]): dict(c) for c in context.cookies() if "labelkit" in c["name"]}


def test_over_https_the_cookies_are_host_prefixed_and_sign_in_works(site: str, browser: Browser) -> None:
    context = browser.new_context(ignore_https_errors=True)  # the test's self-signed certificate
    try:
        page = context.new_page()
        page.set_default_timeout(BROWSER_TIMEOUT_MS)
        # GIVEN the sign-in page, loaded over HTTPS through nginx (X-Forwarded-Proto: https)
        page.goto(site)
        expect(page.get_by_role("tab", name="Create account")).to_be_visible()
        before = _cookies(context)
        assert set(before) == {"__Host-labelkit_session"}, before
        # WHEN alice signs up (and so signs in)
        sign_up_in_browser(page, "alice", "correct horse battery")
        # THEN the session and device cookies are __Host- prefixed: Secure, Path=/, host-only
        after = _cookies(context)
        assert set(after) == {"__Host-labelkit_session", "__Host-labelkit_device"}, after
        for cookie in after.values():
            assert cookie["secure"] is True and cookie["httpOnly"] is True and cookie["path"] == "/"
            assert cookie["domain"] == "127.0.0.1"  # no Domain attribute: this host only
        # ... and the session one is new at sign-in
        assert after["__Host-labelkit_session"]["value"] != before["__Host-labelkit_session"]["value"]
        # AND a reload is signed in by it (the page's WebSocket reads the __Host- name)
        page.reload()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
    finally:
        context.close()
