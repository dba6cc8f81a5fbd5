"""Dashboard under load: ``python -m bench.dashboard_load [--images 200000] [--doc docs/benchmarks.md]``.

What is measured, and how:

* A MariaDB database filled by :func:`bench.queries.generate` (a throwaway
  ``labelkit_bench_<random>``, dropped at the end unless ``--keep``; ``--database NAME``
  reuses an already filled one): N images over thousands of users with Zipf-skewed image
  counts, ~10 model labels per image, their ``image_terms``, some human reviews.
* ``--sessions`` simultaneous sessions of the real app (``dashboard/streamlit_app.py``),
  each its own ``streamlit.testing.v1.AppTest`` signed in as one user (the principal put
  in session state, as the dashboard's own tests do): about one in ten as the admin (all
  images), the rest as ordinary users picked at geometrically spaced ranks of image count,
  from the heaviest user down to light ones. Each session renders the Gallery page (its
  first render, then ``--reruns`` reruns) and then the Labels page (first render, reruns);
  every render is timed and checked: no exception (``at.exception``), the page's title, and
  rows shown (gallery cards; rows of the Labels page's table). Sessions do not wait for each
  other after the start, so a session that finishes early leaves less load to the rest:
  "sessions busy" in the table is the mean number of sessions still running when a render
  started.
* The first render of a page in a session is reported apart from its reruns. The first
  render is cold for that user: the app's own first run, the navigation's model-version
  query, the label suggestions and the Labels page's DataFrames are ``st.cache_data``
  (ttl 15-60 s) shared by every session of the process, as on a real server; the gallery's
  thumbnails are cached forever by object key. Reruns mostly hit those caches; the gallery's
  listing, status counts and category counts are queried on every rerun.
* The first gallery page of every session's viewer gets a real photo (1600x1067 JPEG) in a
  temporary image folder; other images have no file (the gallery shows "preview
  unavailable", as for a missing object). ``--thumbnails stored`` also stores each photo's
  gallery thumbnail and records it in ``image_features``, as the worker does when it labels
  an image (issue #18): the gallery reads those. ``--thumbnails photo`` stores none, as for
  images labelled before thumbnails were stored: the gallery makes them from the photos (and
  stores them, so the next process reads them). ``both`` (the default) runs ``photo`` first,
  then ``stored``, and reports the first in a line under the table.

Threads, not processes: all sessions are AppTests in one process, each run from its own
thread, which is how a Streamlit server serves sessions (one process, one script thread per
session, shared ``st.cache_resource`` engine and pool, shared ``st.cache_data``, one GIL).
AppTest was written for one test at a time, and four things of it break under threads or
cost what a server does not spend, all patched by :func:`shared_runtime` for the
benchmark's duration to be what a server has:

* each run swaps a fresh mock ``Runtime`` into the ``Runtime._instance`` singleton and sets
  it back to ``None`` when it ends, pulling the runtime from under the other sessions'
  running scripts (``st.image``'s media files): ``Runtime.instance()``/``exists()`` return
  one shared mock runtime instead;
* each run compiles the page scripts anew (a fresh ``ScriptCache``); concurrent compiles hit
  a CPython 3.11 bug (``SystemError: AST constructor recursion depth mismatch``) and cost
  time a server does not spend: one shared ``ScriptCache`` compiles each script once;
* each run wraps ``config.get_option`` in a mock for its ``global.appTest`` override and
  restores what it found when it ends; runs overlapping in threads wrap each other's
  wrappers and restore them out of order, so the chain only grows (hundreds deep: a third
  of the 2026-12-04 profile was walking it): the override is set once for the benchmark;
* each run's caller waits for its script by polling every millisecond (20 waiting sessions:
  20,000 wake-ups a second competing for the GIL with the scripts, 37 % of that profile's
  samples); the patched wait joins the script's thread instead. A server's sessions wait
  for nothing: they are driven by the browser's messages.

AppTest keeps no other per-run global state that these pages touch.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import streamlit as st
import streamlit.logger as streamlit_logger
from PIL import Image as PILImage
from sqlalchemy import delete
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine
from streamlit.components.v2.component_manager import BidiComponentManager
from streamlit.runtime import Runtime
from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest, app_test, local_script_runner
from streamlit.testing.v1 import util as app_test_util

from bench.docs_page import add_doc_option, update_doc
from bench.queries import GenerateReport, bench_database, server
from labelkit.auth import Principal
from labelkit.db.engine import dispose_engines, make_engine, transaction
from labelkit.db.models import ImageFeatureRow
from labelkit.db.queries import images as image_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import ImageFeatures
from labelkit.features import thumbnail_key
from labelkit.features.thumbnail import thumbnail_maker
from labelkit.settings import Settings, get_settings
from labelkit.storage.local import LocalStore

APP = Path(__file__).resolve().parents[1] / "dashboard" / "streamlit_app.py"
PAGES = {"gallery": "app_pages/gallery.py", "labels": "app_pages/labels.py"}
TITLES = {"gallery": "Gallery", "labels": "Labels"}
GALLERY_PAGE_SIZE = 24  # dashboard/app_pages/gallery.py's PAGE_SIZE
KINDS = ("first", "rerun")
THUMBNAILS = ("stored", "photo")  # the gallery reads stored thumbnails, or makes them from photos


@dataclass(frozen=True, slots=True)
class Who:
    """One session's signed-in person and how many images they see."""

    principal: Principal
    images: int

    @property
    def role(self) -> str:
        return "admin" if self.principal.is_admin else "user"


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed render (``AppTest.run``) of one page in one session."""

    session: int
    role: str
    page: str  # gallery | labels
    kind: str  # first | rerun
    seconds: float
    rows: int  # gallery cards, or rows of the Labels page's table
    thumbnails: int = 0  # images shown (the gallery's thumbnails)
    error: str | None = None
    start: float = 0.0  # time.perf_counter() at the start and end of the render
    end: float = 0.0


@dataclass
class LoadResult:
    sessions: list[Who]
    samples: list[Sample] = field(default_factory=list)
    wall_seconds: float = 0.0
    photos: int = 0
    thumbnails: str = "stored"

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.error]


# --------------------------------------------------------------------------- who signs in


def pick_sessions(engine: Engine, sessions: int, admins: int | None = None) -> list[Who]:
    """``admins`` admin sessions (default: one in ten, at least one) and the rest ordinary users:
    the heaviest user first, then users at geometrically spaced ranks of image count."""
    if admins is None:
        admins = max(1, round(sessions / 10)) if sessions > 1 else 0
    admins = min(admins, sessions)
    with engine.connect() as c:
        ranked = c.execute(
            sql_text(
                "SELECT u.id, u.username, COUNT(i.id) AS n FROM users u JOIN images i ON i.owner_id = u.id "
                "WHERE u.is_admin = 0 GROUP BY u.id, u.username ORDER BY n DESC, u.id"
            )
        ).all()
        admin_row = c.execute(sql_text("SELECT id, username FROM users WHERE is_admin = 1 LIMIT 1")).one()
        total = int(c.execute(sql_text("SELECT COUNT(*) FROM images")).scalar_one())
    n_users = sessions - admins
    if n_users > len(ranked):
        raise ValueError(f"{n_users} user sessions but only {len(ranked)} users own images")
    ranks: list[int] = []
    for k in range(n_users):  # 0, ..., len-1, geometrically spaced, distinct
        r = round(len(ranked) ** (k / max(1, n_users - 1))) - 1 if n_users > 1 else 0
        if r in ranks:  # the nearest rank not taken yet
            r = min(set(range(len(ranked))) - set(ranks), key=lambda x: (abs(x - r), x))
        ranks.append(r)
    users = [Who(Principal(user_id=ranked[r][0], username=ranked[r][1]), int(ranked[r][2])) for r in ranks]
    admin = Who(Principal(user_id=admin_row[0], username=admin_row[1], is_admin=True), total)
    # Admins spread among the users rather than all at the end.
    out = list(users)
    for k in range(admins):
        out.insert(min(len(out), 1 + k * max(1, len(out) // admins)), admin)
    return out


def _photo() -> bytes:
    """A 1600x1067 photo-like JPEG (smooth gradients plus noise), ~200-400 kB."""
    rng = np.random.default_rng(3)
    h, w = 1067, 1600
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h)) + 64], axis=-1).astype(
        np.int16
    )
    arr += rng.integers(-24, 24, size=arr.shape, dtype=np.int16)
    buf = io.BytesIO()
    PILImage.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def write_photos(engine: Engine, images_dir: Path, who: list[Who], *, thumbnails: str = "stored") -> int:
    """A real JPEG for every image on the first gallery page of each session's viewer; with
    ``thumbnails="stored"`` its gallery thumbnail too, stored and recorded as the worker does.
    With ``"photo"`` any recorded thumbnail of those images is forgotten."""
    if thumbnails not in THUMBNAILS:
        raise ValueError(f"thumbnails must be one of {THUMBNAILS}, not {thumbnails!r}")
    store = LocalStore(images_dir)
    data = _photo()
    images: dict[str, str] = {}  # image id -> object key
    with transaction(engine) as s:
        for v in {w.principal.viewer for w in who}:
            page = image_q.list_images(session=s, viewer=v, page=1, page_size=GALLERY_PAGE_SIZE)
            images.update({i.id: i.object_key for i in page.items})
    for key in images.values():
        store.put(key, data, content_type="image/jpeg")
    if thumbnails == "stored":
        # The worker's thumbnail of this photo (the app's default settings), made once.
        thumb = thumbnail_maker(Settings(database_url="sqlite://"))(data)
        for key in images.values():
            store.put(thumbnail_key(key), thumb, content_type="image/jpeg")
    with transaction(engine) as s:
        for image_id, key in images.items():
            if thumbnails == "stored":
                worker_q.save_features(
                    session=s, image_id=image_id, features=ImageFeatures(), thumb_key=thumbnail_key(key)
                )
            else:
                s.execute(delete(ImageFeatureRow).where(ImageFeatureRow.image_id == image_id))
    return len(images)


# --------------------------------------------------------------------------- the app, many times at once


@contextmanager
def shared_runtime() -> Iterator[None]:
    """One mock Streamlit runtime and one script cache for every AppTest of this process
    (see the module docstring)."""
    runtime = mock.MagicMock(spec=Runtime)
    runtime.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    runtime.dataframe_source_mgr = DataframeSourceManager()
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    bidi = BidiComponentManager()
    bidi.discover_and_register_components(start_file_watching=False)
    runtime.bidi_component_registry = bidi
    scripts = ScriptCache()
    compile_once = ScriptCache.get_bytecode
    poll = local_script_runner.require_widgets_deltas

    def wait_for_script(runner: Any, timeout: float = 3) -> None:
        thread = runner._script_thread  # SHUTDOWN is emitted before it returns
        if thread is not None:
            thread.join(timeout)
        if not runner.script_stopped():
            poll(runner, 0)  # AppTest's own error (it stops the runner)

    with (
        app_test_util.patch_config_options({"global.appTest": True}),
        mock.patch.object(app_test, "patch_config_options", lambda overrides: nullcontext()),
        mock.patch.object(local_script_runner, "require_widgets_deltas", wait_for_script),
        mock.patch.object(ScriptCache, "get_bytecode", lambda self, path: compile_once(scripts, path)),
        mock.patch.object(Runtime, "instance", classmethod(lambda cls: runtime)),
        mock.patch.object(Runtime, "exists", classmethod(lambda cls: True)),
    ):
        yield


@contextmanager
def app_environment(database_url: str, data_dir: Path) -> Iterator[None]:
    """``LABELKIT_*`` pointing the app at ``database_url`` and ``data_dir``, fresh Streamlit caches;
    the previous environment is restored (and engines disposed) afterwards."""
    env = {
        "LABELKIT_DATABASE_URL": database_url,
        "LABELKIT_DATA_DIR": str(data_dir),
        "LABELKIT_LABELER": "fake",  # the dashboard never labels; keeps the model out of it
        "LABELKIT_AUTH_MODE": "local",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)

    def clear() -> None:
        get_settings.cache_clear()
        st.cache_resource.clear()
        st.cache_data.clear()

    try:
        with shared_runtime():
            clear()
            try:
                yield
            finally:
                clear()
    finally:
        dispose_engines()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _walk(node: Any, kind: str) -> Iterator[Any]:
    for child in getattr(node, "children", {}).values():
        if getattr(child, "type", None) == kind:
            yield child
        yield from _walk(child, kind)


def rows_shown(at: AppTest, page: str) -> int:
    """Gallery: image cards (each has one "Open" link). Labels: rows of the all-labels table."""
    if page == "gallery":
        return sum(1 for e in _walk(at._tree.main, "page_link") if e.proto.label == "Open")
    frames = list(at.dataframe)
    return len(frames[0].value) if frames else 0


def _check(at: AppTest, page: str) -> str | None:
    if at.exception:
        return "; ".join(str(e.message) for e in at.exception)
    titles = [t.value for t in at.title]
    if titles != [TITLES[page]]:
        return f"expected the {TITLES[page]} page, got titles {titles}"
    errors = [str(e.value) for e in at.error]
    if errors:
        return "; ".join(errors)
    return None


def run_session(
    index: int, who: Who, *, reruns: int, timeout: float, start: threading.Barrier
) -> list[Sample]:
    """One browser tab: Gallery (first render + reruns), then Labels (first render + reruns)."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.session_state["principal"] = who.principal
    samples: list[Sample] = []
    start.wait()
    for page in ("gallery", "labels"):
        if page != "gallery":  # the app's first run shows the gallery (the default page)
            at.switch_page(PAGES[page])
        for i in range(reruns + 1):
            kind = KINDS[0] if i == 0 else KINDS[1]
            t0 = time.perf_counter()
            try:
                at.run()
                error = _check(at, page)
            except Exception as e:  # a timeout, or AppTest itself failing
                error = f"{type(e).__name__}: {e}"
            t1 = time.perf_counter()
            rows = rows_shown(at, page) if error is None else 0
            thumbs = sum(1 for _ in _walk(at._tree.main, "image")) if error is None else 0
            samples.append(Sample(index, who.role, page, kind, t1 - t0, rows, thumbs, error, t0, t1))
    return samples


