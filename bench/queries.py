"""Dashboard queries at scale: ``python -m bench.queries [--images 1000000] [--doc docs/benchmarks.md]``.

What is measured, and why this way:

* A throwaway MariaDB database (``labelkit_bench_<random>``, dropped at the end unless
  ``--keep``), migrated with Alembic like production, filled by :func:`generate`:
  N images over several thousand users with Zipf-skewed image counts (the heaviest user
  owns ~10%), ~``--labels-per-image`` image-level model labels per image drawn Zipf-like
  from the 1,067 labels of ``labelkit/labelers/data/rules.yml`` (with their real parents,
  aliases and categories), a box row for ~5% of labels, human reviews (confirm/reject)
  on ~2% of images, and ``image_terms`` rows exactly as :func:`labelkit.db.counts.derive_terms`
  derives them (the effective labels: rejected ones left out). Rows go in with
  ``LOAD DATA LOCAL INFILE`` (MariaDB) or ``executemany`` (SQLite, for the tests); unique
  and foreign-key checks are off for the loading connection only (the data is consistent
  by construction; the test checks it).
* Every query is the labelkit.db.queries/analytics call the dashboard makes, timed warm
  (``--warmup`` runs, then ``--runs`` timed runs; p50/p95), for the heaviest user and for
  an admin (all images). ``--explain`` prints MariaDB's EXPLAIN of every SQL statement a
  call sends (captured as executed, with its parameters).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from bench import row_counting
from bench.docs_page import add_doc_option, update_doc
from labelkit import analytics
from labelkit.db import counts
from labelkit.db.engine import make_engine, transaction
from labelkit.db.migrate import upgrade
from labelkit.db.models import TermKind
from labelkit.db.queries import images as image_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.domain import Viewer
from labelkit.labelers.taxonomy import load_rules

TARGET_MS = 200.0
MODEL_VERSION = "local-lite2-bench"
PAGE_SIZE = 24  # the gallery's page size
REVIEW_PAGE = 20  # the review page's page size

# --------------------------------------------------------------------------- generator

IMAGE_COLS = (
    "id owner_id object_key original_name content_type bytes width height sha256 status failure_reason "
    "attempts model_version properties created_at updated_at labelled_at"
).split()
LABEL_COLS = (
    "id image_id source model_version name instance confidence parents aliases categories "
    "box_left box_top box_width box_height review created_by created_at"
).split()
TERM_COLS = ["image_id", "kind", "term", "confidence", "owner_id"]
USER_COLS = ["id", "username", "email", "password_hash", "is_admin", "failed_logins", "created_at"]


@dataclass(frozen=True, slots=True)
class Vocab:
    names: list[str]
    parents: list[tuple[str, ...]]
    categories: list[tuple[str, ...]]
    json_parents: list[str]
    json_aliases: list[str]
    json_categories: list[str]
    boxes: list[bool]
    weights: list[float]  # cumulative Zipf weights over a shuffled order


def vocabulary(seed: int = 7) -> Vocab:
    """The local labeller's 1,067 labels with real parents and categories, Zipf-weighted."""
    entries = list(load_rules().entries)
    random.Random(seed).shuffle(entries)  # which label is common is arbitrary, not alphabetical
    cum, total = [], 0.0
    for rank in range(1, len(entries) + 1):
        total += 1.0 / rank
        cum.append(total)
    return Vocab(
        names=[e.name[:128] for e in entries],
        parents=[tuple(p[:128] for p in e.parents) for e in entries],
        categories=[tuple(c[:128] for c in e.categories) for e in entries],
        json_parents=[json.dumps(list(e.parents), ensure_ascii=False) for e in entries],
        json_aliases=[json.dumps(list(e.aliases), ensure_ascii=False) for e in entries],
        json_categories=[json.dumps(list(e.categories), ensure_ascii=False) for e in entries],
        boxes=[e.box for e in entries],
        weights=cum,
    )


