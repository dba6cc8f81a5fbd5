"""The HTTP side of the dashboard, around Streamlit (served together by ``dashboard/asgi.py``).

Streamlit 1.67 runs on Starlette/uvicorn and ``st.App`` takes extra routes and ASGI middleware,
so the things Streamlit cannot do from a page script happen here, in plain HTTP:

* **Session cookies** (``labelkit.auth.sessions``): a page load without a ``labelkit_session``
  cookie gets a fresh random one; ``/session/start`` turns a sign-in handoff into the session
  cookie (a new token) plus a long-lived device cookie, then sends the browser on to the
  sign-in page's deep link (``?next=``, rebuilt by :mod:`dashboard.deep_link`);
  ``/session/end`` replaces the cookie after sign-out. All are
  ``HttpOnly; SameSite=Strict; Path=/``, and ``Secure`` when the request came over HTTPS
  (directly, or through nginx's ``X-Forwarded-Proto``, which uvicorn honours from the local proxy only).
* **Private media**: ``/media/…`` (Streamlit's URLs for downloads; photos are sent inline over
  the WebSocket instead, see ``dashboard.core``) answers only a request carrying a live signed-in
  session cookie, with ``Cache-Control: private, no-store``; anyone else gets 404.
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
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any, Final

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from dashboard import deep_link
from labelkit.auth.sessions import (
    COOKIE_NAME,
    DEVICE_COOKIE_NAME,
    SessionStore,
    new_token,
    plausible_token,
)
from labelkit.db.engine import get_engine
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
    """The same store (and engine: ``get_engine`` caches one per URL) the pages use."""
    settings = get_settings()
    return SessionStore.from_settings(settings, engine=get_engine(settings))


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


# --------------------------------------------------------------------------- routes


async def session_start(request: Request) -> Response:
    """Collect this browser's sign-in handoff as an HttpOnly session cookie, then go to the app."""
    store = session_store()
    secure = _is_https(request.scope)
    known_device = request.cookies.get(DEVICE_COOKIE_NAME)
    device = known_device if known_device and plausible_token(known_device) else new_token()
    token = await anyio.to_thread.run_sync(
        functools.partial(store.complete, request.cookies.get(COOKIE_NAME), device_token=device)
    )
    # Back to the deep link that led to the sign-in page, rebuilt as an in-app URL (see
    # dashboard.deep_link: never a URL elsewhere).
    response = RedirectResponse(deep_link.location(request.query_params.get(deep_link.NEXT)), status_code=303)
    response.headers["cache-control"] = "no-store"
    if token is not None:
        response.headers.append(
            "set-cookie", set_cookie(COOKIE_NAME, token, max_age=store.lifetime_seconds, secure=secure)
        )
        response.headers.append(
            "set-cookie", set_cookie(DEVICE_COOKIE_NAME, device, max_age=store.device_seconds, secure=secure)
        )
    return response


async def session_end(request: Request) -> Response:
    """After sign-out (the session is already revoked): a fresh, meaningless cookie."""
    store = session_store()
    response = RedirectResponse("/", status_code=303)
    response.headers["cache-control"] = "no-store"
    response.headers.append(
        "set-cookie",
        set_cookie(COOKIE_NAME, new_token(), max_age=store.lifetime_seconds, secure=_is_https(request.scope)),
    )
    return response


ROUTES: Final = [
    Route(SESSION_START, session_start, methods=["GET"]),
    Route(SESSION_END, session_end, methods=["GET"]),
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
        cookies = _cookies(scope)
        media = path.startswith("/media/")
        if media:
            signed_in = await anyio.to_thread.run_sync(session_store().resume, cookies.get(COOKIE_NAME))
            if signed_in is None:
                await _answer(PlainTextResponse("Not found", status_code=404), scope, receive, send)
                return
        give_cookie = scope.get("method") == "GET" and not plausible_token(cookies.get(COOKIE_NAME))
        secure = _is_https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                headers.extend(SECURITY_HEADERS)
                if media:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"private, no-store"))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if give_cookie and content_type.startswith(b"text/html"):
                    value = set_cookie(
                        COOKIE_NAME, new_token(), max_age=session_store().lifetime_seconds, secure=secure
                    )
                    headers.append((b"set-cookie", value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


_OURS: Final = frozenset(name for name, _ in SECURITY_HEADERS)


async def _answer(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    await response(scope, receive, send)
