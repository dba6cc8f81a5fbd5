"""The HTTP side of the dashboard, around Streamlit (served together by ``dashboard/asgi.py``).

Streamlit 1.67 runs on Starlette/uvicorn and ``st.App`` takes extra routes and ASGI middleware,
so the things Streamlit cannot do from a page script happen here, in plain HTTP:

* **Session cookies** (``labelkit.auth.sessions``): a page load without a session cookie gets
  a fresh random one; ``/session/start?h=<secret>`` turns a sign-in handoff into the session
  cookie (a new token) plus a long-lived device cookie, then sends the browser on to the
  sign-in page's deep link (``?next=``, rebuilt by :mod:`dashboard.deep_link`);
  ``/session/end`` replaces the cookie after sign-out. All are
  ``HttpOnly; SameSite=Strict; Path=/``. Over HTTPS (directly, or through nginx's
  ``X-Forwarded-Proto``, which uvicorn honours from the local proxy only) they are ``Secure``
  and named ``__Host-labelkit_session`` / ``__Host-labelkit_device``, which no sibling
  subdomain or plain-HTTP page can plant; each request reads only the names of its own scheme.
* **The handoff** needs the pre-sign-in cookie *and* the one-time secret only the signing-in
  tab was given (over its WebSocket): a cookie someone planted, polled here, collects nothing.
  ``/session/start`` answers with a redirect to a URL without the secret and
  ``Referrer-Policy: no-referrer``, and at most ``START_LIMIT`` requests per client address in
  ``START_WINDOW`` seconds (then 429 with ``Retry-After``).
* **Private downloads**: ``/media/…`` (Streamlit's URLs for download buttons; photos are sent
  inline over the WebSocket instead, see ``dashboard.core``) answers only the live signed-in
  session a page drew that download for (:data:`MEDIA_OWNERS`, filled by
  ``dashboard.core.download_button``), with ``Cache-Control: private, no-store``; anyone
  else, signed in or not, gets 404.
* **Database down**: the routes' session lookups use the session-check engine
  (``labelkit.db.engine.get_session_engine``), and a database error is a 503 saying the service
  is temporarily unavailable, within a few seconds.
* **Closed endpoints**: ``/_stcore/metrics`` (per-session counters and cache sizes, open to
  anyone in Streamlit) and the agent API (``/_stcore/agent/…``, off but answering) are 404.
* **Security headers** on every response, in local mode as behind nginx: ``nosniff``,
  ``X-Frame-Options: SAMEORIGIN`` plus CSP ``frame-ancestors 'self'`` (no framing by other
  sites), ``object-src 'none'``, ``base-uri 'self'``, ``form-action 'self'``,
  ``Referrer-Policy: same-origin``, ``Cross-Origin-Opener-Policy: same-origin`` and a
  ``Permissions-Policy`` that turns off camera, microphone and location. (A ``script-src``
  is not set: Streamlit's own page has an inline script and Vega charts compile expressions.)
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any, Final

import anyio.to_thread
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from dashboard import deep_link, downloads
from labelkit.auth import Principal
from labelkit.auth.sessions import (
    COOKIE_NAME,
    DEVICE_COOKIE_NAME,
    SessionStore,
    cookie_name,
    hash_token,
    new_token,
    plausible_token,
)
from labelkit.db.engine import get_session_engine
from labelkit.settings import get_settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Set once the middleware is installed (dashboard/asgi.py); read by dashboard.core.
SERVED = False
SESSION_START: Final = "/session/start"
SESSION_END: Final = "/session/end"
HANDOFF_PARAM: Final = "h"  # /session/start?h=<the handoff's one-time secret>
MEDIA_PREFIX: Final = "/media/"
START_LIMIT: Final = 10  # /session/start requests per client address ...
START_WINDOW: Final = 10.0  # ... in this many seconds (one sign-in needs one)
# What a person is told when the database does not answer (a page, or these routes' 503).
UNAVAILABLE: Final = "The service is temporarily unavailable; try again in a minute."
# The errors of a database that is down or unreachable (not of a query that is wrong).
DATABASE_DOWN: Final = (OperationalError, InterfaceError)
CLOSED_PATHS: Final = ("/_stcore/metrics", "/_stcore/agent/")
SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (
        b"content-security-policy",
        b"frame-ancestors 'self'; object-src 'none'; base-uri 'self'; form-action 'self'",
    ),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)


@functools.cache
def session_store() -> SessionStore:
    """The same store (and engine: ``get_session_engine`` caches one per URL) the pages use."""
    settings = get_settings()
    return SessionStore.from_settings(settings, engine=get_session_engine(settings))


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per key (a client address), counted
    in this process; refused requests are not counted.

    In-process is enough for ``/session/start``: the dashboard runs as one process per host
    (``make run``, the EC2 unit), so one counter sees every request of that host. And it only
    keeps a flood from costing a database lookup per request: no rate of guessing can collect a
    handoff, which needs a 256-bit one-time secret besides the cookie. Memory is bounded: at
    ``max_keys`` addresses the idle ones are forgotten, then the oldest.
    """

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._max_keys = max_keys
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """0.0 if a request under ``key`` may go ahead now (it is counted); else the seconds
        until it may."""
        now = self._clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self._max_keys:
                    self._forget(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            return 0.0

    def __len__(self) -> int:
        """How many addresses are remembered."""
        return len(self._hits)

    def _forget(self, now: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]:
            del self._hits[key]
        excess = len(self._hits) - self._max_keys * 9 // 10
        for key in list(self._hits)[: max(excess, 0)]:  # a flood from many addresses: the oldest go
            del self._hits[key]


START_LIMITER: Final = RateLimiter(limit=START_LIMIT, window=START_WINDOW)


class MediaOwners:
    """Which browser session may fetch which download.

    Streamlit serves a download button's file at ``/media/<file id>.<ext>`` to anyone who has
    the URL. A page draws a download through ``dashboard.core.download_button``, which records
    the file id against the hash of the signed-in session's cookie token here; the middleware
    serves a ``/media/`` file only to a live session recorded for it (two people who made the
    very same file, bytes and name, may both fetch it). Bounded: past ``max_grants`` (about
    150 bytes each) the least recently drawn are forgotten, and their downloads answer 404
    until the page that offers them runs again.
    """

    def __init__(self, *, max_grants: int = 50_000) -> None:
        self._grants: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._max_grants = max_grants
        self._lock = threading.Lock()

    def grant(self, file_id: str, session_token: str) -> None:
        key = (file_id, hash_token(session_token))
        with self._lock:
            self._grants[key] = None
            self._grants.move_to_end(key)
            while len(self._grants) > self._max_grants:
                self._grants.popitem(last=False)

    def allowed(self, file_id: str, session_token: str | None) -> bool:
        if not plausible_token(session_token):
            return False
        assert session_token is not None
        with self._lock:
            return (file_id, hash_token(session_token)) in self._grants


MEDIA_OWNERS: Final = MediaOwners()


def media_file_id(path: str) -> str:
    """The file id in a ``/media/<file id>.<ext>`` path (as Streamlit's media storage reads it)."""
    return os.path.splitext(path[len(MEDIA_PREFIX) :])[0]


def set_cookie(name: str, value: str, *, max_age: int, secure: bool) -> str:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers") or ():
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is the client's problem: treat as none
                logger.debug("unparsable Cookie header ignored")
    return {k: m.value for k, m in jar.items()}


def _is_https(scope: Scope) -> bool:
    return scope.get("scheme") in ("https", "wss")


def _client(request: Request) -> str:
    """The client's address (behind nginx, the one it forwarded: uvicorn trusts it from loopback)."""
    return request.client.host if request.client else "unknown"


def _unavailable() -> Response:
    return PlainTextResponse(
        UNAVAILABLE, status_code=503, headers={"retry-after": "60", "cache-control": "no-store"}
    )


# --------------------------------------------------------------------------- routes


async def session_start(request: Request) -> Response:
    """Collect this browser's sign-in handoff as an HttpOnly session cookie, then go to the app.

    The handoff is collected only with the cookie it was made for *and* its one-time secret
    (``?h=``), which only the tab that signed in was given; the redirect's URL has no secret,
    and the middleware sends ``Referrer-Policy: no-referrer`` with it."""
    wait = START_LIMITER.retry_after(_client(request))
    if wait:
        seconds = math.ceil(wait)
        return PlainTextResponse(
            f"Too many sign-in requests from this address; try again in {seconds} s.",
            status_code=429,
            headers={"retry-after": str(seconds), "cache-control": "no-store"},
        )
    store = session_store()
    secure = _is_https(request.scope)
    session_name = cookie_name(COOKIE_NAME, secure=secure)
    device_name = cookie_name(DEVICE_COOKIE_NAME, secure=secure)
    known_device = request.cookies.get(device_name)
    device = known_device if known_device and plausible_token(known_device) else new_token()
    try:
        token = await anyio.to_thread.run_sync(
            functools.partial(
                store.complete,
                request.cookies.get(session_name),
                request.query_params.get(HANDOFF_PARAM),
                device_token=device,
            )
        )
    except DATABASE_DOWN:
        logger.warning("sign-in handoff: the database did not answer", exc_info=True)
        return _unavailable()
    # Back to the deep link that led to the sign-in page, rebuilt as an in-app URL (see
    # dashboard.deep_link: never a URL elsewhere).
    response = RedirectResponse(deep_link.location(request.query_params.get(deep_link.NEXT)), status_code=303)
    response.headers["cache-control"] = "no-store"
    if token is not None:
        response.headers.append(
            "set-cookie", set_cookie(session_name, token, max_age=store.lifetime_seconds, secure=secure)
        )
        response.headers.append(
            "set-cookie", set_cookie(device_name, device, max_age=store.device_seconds, secure=secure)
        )
    return response


async def session_end(request: Request) -> Response:
    """After sign-out (the session is already revoked): a fresh, meaningless cookie."""
    store = session_store()
    secure = _is_https(request.scope)
    response = RedirectResponse("/", status_code=303)
    response.headers["cache-control"] = "no-store"
    response.headers.append(
        "set-cookie",
        set_cookie(
            cookie_name(COOKIE_NAME, secure=secure),
            new_token(),
            max_age=store.lifetime_seconds,
            secure=secure,
        ),
    )
    return response


def _download_principal(request: Request) -> Principal | None:
    """Who a ``/download/<token>`` request is signed in as (its session cookie)."""
    name = cookie_name(COOKIE_NAME, secure=_is_https(request.scope))
    return session_store().resume(request.cookies.get(name))


ROUTES: Final = [
    Route(SESSION_START, session_start, methods=["GET"]),
    Route(SESSION_END, session_end, methods=["GET"]),
    # Prepared export bundles, sent from disk to their owner only (dashboard.downloads).
    downloads.route(_download_principal),
]


# --------------------------------------------------------------------------- middleware


class LabelkitHttp:
    """Pure ASGI middleware (it must not buffer Streamlit's streamed responses)."""

    def __init__(self, app: ASGIApp) -> None:
        global SERVED
        self.app = app
        SERVED = True  # the pages hand sessions over through /session/start only then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path") or "/"
        if path.startswith(CLOSED_PATHS):
            await _answer(PlainTextResponse("Not found", status_code=404), scope, receive, send)
            return
        secure = _is_https(scope)
        session_name = cookie_name(COOKIE_NAME, secure=secure)
        cookies = _cookies(scope)
        media = path.startswith(MEDIA_PREFIX)
        if media:
            try:
                ok = await anyio.to_thread.run_sync(
                    _may_fetch, media_file_id(path), cookies.get(session_name)
                )
            except DATABASE_DOWN:
                logger.warning("download: the database did not answer", exc_info=True)
                await _answer(_unavailable(), scope, receive, send)
                return
            if not ok:
                await _answer(PlainTextResponse("Not found", status_code=404), scope, receive, send)
                return
        give_cookie = scope.get("method") == "GET" and not plausible_token(cookies.get(session_name))
        ours = _headers_for(path)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                headers.extend(ours)
                if media:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"private, no-store"))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if give_cookie and content_type.startswith(b"text/html"):
                    value = set_cookie(
                        session_name, new_token(), max_age=session_store().lifetime_seconds, secure=secure
                    )
                    headers.append((b"set-cookie", value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _may_fetch(file_id: str, session_token: str | None) -> bool:
    """Whether this cookie is a live session that a page drew download ``file_id`` for."""
    return MEDIA_OWNERS.allowed(file_id, session_token) and session_store().resume(session_token) is not None


_OURS: Final = frozenset(name for name, _ in SECURITY_HEADERS)
# /session/start's URL carries the handoff's secret: it is never anyone's referrer.
_NO_REFERRER: Final = tuple(
    (name, b"no-referrer" if name == b"referrer-policy" else value) for name, value in SECURITY_HEADERS
)


def _headers_for(path: str) -> tuple[tuple[bytes, bytes], ...]:
    return _NO_REFERRER if path == SESSION_START else SECURITY_HEADERS


async def _answer(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    for name, value in _headers_for(scope.get("path") or "/"):
        response.headers[name.decode()] = value.decode()
    await response(scope, receive, send)