def run_load(
    database_url: str,
    *,
    sessions: int = 20,
    reruns: int = 5,
    admins: int | None = None,
    timeout: float = 300.0,
    data_dir: Path | None = None,
    thumbnails: str = "stored",
) -> LoadResult:
    """Run ``sessions`` simultaneous sessions against the (filled) database at ``database_url``;
    ``thumbnails``: whether the shown images have stored thumbnails (``stored``) or not (``photo``)."""
    engine = make_engine(database_url)
    try:
        who = pick_sessions(engine, sessions, admins)
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
            root = data_dir or Path(tmp)
            result = LoadResult(sessions=who, thumbnails=thumbnails)
            result.photos = write_photos(engine, root / "images", who, thumbnails=thumbnails)
            with app_environment(database_url, root):
                barrier = threading.Barrier(len(who) + 1)
                out: list[list[Sample]] = [[] for _ in who]
                crashed: list[str] = []

                def target(k: int) -> None:
                    try:
                        out[k] = run_session(k, who[k], reruns=reruns, timeout=timeout, start=barrier)
                    except Exception:
                        crashed.append(traceback.format_exc())
                        barrier.abort()

                threads = [
                    threading.Thread(target=target, args=(k,), name=f"session-{k}", daemon=True)
                    for k in range(len(who))
                ]
                for t in threads:
                    t.start()
                barrier.wait()
                t0 = time.perf_counter()
                for t in threads:
                    t.join()
                result.wall_seconds = time.perf_counter() - t0
                if crashed:
                    raise RuntimeError("a session crashed:\n" + "\n".join(crashed))
                result.samples = [s for per in out for s in per]
    finally:
        engine.dispose()
    return result


