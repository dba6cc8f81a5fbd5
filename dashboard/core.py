"""What every dashboard page shares, as Streamlit glue: cached services, the signed-in user,
cached thumbnails, small UI helpers. Drawing (boxes, crops, swatches) is ``labelkit.render``;
which pages exist is ``dashboard.navigation``.

Engines, stores, the queue and the authenticator are ``st.cache_resource`` (one
per process, not per rerun). Derived images (thumbnails, display copies with
boxes) are ``st.cache_data`` keyed by object key and sha256, so the gallery never
sends full-size photos. Query results that feed charts are cached briefly
(``st.cache_data(ttl=...)``) and cleared by :func:`data_changed` after an edit.

Nothing here decides who may see what: every query goes through
``labelkit.db.queries`` with :func:`viewer`, which scopes it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import urlencode

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.memory_media_file_storage import _calculate_file_id
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile

from dashboard import deep_link, web
from dashboard.navigation import Page
from labelkit import analytics, render
from labelkit.auth import Authenticator, Principal, SignInClient, make_authenticator
from labelkit.auth.sessions import COOKIE_NAME, DEVICE_COOKIE_NAME, SessionStore, cookie_name
from labelkit.db.engine import get_session_engine, transaction
from labelkit.db.models import Image, ImageStatus
from labelkit.db.queries import thumbs as thumb_q
from labelkit.domain import BoundingBox, Viewer
from labelkit.errors import LabelkitError
from labelkit.features import thumbnail_key
from labelkit.features.thumbnail import THUMBNAIL_QUALITY
from labelkit.images import DecodeLimits, make_thumbnail
from labelkit.malloc import return_large_blocks_to_the_os
from labelkit.services import Services, build_services
from labelkit.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# Uploads are up to 20 MB each: have their buffers unmapped when freed (see labelkit.malloc).
return_large_blocks_to_the_os()

PRINCIPAL_KEY = "principal"
_TOKEN = "_session_token"
_REDIRECT = "_pending_redirect"
DISPLAY_SIDE = 1600  # the image page never sends more than this many pixels a side
FACE_SOURCE_SIDE = 900  # faces are cut from a copy this large (a face of 1/8 the photo: ~110 px)


# --------------------------------------------------------------------------- resources


@st.cache_resource(show_spinner=False)
def services() -> Services:
    """Engine, store and queue, built (and the database migrated) once per process."""
    return build_services(get_settings())


def settings() -> Settings:
    return services().settings


@st.cache_resource(show_spinner=False)
def authenticator() -> Authenticator:
    svc = services()
    return make_authenticator(svc.settings, engine=svc.engine)


@st.cache_resource(show_spinner=False)
def session_store() -> SessionStore:
    svc = services()
    if not _http_layer():
        logger.warning(
            "the dashboard is served without dashboard/asgi.py: sign-in lasts only as long as the "
            "tab, /_stcore/metrics is open and no security headers are sent "
            "(serve it with `streamlit run dashboard/asgi.py`)"
        )
    # Its own engine: with the database down, a page says so within seconds (see get_session_engine).
    return SessionStore.from_settings(svc.settings, engine=get_session_engine(svc.settings))


def _http_layer() -> bool:
    """Whether this process serves dashboard/asgi.py (its cookie routes and middleware)."""
    return web.SERVED


@contextmanager
def db() -> Iterator[Session]:
    """One transaction for a page's reads or one edit."""
    with transaction(services().engine) as s:
        yield s


# --------------------------------------------------------------------------- who is signed in


def _cookie(name: str) -> str | None:
    """Cookie ``name`` as this tab's connection calls it (``__Host-`` + name over HTTPS, see
    :func:`labelkit.auth.sessions.cookie_name`). Whether the page came over HTTPS is read from
    the WebSocket handshake's ``Origin``, which the browser sets and no page can change."""
    headers = st.context.headers
    origin = headers.get("origin") if headers else None
    secure = isinstance(origin, str) and origin.lower().startswith("https://")
    cookies = st.context.cookies
    value = cookies.get(cookie_name(name, secure=secure)) if cookies else None
    return value if isinstance(value, str) else None


