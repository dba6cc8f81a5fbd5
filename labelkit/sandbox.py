"""Run untrusted-image work in a child process with a deadline and a memory ceiling.

Why a process, not a thread or a signal: a decoder stuck in C code (libjpeg working
through 2,000 progressive scans, say) cannot be interrupted from Python -- a thread
cannot be stopped at all, and a signal handler runs only once the C call returns. The
one thing that always stops it is killing the process it runs in. A process also lets
the kernel cap its address space (``RLIMIT_AS``), so an allocation that intake's
estimates missed fails *in the child* with ``MemoryError`` instead of growing the
dashboard or the worker.

How it works:

* A small pool of long-lived children (``python -m labelkit.sandbox``), started on
  first use. Each child imports :mod:`labelkit.images`, sets its own address-space
  limit (before it reads any untrusted byte), says "ready", then serves one task at
  a time from its stdin.
* The caller writes one request and waits for the answer for at most ``timeout``
  seconds. Past that the child is SIGKILLed (and replaced on the next call) and the
  image is refused with :class:`~labelkit.errors.IntakeError`; a child that dies on a
  task (a crashed decoder, the kernel's OOM killer) refuses the image too.
* Waiting for a free child is not part of the deadline: the deadline is what one
  image may cost, not how busy the machine is. The number of children bounds how
  many decodes (and how much decode memory) run at once.
* The wire format is a JSON header plus raw bytes, never pickle: the child parses
  hostile input, so nothing it sends back is trusted to run code in the parent.

Errors (see :mod:`labelkit.errors`)::

    IntakeError         the image took too long, needed too much memory, or crashed
                        the decoder (``reason`` is for people)
    DecoderUnavailable  no child could be started (the machine, not the image)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

from labelkit.errors import DecoderUnavailable, IntakeError

logger = logging.getLogger(__name__)

__all__ = ["Sandbox", "get_sandbox", "shutdown_all"]

_HEADER: Final = struct.Struct(">I")
_PAYLOAD: Final = struct.Struct(">Q")
_MAX_HEADER: Final = 1 << 16  # a reply header is a few hundred bytes of JSON
_START_SECONDS: Final = 120.0  # importing numpy + Pillow on a busy 2-core machine: seconds, not minutes
_MB: Final = 1024 * 1024
# Room above the decode budget for the interpreter's own growth and decoder buffers the
# estimates do not count; the child's address space is capped at idle + budget + this.
_SLACK_BYTES: Final = 128 * _MB
# A child that has grown this much above its idle size after a task retires, so a
# decode's freed-but-kept heap does not stay resident for the life of the pool.
_RETIRE_GROWTH_BYTES: Final = 96 * _MB

_TOO_LONG: Final = (
    "The image takes too long to decode (more than {seconds:g} s), so it is refused to keep the service "
    "responsive."
)
_TOO_BIG: Final = "The image is too large to decode within the memory limit."
_CRASHED: Final = "The image could not be decoded: the decoder failed on it."


class _ChildGone(Exception):
    """The child exited or closed its pipe, or stopped speaking the protocol."""


class _ChildWasGone(_ChildGone):
    """The child was already gone before it was given the task (so the image is not to blame)."""


def _status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status (0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    """Read exactly ``n`` bytes from ``fd``, waiting at most until ``deadline``."""
    chunks = bytearray()
    while len(chunks) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise TimeoutError
        block = os.read(fd, min(n - len(chunks), 1 << 20))
        if not block:
            raise _ChildGone
        chunks += block
    return bytes(chunks)


def _write_message(out: IO[bytes], header: dict[str, Any], payload: bytes) -> None:
    raw = json.dumps(header, separators=(",", ":")).encode()
    out.write(_HEADER.pack(len(raw)))
    out.write(raw)
    out.write(_PAYLOAD.pack(len(payload)))
    out.write(payload)
    out.flush()


def _read_message(fd: int, deadline: float | None, max_payload: int) -> tuple[dict[str, Any], bytes]:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > _MAX_HEADER:
        raise _ChildGone
    header = json.loads(_read_exact(fd, size, deadline))
    if not isinstance(header, dict):
        raise _ChildGone
    (length,) = _PAYLOAD.unpack(_read_exact(fd, _PAYLOAD.size, deadline))
    if length > max_payload:
        raise _ChildGone
    return header, _read_exact(fd, length, deadline) if length else b""


class _Child:
    """One ``python -m labelkit.sandbox`` process and its two pipes."""

    def __init__(self, memory_bytes: int) -> None:
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        # One thread per numeric library: the child decodes one image at a time, and
        # every extra thread reserves address space that counts against RLIMIT_AS.
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = "1"
        if not sys.executable:
            raise DecoderUnavailable("no Python interpreter to start the decoder with")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "labelkit.sandbox", "--memory-bytes", str(memory_bytes)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as e:
            raise DecoderUnavailable(f"could not start the decoder process: {e}") from e
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin
        self._out = self.proc.stdout.fileno()
        self.max_payload = memory_bytes + _SLACK_BYTES
        try:
            header, _ = _read_message(self._out, time.monotonic() + _START_SECONDS, 0)
        except (TimeoutError, _ChildGone, ValueError) as e:
            self.kill()
            raise DecoderUnavailable("the decoder process did not start") from e
        if not header.get("ready"):
            self.kill()
            raise DecoderUnavailable("the decoder process did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(
        self, task: str, params: dict[str, Any], data: bytes, timeout: float
    ) -> tuple[dict[str, Any], bytes]:
        if self.proc.poll() is not None:
            raise _ChildWasGone
        try:
            _write_message(self._in, {"task": task, "params": params}, data)
        except OSError as e:  # BrokenPipeError: it exited while idle
            raise _ChildWasGone from e
        try:
            return _read_message(self._out, time.monotonic() + timeout, self.max_payload)
        except ValueError as e:  # not JSON: the child is not speaking the protocol
            raise _ChildGone from e

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.reap()

    def reap(self) -> None:
        with contextlib.suppress(OSError):
            self._in.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()

    def close(self) -> None:
        """Ask politely (EOF on stdin), then insist."""
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        self.reap()


class Sandbox:
    """A pool of at most ``processes`` decoder children, each capped at ``memory_bytes``."""

    def __init__(self, *, memory_bytes: int, processes: int = 2) -> None:
        self.memory_bytes = memory_bytes
        self.processes = max(1, processes)
        self._slots = threading.BoundedSemaphore(self.processes)
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._pid = os.getpid()

    def run(
        self, task: str, params: dict[str, Any], data: bytes, *, timeout: float
    ) -> tuple[dict[str, Any], bytes]:
        """Run ``task`` in a child; its reply, or :class:`IntakeError` for people."""
        with self._slots:
            for attempt in (1, 2):
                child = self._checkout()
                started = time.monotonic()
                try:
                    header, payload = child.call(task, params, data, timeout)
                except TimeoutError:
                    logger.warning(
                        "decoder %d stopped after %.1f s on a %s task; image refused",
                        child.pid,
                        time.monotonic() - started,
                        task,
                    )
                    child.kill()
                    raise IntakeError(_TOO_LONG.format(seconds=timeout)) from None
                except _ChildWasGone:
                    child.kill()
                    if attempt == 1:
                        continue  # an idle child someone stopped: once more with a new one
                    raise DecoderUnavailable("the decoder process exits before it can work") from None
                except _ChildGone:
                    child.kill()
                    code = child.proc.returncode
                    logger.warning(
                        "decoder %d died on a %s task (exit %s); image refused", child.pid, task, code
                    )
                    if code == -signal.SIGKILL:
                        raise IntakeError(_TOO_BIG) from None  # the kernel's OOM killer
                    raise IntakeError(_CRASHED) from None
                if header.pop("retire", False):
                    child.close()
                else:
                    self._checkin(child)
                return header, payload
        raise AssertionError("unreachable")

    def _checkout(self) -> _Child:
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the children belong to the parent process; start afresh.
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return _Child(self.memory_bytes)

    def _checkin(self, child: _Child) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._idle.append(child)
                return
        child.close()

    def child_pids(self) -> list[int]:
        """The idle children's process ids (for tests and diagnostics)."""
        with self._lock:
            return [c.pid for c in self._idle]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()