@dataclass
class GenerateReport:
    images: int = 0
    users: int = 0
    labels: int = 0
    terms: int = 0
    reviews: int = 0
    seconds: float = 0.0
    totals_seconds: float = 0.0  # of which: computing the running totals
    heaviest_user: str = ""
    heaviest_user_images: int = 0
    typical_user: str = ""  # the median user by image count
    typical_user_images: int = 0
    admin_id: str = ""


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _rows(
    *, images: int, labels_per_image: float, users: int, seed: int, chunk: int
) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Yield (table, rows) in foreign-key order, ``chunk`` images at a time."""
    rng = random.Random(seed)
    voc = vocabulary(seed)
    n_voc = len(voc.names)
    now = datetime.now(UTC).replace(tzinfo=None)
    user_ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(users + 1)]
    created = _ts(now - timedelta(days=400))
    yield (
        "users",
        [
            (uid, f"bench-{i:05d}" if i else "bench-admin", None, "x", 1 if i == 0 else 0, 0, created)
            for i, uid in enumerate(user_ids)
        ],
    )
    owners = user_ids[1:]
    owner_cum, acc = [], 0.0
    for rank in range(1, users + 1):
        acc += 1.0 / rank
        owner_cum.append(acc)
    label_id = 0
    span = 365 * 86400.0
    for start in range(0, images, chunk):
        img_rows: list[tuple[Any, ...]] = []
        lab_rows: list[tuple[Any, ...]] = []
        term_rows: list[tuple[Any, ...]] = []
        for _ in range(start, min(images, start + chunk)):
            image_id = uuid.UUID(int=rng.getrandbits(128)).hex
            owner = rng.choices(owners, cum_weights=owner_cum)[0]
            t_created = now - timedelta(seconds=rng.random() * span)
            r = rng.random()
            status = "labelled" if r < 0.97 else ("failed" if r < 0.985 else "pending")
            labelled = status == "labelled"
            t_lab = t_created + timedelta(seconds=0.3 + rng.random() * 2) if labelled else None
            w, h = rng.choice(((4000, 3000), (1600, 1067), (640, 427), (3024, 4032)))
            img_rows.append(
                (
                    image_id,
                    owner,
                    f"users/{owner}/{image_id}.jpg",
                    f"IMG_{rng.randrange(10000):04d}.jpg",
                    "image/jpeg",
                    rng.randrange(50_000, 8_000_000),
                    w,
                    h,
                    f"{rng.getrandbits(256):064x}",
                    status,
                    "Labelling failed after 4 attempts: bench" if status == "failed" else None,
                    1 if status != "pending" else 0,
                    MODEL_VERSION if labelled else None,
                    None,
                    _ts(t_created),
                    _ts(t_lab or t_created),
                    _ts(t_lab) if t_lab else None,
                )
            )
            if not labelled:
                continue
            k = max(1, int(rng.gauss(labels_per_image, 2.5)))
            picked: dict[int, float] = {}
            for j in rng.choices(range(n_voc), cum_weights=voc.weights, k=k + 4):
                if len(picked) >= k:
                    break
                picked.setdefault(j, round(55 + 45 * rng.random() ** 2, 3))
            stamp = _ts(t_lab or t_created)
            effective: list[tuple[Any, ...]] = []  # what counts.effective_terms reads
            for j, conf in picked.items():
                label_id += 1
                common = (voc.json_parents[j], voc.json_aliases[j], voc.json_categories[j])
                lab_rows.append(
                    (label_id, image_id, "model", MODEL_VERSION, voc.names[j], 0, conf, *common)
                    + (None, None, None, None, "unreviewed", None, stamp)
                )
                if voc.boxes[j] and rng.random() < 0.05:
                    label_id += 1
                    box = (round(rng.random() * 0.5, 4), round(rng.random() * 0.5, 4), 0.3, 0.3)
                    lab_rows.append(
                        (label_id, image_id, "model", MODEL_VERSION, voc.names[j], 1, conf, *common)
                        + (*box, "unreviewed", None, stamp)
                    )
                effective.append(
                    ("model", "unreviewed", voc.names[j], conf, voc.parents[j], voc.categories[j])
                )
            if rng.random() < 0.02:  # a person reviewed one or two of this image's labels
                for j in rng.sample(list(picked), min(len(picked), rng.choice((1, 2)))):
                    label_id += 1
                    review = "confirmed" if rng.random() < 0.8 else "rejected"
                    lab_rows.append(
                        (label_id, image_id, "human", "", voc.names[j], 0, 100.0)
                        + (voc.json_parents[j], voc.json_aliases[j], voc.json_categories[j])
                        + (None, None, None, None, review, owner, stamp)
                    )
                    effective.append(
                        ("human", review, voc.names[j], 100.0, voc.parents[j], voc.categories[j])
                    )
            # As counts.derive_terms: the effective labels' terms, best confidence behind each.
            best = counts.effective_terms(effective)
            term_rows.extend((image_id, kind.value, term, conf, owner) for (kind, term), conf in best.items())
        # Sorted by primary key: random uuids make random inserts into the clustered index.
        img_rows.sort(key=lambda r: r[0])
        term_rows.sort(key=lambda r: (r[0], r[1], r[2]))
        yield "images", img_rows
        yield "labels", lab_rows
        yield "image_terms", term_rows


def _columns(table: str) -> list[str]:
    return {"users": USER_COLS, "images": IMAGE_COLS, "labels": LABEL_COLS, "image_terms": TERM_COLS}[table]


def _tsv_value(v: Any) -> str:
    if v is None:
        return "\\N"
    s = str(v)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _load_mysql(conn: Any, table: str, rows: list[tuple[Any, ...]], tmp: Path) -> None:
    path = tmp / f"{table}.tsv"
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write("\t".join(_tsv_value(v) for v in row))
            f.write("\n")
    cols = ", ".join(f"`{c}`" for c in _columns(table))
    with conn.cursor() as cur:
        cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({cols})",
            (str(path),),
        )


def _insert_dbapi(conn: Any, table: str, rows: list[tuple[Any, ...]], paramstyle: str) -> None:
    cols = _columns(table)
    mark = "?" if paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    cur = conn.cursor()
    for i in range(0, len(rows), 5000):
        cur.executemany(sql, rows[i : i + 5000])
    cur.close()


def generate(
    engine: Engine,
    *,
    images: int,
    labels_per_image: float = 10.0,
    users: int = 5000,
    seed: int = 1,
    chunk: int = 50_000,
    progress: Callable[[str], None] | None = None,
) -> GenerateReport:
    """Fill the (migrated, empty) database behind ``engine``; returns counts and timing."""
    report = GenerateReport()
    t0 = time.perf_counter()
    mysql = engine.dialect.name in ("mysql", "mariadb")
    per_owner: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as tmp:
        if mysql:
            u = make_url(engine.url)
            conn: Any = pymysql.connect(
                host=u.host or "127.0.0.1",
                port=u.port or 3306,
                user=u.username or "root",
                password=u.password or "",
                database=u.database,
                charset="utf8mb4",
                local_infile=True,
                autocommit=False,
            )
            with conn.cursor() as cur:
                # This connection only: the generated rows are consistent by construction.
                cur.execute("SET unique_checks=0, foreign_key_checks=0")
        else:
            conn = engine.raw_connection()
        try:
            for table, rows in _rows(
                images=images, labels_per_image=labels_per_image, users=users, seed=seed, chunk=chunk
            ):
                if mysql:
                    _load_mysql(conn, table, rows, Path(tmp))
                else:
                    _insert_dbapi(conn, table, rows, engine.dialect.paramstyle)
                conn.commit()
                if table == "users":
                    report.users = len(rows) - 1
                    report.admin_id = rows[0][0]
                elif table == "images":
                    report.images += len(rows)
                    for r in rows:
                        per_owner[r[1]] = per_owner.get(r[1], 0) + 1
                elif table == "labels":
                    report.labels += len(rows)
                    report.reviews += sum(1 for r in rows if r[2] == "human")
                else:
                    report.terms += len(rows)
                    if progress:
                        progress(f"  {report.images:,} images, {time.perf_counter() - t0:.0f} s")
        finally:
            conn.close()
    if mysql:
        with engine.begin() as c:  # fresh statistics for the optimizer, as after any bulk load
            c.exec_driver_sql("ANALYZE TABLE users, images, labels, image_terms")
    # The rows went in behind the queries' back: compute the running totals from them
    # (what `python -m labelkit.db.counts` and migration 0004 do).
    t1 = time.perf_counter()
    if progress:
        progress("  computing the running totals (labelkit.db.counts.rebuild)")
    with transaction(engine) as s:
        counts.rebuild(s)
    report.totals_seconds = time.perf_counter() - t1
    if mysql:
        with engine.begin() as c:
            c.exec_driver_sql("ANALYZE TABLE label_counts, term_counts, confidence_bins")
    report.heaviest_user, report.heaviest_user_images = max(per_owner.items(), key=lambda kv: kv[1])
    by_size = sorted(per_owner.items(), key=lambda kv: (kv[1], kv[0]))
    report.typical_user, report.typical_user_images = by_size[len(by_size) // 2]
    report.seconds = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    who: str
    run: Callable[[Any], object]
    before: Callable[[Any], object] | None = None  # the row-counting shape (bench.row_counting)


def _calls(v: Viewer, label: str, deep_page: int) -> list[tuple[str, Callable[[Any], object]]]:
    """The dashboard's reads for one viewer, as the pages call them."""
    return [
        ("label_stats (label counts)", lambda s: stats_q.label_stats(session=s, viewer=v)),
        (
            "term_counts categories",
            lambda s: stats_q.term_counts(session=s, viewer=v, kind=TermKind.CATEGORY),
        ),
        ("term_suggestions", lambda s: stats_q.term_suggestions(session=s, viewer=v)),
        (
            f"list_images label={label} p1 + total",
            lambda s: image_q.list_images(session=s, viewer=v, flt=image_q.ImageFilter(label=label)),
        ),
        ("gallery p1 + total", lambda s: image_q.list_images(session=s, viewer=v, page=1)),
        (f"gallery p{deep_page} + total", lambda s: image_q.list_images(session=s, viewer=v, page=deep_page)),
        ("status_counts (gallery)", lambda s: image_q.status_counts(session=s, viewer=v)),
        ("charts: label_table", lambda s: analytics.label_table(session=s, viewer=v)),
        ("charts: confidence_histogram", lambda s: analytics.confidence_histogram(session=s, viewer=v)),
        ("charts: activity_long 30 d", lambda s: analytics.activity_long(session=s, viewer=v, days=30)),
        ("charts: categories", lambda s: analytics.categories(session=s, viewer=v)),
        ("charts: cooccurrence top 15", lambda s: analytics.cooccurrence(session=s, viewer=v, top=15)),
        (
            "review_queue p1 + count",
            lambda s: (
                review_q.review_queue(session=s, viewer=v, limit=REVIEW_PAGE),
                review_q.count_review_queue(session=s, viewer=v),
            ),
        ),
    ]