def resolve_user() -> Principal | None:
    """Who is signed in, checked against the database on every run of the app (the entry
    point calls it first): a session revoked anywhere (sign-out in another tab, the user
    deleted), expired or idle ends here, at this tab's next interaction; a new tab or a
    reload resumes from the HttpOnly session cookie its WebSocket handshake carried.

    With the database down the page says the service is temporarily unavailable (within a
    few seconds: the session check's own engine) and stops."""
    try:
        return _resolve_user()
    except web.DATABASE_DOWN:
        _database_unavailable()


def _database_unavailable() -> NoReturn:
    logger.warning("the database did not answer the session check", exc_info=True)
    st.error(web.UNAVAILABLE, icon=":material/cloud_off:")
    st.stop()


def _resolve_user() -> Principal | None:
    token = st.session_state.get(_TOKEN)
    value = st.session_state.get(PRINCIPAL_KEY)
    if isinstance(value, Principal):
        live = session_store().resume(token) if token else _still_there(value)
        if live is None or live.user_id != value.user_id:
            _forget()
            return None
        if live != value:
            st.session_state[PRINCIPAL_KEY] = live  # e.g. no longer admin
        return live
    cookie = _cookie(COOKIE_NAME)
    principal = session_store().resume(cookie) if cookie else None
    if principal is not None:
        st.session_state[PRINCIPAL_KEY] = principal
        st.session_state[_TOKEN] = cookie
    return principal


def _still_there(principal: Principal) -> Principal | None:
    """A tab-only sign-in (no cookie session): the user as the database has it now."""
    from labelkit.db.queries import users as user_q

    with db() as s:
        user = user_q.get_user(session=s, user_id=principal.user_id)
        if user is None:
            return None
        return Principal(
            user_id=user.id,
            username=user.username,
            is_admin=user.is_admin,
            access_token=principal.access_token,
        )


def current_user() -> Principal | None:
    """The signed-in user of this run (as :func:`resolve_user` found it)."""
    value = st.session_state.get(PRINCIPAL_KEY)
    return value if isinstance(value, Principal) else None


def require_user() -> Principal:
    """The signed-in user, checked again (pages can run without the entry point: AppTest reruns
    only the page); stops the page if there is none (navigation only offers sign-in then)."""
    user = resolve_user() if current_user() is not None else None
    if user is None:
        # Signed out (or the session expired) while on a page: back to the sign-in page,
        # the only page navigation offers then.
        st.switch_page(Page.SIGN_IN)
    assert user is not None
    return user


def require_live_session() -> None:
    """For fragments (their reruns skip the entry point): rerun the whole app, which shows the
    sign-in page, if the session ended meanwhile."""
    token = st.session_state.get(_TOKEN)
    try:
        live = session_store().resume(token) if token else True
    except web.DATABASE_DOWN:
        _database_unavailable()
    if live is None:
        st.rerun(scope="app")


def viewer() -> Viewer:
    return require_user().viewer


def sign_in_client() -> SignInClient:
    """This browser, for the sign-in throttle: its address (None on loopback) and device cookie."""
    ip = st.context.ip_address
    address = ip if isinstance(ip, str) and ip else "local"
    return SignInClient(address=address, device=_cookie(DEVICE_COOKIE_NAME) or "")


def sign_in(principal: Principal) -> None:
    """Signed in: hand the session to this browser as an HttpOnly cookie and load the app again.

    Ends the script run (``st.stop`` or ``st.rerun``): a rerun would drop the redirect.
    """
    st.session_state[PRINCIPAL_KEY] = principal
    secret = session_store().begin(principal, browser_token=_cookie(COOKIE_NAME)) if _http_layer() else None
    if secret is not None:
        # /session/start sets the cookie (a new token) and sends the browser back to the app,
        # to the deep link that brought it to the sign-in page if there was one. It needs the
        # handoff's one-time secret, which goes to this tab only (over its WebSocket): a cookie
        # planted in the browser by someone else collects nothing without it.
        query = {web.HANDOFF_PARAM: secret}
        target = deep_link.pending(st.query_params.to_dict())
        if target:
            query[deep_link.NEXT] = target
        _navigate(f"{web.SESSION_START}?{urlencode(query)}")
        st.stop()
    st.rerun()  # the entry point follows a ?next= deep link (follow_deep_link)


def send_to_sign_in(path: str) -> None:
    """A signed-in page asked for by nobody signed in: the sign-in page, remembering the target."""
    target = deep_link.target_of(path, st.query_params.to_dict())
    st.switch_page(Page.SIGN_IN, query_params={deep_link.NEXT: target})


