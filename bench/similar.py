"""Similar photos: the embedding's quality and cost, and search at scale.

Two parts, one table of docs/benchmarks.md each part fills:

* ``--devset DIR`` (the development photos, never in ``make test``): every photo labelled by
  the local labeller; the embedding's added cost per image (reading the pooled vector the
  labeller kept, projecting, packing), the cost of the fallback that runs the classifier
  again, and recall@10 of the compact vectors against the full 1280-d pooled vectors.
* scale: ``--images N`` embeddings for one owner (plus ``--others`` owners with a few each)
  in a generated database (SQLite file, or ``--db-url``), then ``similar_images`` through the
  real query path: p50/p95 per query, the cold load (first query: read every blob, build the
  matrix) and the cache's memory.

``python -m bench.similar --images 1000000 --devset ../shared/data/devset --doc docs/benchmarks.md``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from bench.docs_page import add_doc_option, update_doc
from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageFeatureRow, ImageStatus, User, utcnow
from labelkit.domain import Viewer
from labelkit.features import embedding


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the development photos ---------------------------------------------------------------


def devset(directory: Path, *, limit: int | None = None) -> dict[str, Any]:
    from labelkit.labelers import options_from
    from labelkit.labelers.base import ImageInput
    from labelkit.labelers.local import LocalLabeler
    from labelkit.settings import Settings

    settings = Settings()
    labeler = LocalLabeler.from_settings(settings)
    extractor = embedding.extractor_for([labeler])
    assert extractor is not None
    options = options_from(settings)
    files = sorted((directory / "images").glob("*.jpg"))[:limit]
    full: list[np.ndarray] = []
    added_ms: list[float] = []
    again_ms: list[float] = []
    label_ms: list[float] = []
    for path in files:
        data = path.read_bytes()
        t0 = time.perf_counter()
        labeler.label(ImageInput(data=data), options)
        t1 = time.perf_counter()
        pooled = labeler.pooled_features(data)  # kept by label(): no second run
        blob = embedding.pack(embedding.compact(pooled))
        t2 = time.perf_counter()
        labeler.pooled_features(bytes(data))  # another object: the classifier runs again
        t3 = time.perf_counter()
        assert len(blob) == embedding.EMBED_DIM * 2
        full.append(pooled)
        label_ms.append((t1 - t0) * 1e3)
        added_ms.append((t2 - t1) * 1e3)
        again_ms.append((t3 - t2) * 1e3)
    pooled_m = np.stack(full)
    recall = {dim: _recall_at(pooled_m, dim) for dim in (64, 128, 256, 512)}
    return {
        "photos": len(files),
        "label_ms_p50": statistics.median(label_ms),
        "added_ms_p50": statistics.median(added_ms),
        "added_ms_p95": _pct(added_ms, 0.95),
        "rerun_ms_p50": statistics.median(again_ms),
        "recall_at_10": recall,
        "recall_at_10_f16_full": _recall_f16_full(pooled_m),
    }


def _neighbours(m: np.ndarray, k: int = 10) -> np.ndarray:
    sims = m @ m.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _recall_at(pooled: np.ndarray, dim: int, k: int = 10) -> float:
    """Share of the full vectors' top-k neighbours the stored (projected, float16) vectors find."""
    truth = _neighbours(_unit(pooled), k)
    stored = embedding.unpack_many([embedding.pack(v) for v in embedding.compact(pooled, dim)], dim)
    found = _neighbours(stored, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)]))


def _recall_f16_full(pooled: np.ndarray, k: int = 10) -> float:
    truth = _neighbours(_unit(pooled), k)
    found = _neighbours(embedding.unpack_many([embedding.pack(v) for v in pooled], pooled.shape[1]), k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)]))


# --- scale ----------------------------------------------------------------------------------

MODEL = embedding.embedding_model_name("efficientnet-lite2", "fp32")