def queries(
    admin: Viewer, user: Viewer, label: str, deep_page: int, typical: Viewer | None = None
) -> list[Query]:
    """Every measured call, for the heaviest user, a typical user (if given) and the admin."""
    viewers = [("user", user), *([("typical", typical)] if typical else []), ("admin", admin)]
    out: list[Query] = []
    for who, v in viewers:
        before = row_counting.before_calls(v, label)
        out.extend(Query(name, who, call, before.get(name)) for name, call in _calls(v, label, deep_page))
    return out


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and parameters) sent while inside."""
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def explain(engine: Engine, q: Query, *, before: bool = False) -> str:
    """MariaDB's EXPLAIN of every statement ``q`` (or its "before" shape) sends."""
    run = q.before if before and q.before is not None else q.run
    with captured(engine) as seen, transaction(engine) as s:
        run(s)
    lines = []
    with engine.connect() as c:
        for statement, params in seen:
            lines.append("    " + " ".join(statement.split()))
            res = c.exec_driver_sql("EXPLAIN " + statement, params)
            cols = list(res.keys())
            for row in res:
                d = dict(zip(cols, row, strict=True))
                lines.append(
                    f"      {d['table']}: type={d['type']} key={d['key']} rows={d['rows']} extra={d['Extra']}"
                )
    return "\n".join(lines)