def follow_deep_link() -> None:
    """Signed in with ``?next=`` in the URL (a sign-in that kept the tab): go to that page."""
    target = st.query_params.get(deep_link.NEXT)
    if target is None:
        return
    found = deep_link.resolve(target)
    if found is None:
        del st.query_params[deep_link.NEXT]
        return
    page, params = found
    try:
        st.switch_page(page, query_params=params)
    except StreamlitAPIException:  # a page this user is not offered (e.g. an admin page)
        del st.query_params[deep_link.NEXT]


def sign_out() -> None:
    """End this browser's session everywhere and forget this tab's state (sign-out button)."""
    user = current_user()
    if user is not None:
        authenticator().sign_out(user)
    token = st.session_state.get(_TOKEN)
    if token:
        session_store().revoke(token)
    _forget()
    if token and _http_layer():
        # A fresh cookie, and a clean page. Kept as pending until it is sent: a click or a
        # rerun request that lands meanwhile stops this run at its next Streamlit call (seen
        # beside two CPU hogs), and the run after it, with nobody left to sign out, must still
        # send the browser there (the entry point calls send_pending_redirect first).
        st.session_state[_REDIRECT] = web.SESSION_END
    st.query_params.clear()
    send_pending_redirect()


def send_pending_redirect() -> None:
    """Send the redirect an interrupted run left pending (see :func:`sign_out`), if any."""
    path = st.session_state.get(_REDIRECT)
    if isinstance(path, str):
        _navigate(path)  # a stopped run stops here, before the message is queued
        del st.session_state[_REDIRECT]


def _forget() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def _navigate(path: str) -> None:
    """Send the browser to ``path`` on this server (a full page load).

    Streamlit has no public call for this: ``st.login`` and ``st.logout`` use this very message
    (``ForwardMsg.auth_redirect``, on which the page sets ``window.location``).
    """
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    msg = ForwardMsg()
    msg.auth_redirect.url = path
    ctx.enqueue(msg)


def render_sidebar_user() -> None:
    user = current_user()
    if user is None:
        return
    with st.sidebar:
        st.divider()
        st.markdown(f"**{md(user.username)}**")
        st.caption("Administrator — sees every user's images" if user.is_admin else "Signed in")
        st.button("Sign out", icon=":material/logout:", key="sign_out", on_click=sign_out, width="stretch")


def download_button(
    label: str,
    data: bytes | str | Callable[[], bytes | str],
    *,
    file_name: str,
    mime: str,
    **kwargs: Any,
) -> None:
    """``st.download_button`` whose file only this browser's signed-in session can fetch.

    Streamlit serves the file at ``/media/<file id>.<ext>`` to anyone who has the URL; here its
    file id (Streamlit's, from the bytes, type and name) is recorded against this session's
    cookie token (:data:`dashboard.web.MEDIA_OWNERS`), and the middleware serves it to that
    session only. A deferred download (``data`` a callable, run on the click) is recorded when
    the click makes it. A tab-only sign-in (no session cookie) has no downloads to fetch."""
    token = st.session_state.get(_TOKEN)

    def recorded(content: bytes | str) -> bytes:
        raw = content.encode() if isinstance(content, str) else content  # as Streamlit encodes str
        if isinstance(token, str):
            web.MEDIA_OWNERS.grant(_calculate_file_id(raw, mime, file_name), token)
        return raw

    if callable(data):
        make = data
        st.download_button(label, data=lambda: recorded(make()), file_name=file_name, mime=mime, **kwargs)
    else:
        st.download_button(label, data=recorded(data), file_name=file_name, mime=mime, **kwargs)


# --------------------------------------------------------------------------- cached data


def data_changed() -> None:
    """Drop briefly-cached query results after an edit, so every page shows it at once."""
    cached_suggestions.clear()
    _label_data.clear()


def release_upload(file: UploadedFile) -> None:
    """Forget an uploaded file's bytes once it has been handled (accepted or refused).

    Streamlit keeps every file a session uploaded in memory until the browser removes
    it from the widget or the session ends; the upload page replaces its widget after
    each batch, so the browser never does, and a session that uploads 700 MB keeps
    700 MB. ``st.chat_input`` drops its files the same way.
    """
    ctx = get_script_run_ctx()
    manager = ctx.uploaded_file_mgr if ctx is not None else None
    if ctx is not None and isinstance(manager, MemoryUploadedFileManager):
        manager.remove_file(session_id=ctx.session_id, file_id=file.file_id)
    file.close()


