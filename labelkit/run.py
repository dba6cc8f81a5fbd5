"""``python -m labelkit.run`` (what ``make run`` starts): the whole product locally.

Starts the Streamlit dashboard and a local listener as child processes, after
migrating the database once (so the two never race to create it), and keeps
them running: a child that exits on its own is restarted after a pause that
doubles with each quick crash (1 s up to 30 s; back to 1 s once it has run a
minute), and the log says so. Only Ctrl-C or SIGTERM stops both. Everything
runs on the embedded defaults unless LABELKIT_* variables (or a .env file) say
otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from labelkit.db.engine import dispose_engines, get_engine
from labelkit.db.migrate import upgrade
from labelkit.retry import restart_pause
from labelkit.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m labelkit.run", description=__doc__)
    p.add_argument(
        "--host", default="127.0.0.1", help="address the dashboard listens on (default %(default)s)"
    )
    p.add_argument("--port", type=int, default=8501, help="dashboard port (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="listener workers (default from settings)")
    p.add_argument("--no-listener", action="store_true", help="start the dashboard only")
    return p.parse_args(argv)


def _streamlit_flags() -> list[str]:
    """The repository's .streamlit/config.toml as command-line flags.

    Streamlit reads that file only from the current directory; passing it as
    flags gives the same look wherever ``make run`` / the tests start from.
    """
    path = ROOT / ".streamlit" / "config.toml"
    if not path.is_file():
        return []
    flags = []
    for section, options in tomllib.loads(path.read_text()).items():
        for key, value in options.items():
            if f"{section}.{key}" == "server.maxUploadSize":
                continue  # derived from the settings below
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += [f"--{section}.{key}", text]
    # Streamlit's server limit follows Labelkit's (LABELKIT_MAX_UPLOAD_BYTES), a little above
    # it, so intake, not Streamlit, refuses a file that is too big (see UploadLimits).
    return [*flags, "--server.maxUploadSize", str(get_settings().upload_limits.streamlit_mb)]


def _children(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    py = sys.executable
    dashboard = [
        py, "-m", "streamlit", "run", str(ROOT / "dashboard" / "asgi.py"),
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--server.headless", "true",
        *_streamlit_flags(),
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    out = [("dashboard", dashboard)]
    if not args.no_listener:
        listener = [py, "-m", "sqs_listener", "--no-migrate", "--plain-logs"]
        if args.workers:
            listener += ["--workers", str(args.workers)]
        out.append(("listener", listener))
    return out


HEALTHY_AFTER = 60.0  # seconds a child must run before a crash counts as a fresh one


@dataclass
class Child:
    """One supervised child process and its restart state."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_crashes: int = 0  # crashes in a row, each within HEALTHY_AFTER of its start
    restart_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=self.env)
        self.started = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        """Restart the child if it has exited (after its back-off pause)."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                print(f"labelkit: restarting the {self.name} (restart {self.restarts})", file=sys.stderr)
                self.start()
            return
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            return
        if now - self.started >= HEALTHY_AFTER:
            self.quick_crashes = 0
        self.quick_crashes += 1
        pause = restart_pause(self.quick_crashes)  # 1 s, doubling, at most 30 s
        print(
            f"labelkit: the {self.name} exited with code {code}; restarting it in {pause:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        self.restart_at = now + pause

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(get_engine(settings))
    dispose_engines()

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    children = [Child(name, cmd, env) for name, cmd in _children(args)]
    for child in children:
        child.start()
    print(
        f"\n  Labelkit is starting: http://{args.host}:{args.port}\n"
        "  (Ctrl-C stops the dashboard and the listener)\n",
        flush=True,
    )

    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.wait(0.3):
        now = time.monotonic()
        for child in children:
            child.check(now)

    for child in children:
        child.terminate()
    deadline = time.monotonic() + 20
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
