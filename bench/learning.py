"""Taught labels (issue #27): how well a person's k labelled photos teach a label, and what it costs.

A simulated person owns a library of photos and labels k of them with one label; the product's
own training (:func:`labelkit.taught.teach`: reliable-negative background, cross-validation,
threshold, refusal) runs on the library's stored embeddings (the worker's own extractor:
:func:`labelkit.features.embedding.extractor_for`), and its suggestions on the rest of the
library are scored against the truth:

* **scenes**: the library is the held-out split of ``../shared/data/scenes``
  (:func:`labelkit.labelers.train_scenes.assign_splits`: never trained or tuned on). A photo
  whose source class may show the label without carrying it (``MAY_SHOW``) is unknown: it
  counts neither for nor against.
* **devset** (``--devset``): the development photos, one label per COCO class of their
  annotations (a photo carries the class when it is annotated with it).

Per label and k (3, 5, 10), ``--repeats`` draws of the k photos; precision is over the draws
that suggested anything, recall over all draws (a refused label finds nothing). Costs: one
label's training plus scoring at 10,000 and 100,000 photos per person (embeddings drawn around
the library's, so the classifier sees real structure).

``python -m bench.learning --scenes ../shared/data/scenes --devset ../shared/data/devset --doc``
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.docs_page import add_doc_option, update_doc
from labelkit import taught
from labelkit.features import embedding

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "data" / "build" / "bench-learning"
KS = (3, 5, 10)


@dataclass(frozen=True)
class Library:
    """A simulated person's photos: embeddings, and per label the rows that carry it / may."""

    name: str
    x: np.ndarray
    carries: dict[str, np.ndarray]  # label -> bool per row
    unknown: dict[str, np.ndarray]  # label -> bool per row (neither right nor wrong)


