"""A tiny TCP proxy whose link can be cut and restored: "the database is unreachable"
without touching the shared MariaDB server the other tests use.

Two kinds of cut:

* ``cut()``: every relayed connection is closed on both sides at once (both peers
  see the connection end, as when a proxy or the server restarts) and new
  connections are refused until ``restore()``;
* ``cut(half_open=True)``: the relayed connections are abandoned *silently*: the
  proxy keeps their sockets open but never forwards another byte or FIN in either
  direction (a network blip, a NAT or firewall that forgot the flow). Neither peer
  learns anything: the client waits for answers that never come, the server keeps
  the session (and its open transaction's row locks) until one of them times out.
  New connections are refused until ``restore()``; the abandoned ones stay dead.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: socket.socket
    upstream: socket.socket
    abandoned: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        # shutdown() first: it sends the FIN and wakes a thread blocked in recv() on the
        # socket; close() alone does neither while another thread is inside recv().
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.close()


class CuttableProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._up = threading.Event()
        self._up.set()
        self._links: list[_Link] = []
        self._abandoned: list[_Link] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, *, half_open: bool = False) -> None:
        """End (or, with ``half_open``, silently abandon) every link; refuse new ones."""
        self._up.clear()
        with self._lock:
            links, self._links = self._links, []
            for link in links:
                if half_open:
                    link.abandoned.set()
                    self._abandoned.append(link)
                else:
                    link.close()

    def restore(self) -> None:
        self._up.set()

    def abandoned_server_ports(self) -> set[int]:
        """Local ports of the abandoned links' server-side sockets: the server lists each
        such session as ``127.0.0.1:<port>`` (MySQL's processlist ``host``)."""
        with self._lock:
            ports = set()
            for link in self._abandoned:
                with contextlib.suppress(OSError):
                    ports.add(int(link.upstream.getsockname()[1]))
            return ports

    def close(self) -> None:
        self._closed = True
        self.cut()
        with self._lock:
            for link in self._abandoned:
                link.close()
            self._abandoned.clear()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()  # refused while the link is cut
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                if not self._up.is_set():  # cut while this one was being connected
                    link.close()
                    continue
                self._links.append(link)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(link, a, b), daemon=True).start()

    @staticmethod
    def _pipe(link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not link.abandoned.is_set():
                    dst.sendall(data)
                # abandoned: keep reading (so the sender's writes succeed) and drop it all
        except OSError:
            pass
        if not link.abandoned.is_set():
            link.close()  # one side ended: end the other (an abandoned link tells nobody)
