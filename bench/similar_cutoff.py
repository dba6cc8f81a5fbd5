"""Calibrate the similar-photos cutoff (``labelkit.similar.SIMILAR_CUTOFF``) on photos with
known content, never in ``make test``.

"Alike" is measured, not guessed. Two photos are alike when they share what a person would
say the photo is of:

* the scene set (``../shared/data/scenes``: 4,466 photos, 20 scene labels): at least one
  scene label other than Indoors / Outdoors (two kitchens, two beaches, two night streets);
* the development set (``../shared/data/devset``: 354 COCO photos): at least one major object
  class (covering >= 1% of the photo) other than person, or both are only people.

Every photo's embedding is made as the worker makes it (the local classifier's pooled
features, compacted and stored as float16). The photos are split in two by a seeded hash of
their file name: the **tuning** half picks the lowest similarity at which at least
``--precision`` of the pairs above it are alike; the **held-out** half reports what that
cutoff gives on photos it was not picked on (precision, and how many neighbours a photo has
above it). The scene set and the development set are reported apart.

``python -m bench.similar_cutoff --doc docs/similar-photos.md``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from labelkit.features import embedding

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GENERIC_SCENES = {"Indoors", "Outdoors"}
THRESHOLDS = np.round(np.arange(0.30, 0.96, 0.01), 2)
BEGIN, END = "<!-- similar-cutoff:begin -->", "<!-- similar-cutoff:end -->"


@dataclass
class Photo:
    file: Path
    tags: frozenset[str]


def scene_photos(root: Path) -> list[Photo]:
    records = json.loads((root / "scenes.json").read_text())
    return [
        Photo(root / r["file"], frozenset(set(r["labels"]) - GENERIC_SCENES))
        for r in records
        if set(r["labels"]) - GENERIC_SCENES
    ]


def devset_photos(root: Path) -> list[Photo]:
    out = []
    for r in json.loads((root / "devset.json").read_text()):
        major = set(r.get("objects_major") or [])
        things = major - {"person"}
        tags = things or ({"person only"} if "person" in major else set())
        if tags:
            out.append(Photo(root / "images" / Path(r["file"]).name, frozenset(tags)))
    return out


def held_out(photo: Photo) -> bool:
    return hashlib.sha256(photo.file.name.encode()).digest()[0] % 2 == 1


def embed(photos: Sequence[Photo]) -> np.ndarray:
    """Each photo's embedding as the worker stores it (then reads it back)."""
    from labelkit.labelers.local import LocalLabeler
    from labelkit.settings import Settings

    labeler = LocalLabeler.from_settings(Settings())
    rows = []
    for p in photos:
        pooled = labeler.pooled_features(p.file.read_bytes())
        rows.append(embedding.unpack(embedding.pack(embedding.compact(pooled))))
    return np.stack(rows)


