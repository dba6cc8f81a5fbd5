"""The dashboard's HTTP guards as units (issue #25 findings 3 and 8): the per-address limit on
``/session/start`` and the record of which session may fetch which download.

Both are checked end to end against the real product in ``test_http_browser.py``; these
pin the edges (the window sliding, memory bounds, a deferred download) without a browser."""

from __future__ import annotations

from unittest import mock

import streamlit as st
from streamlit.runtime.media_file_storage import MediaFileKind
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from dashboard import core, web
from labelkit.auth.sessions import new_token


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_refuses_the_eleventh_request_in_ten_seconds_and_says_how_long_to_wait() -> None:
    clock = _Clock()
    limiter = web.RateLimiter(limit=10, window=10.0, clock=clock)
    # GIVEN 10 requests from one address within 4.5 s
    for _ in range(10):
        assert limiter.retry_after("203.0.113.7") == 0.0
        clock.now += 0.5
    # THEN the 11th waits until the first is 10 s old; another address goes ahead meanwhile
    assert limiter.retry_after("203.0.113.7") == 5.0
    assert limiter.retry_after("203.0.113.8") == 0.0
    # AND refused requests are not counted: once the window has slid, it goes ahead
    clock.now += 5.0
    assert limiter.retry_after("203.0.113.7") == 0.0


def test_the_limit_forgets_addresses_rather_than_grow_without_bound() -> None:
    clock = _Clock()
    limiter = web.RateLimiter(limit=1, window=10.0, max_keys=100, clock=clock)
    # WHEN a flood comes from 1,000 addresses at once
    for i in range(1000):
        assert limiter.retry_after(f"198.51.{i // 250}.{i % 250}") == 0.0
    # THEN at most 100 are remembered, the newest among them
    assert len(limiter) <= 100
    assert limiter.retry_after("198.51.3.249") > 0


def test_a_download_is_fetched_only_by_the_sessions_it_was_made_for() -> None:
    owners = web.MediaOwners(max_grants=3)
    alice, bob, carol = new_token(), new_token(), new_token()
    owners.grant("f1", alice)
    assert owners.allowed("f1", alice)
    assert (
        not owners.allowed("f1", bob) and not owners.allowed("f1", None) and not owners.allowed("f2", alice)
    )
    # two people who made the same file (same bytes, type and name) may both fetch it
    owners.grant("f1", bob)
    assert owners.allowed("f1", alice) and owners.allowed("f1", bob)
    # bounded: past 3 grants the least recently drawn is forgotten (alice's f1 drawn again: kept)
    owners.grant("f1", alice)
    owners.grant("f2", carol)
    owners.grant("f3", carol)
    assert not owners.allowed("f1", bob)
    assert owners.allowed("f1", alice) and owners.allowed("f2", carol) and owners.allowed("f3", carol)


def test_download_button_records_eager_and_deferred_downloads_under_streamlits_file_id() -> None:
    token = new_token()
    st.session_state["_session_token"] = token
    storage = MemoryMediaFileStorage("/media")
    try:
        with mock.patch.object(st, "download_button", autospec=True) as button:
            # GIVEN a page's download of bytes, and one made only when clicked (a callable)
            core.download_button("CSV", data="a,b\n1,2\n", file_name="x.csv", mime="text/csv", key="k1")
            core.download_button(
                "Zip", data=lambda: b"PK\x05\x06" + bytes(18), file_name="b.zip", mime="application/zip"
            )
        eager = button.call_args_list[0].kwargs["data"]
        deferred = button.call_args_list[1].kwargs["data"]
        # THEN the eager file's id (as Streamlit's media storage names it) is this session's
        eager_id = storage.load_and_get_id(eager, "text/csv", MediaFileKind.DOWNLOADABLE, "x.csv")
        assert eager == b"a,b\n1,2\n" and web.MEDIA_OWNERS.allowed(eager_id, token)
        assert not web.MEDIA_OWNERS.allowed(eager_id, new_token())
        # AND the deferred one becomes this session's when the click makes it
        made = deferred()
        made_id = storage.load_and_get_id(made, "application/zip", MediaFileKind.DOWNLOADABLE, "b.zip")
        assert web.MEDIA_OWNERS.allowed(made_id, token)
    finally:
        del st.session_state["_session_token"]
