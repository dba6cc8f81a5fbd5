"""``make run`` keeps the product up (issue 15): a child that crashes is restarted and
the log says so; only Ctrl-C/SIGTERM stops both.

The real ``python -m labelkit.run`` (dashboard + listener, the fake labeller so no
model is needed); the listener is SIGKILLed as a crash would end it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


def _children(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` -> their command lines (Linux /proc)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                out[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # it ended meanwhile
    return out


def _listener_pid(pid: int) -> int | None:
    return next((c for c, cmd in _children(pid).items() if "sqs_listener" in cmd), None)


def _wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_crashed_listener_is_restarted_and_the_dashboard_stays_up(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELKIT_", "AWS_"))}
    env.update(LABELKIT_DATA_DIR=str(tmp_path / "data"), LABELKIT_LABELER="fake", PYTHONPATH=str(ROOT))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "labelkit.run", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        first = _wait(lambda: _listener_pid(run.pid), 120, "the listener to start")
        # WHEN the listener crashes
        os.kill(first, signal.SIGKILL)
        # THEN a new one is started and the log says so, and the dashboard never went down
        second = _wait(
            lambda: (p := _listener_pid(run.pid)) not in (None, first) and p, 120, "a new listener"
        )
        assert second != first
        text = log.read_text()
        assert "the listener exited with code -9; restarting it in 1 s" in text, text[-2000:]
        assert run.poll() is None
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        # WHEN SIGTERM arrives THEN both stop and it exits cleanly
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=120) == 0
        assert not Path(f"/proc/{second}").exists()  # stopped and reaped, not left running
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
