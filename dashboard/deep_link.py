"""Deep links for people who are not signed in yet: ``/image?image=<id>`` or a filtered
gallery (``/?label=Cat&page=2``) shows the sign-in page, and after signing in the browser
lands on that very view.

The target travels as ``?next=/image?image=<id>`` (the sign-in page's URL, then
``/session/start?next=…``). It is never used as it came: :func:`resolve` maps its path to
one of the dashboard's own pages (:class:`~dashboard.navigation.Page`) and keeps only its
query parameters, and :func:`location` rebuilds the URL from those, so ``next`` can name
nothing outside the app (no scheme, host, ``//`` or ``\\`` survives): no open redirect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from dashboard.navigation import PAGES, Page

NEXT: Final = "next"
MAX_LENGTH: Final = 2000  # a longer target is no link a person made: ignored


def url_path(page: Page) -> str:
    """The page's URL path as Streamlit names it (its script's stem; the default page is ``""``)."""
    return PurePosixPath(page.value).stem


# The pages a signed-in user can be sent to, by URL path. The signed-in default (the gallery)
# is also "" (the app's root).
_TARGETS: Final[dict[str, Page]] = {url_path(e.page): e.page for e in PAGES if e.audience != "signed_out"}
_DEFAULT: Final = next(e.page for e in PAGES if e.default and e.audience != "signed_out")


def resolve(target: str | None) -> tuple[Page, dict[str, str]] | None:
    """The in-app page and query parameters ``target`` names, or None when it names no page
    of the app (or anything outside it)."""
    if not target or len(target) > MAX_LENGTH or "\\" in target or not target.startswith("/"):
        return None
    if target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    path = parts.path.strip("/")
    page = _DEFAULT if path == "" else _TARGETS.get(path)
    if page is None:
        return None
    params = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=False) if k != NEXT}
    return page, params


def location(target: str | None) -> str:
    """Where to send the browser for ``target``: its in-app URL rebuilt, or ``/``."""
    found = resolve(target)
    if found is None:
        return "/"
    page, params = found
    path = "" if page == _DEFAULT else url_path(page)
    query = urlencode(params)
    return f"/{path}" + (f"?{query}" if query else "")


def target_of(path: str, params: Mapping[str, Any]) -> str:
    """The ``next`` value for a request of ``path`` with ``params`` (as the browser asked)."""
    flat = {k: (v[-1] if isinstance(v, list | tuple) and v else v) for k, v in params.items() if k != NEXT}
    query = urlencode({k: str(v) for k, v in flat.items() if v not in (None, "")})
    return f"/{path.strip('/')}" + (f"?{query}" if query else "")


def pending(params: Mapping[str, Any]) -> str | None:
    """The sign-in page's target: its ``next`` parameter when that names an app page; else, when
    the sign-in page itself was opened with query parameters (``/?label=Cat`` is the gallery
    to someone signed in), the gallery with those parameters."""
    value = params.get(NEXT)
    if isinstance(value, list | tuple):
        value = value[-1] if value else None
    if isinstance(value, str):
        return value if resolve(value) is not None else None
    others = {k: v for k, v in params.items() if k != NEXT}
    return target_of("/", others) if others else None


def signed_out_pages(sign_in: Callable[[str], None]) -> list[tuple[str, Callable[[], None]]]:
    """(URL path, page function) for every signed-in page, to register for nobody signed in:
    each calls ``sign_in(path)``, which sends the browser to the sign-in page with ``next``."""

    def make(path: str) -> Callable[[], None]:
        def run() -> None:
            sign_in(path)

        run.__name__ = f"sign_in_for_{path}"
        return run

    return [(path, make(path)) for path in _TARGETS]
