"""The web cluster on one machine, with real parts: two dashboard processes (each started as a
cluster host's systemd unit starts it, behind its own nginx rendered for the load balancer) over
one MariaDB database and one photo folder, a labelling listener, and nginx as the load balancer
in front (sticky by a cookie naming the host that answered, health by ``max_fails``:
``nginx_helpers.balancer_conf``), driven by headless Chromium.

* A browser signs in and uploads through host A or B; that host's dashboard is SIGKILLed; the
  next click is answered by the other host, still signed in, with the photo and its labels; the
  killed dashboard is started again and takes requests again, while the browser that moved stays
  where it is.
* Both dashboards are restarted one at a time while a browser keeps clicking: no error page, no
  5xx answer, never the sign-in page.

Every wait is on a condition (the load balancer answering from the other host, a heading shown);
nginx's own marking of a failed host is never raced: the test waits until the next request is
answered by the other host, however long nginx takes to decide.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest
from PIL import Image
from playwright.sync_api import (
    APIRequestContext,
    Browser,
    BrowserContext,
    Page,
    Response,
    expect,
    sync_playwright,
)

from infra_scripts.__main__ import upgrade_one_at_a_time
from infra_scripts.render import DASHBOARD_UNIT, HostConfig, render_host_files
from labelkit.db.engine import make_engine
from tests.conftest import MYSQL_HOST, MYSQL_PORT, MYSQL_USER
from tests.e2e.conftest import CHROMIUM_ARGS, ROOT
from tests.helpers import BROWSER_TIMEOUT_MS, free_port, sign_in_in_browser, sign_up_in_browser, wait_http
from tests.infra.nginx_helpers import (
    ROUTE_COOKIE,
    SERVED_BY,
    balancer_conf,
    nginx_running,
    nginx_test,
    render_site,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.mysql]

USER, PASSWORD = "alice", "correct horse battery"
DEADLINE = BROWSER_TIMEOUT_MS / 1000  # seconds any one condition may take on a busy machine


def dashboard_command(port: int) -> list[str]:
    """The dashboard as a cluster host's systemd unit starts it (its ExecStart), on ``port``."""
    unit = render_host_files(HostConfig(dashboard_port=port))[DASHBOARD_UNIT]
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[1:5] == ["-m", "streamlit", "run", "dashboard/asgi.py"], argv
    return [sys.executable, *argv[1:]]