# --------------------------------------------------------------------------- report


def _pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def busy_sessions(result: LoadResult, sample: Sample) -> int:
    """Sessions still rendering when ``sample`` started (itself included): the load it ran under."""
    last_end: dict[int, float] = {}
    for s in result.samples:
        last_end[s.session] = max(s.end, last_end.get(s.session, 0.0))
    return sum(1 for end in last_end.values() if end > sample.start)


def summary(result: LoadResult) -> list[dict[str, Any]]:
    """p50/p95/max seconds per (page, kind), over every session."""
    rows = []
    for page in PAGES:
        for kind in KINDS:
            got = [s for s in result.samples if s.page == page and s.kind == kind]
            if not got:
                continue
            secs = [s.seconds for s in got]
            rows.append(
                {
                    "page": page,
                    "kind": kind,
                    "renders": len(got),
                    "errors": sum(1 for s in got if s.error),
                    "p50": _pct(secs, 50),
                    "p95": _pct(secs, 95),
                    "max": max(secs),
                    "admin_p95": _pct([s.seconds for s in got if s.role == "admin"] or [0.0], 95),
                    "busy": statistics.fmean(busy_sessions(result, s) for s in got),
                }
            )
    return rows


_THUMBS_TEXT = {
    "stored": "the page's stored thumbnails read (one query, then a few kB each from the store)",
    "photo": "thumbnails made from the photos",
}