def _pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def time_query(
    engine: Engine, q: Query, *, runs: int, warmup: int, budget: float, before: bool = False
) -> tuple[float, float, int]:
    """(p50, p95) in ms and the runs timed, each run in its own transaction as a page rerun
    would be. Slow queries stop after ``budget`` seconds (at least 3 timed runs)."""
    run = q.before if before and q.before is not None else q.run
    times: list[float] = []
    deadline = time.monotonic() + budget
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        with transaction(engine) as s:
            run(s)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
            if len(times) >= 3 and time.monotonic() > deadline:
                break
        elif time.monotonic() > deadline:
            break  # a query this slow is warm after one run
    while len(times) < min(3, runs):
        t0 = time.perf_counter()
        with transaction(engine) as s:
            run(s)
        times.append((time.perf_counter() - t0) * 1e3)
    return _pct(times, 50), _pct(times, 95), len(times)


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def table(results: list[dict[str, Any]], gen: GenerateReport, db: str) -> str:
    lines = [
        f"{gen.images:,} images, {gen.labels:,} label rows ({gen.reviews:,} human reviews), "
        f"{gen.terms:,} image_terms rows, {gen.users:,} users; {db}, 2 cores. "
        + (
            f"Generated in {gen.seconds:.0f} s (of which {gen.totals_seconds:.0f} s computing the "
            "running totals). "
            if gen.seconds
            else "A database generated earlier (`--database`). "
        )
        + f'"user" = the heaviest user ({gen.heaviest_user_images:,} images); "typical" = the '
        f'median user ({gen.typical_user_images:,} images); "admin" = all images. Warm, ms, each call in '
        f"its own transaction as a page rerun; p50/p95 of up to 20 runs (fewer for calls slower than "
        f'the 20 s budget, at least 3). "before" = the same call counting label and term rows '
        f"(`bench/row_counting.py`, the shapes before the running totals); blank = unchanged. "
        f"Target p95 < {TARGET_MS:.0f} ms.",
        "",
        "| query | who | before p50 | before p95 | after p50 | after p95 | p95 < 200 ms |",
        "|---|---|---:|---:|---:|---:|:-:|",
    ]
    for r in results:
        ok = "yes" if r["p95"] < TARGET_MS else "**no**"
        lines.append(
            f"| {r['name']} | {r['who']} | {_ms(r.get('before_p50'))} | {_ms(r.get('before_p95'))} "
            f"| {_ms(r['p50'])} | {_ms(r['p95'])} | {ok} |"
        )
    return "\n".join(lines)