def pair_stats(vectors: np.ndarray, photos: Sequence[Photo]) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, alike) of every pair i < j."""
    sims = vectors @ vectors.T
    i, j = np.triu_indices(len(photos), k=1)
    tags = [p.tags for p in photos]
    alike = np.array([bool(tags[int(a)] & tags[int(b)]) for a, b in zip(i, j, strict=True)])
    return sims[i, j], alike


def curve(sims: np.ndarray, alike: np.ndarray) -> list[tuple[float, float, int]]:
    """(threshold, precision of pairs at or above it, pairs at or above it)."""
    out = []
    for t in THRESHOLDS:
        above = sims >= t
        n = int(above.sum())
        out.append((float(t), float(alike[above].mean()) if n else float("nan"), n))
    return out


def neighbours_above(vectors: np.ndarray, cutoff: float) -> float:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    return float((sims >= cutoff).sum(axis=1).mean())


@dataclass
class Calibration:
    set: str
    photos: int
    tuning: int
    held_out: int
    base_rate: float  # share of held-out pairs that are alike at random
    cutoff: float | None  # None: no similarity reaches the target on the tuning half
    held_out_precision: float = float("nan")
    held_out_pairs: int = 0
    neighbours_per_photo: float = float("nan")
    curve: dict[str, tuple[float, int]] = field(default_factory=dict)  # held out: t -> (precision, pairs)


def calibrate(name: str, photos: list[Photo], precision: float, log: Callable[[str], None]) -> Calibration:
    t0 = time.perf_counter()
    vectors = embed(photos)
    log(f"{name}: {len(photos)} photos embedded in {time.perf_counter() - t0:.0f} s")
    tune = [k for k, p in enumerate(photos) if not held_out(p)]
    test = [k for k, p in enumerate(photos) if held_out(p)]
    tune_curve = curve(*pair_stats(vectors[tune], [photos[k] for k in tune]))
    picked = next((t for t, prec, n in tune_curve if n >= 20 and prec >= precision), None)
    test_sims, test_alike = pair_stats(vectors[test], [photos[k] for k in test])
    test_curve = {t: (p, n) for t, p, n in curve(test_sims, test_alike)}
    result = Calibration(
        set=name,
        photos=len(photos),
        tuning=len(tune),
        held_out=len(test),
        base_rate=float(test_alike.mean()),
        cutoff=picked,
        curve={f"{t:.2f}": test_curve[t] for t in (0.5, 0.6, 0.7, 0.8, 0.9) if t in test_curve},
    )
    if picked is not None:
        result.held_out_precision, result.held_out_pairs = test_curve[round(picked, 2)]
        result.neighbours_per_photo = neighbours_above(vectors[test], picked)
    return result


def table(results: list[Calibration], precision: float, chosen: float) -> str:
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.similar_cutoff` (target: at least "
        f"{precision:.0%} of the pairs above the cutoff alike, picked on the tuning half; figures on the "
        "held-out half). The product uses the highest cutoff of the two sets: "
        f"**{chosen:.2f}**.",
        "",
        "| set | photos (tuning / held out) | alike at random | cutoff picked | held-out precision "
        "| held-out neighbours per photo above it |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = (
            f"{r.cutoff:.2f} | {r.held_out_precision:.2f} | "
            f"{r.neighbours_per_photo:.1f} of {r.held_out - 1} |"
            if r.cutoff is not None
            else "none reaches the target | | |"
        )
        lines.append(f"| {r.set} | {r.tuning} / {r.held_out} | {r.base_rate:.2f} | {cells}")
    lines += ["", "Held-out precision at other similarities (pairs at or above each):", ""]
    lines += ["| set | " + " | ".join(f"≥ {t}" for t in ("0.50", "0.60", "0.70", "0.80", "0.90")) + " |"]
    lines += ["|---|" + "---:|" * 5]
    for r in results:
        shown = [
            f"{r.curve[t][0]:.2f} ({r.curve[t][1]:,} pairs)" if t in r.curve and r.curve[t][1] else "—"
            for t in ("0.50", "0.60", "0.70", "0.80", "0.90")
        ]
        lines.append(f"| {r.set} | " + " | ".join(shown) + " |")
    lines.append(END)
    return "\n".join(lines)


def write_doc(path: Path, text: str) -> None:
    doc = path.read_text() if path.exists() else ""
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + text + doc[doc.index(END) + len(END) :]
    else:
        doc = doc.rstrip() + "\n\n" + text + "\n"
    path.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--precision", type=float, default=0.8)
    parser.add_argument("--limit", type=int, help="at most this many photos of each set (a quick look)")
    parser.add_argument("--doc", type=Path, help="write the table into this Markdown file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = []
    for name, photos in (
        ("scenes (20 scene labels)", scene_photos(args.data / "scenes")),
        ("development set (COCO objects)", devset_photos(args.data / "devset")),
    ):
        if args.limit:
            photos = photos[:: max(1, len(photos) // args.limit)][: args.limit]
        results.append(calibrate(name, photos, args.precision, print))
    picked = [r.cutoff for r in results if r.cutoff is not None]
    chosen = max(picked) if picked else float("nan")
    text = table(results, args.precision, chosen)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
    if args.doc:
        write_doc(args.doc, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