def table(
    result: LoadResult,
    gen: GenerateReport,
    db: str,
    *,
    cores: int,
    reruns: int,
    before: LoadResult | None = None,
) -> str:
    """The benchmarks page's table for ``result``; ``before``, a run without stored thumbnails on the
    same data, is summed up in a line under it."""
    users = sorted(w.images for w in result.sessions if w.role == "user") or [0]
    n_admin = sum(1 for w in result.sessions if w.role == "admin")
    errors = result.errors
    lines = [
        f"Machine: {cores} CPU cores shared by the app, MariaDB and the sessions; {db}. "
        f"Data: {gen.images:,} images, {gen.labels:,} label rows, {gen.terms:,} image_terms rows, "
        f"{gen.users:,} users (generated as for the query benchmark).",
        "",
        f"{len(result.sessions)} simultaneous sessions of the real app (`AppTest`, one thread each in one "
        f"process, as a Streamlit server runs them): {n_admin} as the admin (all {gen.images:,} images), "
        f"{len(result.sessions) - n_admin} as ordinary users with {users[0]:,} to {users[-1]:,} images "
        f"(median {int(statistics.median(users)):,}; the heaviest user, {gen.heaviest_user_images:,}, "
        f"included). Each session renders the Gallery page, reruns it {reruns} times, then does the "
        f'same with the Labels page. "first" = a session\'s first render of the page (cold for that '
        f"viewer: {_THUMBS_TEXT[result.thumbnails]}, briefly cached label data and suggestions "
        f'computed); "rerun" = '
        f"the reruns after it (those caches warm; the gallery's listing and counts are queried every "
        f"time). Seconds per render; wall time {result.wall_seconds:.1f} s for "
        f"{len(result.samples)} renders, {len(errors)} errors.",
        "",
        "| page | kind | renders | p50 s | p95 s | max s | admin p95 s | sessions busy (mean) | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary(result):
        lines.append(
            f"| {r['page']} | {r['kind']} | {r['renders']} | {r['p50']:.2f} | {r['p95']:.2f} | "
            f"{r['max']:.2f} | {r['admin_p95']:.2f} | {r['busy']:.1f} | {r['errors']} |"
        )
    if errors:
        lines += ["", f"**{len(errors)} renders failed**, e.g.: {errors[0].error}"]
    if before is not None:
        rows = {(r["page"], r["kind"]): r for r in summary(before)}
        first, rerun = rows.get(("gallery", "first")), rows.get(("gallery", "rerun"))
        if first and rerun:
            lines += [
                "",
                f"Without stored thumbnails ({_THUMBS_TEXT[before.thumbnails]}, as for images labelled "
                f"before the worker stored them; the same sessions, run just before): gallery first "
                f"render {first['p50']:.2f} s p50 / {first['p95']:.2f} s p95, rerun {rerun['p50']:.2f} s p50 "
                f"/ {rerun['p95']:.2f} s p95; wall time {before.wall_seconds:.1f} s, "
                f"{len(before.errors)} errors.",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--labels-per-image", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20, help="simultaneous sessions")
    parser.add_argument("--admins", type=int, help="admin sessions among them (default: one in ten)")
    parser.add_argument("--reruns", type=int, default=5, help="reruns of each page after its first render")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one render may take")
    parser.add_argument("--database", help="reuse this existing, filled database (skip generating)")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument(
        "--buffer-pool-mb", type=int, default=0, help="SET GLOBAL innodb_buffer_pool_size first (0: leave it)"
    )
    parser.add_argument(
        "--thumbnails",
        choices=[*THUMBNAILS, "both"],
        default="both",
        help="the shown images have stored thumbnails, or not (made from the photos), or both runs",
    )
    add_doc_option(parser, "dashboard")
    args = parser.parse_args(argv)
    # AppTest sessions driven from plain threads make Streamlit warn about a missing script context.
    streamlit_logger.set_log_level("error")

    with bench_database(
        database=args.database,
        keep=args.keep,
        buffer_pool_mb=args.buffer_pool_mb,
        images=args.images,
        labels_per_image=args.labels_per_image,
        users=args.users,
    ) as (engine, gen):
        db = server(engine)
        url = engine.url.render_as_string(hide_password=False)
        engine.dispose()
        print(f"{args.sessions} sessions x (1 + {args.reruns}) renders of 2 pages ...", file=sys.stderr)
        modes = ["photo", "stored"] if args.thumbnails == "both" else [args.thumbnails]
        results = []
        for mode in modes:
            print(f"  thumbnails: {mode}", file=sys.stderr)
            results.append(
                run_load(
                    url,
                    sessions=args.sessions,
                    reruns=args.reruns,
                    admins=args.admins,
                    timeout=args.timeout,
                    thumbnails=mode,
                )
            )
        result = results[-1]
        before = results[0] if len(results) > 1 else None
        text = table(result, gen, db, cores=os.cpu_count() or 1, reruns=args.reruns, before=before)
        print(text)
        for r in results:
            for s in r.errors[:10]:
                print(
                    f"{r.thumbnails}: session {s.session} ({s.role}) {s.page} {s.kind}: {s.error}",
                    file=sys.stderr,
                )
        if args.doc:
            update_doc(args.doc, text, name="dashboard", title="Dashboard under load")
            print(f"updated {args.doc}", file=sys.stderr)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