def embed(files: Sequence[Path], cache: Path) -> np.ndarray:
    """The stored embedding of every file, as the worker makes it (cached by model and file)."""
    from labelkit.domain import ImageFeatures
    from labelkit.features import FeatureInput
    from labelkit.labelers.local import LocalLabeler
    from labelkit.settings import Settings

    labeler = LocalLabeler.from_settings(Settings())
    extractor = embedding.extractor_for([labeler])
    assert extractor is not None, "the local classifier is needed"
    names = [f.name for f in files]
    key = f"{extractor.model_name}|{len(files)}|{taught.seed_for(*names)}"
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["key"]) == key:
                return np.asarray(stored["x"])
    rows = []
    started = time.perf_counter()
    for i, path in enumerate(files):
        feats: ImageFeatures = extractor.extract(FeatureInput(path.read_bytes(), results=[]))
        assert feats.embedding is not None
        rows.append(embedding.unpack(feats.embedding))
        if i % 500 == 0:
            print(f"  embedded {i} / {len(files)} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    x = np.stack(rows).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=np.array(key), x=x)
    return x


def scenes_library(data: Path, *, tuning: bool = False) -> Library:
    """The held-out split; ``tuning``: the training split instead (where the taught labels'
    settings were chosen, so the held-out figures stay unseen)."""
    from labelkit.labelers import train_scenes as ts

    photos = ts.load_photos(data)
    split = ts.assign_splits(photos)
    held = [p for p, s in zip(photos, split, strict=True) if (s != ts.HELD_OUT) == tuning]
    x = embed([data / p.file for p in held], CACHE / f"scenes-{'training' if tuning else 'held-out'}.npz")
    carries = {c: np.array([c in p.labels for p in held]) for c in ts.CLASSES}
    unknown = {
        c: np.array([(c not in p.labels) and c in ts.MAY_SHOW.get(p.group, frozenset()) for p in held])
        for c in ts.CLASSES
    }
    return Library(f"scenes ({'training' if tuning else 'held-out'} split)", x, carries, unknown)


def devset_library(data: Path) -> Library:
    """The development photos; a photo carries a COCO class when it is annotated with it."""
    records = json.loads((data / "devset.json").read_text(encoding="utf-8"))
    files = [data / "images" / r["file"] for r in records]
    x = embed(files, CACHE / "devset.npz")
    names = sorted({n for r in records for n in r.get("objects", [])})
    carries = {n: np.array([n in r.get("objects", []) for r in records]) for n in names}
    unknown = {n: np.zeros(len(records), dtype=bool) for n in names}
    return Library("development set", x, carries, unknown)


def simulate(lib: Library, *, ks: Sequence[int], repeats: int, min_extra: int = 5) -> list[dict[str, Any]]:
    """One row per label and k: the mean precision and recall of the suggestions over draws."""
    rows = []
    for label, carries in sorted(lib.carries.items()):
        have = np.flatnonzero(carries)
        for k in ks:
            if len(have) < k + min_extra:
                continue
            precisions, recalls, refused, seconds = [], [], 0, []
            for r in range(repeats):
                pos = np.random.default_rng(taught.seed_for(label, str(k), str(r))).choice(
                    have, k, replace=False
                )
                started = time.perf_counter()
                result, conf = taught.teach(lib.x, pos.tolist(), [], seed=taught.seed_for(label, str(r)))
                seconds.append(time.perf_counter() - started)
                rest = np.ones(len(lib.x), dtype=bool)
                rest[pos] = False
                if result.classifier is None:
                    refused += 1
                    recalls.append(0.0)
                    continue
                shown = rest & (conf >= result.classifier.threshold)
                judged = shown & ~lib.unknown[label]
                right = int((judged & carries).sum())
                if judged.sum():
                    precisions.append(right / int(judged.sum()))
                recalls.append(right / max(1, int((rest & carries).sum())))
            rows.append(
                {
                    "label": label,
                    "k": k,
                    "photos": int(len(have)),
                    "precision": statistics.fmean(precisions) if precisions else None,
                    "recall": statistics.fmean(recalls),
                    "refused": refused,
                    "draws": repeats,
                    "train_ms": 1e3 * statistics.median(seconds),
                }
            )
    return rows


def summary(rows: list[dict[str, Any]], k: int) -> dict[str, float]:
    at = [r for r in rows if r["k"] == k]
    precise = [r["precision"] for r in at if r["precision"] is not None]
    return {
        "precision": statistics.fmean(precise) if precise else float("nan"),
        "recall": statistics.fmean(r["recall"] for r in at),
        "labels": len(at),
        "refused": sum(r["refused"] for r in at) / max(1, sum(r["draws"] for r in at)),
    }


def costs(lib: Library, sizes: Sequence[int], *, k: int = 5, repeats: int = 5) -> list[dict[str, Any]]:
    """Training plus scoring one label at each library size (median over ``repeats``)."""
    out = []
    rng = np.random.default_rng(27)
    label = "Forest" if "Forest" in lib.carries else max(lib.carries, key=lambda n: int(lib.carries[n].sum()))
    for n in sizes:
        picks = rng.integers(0, len(lib.x), n)
        x = lib.x[picks] + 0.05 * rng.standard_normal((n, lib.x.shape[1])).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        carrying = np.flatnonzero(lib.carries[label][picks])
        teach_s, score_s = [], []
        for r in range(repeats):
            pos = rng.choice(carrying, k, replace=False).tolist()
            started = time.perf_counter()
            result, _ = taught.teach(x, pos, [], seed=r)
            teach_s.append(time.perf_counter() - started)
            if result.classifier is not None:
                started = time.perf_counter()
                result.classifier.confidences(x)
                score_s.append(time.perf_counter() - started)
        out.append(
            {
                "photos": n,
                "teach_ms": 1e3 * statistics.median(teach_s),
                "score_ms": 1e3 * statistics.median(score_s) if score_s else float("nan"),
            }
        )
    return out


def end_to_end(lib: Library, n: int, *, k: int = 5, label: str = "Forest") -> dict[str, Any]:
    """``labelkit.learning.learn`` for one person with ``n`` photos in a SQLite file: read the
    embeddings and verdicts, train, write the suggestions (with their terms and totals)."""
    import tempfile
    import uuid

    from sqlalchemy import insert

    from labelkit.db.engine import get_engine, transaction
    from labelkit.db.migrate import upgrade
    from labelkit.db.models import Image, ImageFeatureRow, ImageStatus, ReviewState, User, utcnow
    from labelkit.db.queries import labels as label_q
    from labelkit.domain import Viewer
    from labelkit.learning import learn
    from labelkit.settings import Settings

    rng = np.random.default_rng(28)
    picks = rng.integers(0, len(lib.x), n)
    x = lib.x[picks] + 0.05 * rng.standard_normal((n, lib.x.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = get_engine(Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/bench.db"))
        upgrade(engine)
        ids = [uuid.uuid4().hex for _ in range(n)]
        now = utcnow()
        with transaction(engine) as s:
            s.execute(insert(User), [{"id": "bench-owner", "username": "bench-owner"}])
            s.execute(
                insert(Image),
                [
                    {"id": i, "owner_id": "bench-owner", "object_key": f"u/{i}.jpg", "original_name": "b.jpg",
                     "content_type": "image/jpeg", "bytes": 1, "width": 640, "height": 480, "sha256": i * 2,
                     "status": ImageStatus.LABELLED, "created_at": now}
                    for i in ids
                ],
            )  # fmt: skip
            s.execute(
                insert(ImageFeatureRow),
                [
                    {"image_id": i, "owner_id": "bench-owner", "embedding": embedding.pack(x[r]),
                     "embedding_model": "bench", "updated_at": now}
                    for r, i in enumerate(ids)
                ],
            )  # fmt: skip
        viewer = Viewer(user_id="bench-owner", is_admin=False)
        carrying = np.flatnonzero(lib.carries[label][picks])
        for r in rng.choice(carrying, k, replace=False):
            with transaction(engine) as s:
                label_q.set_human_labels(
                    session=s, viewer=viewer, image_id=ids[int(r)],
                    labels=[label_q.HumanLabel(name=label, review=ReviewState.CONFIRMED)],
                )  # fmt: skip
        started = time.perf_counter()
        (quality,) = learn(engine, "bench-owner")
        first = time.perf_counter() - started
        started = time.perf_counter()
        learn(engine, "bench-owner")
        again = time.perf_counter() - started
        engine.dispose()
    return {"photos": n, "first_s": first, "again_s": again, "suggested": quality.suggested}


def _f(v: float | None) -> str:
    return "—" if v is None or v != v else f"{v:.2f}"


def table(
    results: dict[str, list[dict[str, Any]]],
    cost: list[dict[str, Any]],
    ks: Sequence[int],
    e2e: Sequence[dict[str, Any]] = (),
) -> str:
    out = io.StringIO()
    out.write(
        f"Measured {time.strftime('%Y-%m-%d')} by `make bench-learning` (a simulated person teaches "
        "k photos of one label; its suggestions are scored on the rest of their library).\n\n"
    )
    out.write(
        "| library | k | labels | mean precision | mean recall | draws refused |\n|---|---|---|---|---|---|\n"
    )
    for name, rows in results.items():
        for k in ks:
            s = summary(rows, k)
            figures = f"{_f(s['precision'])} | {_f(s['recall'])} | {s['refused']:.0%}"
            out.write(f"| {name} | {k} | {s['labels']} | {figures} |\n")
    for name, rows in results.items():
        out.write(f"\n**{name}, per label** (precision / recall; k = {', '.join(map(str, ks))}):\n\n")
        out.write("| label | photos | " + " | ".join(f"k={k}" for k in ks) + " |\n")
        out.write("|---|---|" + "---|" * len(ks) + "\n")
        for label in sorted({r["label"] for r in rows}):
            cells = []
            photos = next(r["photos"] for r in rows if r["label"] == label)
            for k in ks:
                r = next((r for r in rows if r["label"] == label and r["k"] == k), None)
                cells.append("—" if r is None else f"{_f(r['precision'])} / {_f(r['recall'])}")
            out.write(f"| {label} | {photos} | " + " | ".join(cells) + " |\n")
    out.write(
        "\n**Cost of one label** (k = 5 Forest photos; training with cross-validation, then scoring every "
        "photo; the library drawn around the held-out photos' embeddings; numpy on 2 cores, no database):\n\n"
    )
    out.write("| photos per person | train + score | of which scoring |\n|---|---|---|\n")
    for c in cost:
        out.write(f"| {c['photos']:,} | {c['teach_ms']:.0f} ms | {c['score_ms']:.1f} ms |\n")
    if e2e:
        out.write(
            "\n**`labelkit learn` end to end** (one person, one label, SQLite file: read the embeddings and "
            "verdicts, train, write every suggestion with its search terms and totals; again: the same "
            "training once more, rewriting the suggestions):\n\n"
        )
        out.write("| photos per person | suggestions | first run | again |\n|---|---|---|---|\n")
        for e in e2e:
            out.write(
                f"| {e['photos']:,} | {e['suggested']:,} | {e['first_s']:.2f} s | {e['again_s']:.2f} s |\n"
            )
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=Path, default=ROOT.parent / "shared" / "data" / "scenes")
    p.add_argument("--devset", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=10, help="draws of the k photos per label (default 10)")
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument(
        "--tuning",
        action="store_true",
        help="the scene set's training split instead of its held-out split (for choosing settings)",
    )
    add_doc_option(p, "learning")
    args = p.parse_args(argv)
    results = {}
    lib = scenes_library(args.scenes, tuning=args.tuning)
    results[lib.name] = simulate(lib, ks=KS, repeats=args.repeats)
    if args.devset is not None:
        dev = devset_library(args.devset)
        results[dev.name] = simulate(dev, ks=KS, repeats=args.repeats)
    cost = costs(lib, args.sizes)
    e2e = [end_to_end(lib, n) for n in args.sizes if n <= 10_000]
    text = table(results, cost, KS, e2e)
    print(text)
    if args.doc is not None:
        update_doc(args.doc, text, name="learning", title="Taught labels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