@st.cache_data(ttl=30, show_spinner=False, max_entries=200)
def cached_suggestions(user_id: str, is_admin: bool) -> list[str]:
    from labelkit.db.queries import stats as stats_q

    with db() as s:
        rows = stats_q.term_suggestions(session=s, viewer=Viewer(user_id=user_id, is_admin=is_admin))
    return [r.term for r in rows]


def suggestions(v: Viewer) -> list[str]:
    return cached_suggestions(v.user_id, v.is_admin)


@st.cache_data(ttl=15, show_spinner=False, max_entries=100)
def _label_data(user_id: str, is_admin: bool, top: int) -> dict[str, Any]:
    v = Viewer(user_id=user_id, is_admin=is_admin)
    with db() as s:
        activity, activity_bin = analytics.activity_timeline(session=s, viewer=v)
        return {
            "labels": analytics.label_table(session=s, viewer=v),
            "histogram": analytics.confidence_histogram(session=s, viewer=v),
            "activity": activity,
            "activity_bin": activity_bin,
            "categories": analytics.categories(session=s, viewer=v),
            "pairs": analytics.cooccurrence(session=s, viewer=v, top=top),
            "statuses": analytics.status_counts(session=s, viewer=v),
        }


def label_data(v: Viewer, top: int) -> dict[str, Any]:
    """The Labels page's DataFrames (and the over-time chart's bin), cached briefly per viewer."""
    return _label_data(v.user_id, v.is_admin, top)


@st.cache_data(show_spinner=False, max_entries=4000)
def _thumbnail(
    object_key: str,
    sha256: str,
    size: int,
    square: bool,
    stored_key: str | None = None,
    keep_for: str | None = None,
    _viewer: Viewer | None = None,
) -> bytes | None:
    # Keyed by sha256 as well as the key, so a replaced object never shows a stale thumbnail;
    # and by the stored thumbnail's key, so an image labelled meanwhile switches to its own.
    # ``_viewer`` (not hashed) is whoever first draws the card: one who can see the image.
    stored = size == settings().thumbnail_size
    thumb = _stored_thumbnail(stored_key) if stored and stored_key else None
    if thumb is None:
        thumb = _small_copy(object_key, size=size, quality=THUMBNAIL_QUALITY)
        if thumb is not None and stored and keep_for and _viewer is not None:
            _keep_thumbnail(_viewer, keep_for, object_key, thumb)
    if thumb is None or not square:
        return thumb
    try:
        return render.square_crop(thumb)
    except (OSError, ValueError):  # a damaged stored thumbnail: show none rather than fail the page
        logger.warning("cannot crop the thumbnail of %s", object_key, exc_info=True)
        return None


def _stored_thumbnail(key: str) -> bytes | None:
    """The thumbnail the worker stored (our own JPEG), or None to make one from the photo."""
    try:
        data = services().store.get(key)
    except LabelkitError:
        logger.info("stored thumbnail %s unreadable; making one from the photo", key, exc_info=True)
        return None
    return data if data.startswith(b"\xff\xd8") else None


def _keep_thumbnail(v: Viewer, image_id: str, object_key: str, thumb: bytes) -> None:
    """Store a thumbnail made here for an image labelled before the worker stored thumbnails,
    so it is made once: the next process (or cache miss) reads it."""
    key = thumbnail_key(object_key)
    try:
        services().store.put(key, thumb, content_type="image/jpeg")
        with db() as s:
            thumb_q.record_thumb_key(session=s, viewer=v, image_id=image_id, thumb_key=key)
    except (LabelkitError, SQLAlchemyError):
        logger.warning("could not keep the thumbnail of %s", object_key, exc_info=True)


