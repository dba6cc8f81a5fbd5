"""``python -m labelkit.run`` (what ``make run`` starts): the whole product locally.

Starts the Streamlit dashboard and a local listener as child processes, after
migrating the database once (so the two never race to create it). Ctrl-C or
SIGTERM stops both; if either dies, the other is stopped too and the exit
code says so. Everything runs on the embedded defaults unless LABELKIT_*
variables (or a .env file) say otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import FrameType

from labelkit.db.engine import dispose_engines, get_engine
from labelkit.db.migrate import upgrade
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
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += [f"--{section}.{key}", text]
    return flags


def _children(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    py = sys.executable
    dashboard = [
        py, "-m", "streamlit", "run", str(ROOT / "dashboard" / "streamlit_app.py"),
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
    procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in _children(args)}
    print(
        f"\n  Labelkit is starting: http://{args.host}:{args.port}\n"
        "  (Ctrl-C stops the dashboard and the listener)\n",
        flush=True,
    )

    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"labelkit: the {name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                code = proc.returncode or 1
                stopping = True
        time.sleep(0.3)

    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
