"""Start the product as ``make run`` does (``python -m labelkit.run``) on free ports,
and drive it with Debian's headless Chromium through Playwright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import BROWSER_TIMEOUT_MS, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@dataclass
class Product:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    """The whole product (dashboard + listener, real local model) on a free port."""
    work = tmp_path_factory.mktemp("product")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELKIT_")}
    env.update(
        LABELKIT_DATA_DIR=str(work / "data"),
        # The exported model is shared with the developer's checkout: export once.
        LABELKIT_MODEL_DIR=str(ROOT / "data" / "models"),
        PYTHONPATH=str(ROOT),
    )
    log = work / "product.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labelkit.run", "--port", str(port)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield Product(url=f"http://127.0.0.1:{port}", data_dir=work / "data", proc=proc, log=log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab whose waits (actions and ``expect``) allow a busy machine."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(BROWSER_TIMEOUT_MS)
    # expect() has its own default (5 s), independent of the page's.
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    yield pg
    context.close()


def charts_drawn(page: Page) -> None:
    """Wait until every Vega chart on the page has drawn (a canvas or svg inside it)."""
    page.wait_for_function(
        """() => {
            const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
            return charts.length > 0 && charts.every(c => c.querySelector('canvas, svg'));
        }"""
    )


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot under test-artifacts/ (the README's pictures come from here)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