def thumbnails(images: Sequence[Image], *, square: bool = False) -> dict[str, str | None]:
    """A gallery page's thumbnails by image id, as ``data:`` URLs for ``st.image`` (see
    :func:`labelkit.render.data_url`), of images the caller fetched through a scoped query.

    One query finds the page's stored thumbnails (the worker stores one when it labels an
    image); each is read from the store, not made from the photo. Only an image without one
    (still being labelled, or labelled before thumbnails were stored) has its photo decoded,
    and a labelled one's thumbnail is stored then, so it is made once."""
    v = viewer()
    with db() as s:
        keys = thumb_q.thumb_keys(session=s, viewer=v, image_ids=[i.id for i in images])
    side = settings().thumbnail_size
    return {
        img.id: render.data_url(
            _thumbnail(
                img.object_key,
                img.sha256,
                side,
                square,
                keys.get(img.id),
                img.id if img.status == ImageStatus.LABELLED and img.id not in keys else None,
                v,
            )
        )
        for img in images
    }


def thumbnail(image: Image, size: int | None = None, *, square: bool = False) -> str | None:
    """A small JPEG of an image the caller already fetched through a scoped query, as a
    ``data:`` URL for ``st.image`` (see :func:`labelkit.render.data_url`); the stored one when
    it exists (:func:`thumbnails` does this for a whole page with one query)."""
    if size is None or size == settings().thumbnail_size:
        return thumbnails([image], square=square)[image.id]
    return render.data_url(_thumbnail(image.object_key, image.sha256, size, square))


@st.cache_data(show_spinner=False, max_entries=64)
def _display_copy(object_key: str, sha256: str, boxes: tuple[render.Box, ...], side: int) -> bytes | None:
    small = _small_copy(object_key, size=side, quality=88)
    return render.with_boxes(small, boxes, quality=88) if small is not None else None


def _small_copy(object_key: str, *, size: int, quality: int) -> bytes | None:
    """The stored photo as a JPEG at most ``size`` pixels a side, decoded under the limits;
    None when it cannot be read (missing, damaged)."""
    svc = services()
    try:
        return make_thumbnail(
            svc.store.get(object_key),
            size=size,
            max_pixels=svc.settings.max_pixels,
            quality=quality,
            limits=DecodeLimits.from_settings(svc.settings),
        )
    except LabelkitError:
        return None


def display_copy(image: Image, boxes: Sequence[render.Box] = (), *, side: int = DISPLAY_SIDE) -> str | None:
    """The photo at display size (never the full original, at most ``side`` pixels a side),
    with instance boxes drawn on it, as a ``data:`` URL (:func:`labelkit.render.data_url`)."""
    data = _display_copy(image.object_key, image.sha256, tuple(boxes), min(side, DISPLAY_SIDE))
    return render.data_url(data)


@st.cache_data(show_spinner=False, max_entries=2000)
def _face_crop(object_key: str, sha256: str, box: tuple[float, float, float, float]) -> bytes | None:
    small = _small_copy(object_key, size=FACE_SOURCE_SIDE, quality=90)
    if small is None:
        return None
    try:
        return render.face_crop(small, box)
    except (OSError, ValueError):
        logger.warning("cannot crop a face of %s", object_key, exc_info=True)
        return None


def face_crop(image: Image, box: BoundingBox) -> str | None:
    """A face of an image the caller fetched through a scoped query, as a square ``data:`` URL."""
    return render.data_url(
        _face_crop(image.object_key, image.sha256, (box.left, box.top, box.width, box.height))
    )


# --------------------------------------------------------------------------- text and badges

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&])")


def md(text: object) -> str:
    """User-supplied text made inert for Streamlit markdown (no links, emphasis, colours, HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


STATUS_STYLE: dict[ImageStatus, tuple[str, str, Any]] = {
    ImageStatus.PENDING: ("Pending", ":material/schedule:", "gray"),
    ImageStatus.LABELLING: ("Labelling", ":material/autorenew:", "blue"),
    ImageStatus.LABELLED: ("Labelled", ":material/check_circle:", "green"),
    ImageStatus.FAILED: ("Failed", ":material/error:", "red"),
}


def status_badge(status: ImageStatus | str) -> None:
    label, icon, colour = STATUS_STYLE[ImageStatus(status)]
    st.badge(label, icon=icon, color=colour)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def flash(message: str) -> None:
    """Show ``message`` once on the next page (e.g. after deleting and leaving an image page)."""
    st.session_state["_flash"] = message


def show_flash() -> None:
    message = st.session_state.pop("_flash", None)
    if message:
        st.success(md(message), icon=":material/check:")