_pools: dict[tuple[int, int], Sandbox] = {}
_pools_lock = threading.Lock()


def get_sandbox(*, memory_bytes: int, processes: int) -> Sandbox:
    """The process-wide pool for these limits (usually there is exactly one)."""
    key = (memory_bytes, processes)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = Sandbox(memory_bytes=memory_bytes, processes=processes)
        return pool


@atexit.register
def shutdown_all() -> None:
    """Stop every child (they would also exit on their own when this process's pipes close)."""
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        pool.close()


# --------------------------------------------------------------------------- the child


def _limit_memory(memory_bytes: int) -> None:
    idle = _status_kb("VmSize") * 1024
    if idle <= 0:
        return
    cap = idle + memory_bytes + _SLACK_BYTES
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _serve(
    memory_bytes: int, handler: Callable[[str, dict[str, Any], bytes], tuple[dict[str, Any], bytes]]
) -> int:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    source = sys.stdin.fileno()
    _limit_memory(memory_bytes)
    idle_rss = _status_kb("VmRSS") * 1024
    _write_message(out, {"ready": True}, b"")
    while True:
        try:
            request, data = _read_message(source, None, memory_bytes + _SLACK_BYTES)
        except _ChildGone:
            return 0  # the parent closed the pipe: time to go
        task, params = str(request.get("task")), request.get("params") or {}
        retire = False
        try:
            header, payload = handler(task, params, data)
            header = {"ok": True, **header}
        except IntakeError as e:
            header, payload = {"ok": False, "reason": e.reason}, b""
        except MemoryError:
            # The address-space cap did its job; the heap may be in a poor state, so go.
            header, payload, retire = {"ok": False, "reason": _TOO_BIG}, b"", True
        del data
        if retire or _status_kb("VmRSS") * 1024 - idle_rss > _RETIRE_GROWTH_BYTES:
            header["retire"] = True
            retire = True
        _write_message(out, header, payload)
        if retire:
            return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m labelkit.sandbox", description="decoder child process")
    parser.add_argument("--memory-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s decoder %(process)d: %(message)s")
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from labelkit.images import run_task

    return _serve(args.memory_bytes, run_task)


if __name__ == "__main__":
    sys.exit(main())