def generate(engine: Engine, *, images: int, others: int, per_other: int, seed: int = 0) -> list[str]:
    """One owner with ``images`` embeddings (clusters of near copies, like real bursts), and
    ``others`` owners with ``per_other`` each. Returns the big owner's image ids."""
    rng = np.random.default_rng(seed)
    dim = embedding.EMBED_DIM
    owners = ["bench-owner"] + [f"bench-other-{i}" for i in range(others)]
    now = utcnow()
    with transaction(engine) as s:
        s.execute(insert(User), [{"id": o, "username": o} for o in owners])
    big: list[str] = []
    chunk = 20_000
    for owner in owners:
        n = images if owner == "bench-owner" else per_other
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            centres = rng.standard_normal((m // 4 + 1, dim), dtype=np.float32)
            vecs = centres[np.arange(m) // 4] + 0.35 * rng.standard_normal((m, dim), dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            ids = [uuid.uuid4().hex for _ in range(m)]
            rows = [
                {
                    "id": image_id,
                    "owner_id": owner,
                    "object_key": f"users/{owner}/{image_id}.jpg",
                    "original_name": "bench.jpg",
                    "content_type": "image/jpeg",
                    "bytes": 1000,
                    "width": 640,
                    "height": 480,
                    "sha256": image_id * 2,
                    "status": ImageStatus.LABELLED,
                    "created_at": now - timedelta(seconds=start + i),
                }
                for i, image_id in enumerate(ids)
            ]
            feats = [
                {
                    "image_id": image_id,
                    "owner_id": owner,
                    "embedding": vecs[i].astype("<f2").tobytes(),
                    "embedding_model": MODEL,
                    "updated_at": now,
                }
                for i, image_id in enumerate(ids)
            ]
            with transaction(engine) as s:
                s.execute(insert(Image), rows)
                s.execute(insert(ImageFeatureRow), feats)
            if owner == "bench-owner":
                big.extend(ids)
    return big


def _synthetic(n: int, seed: int) -> np.ndarray:
    """``n`` unit vectors in clusters of four near copies (as :func:`generate` makes)."""
    rng = np.random.default_rng(seed)
    dim = embedding.EMBED_DIM
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        centres = rng.standard_normal((m // 4 + 1, dim), dtype=np.float32)
        vecs = centres[np.arange(m) // 4] + 0.35 * rng.standard_normal((m, dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        out[start : start + m] = vecs
    return out


def scale(
    db_url: str | None, *, images: int, index_images: int, others: int, per_other: int, queries: int
) -> dict[str, Any]:
    """``images`` generated in the database (the cold load reads them all); the owner's
    in-memory matrix then topped up to ``index_images`` rows (synthetic ids that are not in
    the database: the query path reads the database only by primary key and one index
    seek, never the owner's rows, so their absence changes no cost but the final existence
    check, which then drops them)."""
    from labelkit import similar
    from labelkit.db.engine import make_engine
    from labelkit.db.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'similar.db'}" if db_url in (None, "sqlite") else db_url
        engine = make_engine(url)
        upgrade(engine)
        t0 = time.perf_counter()
        ids = generate(engine, images=images, others=others, per_other=per_other)
        gen_s = time.perf_counter() - t0
        viewer = Viewer(user_id="bench-owner", is_admin=False)
        similar.clear_cache()
        with transaction(engine) as s:
            t0 = time.perf_counter()
            similar.similar_images(session=s, viewer=viewer, image_id=ids[0])
            cold_s = time.perf_counter() - t0
        (matrix,) = similar._cache.values()
        extra = max(0, index_images - len(matrix.ids))
        if extra:
            vecs = _synthetic(extra, seed=7)
            matrix.apply([(f"synthetic-{i}", vecs[i].tobytes()) for i in range(extra)])
        rows = len(matrix.ids)
        memory_mb = similar.cache_bytes() / 1e6
        rng = np.random.default_rng(1)
        times: list[float] = []
        for i in rng.integers(0, len(ids), queries):
            with transaction(engine) as s:
                t0 = time.perf_counter()
                found = similar.similar_images(session=s, viewer=viewer, image_id=ids[int(i)])
                times.append((time.perf_counter() - t0) * 1e3)
            assert found
        recall, near_recall = _rerank_recall(matrix, queries=50)
        similar.clear_cache()
        engine.dispose()
    return {
        "backend": url.split(":", 1)[0].split("+")[0],
        "db_images": images,
        "images": rows,
        "generate_s": gen_s,
        "cold_s": cold_s,
        "memory_mb": memory_mb,
        "p50_ms": statistics.median(times),
        "p95_ms": _pct(times, 0.95),
        "queries": queries,
        "rerank_recall_at_12": recall,
        "near_copy_recall": near_recall,
        "coarse_dim": similar.COARSE_DIM,
        "candidates": similar.CANDIDATES,
    }


def _rerank_recall(matrix: Any, *, queries: int, k: int = 12, close: float = 0.5) -> tuple[float, float]:
    """Share of the exact top ``k`` (cosine over all rows) the coarse pass + rerank returns,
    and the share of those at cosine >= ``close`` (the near copies) it returns."""
    full = matrix.full
    rng = np.random.default_rng(2)
    hits = []
    near: list[float] = []
    for i in rng.integers(0, len(matrix.ids), queries):
        q = full[int(i)].astype(np.float32)
        q /= np.linalg.norm(q)
        exact: list[float] = []
        for start in range(0, len(full), 200_000):
            exact.extend((full[start : start + 200_000].astype(np.float32) @ q).tolist())
        scores = np.asarray(exact)
        truth = set(np.argsort(-scores)[:k].tolist())
        found = {matrix.row_of[image_id] for image_id, _ in matrix.search(q, k)}
        hits.append(len(truth & found) / k)
        close_ones = {t for t in truth if scores[t] >= close}
        near.append(len(close_ones & found) / len(close_ones))
    return float(np.mean(hits)), float(np.mean(near))


def table(runs: list[dict[str, Any]], dev: dict[str, Any] | None) -> str:
    lines = []
    if runs:
        lines += [
            "| database | owner's images in the index | p50 per query | p95 per query | recall@12 vs exact "
            "| near copies found | cold load (images read) | index memory |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in runs:
            lines.append(
                f"| {r['backend']} | {r['images']:,} | {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms "
                f"| {r['rerank_recall_at_12']:.3f} | {r['near_copy_recall']:.3f} "
                f"| {r['cold_s']:.1f} s ({r['db_images']:,}) "
                f"| {r['memory_mb']:.0f} MB |"
            )
    if dev:
        rec = dev["recall_at_10"]
        lines += [
            "",
            f"Embedding on {dev['photos']} development photos: +{dev['added_ms_p50']:.2f} ms per image "
            f"(p95 {dev['added_ms_p95']:.2f} ms) on top of labelling ({dev['label_ms_p50']:.0f} ms p50), "
            f"as the labeller keeps the pooled vector; running the classifier again would cost "
            f"{dev['rerun_ms_p50']:.0f} ms. Recall@10 of the stored vectors against the full 1280-d "
            f"ones: " + ", ".join(f"{d}-d {v:.2f}" for d, v in rec.items()) + f", float16 1280-d "
            f"{dev['recall_at_10_f16_full']:.2f}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100_000, help="generated in the database")
    parser.add_argument("--index-images", type=int, default=1_000_000, help="rows of the owner's index")
    parser.add_argument("--others", type=int, default=3)
    parser.add_argument("--per-other", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--db-url",
        action="append",
        default=[],
        help="a database URL to generate in, or sqlite (a temporary file; the default); repeatable",
    )
    parser.add_argument("--devset", type=Path)
    parser.add_argument("--devset-limit", type=int)
    add_doc_option(parser, "similar")
    args = parser.parse_args(argv)
    dev = devset(args.devset, limit=args.devset_limit) if args.devset else None
    if dev:
        print(json.dumps(dev, indent=1), flush=True)  # noqa: T201 - CLI output
    runs = []
    if args.images:
        for url in args.db_url or [None]:
            run = scale(
                url,
                images=args.images,
                index_images=args.index_images,
                others=args.others,
                per_other=args.per_other,
                queries=args.queries,
            )
            print(json.dumps(run), flush=True)  # noqa: T201 - CLI output
            runs.append(run)
    text = table(runs, dev)
    print(text)  # noqa: T201 - CLI output
    if args.doc:
        update_doc(args.doc, text, name="similar", title="Similar photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