def _admin_conn() -> Any:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", charset="utf8mb4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--labels-per-image", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per query")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per query; slower ones get fewer runs (min 3)"
    )
    parser.add_argument("--who", choices=["user", "typical", "admin"], help="measure only this viewer")
    parser.add_argument("--no-before", action="store_true", help="skip the row-counting 'before' shapes")
    parser.add_argument(
        "--before-json",
        type=Path,
        help="take the 'before' timings from an earlier --json of the same database (the row-counting "
        "shapes in bench/row_counting.py do not change; timing them again takes many minutes at 1 M)",
    )
    parser.add_argument("--label", default="Animal", help="the label filter (a parent: children match)")
    parser.add_argument("--deep-page", type=int, default=100, help="the deep gallery page")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN of every statement")
    parser.add_argument("--only", help="regex: measure only queries whose name matches")
    parser.add_argument("--database", help="reuse this existing, filled database (skip generating)")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument(
        "--buffer-pool-mb",
        type=int,
        default=0,
        help="SET GLOBAL innodb_buffer_pool_size first (the server's default, 128 MB, is far below RDS's)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    add_doc_option(parser, "queries")
    args = parser.parse_args(argv)

    with bench_database(
        database=args.database,
        keep=args.keep,
        buffer_pool_mb=args.buffer_pool_mb,
        images=args.images,
        labels_per_image=args.labels_per_image,
        users=args.users,
    ) as (engine, gen):
        admin = Viewer(user_id=gen.admin_id, is_admin=True)
        user = Viewer(user_id=gen.heaviest_user)
        typical = Viewer(user_id=gen.typical_user)
        results = []
        earlier: dict[tuple[str, str], dict[str, Any]] = {}
        if args.before_json:
            for r in json.loads(args.before_json.read_text())["results"]:
                if "before_p95" in r:
                    earlier[r["name"], r["who"]] = {
                        "before_p50": r["before_p50"],
                        "before_p95": r["before_p95"],
                    }
        for q in queries(admin, user, args.label, args.deep_page, typical):
            if (args.only and not re.search(args.only, q.name)) or (args.who and q.who != args.who):
                continue
            row: dict[str, Any] = {"name": q.name, "who": q.who}
            if (q.name, q.who) in earlier:
                row |= earlier[q.name, q.who]
            elif q.before is not None and not args.no_before:
                if args.explain:
                    print(f"EXPLAIN before: {q.name} [{q.who}]\n{explain(engine, q, before=True)}")
                b50, b95, _ = time_query(
                    engine, q, runs=args.runs, warmup=args.warmup, budget=args.budget, before=True
                )
                row |= {"before_p50": b50, "before_p95": b95}
            if args.explain:
                print(f"EXPLAIN {q.name} [{q.who}]\n{explain(engine, q)}")
            p50, p95, n = time_query(engine, q, runs=args.runs, warmup=args.warmup, budget=args.budget)
            print(
                f"{q.name:42s} {q.who:7s} before p95 {row.get('before_p95', 0):8.1f} ms"
                f"  after p50 {p50:8.1f} ms  p95 {p95:8.1f} ms",
                file=sys.stderr,
            )
            results.append(row | {"p50": p50, "p95": p95, "runs": n})
        text = table(results, gen, server(engine))
        print(text)
        if args.json:
            args.json.write_text(json.dumps({"generate": gen.__dict__, "results": results}, indent=1))
        if args.doc:
            update_doc(args.doc, text, name="queries", title="Queries at scale")
            print(f"updated {args.doc}", file=sys.stderr)
    return 0


@contextmanager
def bench_database(
    *,
    database: str | None,
    keep: bool = False,
    buffer_pool_mb: int = 0,
    images: int = 1_000_000,
    labels_per_image: float = 10.0,
    users: int = 5000,
) -> Iterator[tuple[Engine, GenerateReport]]:
    """A filled MariaDB database on the local server: ``database`` reused as it is, or a
    new throwaway one generated now (dropped on exit unless ``keep``). Migrated either way."""
    name = database or f"labelkit_bench_{uuid.uuid4().hex[:8]}"
    conn = _admin_conn()
    with conn.cursor() as cur:
        if buffer_pool_mb:
            cur.execute("SET GLOBAL innodb_buffer_pool_size = %s", (buffer_pool_mb * 2**20,))
        if not database:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    # Generating loads millions of rows per statement: no client or idle timeout here.
    engine = make_engine(f"mysql+pymysql://root@127.0.0.1:3306/{name}", read_timeout=None, idle_timeout=None)
    try:
        upgrade(engine)  # also applies new migrations to a reused database
        if database:
            gen = _describe(engine)
        else:
            print(f"generating {images:,} images into {name} ...", file=sys.stderr)
            gen = generate(
                engine,
                images=images,
                labels_per_image=labels_per_image,
                users=users,
                progress=lambda m: print(m, file=sys.stderr),
            )
        print(
            f"{gen.images:,} images, {gen.labels:,} labels, {gen.terms:,} terms"
            + (f", generated in {gen.seconds:.1f} s" if gen.seconds else ""),
            file=sys.stderr,
        )
        yield engine, gen
    finally:
        engine.dispose()
        if not keep and not database:
            conn = _admin_conn()
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            conn.close()
        elif not database:
            print(f"kept database {name}", file=sys.stderr)


def server(engine: Engine) -> str:
    """The MariaDB server's version and buffer pool, for a benchmark's description."""
    with engine.connect() as c:
        version = c.exec_driver_sql("SELECT VERSION()").scalar()
        pool = c.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar()
    return f"MariaDB {version}, buffer pool {int(pool or 0) // 2**20} MB"


def _describe(engine: Engine) -> GenerateReport:
    """Counts of an existing generated database (for ``--database``)."""
    with engine.connect() as c:

        def one(sql: str) -> Any:
            return c.exec_driver_sql(sql).scalar()

        sizes = c.exec_driver_sql(
            "SELECT owner_id, COUNT(*) n FROM images GROUP BY owner_id ORDER BY n, owner_id"
        ).all()
        heavy, typical = max(sizes, key=lambda r: r[1]), sizes[len(sizes) // 2]
        return GenerateReport(
            images=int(one("SELECT COUNT(*) FROM images")),
            users=int(one("SELECT COUNT(*) FROM users")) - 1,
            labels=int(one("SELECT COUNT(*) FROM labels")),
            terms=int(one("SELECT COUNT(*) FROM image_terms")),
            reviews=int(one("SELECT COUNT(*) FROM labels WHERE source = 'human'")),
            heaviest_user=str(heavy[0]),
            heaviest_user_images=int(heavy[1]),
            typical_user=str(typical[0]),
            typical_user_images=int(typical[1]),
            admin_id=str(one("SELECT id FROM users WHERE is_admin = 1 LIMIT 1")),
        )


if __name__ == "__main__":
    raise SystemExit(main())