@dataclass
class Host:
    name: str
    dashboard_port: int
    nginx_port: int
    prefix: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Cluster:
    url: str
    hosts: dict[str, Host]
    env: dict[str, str]
    work: Path
    events: list[str] = field(default_factory=list)

    def start(self, name: str) -> None:
        host = self.hosts[name]
        with host.log.open("ab") as out:
            host.proc = subprocess.Popen(
                dashboard_command(host.dashboard_port),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_http(f"http://127.0.0.1:{host.dashboard_port}/_stcore/health", timeout=DEADLINE)
        except TimeoutError:
            pytest.fail(f"dashboard {name} did not start:\n{host.log.read_text()[-3000:]}")
        self.events.append(f"{name} started")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.hosts[name].proc
        assert proc is not None and proc.poll() is None
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.events.append(f"{name} stopped ({signal.Signals(sig).name})")

    def other(self, name: str) -> str:
        return next(n for n in self.hosts if n != name)

    def answered_by(self, route: str) -> str:
        """The host that answers the next request of a browser whose cookie names ``route``."""
        req = urllib.request.Request(
            f"{self.url}/_stcore/health", headers={"Cookie": f"{ROUTE_COOKIE}={route}"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.headers.get(SERVED_BY, ""))

    def wait_answered_by(self, route: str, host: str) -> None:
        """Wait until a browser sent to ``route`` is answered by ``host`` (nginx decides when)."""
        _wait(lambda: self.answered_by(route) == host, f"requests for {route} to be answered by {host}")


def _wait(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster_db() -> Iterator[str]:
    name = f"labelkit_cluster_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="")
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    admin.close()
    try:
        yield f"mysql+pymysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    finally:
        admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="")
        with admin.cursor() as cur:
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                (name,),
            )
            for (conn_id,) in cur.fetchall():
                try:
                    cur.execute(f"KILL {int(conn_id)}")
                except pymysql.err.OperationalError:
                    pass  # it ended by itself meanwhile
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_db: str) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELKIT_", "AWS_"))}
    env.update(
        LABELKIT_DATABASE_URL=cluster_db,
        LABELKIT_DATA_DIR=str(work / "data"),  # one photo folder, as S3 is for the hosts
        LABELKIT_LABELER="fake",
        PYTHONPATH=str(ROOT),
        HOME=str(work / "home"),
    )
    (work / "home").mkdir()
    # The schema, as a host's bootstrap makes it before starting anything.
    engine = make_engine(cluster_db)
    try:
        upgrade_one_at_a_time(engine)
    finally:
        engine.dispose()
    hosts = {
        name: Host(name, free_port(), free_port(), work / f"nginx-{name}", work / f"dashboard-{name}.log")
        for name in ("a", "b")
    }
    lb_port = free_port()
    c = Cluster(url=f"http://127.0.0.1:{lb_port}", hosts=hosts, env=env, work=work)
    listener_log = work / "listener.log"
    with listener_log.open("wb") as out:
        listener = subprocess.Popen(
            [sys.executable, "-m", "sqs_listener", "--no-migrate", "--wait-seconds", "1", "--plain-logs"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for name in hosts:
            c.start(name)
        with _host_nginx(hosts["a"]), _host_nginx(hosts["b"]):
            prefix = work / "balancer"
            conf = balancer_conf(prefix, lb_port, {n: h.nginx_port for n, h in hosts.items()})
            checked = nginx_test(conf, prefix)
            assert checked.returncode == 0, checked.stderr
            with nginx_running(conf, prefix, lb_port):
                yield c
    finally:
        for host in hosts.values():
            if host.proc is not None and host.proc.poll() is None:
                host.proc.send_signal(signal.SIGTERM)
                try:
                    host.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    host.proc.kill()
        listener.send_signal(signal.SIGTERM)
        try:
            listener.wait(timeout=30)
        except subprocess.TimeoutExpired:
            listener.kill()


def _host_nginx(host: Host) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The host's own nginx: the site a cluster host renders, trusting the balancer (loopback)."""
    cfg = HostConfig(
        listen_address="127.0.0.1:",
        http_port=host.nginx_port,
        ipv6=False,
        dashboard_port=host.dashboard_port,
        load_balancer=True,
        trusted_proxies=("127.0.0.0/8",),
    )
    conf = render_site(host.prefix, cfg)
    checked = nginx_test(conf, host.prefix)
    assert checked.returncode == 0, checked.stderr
    return nginx_running(conf, host.prefix, host.nginx_port)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def _context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    return context


def _served_by(request: APIRequestContext, cluster: Cluster) -> str:
    """Which host answers this browser's next request (its cookies go along, and the answer's
    route cookie is kept, as the page's own requests do)."""
    resp = request.get(f"{cluster.url}/_stcore/health")
    return resp.headers.get(SERVED_BY.lower(), "") if resp.ok else ""


def _answers(page: Page) -> list[str]:
    """The servers that answer this page's requests from now on, in order (repeats dropped):
    the page, and the Streamlit client's own health checks when it reconnects."""
    seen: list[str] = []

    def note(response: Response) -> None:
        host = response.headers.get(SERVED_BY.lower())
        if host and (not seen or seen[-1] != host):
            seen.append(host)

    page.on("response", note)
    return seen


def _nav(page: Page, name: str, heading: str) -> None:
    """Follow a sidebar link until its page shows (a click that lands while the tab reconnects
    to another host can be lost with the redraw; it is made again)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()
        try:
            expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=20_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def _photo(tmp: Path) -> Path:
    path = tmp / "red-door.jpg"
    Image.new("RGB", (320, 240), (210, 30, 25)).save(path, format="JPEG", quality=90)
    return path


def _signed_in_and_well(page: Page) -> None:
    """The page shows the signed-in user and no error: no sign-in form, no Streamlit exception,
    no proxy error page, no "connection error" dialog."""
    expect(page.get_by_test_id("stSidebar").get_by_text(USER, exact=True)).to_be_visible()
    assert page.get_by_role("tab", name="Create account").count() == 0
    assert page.get_by_role("button", name="Sign in").count() == 0
    assert page.get_by_test_id("stException").count() == 0
    assert (
        page.get_by_text(re.compile("Bad Gateway|Service Temporarily Unavailable|Connection error")).count()
        == 0
    )


def test_a_killed_servers_browser_moves_to_the_other_server_signed_in_and_the_killed_one_rejoins(
    cluster: Cluster, browser: Browser, tmp_path: Path
) -> None:
    # GIVEN a person who signed up and uploaded a photo through the load balancer
    context = _context(browser)
    page = context.new_page()
    page.goto(cluster.url, wait_until="domcontentloaded")
    sign_up_in_browser(page, USER, PASSWORD)
    _nav(page, "Upload", "Upload photos")
    page.locator("input[type=file]").set_input_files([str(_photo(tmp_path))])
    expect(page.get_by_text(re.compile(r"red-door\.jpg.*labelled: \w"))).to_be_visible()
    serving = _served_by(context.request, cluster)
    other = cluster.other(serving)
    assert serving in cluster.hosts, serving
    seen = _answers(page)

    # WHEN the dashboard serving this browser is killed outright
    cluster.stop(serving, signal.SIGKILL)

    # THEN the load balancer answers this browser from the other server (once nginx has seen the
    # first one fail; however long that takes)
    _wait(lambda: _served_by(context.request, cluster) == other, f"this browser's requests to go to {other}")
    # AND the next click lands there: still signed in, the photo and its labels are there
    _nav(page, "Gallery", "Gallery")
    expect(page.get_by_text("red-door.jpg").first).to_be_visible()
    page.get_by_role("link", name="Open").first.click()
    expect(page.get_by_role("heading", name="red-door.jpg")).to_be_visible()
    expect(page.get_by_text("Red Thing").first).to_be_visible()
    expect(page.get_by_test_id("stImage").first.locator("img")).to_have_attribute(
        "src", re.compile("^data:image/")
    )
    _signed_in_and_well(page)
    # (the tab reconnected through the load balancer, answered by the other server: its
    # session lives there now, the first server's process being gone)
    killed = cluster.hosts[serving].proc
    assert other in seen and killed is not None and killed.poll() == -signal.SIGKILL

    # WHEN the killed dashboard is started again
    cluster.start(serving)
    # THEN it rejoins: a browser routed to it is answered by it again
    cluster.wait_answered_by(serving, serving)
    # AND the browser that moved stays where it is (its cookie names the other server now)
    assert _served_by(context.request, cluster) == other
    # AND the same session, routed to the rejoined server, is served there signed in with the photo
    session = [c for c in context.cookies() if c["name"] == "labelkit_session"]
    assert session, context.cookies()
    second = _context(browser)
    second.add_cookies(
        [
            {"name": "labelkit_session", "value": session[0]["value"], "url": cluster.url},
            {"name": ROUTE_COOKIE, "value": serving, "url": cluster.url},
        ]
    )
    page2 = second.new_page()
    response = page2.goto(cluster.url, wait_until="domcontentloaded")
    assert response is not None and response.headers.get(SERVED_BY.lower()) == serving
    expect(page2.get_by_role("heading", name="Gallery")).to_be_visible()
    expect(page2.get_by_text("red-door.jpg").first).to_be_visible()
    _signed_in_and_well(page2)
    second.close()
    context.close()


def test_a_rolling_restart_while_a_browser_keeps_clicking(cluster: Cluster, browser: Browser) -> None:
    # GIVEN both servers in rotation and a signed-in browser on one of them
    for name in cluster.hosts:
        cluster.wait_answered_by(name, name)
    context = _context(browser)
    page = context.new_page()
    bad: list[str] = []
    page.on("response", lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    page.goto(cluster.url, wait_until="domcontentloaded")
    sign_in_in_browser(page, USER, PASSWORD)
    seen = _answers(page)
    events_before = len(cluster.events)

    # WHEN each server is stopped (SIGTERM), started again and back in rotation, one at a time,
    # the next step waiting each time for the browser to have shown one more page meanwhile
    shown = threading.Condition()
    clicks: list[str] = []  # the pages shown, each with the step of the restart it was shown in
    failures: list[BaseException] = []

    def after_a_click(step: str) -> None:
        with shown:
            before = len(clicks)
            if not shown.wait_for(lambda: len(clicks) > before, timeout=DEADLINE):
                raise AssertionError(f"the browser showed no page while {step}")

    def roll() -> None:
        try:
            for name in cluster.hosts:
                cluster.stop(name)
                cluster.wait_answered_by(name, cluster.other(name))  # its browsers go elsewhere
                after_a_click(f"{name} was stopped")
                cluster.start(name)
                cluster.wait_answered_by(name, name)  # and it takes new ones again
                after_a_click(f"{name} was back")
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    roller = threading.Thread(target=roll, name="rolling-restart", daemon=True)
    roller.start()
    # AND the browser keeps clicking between two pages all the while
    pages = [("Gallery", "Gallery"), ("Upload", "Upload photos")]
    while roller.is_alive():
        name, heading = pages[len(clicks) % 2]
        _nav(page, name, heading)
        # THEN every click shows its page, signed in, without an error
        _signed_in_and_well(page)
        with shown:
            clicks.append(f"{name} after {cluster.events[events_before:][-1:]}")
            shown.notify_all()
    roller.join()
    assert not failures, failures
    assert cluster.events[events_before:] == [
        "a stopped (SIGTERM)",
        "a started",
        "b stopped (SIGTERM)",
        "b started",
    ]
    assert len(clicks) >= 4, clicks
    # AND no request of the page was answered with a server error
    assert bad == []
    # AND the tab was moved from server to server (it reconnected through the load balancer and
    # was answered by each in turn), and ends on the one not stopped last
    assert set(seen) == set(cluster.hosts), seen
    last_stopped = list(cluster.hosts)[-1]
    assert _served_by(context.request, cluster) == seen[-1] == cluster.other(last_stopped), seen
    context.close()
