"""Small helpers shared by test packages (ports, waiting for servers)."""

from __future__ import annotations

import socket
import time
import urllib.request

# How long a browser test waits for something to appear (ms). Generous: on a busy 2-core
# machine a Streamlit rerun plus the real model can take many seconds; a wait ends as
# soon as its condition holds, so a fast machine pays nothing for it.
BROWSER_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 180) -> None:
    """Wait until ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {last}")
