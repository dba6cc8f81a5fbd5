"""Train the learned scene head (build time only; run time never imports this module).

    python -m labelkit.labelers.train_scenes --data ../shared/data/scenes \\
        --out labelkit/labelers/data/scene_head.npz --card docs/models/scene-head.md

Writes the head file :class:`labelkit.labelers.scenes.SceneHead` reads (a logistic regression
per scene over the classifier's pooled features, with per-scene thresholds and whether the
rules are fused in) and its model card. Never run at install or by ``make test``: the file is
committed. Needs the scene set, the face set and the development set in ``../shared/data`` and
the exported models (``make model``); about 15 minutes on 2 busy cores the first time (the
classifier and detector over every photo, kept in ``build/scene-features.npz``), a few minutes
after that.

How (the card says it again, with the figures):

* **Data**: the scene set's photos and labels (:data:`CLASSES`: its labels with 40 photos or
  more). A missing label is unknown, not a "no": :data:`MAY_SHOW` says, per source class, which
  labels its photos may show without carrying them; those are left out of that class's loss and
  figures. Close-ups of faces (the face set) and of objects (crops of development-set photos,
  :data:`CROP_CLASSES`) are a "no" to every scene but Indoors/Outdoors.
* **Split**: :func:`assign_splits`: per source class, by file hash, one photo in five held out
  (never trained or tuned on; ``make bench-quality`` measures the labeller on the same photos,
  checked through the digest in the head file), the rest in five folds.
* **Features**: the int8 classifier's pooled features of each photo and of a grayscale copy of
  each colour photo (the indoor photos are all grayscale); Indoors/Outdoors learn from the
  grayscale rows only (:data:`COLOUR_BLIND`).
* **Fit**: weighted logistic regression per class with an L2 penalty chosen by out-of-fold log
  loss (:data:`L2_CHOICES`); thresholds and the fusion with the rules chosen on out-of-fold
  scores (:func:`choose`): the lowest threshold with precision >= :data:`TARGET_PRECISION`
  from there up, never below :data:`THRESHOLD_FLOOR`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

#: Bump when the cached features would differ (inputs, variants, what is stored).
EXTRACT_FORMAT = 1
#: The held-out share of every source class (1 in HELD_OUT_EVERY photos, by file hash).
HELD_OUT_EVERY = 5
#: Folds of the training split: thresholds and the fusion are chosen on out-of-fold scores.
FOLDS = 5


@dataclass(frozen=True)
class Photo:
    file: str  # relative to the data folder (absolute for the close-ups of other sets)
    labels: frozenset[str]
    source: str
    source_class: str
    licence: str
    sha256: str  # of the file (and of the crop, for a crop)
    crop: tuple[float, float, float, float] | None = None  # left, top, width, height (fractions)

    @property
    def close_up(self) -> bool:
        """A close-up of a face or an object from another set: no scene but maybe Indoors/Outdoors."""
        return self.source.startswith("close-up:")

    @property
    def group(self) -> str:
        """The stratum: the source and its class (hand-labelled photos are one stratum per source)."""
        if self.close_up:
            return "close-up/" + self.source.split(":")[1]
        origin = ":".join(self.source.split(":")[:2])
        if origin not in SOURCES:
            raise ValueError(f"{self.file}: unknown source {origin!r}; add it to SOURCES and MAY_SHOW")
        cls = "hand" if self.source_class.startswith("hand-labelled") else self.source_class
        return f"{SOURCES[origin]}/{cls}"


def load_photos(data: Path) -> list[Photo]:
    records = json.loads((data / "scenes.json").read_text(encoding="utf-8"))
    photos = []
    for rec in records:
        digest = hashlib.sha256((data / rec["file"]).read_bytes()).hexdigest()
        photos.append(
            Photo(
                file=rec["file"],
                labels=frozenset(rec["labels"]),
                source=rec["source"],
                source_class=rec["source_class"],
                licence=rec.get("license") or "",
                sha256=digest,
            )
        )
    return photos


HELD_OUT = -1


# --- close-ups: what a scene is not ---------------------------------------------------------

#: Every photo of the scene set is a scene, so a head trained on it alone calls a cup of
#: coffee "Sky, Outdoors" and a portrait "Building". Close-ups from the other development sets
#: teach it what is not a scene: each is a "no" for every scene except Indoors and Outdoors
#: (unknown). Faces: the face set's crops and portraits. Objects: from development-set photos,
#: the detector's best box of one of these COCO classes (score >= CROP_SCORE, covering >=
#: CROP_AREA of the photo), grown by CROP_MARGIN on each side.
CROP_CLASSES = frozenset(
    {"banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
     "cup", "bowl", "wine glass", "bottle", "fork", "knife", "spoon", "cat", "dog", "bird", "teddy bear",
     "cell phone", "book", "clock", "vase", "scissors", "remote", "laptop", "keyboard", "mouse",
     "toothbrush", "handbag", "backpack", "tie", "suitcase"}
)  # fmt: skip
CROP_SCORE = 0.6
CROP_AREA = 0.04
CROP_MARGIN = 0.1
#: Development-set photos annotated with any of these are not cropped: they are the ones whose
#: scenes `make bench-quality` derives (bench/data/scene_truth.yml), which must stay unseen.
DEVSET_KEEP_OUT = frozenset(
    {"oven", "refrigerator", "toilet", "bed", "surfboard", "skis", "snowboard", "bus", "traffic light"}
)


def face_photos(folder: Path) -> list[Photo]:
    """The face set's photos as close-ups (no scene)."""
    records = json.loads((folder / "faces.json").read_text(encoding="utf-8"))
    out = []
    for rec in records:
        path = (folder / rec["file"]).resolve()
        out.append(
            Photo(
                file=str(path),
                labels=frozenset(),
                source=f"close-up:faces:{rec['source']}",
                source_class="face",
                licence=rec.get("license") or "",
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            )
        )
    return out


def object_crops(folder: Path, model_dir: Path) -> list[Photo]:
    """One object close-up per development-set photo that has one (see CROP_CLASSES)."""
    from labelkit.labelers.detect import Detector

    detector = Detector(model_dir, 2, precision="int8")
    records = json.loads((folder / "devset.json").read_text(encoding="utf-8"))
    out = []
    for rec in records:
        if DEVSET_KEEP_OUT & set(rec["objects"]):
            continue
        path = (folder / "images" / rec["file"]).resolve()
        data = path.read_bytes()
        rgb = Image.open(io.BytesIO(data)).convert("RGB")
        found = [
            d
            for d in detector.predict([detector.prepare(rgb)])[0]
            if d.name in CROP_CLASSES and d.score >= CROP_SCORE and d.area >= CROP_AREA
        ]
        if not found:
            continue
        best = max(found, key=lambda d: (d.score, d.area))
        b = best.box
        mx, my = CROP_MARGIN * b.width, CROP_MARGIN * b.height
        left, top = max(0.0, b.left - mx), max(0.0, b.top - my)
        right, bottom = min(1.0, b.left + b.width + mx), min(1.0, b.top + b.height + my)
        crop = (round(left, 4), round(top, 4), round(right - left, 4), round(bottom - top, 4))
        digest = hashlib.sha256(data + repr(crop).encode()).hexdigest()
        out.append(
            Photo(
                file=str(path),
                labels=frozenset(),
                source=f"close-up:devset:{rec['source'].split(' ')[0]}",
                source_class=best.name,
                licence="COCO 2017 (annotations CC BY 4.0; images under their Flickr licences)",
                sha256=digest,
                crop=crop,
            )
        )
    return out


def assign_splits(photos: Sequence[Photo]) -> np.ndarray:
    """Per photo: ``HELD_OUT`` (-1) or its training fold (0 .. FOLDS-1).

    Stratified by source class and decided by the file's SHA-256 only: within each stratum
    the photos are ordered by hash, every ``HELD_OUT_EVERY``-th (starting with the second) is
    held out, and the rest take folds in turn. The same files always give the same split.
    """
    out = np.zeros(len(photos), dtype=np.int64)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(photos):
        groups.setdefault(p.group, []).append(i)
    for members in groups.values():
        members.sort(key=lambda i: photos[i].sha256)
        fold = 0
        for rank, i in enumerate(members):
            if rank % HELD_OUT_EVERY == 1:
                out[i] = HELD_OUT
            else:
                out[i] = fold % FOLDS
                fold += 1
    return out


# --- features ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """Everything the head and the rules need, per (photo, variant) row."""

    photo: np.ndarray  # (R,) index into the photo list
    gray: np.ndarray  # (R,) bool: the photo converted to grayscale (colour photos only)
    fp32: np.ndarray  # (R,) bool: the fp32 classifier (else int8)
    pooled: np.ndarray  # (R, 1280) float32
    probs: np.ndarray  # (R, 1000) float16 classifier softmax
    objects: np.ndarray  # (R, 80) float32 best detector score per COCO class (int8 detector)
    image: np.ndarray  # (R, len(FEATURES)) float32 rules' image features


def _is_gray(rgb: Image.Image) -> bool:
    a = np.asarray(rgb, dtype=np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= 2 and np.abs(a[..., 1] - a[..., 2]).max() <= 2)


def extract(photos: Sequence[Photo], data: Path, model_dir: Path, *, batch: int = 16) -> Features:
    """Run the classifier (int8 and fp32), the detector (int8) and the rules' image features on
    every photo, and on a grayscale copy of every colour photo."""
    from labelkit.labelers.classify import Classifier
    from labelkit.labelers.detect import Detector, coco_labels
    from labelkit.labelers.scenes import FEATURES, scene_features

    classifiers = {p: Classifier("lite2", model_dir, 2, precision=p) for p in ("int8", "fp32")}
    detector = Detector(model_dir, 2, precision="int8")
    coco = sorted(coco_labels().values())
    col = {name: k for k, name in enumerate(coco)}

    def variants(i: int) -> list[tuple[int, bool, Image.Image]]:
        rgb = Image.open(io.BytesIO((data / photos[i].file).read_bytes())).convert("RGB")
        crop = photos[i].crop
        if crop is not None:
            left, top, width, height = crop
            w, h = rgb.size
            rgb = rgb.crop(
                (round(left * w), round(top * h), round((left + width) * w), round((top + height) * h))
            )
        if _is_gray(rgb):
            return [(i, False, rgb)]
        return [(i, False, rgb), (i, True, rgb.convert("L").convert("RGB"))]

    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("photo", "gray", "fp32", "pooled", "probs")}
    rows.update(objects=[], image=[])
    for start in range(0, len(photos), batch):
        chunk = [v for i in range(start, min(start + batch, len(photos))) for v in variants(i)]
        dets = detector.predict([detector.prepare(rgb) for _, _, rgb in chunk])
        objects = np.zeros((len(chunk), len(coco)), dtype=np.float32)
        for r, found in enumerate(dets):
            for d in found:
                objects[r, col[d.name]] = max(objects[r, col[d.name]], d.score)
        for precision, clf in classifiers.items():
            pixels = [clf.prepare(rgb) for _, _, rgb in chunk]
            outs = clf.predict(pixels)
            rows["photo"].append(np.array([i for i, _, _ in chunk]))
            rows["gray"].append(np.array([g for _, g, _ in chunk]))
            rows["fp32"].append(np.full(len(chunk), precision == "fp32"))
            rows["pooled"].append(np.stack([o.pooled for o in outs]).astype(np.float32))
            rows["probs"].append(np.stack([o.probs for o in outs]).astype(np.float16))
            rows["objects"].append(objects)
            rows["image"].append(
                np.array([[scene_features(px)[f] for f in FEATURES] for px in pixels], dtype=np.float32)
            )
        if start // batch % 25 == 0:
            logger.info("features: %d / %d photos", start + batch, len(photos))
    return Features(**{k: np.concatenate(v) for k, v in rows.items()})


def cached_features(photos: Sequence[Photo], data: Path, model_dir: Path, cache: Path) -> Features:
    """:func:`extract`, kept in ``cache`` (under build/, not committed): rows are kept per photo
    hash for these models' versions, so only photos not seen before are run."""
    from labelkit.labelers.classify import Classifier
    from labelkit.labelers.detect import Detector

    versions = [Classifier("lite2", model_dir, 2, precision=p).model_version for p in ("int8", "fp32")]
    versions.append(Detector(model_dir, 2, precision="int8").model_version)
    key = "|".join([str(EXTRACT_FORMAT), *versions])
    fields = list(Features.__dataclass_fields__)
    saved: dict[str, Any] = {}
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["key"]) == key:
                saved = {f: stored[f] for f in [*fields, "sha256"]}
            else:
                logger.info("feature cache %s is for other models: extracting again", cache)
    known = set(saved["sha256"].tolist()) if saved else set()
    new = [p for p in photos if p.sha256 not in known]
    if new:
        logger.info("features of %d photos not in the cache ...", len(new))
        found = extract(new, data, model_dir)
        rows: dict[str, Any] = {f: getattr(found, f) for f in fields}
        rows["sha256"] = np.array([new[i].sha256 for i in found.photo])
        saved = rows if not saved else {f: np.concatenate([saved[f], rows[f]]) for f in rows}
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=np.array(key), **saved)
    index = {p.sha256: i for i, p in enumerate(photos)}
    keep = np.array([sha in index for sha in saved["sha256"].tolist()])
    out = {f: saved[f][keep] for f in fields}
    out["photo"] = np.array([index[sha] for sha in saved["sha256"][keep].tolist()], dtype=np.int64)
    return Features(**out)


# --- what the labels say ----------------------------------------------------------------

#: The head's classes: the scene set's labels with at least 40 photos (River has 1).
CLASSES = (
    "Outdoors", "Indoors", "Sky", "Sunset", "Night", "City", "Building", "Street", "Road", "Mountain",
    "Forest", "Field", "Snow", "Sea", "Beach", "Market", "Office", "Bedroom", "Kitchen", "Living Room",
)  # fmt: skip
OUTDOOR = frozenset(
    {"Sky", "Sunset", "Night", "City", "Building", "Street", "Road", "Mountain", "Forest", "Field", "Snow",
     "Sea", "Beach"}
)  # fmt: skip

#: Short names of the sources (the part of ``source`` before the path).
SOURCES = {
    "github:afroozsheikh/Intel-Image-Classifier": "intel",
    "github:lionelmessi6410/Scene-Recognition-with-Bag-of-Words": "15scene",
    "github:GiovTemp/ml-landscape-weather-classification": "mwd",
    "github:udacity/CVND_Exercises": "udacity",
    "debian:lomiri-wallpapers-16.04 20.04.0-2": "debian",
    "debian:mate-backgrounds 1.26.0-1": "debian",
}

#: The set's labels are incomplete: a missing label is unknown, not a "no". What each
#: source class settles: a photo of it may show these labels without carrying them
#: (unknown: not trained on, not counted); every other label it lacks is a real "no".
#: Judged from contact sheets of each class (the scene set's README has the spot check).
MAY_SHOW: dict[str, frozenset[str]] = {
    "intel/buildings": frozenset({"City", "Street", "Road", "Sky", "Night"}),
    "intel/forest": frozenset({"Mountain", "Field", "Snow", "Road"}),  # canopy: no sky
    "intel/glacier": frozenset({"Mountain", "Sky", "Sea"}),
    "intel/mountain": frozenset({"Snow", "Forest", "Field", "Sea", "Road", "Sky"}),
    "intel/sea": frozenset({"Beach", "Sky", "Mountain", "Sunset", "Snow"}),
    "intel/street": frozenset({"Building", "Road", "Sky", "Night"}),
    "mwd/cloudy": OUTDOOR - {"Sunset", "Night"},
    "mwd/shine": OUTDOOR - {"Sunset", "Night"},
    "mwd/rain": OUTDOOR - {"Sunset"},
    "mwd/sunrise": OUTDOOR - {"Night"},
    "15scene/Bedroom": frozenset(),
    "15scene/Kitchen": frozenset({"Living Room"}),
    "15scene/LivingRoom": frozenset({"Kitchen"}),
    "15scene/Office": frozenset(),
    "15scene/Store": frozenset(),
    "15scene/Coast": frozenset({"Beach", "Sky", "Mountain", "Sunset"}),
    "15scene/Forest": frozenset({"Mountain", "Field", "Road", "Snow", "Sky"}),
    "15scene/Highway": frozenset(
        {"City", "Building", "Street", "Field", "Mountain", "Forest", "Sky", "Snow"}
    ),
    "15scene/Industrial": frozenset({"City", "Street", "Road", "Sky"}),
    "15scene/InsideCity": frozenset({"Building", "Street", "Road", "Sky"}),
    "15scene/Mountain": frozenset({"Snow", "Forest", "Field", "Sea", "Road", "Sky"}),
    "15scene/OpenCountry": frozenset({"Mountain", "Forest", "Road", "Sky", "Snow"}),
    "15scene/Street": frozenset({"City", "Building", "Road", "Sky"}),
    "15scene/Suburb": frozenset({"City", "Street", "Road", "Sky", "Forest", "Field"}),
    "15scene/TallBuilding": frozenset({"Street", "Road", "Sky"}),
    "udacity/day": frozenset({"Street", "Road", "Building", "Sky"}),
    "udacity/night": frozenset({"City", "Street", "Road", "Building", "Sky"}),
    "debian/hand": OUTDOOR,
    "close-up/faces": frozenset({"Indoors", "Outdoors"}),
    "close-up/devset": frozenset({"Indoors", "Outdoors"}),
}


def targets(photos: Sequence[Photo]) -> np.ndarray:
    """(n, len(CLASSES)) int8: 1 the photo carries the label, 0 a real "no", -1 unknown."""
    out = np.zeros((len(photos), len(CLASSES)), dtype=np.int8)
    for i, p in enumerate(photos):
        maybe = MAY_SHOW[p.group]
        for k, name in enumerate(CLASSES):
            if name in p.labels:
                out[i, k] = 1
            elif name in maybe:
                out[i, k] = -1
    return out


# --- the head ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """Logistic regression per class over standardised pooled features."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    weight: np.ndarray  # (D, K)
    bias: np.ndarray  # (K,)

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((pooled - self.mean) / self.scale) @ self.weight + self.bias
        return out

    def probs(self, pooled: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logits(pooled))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, l2: float, max_iter: int = 300) -> Head:
    """Weighted binary cross-entropy per class (``w`` is 0 where the target is unknown) plus
    ``l2`` * |W|^2 / 2, minimised by L-BFGS over all classes at once."""
    from scipy.optimize import minimize

    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    z = ((x - mean) / scale).astype(np.float32)
    d, k = z.shape[1], y.shape[1]
    yf = (y == 1).astype(np.float32)
    total = w.sum(axis=0) + 1e-9  # per class

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight = theta[: d * k].reshape(d, k).astype(np.float32)
        bias = theta[d * k :].astype(np.float32)
        logits = z @ weight + bias
        p = _sigmoid(logits)
        # log(1 + e^-|l|) form: stable for large logits
        nll = np.maximum(logits, 0) - logits * yf + np.log1p(np.exp(-np.abs(logits)))
        value = float(((nll * w).sum(axis=0) / total).sum()) + 0.5 * l2 * float((weight**2).sum())
        resid = (p - yf) * w / total
        grad_w = z.T @ resid + l2 * weight
        grad_b = resid.sum(axis=0)
        return value, np.concatenate([grad_w.ravel(), grad_b]).astype(np.float64)

    start = np.zeros(d * k + k)
    found = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    theta = found.x
    return Head(
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        weight=theta[: d * k].reshape(d, k).astype(np.float32),
        bias=theta[d * k :].astype(np.float32),
    )


# --- thresholds and figures ----------------------------------------------------------------

#: Per-class thresholds are the lowest at which the out-of-fold precision is at least this.
TARGET_PRECISION = 0.8
#: ... counted only where the threshold keeps at least this many photos (a lone photo at the
#: top does not decide a class).
MIN_KEPT = 10


def choose_threshold(scores: np.ndarray, truth: np.ndarray, target: float = TARGET_PRECISION) -> float:
    """The lowest threshold t such that the precision of ``scores >= t'`` is at least ``target``
    for t and every higher threshold that keeps >= MIN_KEPT known photos (``truth``: 1 / 0;
    unknown -1 left out). 1.0 (never shown) if no threshold qualifies."""
    known = truth >= 0
    s, y = scores[known], truth[known]
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    hits = np.cumsum(y == 1)
    kept = np.arange(1, len(s) + 1)
    precision = hits / kept
    # a threshold equal to s[i] keeps every score >= s[i]: the last of a run of ties
    last = np.r_[s[1:] != s[:-1], True]
    ok = (precision >= target) | (kept < MIN_KEPT)
    best = 1.0
    for i in range(len(s)):
        if not last[i]:
            continue
        if not ok[i]:
            break
        if kept[i] >= MIN_KEPT:
            best = float(s[i])
    return best


@dataclass(frozen=True)
class Figures:
    """Precision and recall of one class at one threshold, over photos whose truth is known."""

    positives: int
    negatives: int
    true_pos: int
    false_pos: int

    @property
    def recall(self) -> float | None:
        return self.true_pos / self.positives if self.positives else None

    @property
    def precision(self) -> float | None:
        shown = self.true_pos + self.false_pos
        return self.true_pos / shown if shown else None


def figures(scores: np.ndarray, truth: np.ndarray, threshold: float) -> Figures:
    shown = scores >= threshold
    return Figures(
        positives=int((truth == 1).sum()),
        negatives=int((truth == 0).sum()),
        true_pos=int((shown & (truth == 1)).sum()),
        false_pos=int((shown & (truth == 0)).sum()),
    )


# --- the rules, and the fusion, on the cached features -------------------------------------


def rule_scores(feats: Features, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The scene rules' probability of every scene (before the exclusion) on these rows,
    exactly as the labeller computes them (int8 detector objects, image features)."""
    from labelkit.labelers.detect import coco_labels
    from labelkit.labelers.scenes import FEATURES, load_scenes
    from labelkit.labelers.taxonomy import load_rules

    rules = load_rules()
    scenes = load_scenes(rules)
    coco = sorted(coco_labels().values())
    mass = rules.mass(feats.probs[rows].astype(np.float32))
    out = {s.name: np.zeros(len(rows), dtype=np.float32) for s in scenes.scenes}
    for r, row in enumerate(rows.tolist()):
        objects = {coco[c]: float(feats.objects[row, c]) for c in np.flatnonzero(feats.objects[row])}
        image = dict(zip(FEATURES, feats.image[row].tolist(), strict=True))
        for name, p in scenes.rule_scores(entry_mass=mass[r], objects=objects, features=image).items():
            out[name][r] = p
    return out


def fused_scores(
    head: np.ndarray, rules: dict[str, np.ndarray], use_rules: np.ndarray, *, exclude: bool = True
) -> np.ndarray:
    """(R, K) scene probabilities as the labeller computes them: each head class's
    :func:`~labelkit.labelers.scenes.fuse_probability`, then the Indoors/Outdoors exclusion."""
    from labelkit.labelers.scenes import fuse_probability, load_scenes
    from labelkit.labelers.taxonomy import load_rules

    scenes = load_scenes(load_rules())
    out = np.zeros_like(head)
    for r in range(head.shape[0]):
        probs = {name: float(values[r]) for name, values in rules.items()}
        for k, name in enumerate(CLASSES):
            probs[name] = fuse_probability(float(head[r, k]), probs[name], use_rules=bool(use_rules[k]))
        if exclude:
            probs = scenes.exclude(probs)
        out[r] = [probs[name] for name in CLASSES]
    return out


def rules_only(rules: dict[str, np.ndarray]) -> np.ndarray:
    """(R, K) the rules alone, after the exclusion (0 for scenes they do not have)."""
    from labelkit.labelers.scenes import load_scenes
    from labelkit.labelers.taxonomy import load_rules

    scenes = load_scenes(load_rules())
    n = len(next(iter(rules.values())))
    out = np.zeros((n, len(CLASSES)), dtype=np.float32)
    for r in range(n):
        probs = scenes.exclude({name: float(values[r]) for name, values in rules.items()})
        out[r] = [probs.get(name, 0.0) for name in CLASSES]
    return out


# --- training, evaluation, the files ------------------------------------------------------

#: L2 penalties tried (on standardised features); the one with the lowest out-of-fold log loss wins.
L2_CHOICES = (0.003, 0.01, 0.1)
#: Weight of the grayscale copy of a colour photo (the original weighs 1).
GRAY_WEIGHT = 1.0
#: Learnt from grayscale rows only (grayscale photos and the grayscale copies of colour ones):
#: every indoor photo of the set is grayscale, so colour itself would say Outdoors.
COLOUR_BLIND = ("Indoors", "Outdoors")
#: No threshold is below this probability, whatever the folds say (see the module docstring).
THRESHOLD_FLOOR = 0.5
#: A label counts at this confidence in the figures (as in bench/label_metrics.py).
COUNTS_AT = 50.0


@dataclass(frozen=True)
class Rows:
    """Which feature rows train and which ones score each photo."""

    train: np.ndarray  # row indices: int8 rows of training photos (colour and grayscale copies)
    weight: np.ndarray  # (len(train), K) the row's weight per class
    score: np.ndarray  # (n_photos,) the row that scores a photo: int8, as stored (not a copy)
    score_fp32: np.ndarray  # (n_photos,) the same with the fp32 classifier


def select_rows(feats: Features, split: np.ndarray, gray_weight: float = GRAY_WEIGHT) -> Rows:
    n = len(split)
    score = np.full(n, -1)
    score_fp32 = np.full(n, -1)
    for r in np.flatnonzero(~feats.gray).tolist():
        (score_fp32 if feats.fp32[r] else score)[feats.photo[r]] = r
    if (score < 0).any() or (score_fp32 < 0).any():
        raise ValueError("the feature cache lacks some photos")
    train = np.flatnonzero((split[feats.photo] >= 0) & ~feats.fp32)
    weight = np.repeat(np.where(feats.gray[train], gray_weight, 1.0)[:, None], len(CLASSES), axis=1)
    # A colour photo's own row (it has a grayscale copy) does not train the colour-blind classes.
    copied = set(feats.photo[feats.gray].tolist())
    colour = np.array([not feats.gray[r] and feats.photo[r] in copied for r in train.tolist()], dtype=bool)
    blind = np.array([CLASSES.index(c) for c in COLOUR_BLIND])
    weight[np.ix_(colour, blind)] = 0.0
    return Rows(train=train, weight=weight.astype(np.float32), score=score, score_fp32=score_fp32)


def train(feats: Features, y: np.ndarray, rows: np.ndarray, weight: np.ndarray, l2: float) -> Head:
    target = y[feats.photo[rows]]
    w = weight * (target >= 0)
    return fit_head(feats.pooled[rows], target, w, l2=l2)


def threshold_for(scores: np.ndarray, truth: np.ndarray) -> float:
    return max(THRESHOLD_FLOOR, choose_threshold(scores, truth))


@dataclass(frozen=True)
class Choice:
    """Per class: the fused threshold, whether the rules are fused in, and why."""

    thresholds: np.ndarray  # (K,)
    use_rules: np.ndarray  # (K,) bool
    head: list[Figures]  # out-of-fold, head alone at its threshold
    fused: list[Figures]  # out-of-fold, head + rules at theirs
    dropped_for_sides: tuple[str, ...]  # classes whose rules were left out for indoor/outdoor
    side_accuracy: tuple[float, float]  # out-of-fold indoor/outdoor accuracy before, after that


def choose(oof_head: np.ndarray, rules: dict[str, np.ndarray], y: np.ndarray) -> Choice:
    """On the training split's out-of-fold scores: per class, the head's threshold and the
    fused one (:func:`threshold_for`). The rules are fused in unless that costs precision below
    the target or recall (they hold evidence this set cannot show: buses, ovens, beds). Then,
    class by class, a class's rules are left out if that raises the indoor/outdoor accuracy
    (the rules' sky feature and a few objects can name the wrong side, or both)."""
    k = len(CLASSES)
    head_t = np.array([threshold_for(oof_head[:, j], y[:, j]) for j in range(k)])
    with_rules = fused_scores(oof_head, rules, np.ones(k, dtype=bool))
    without = fused_scores(oof_head, rules, np.zeros(k, dtype=bool))
    fused_t = np.array([threshold_for(with_rules[:, j], y[:, j]) for j in range(k)])
    head_f = [figures(without[:, j], y[:, j], head_t[j]) for j in range(k)]
    fused_f = [figures(with_rules[:, j], y[:, j], fused_t[j]) for j in range(k)]
    use = np.array(
        [
            (f.precision or 0.0) >= TARGET_PRECISION and (f.recall or 0.0) >= (h.recall or 0.0)
            for h, f in zip(head_f, fused_f, strict=True)
        ]
    )

    def sides(u: np.ndarray) -> float:
        return side_accuracy(shown(fused_scores(oof_head, rules, u), np.where(u, fused_t, head_t)), y)

    before = best = sides(use)
    dropped = []
    for j in np.flatnonzero(use).tolist():
        trial = use.copy()
        trial[j] = False
        accuracy = sides(trial)
        if accuracy > best:
            use, best = trial, accuracy
            dropped.append(CLASSES[j])
    return Choice(
        thresholds=np.where(use, fused_t, head_t).astype(np.float32),
        use_rules=use,
        head=head_f,
        fused=fused_f,
        dropped_for_sides=tuple(dropped),
        side_accuracy=(before, best),
    )


def side_accuracy(show: np.ndarray, y: np.ndarray) -> float:
    """Of the photos that are Indoors or Outdoors, the share showing their side and not the other."""
    i, o = CLASSES.index("Indoors"), CLASSES.index("Outdoors")
    sided = (y[:, i] == 1) | (y[:, o] == 1)
    right = np.where(y[:, i] == 1, show[:, i] & ~show[:, o], show[:, o] & ~show[:, i])
    return float(right[sided].mean())


def shown(probs: np.ndarray, thresholds: np.ndarray, *, raise_parents: bool = True) -> np.ndarray:
    """(R, K) bool: the scene counts (confidence >= COUNTS_AT), its confidence being
    :func:`~labelkit.labelers.taxonomy.confidence_at` of its probability at its threshold,
    raised to its most confident child's as the fusion does (Kitchen -> Indoors)."""
    from labelkit.labelers.scenes import load_scenes
    from labelkit.labelers.taxonomy import CONFIDENCE_AT_THRESHOLD, load_rules

    t = np.asarray(thresholds, dtype=np.float32)
    p = np.clip(probs, 0.0, 1.0)
    conf = np.where(
        p >= t,
        CONFIDENCE_AT_THRESHOLD + (100 - CONFIDENCE_AT_THRESHOLD) * (p - t) / (1 - t + 1e-9),
        CONFIDENCE_AT_THRESHOLD * p / t,
    )
    if raise_parents:
        parents = {s.name: s.parents for s in load_scenes(load_rules()).scenes}
        raised = conf.copy()
        for j, name in enumerate(CLASSES):
            for parent in parents.get(name, ()):
                if parent in CLASSES:
                    m = CLASSES.index(parent)
                    raised[:, m] = np.maximum(raised[:, m], conf[:, j])
        conf = raised
    out: np.ndarray = conf >= COUNTS_AT
    return out


@dataclass(frozen=True)
class Evaluation:
    """Held-out figures of one way of scoring."""

    name: str
    per_class: list[Figures]
    scene_recall: float  # (photo, label) pairs found, all classes
    scene_recall_no_sides: float  # the same without Indoors / Outdoors
    indoor_outdoor: float  # photos whose side is shown and the other side is not
    both_or_neither: int  # photos showing both sides or neither
    close_ups: int  # held-out close-ups (faces, objects)
    close_ups_with_scene: int  # ... showing a scene other than Indoors / Outdoors

    @classmethod
    def of(cls, name: str, show: np.ndarray, y: np.ndarray, close: np.ndarray) -> Evaluation:
        """``close``: which rows are close-ups (counted apart, not in the scene figures)."""
        i, o = CLASSES.index("Indoors"), CLASSES.index("Outdoors")
        scenes_shown = np.delete(show[close], [i, o], axis=1).any(axis=1)
        show, y = show[~close], y[~close]
        per_class = [
            Figures(
                positives=int((y[:, j] == 1).sum()),
                negatives=int((y[:, j] == 0).sum()),
                true_pos=int((show[:, j] & (y[:, j] == 1)).sum()),
                false_pos=int((show[:, j] & (y[:, j] == 0)).sum()),
            )
            for j in range(len(CLASSES))
        ]
        hits = sum(f.true_pos for f in per_class)
        total = sum(f.positives for f in per_class)
        scenes = [f for j, f in enumerate(per_class) if j not in (i, o)]
        no_sides = sum(f.true_pos for f in scenes) / sum(f.positives for f in scenes)
        sided = (y[:, i] == 1) | (y[:, o] == 1)
        right = np.where(y[:, i] == 1, show[:, i] & ~show[:, o], show[:, o] & ~show[:, i])
        odd = int((sided & (show[:, i] == show[:, o])).sum())
        return cls(
            name,
            per_class,
            hits / total,
            no_sides,
            float(right[sided].mean()),
            odd,
            int(close.sum()),
            int(scenes_shown.sum()),
        )


def log_loss(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean over classes of the binary cross-entropy on the photos whose truth is known."""
    losses = []
    for j in range(truth.shape[1]):
        known = truth[:, j] >= 0
        y = (truth[known, j] == 1).astype(np.float64)
        p = np.clip(scores[known, j].astype(np.float64), 1e-6, 1 - 1e-6)
        losses.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return float(np.mean(losses))


def out_of_fold(feats: Features, y: np.ndarray, split: np.ndarray, rows: Rows, l2: float) -> np.ndarray:
    """(n_photos, K) head probabilities of each training photo from the head trained without
    its fold (held-out photos stay 0: never scored here)."""
    out = np.zeros((len(split), len(CLASSES)), dtype=np.float32)
    fold_of_row = split[feats.photo[rows.train]]
    for fold in range(FOLDS):
        keep = fold_of_row != fold
        head = train(feats, y, rows.train[keep], rows.weight[keep], l2)
        members = np.flatnonzero(split == fold)
        out[members] = head.probs(feats.pooled[rows.score[members]])
        logger.info("fold %d of %d done", fold + 1, FOLDS)
    return out


def rules_thresholds() -> np.ndarray:
    """The rules' own thresholds (scenes.yml) per class; 1.0 where the rules lack the scene."""
    from labelkit.labelers.scenes import load_scenes
    from labelkit.labelers.taxonomy import load_rules

    by_name = {s.name: s for s in load_scenes(load_rules()).scenes}
    return np.array(
        [by_name[c].threshold if c in by_name and not by_name[c].learned else 1.0 for c in CLASSES],
        dtype=np.float32,
    )


def write_head(path: Path, head: Head, choice: Choice, *, held_out_sha256: str, l2: float) -> None:
    from labelkit.labelers.catalog import atomic_write
    from labelkit.labelers.scenes import HEAD_FORMAT

    arrays: dict[str, Any] = {
        "format": np.array(HEAD_FORMAT),
        "classes": np.array(CLASSES),
        "feature": np.array("efficientnet-lite2 pooled features (1280,), the classifier's own"),
        "mean": head.mean.astype(np.float32),
        "scale": head.scale.astype(np.float32),
        "weight": head.weight.astype(np.float16),
        "bias": head.bias.astype(np.float32),
        "thresholds": choice.thresholds.astype(np.float32),
        "use_rules": choice.use_rules.astype(bool),
        "trained": np.array(date.today().isoformat()),
        "held_out_sha256": np.array(held_out_sha256),
        "l2": np.array(l2, dtype=np.float32),
    }

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


def held_out_digest(photos: Sequence[Photo], split: np.ndarray) -> str:
    """What the head file records about its held-out split (bench checks it is the same)."""
    chosen = [p.sha256 for p, s in zip(photos, split, strict=True) if s == HELD_OUT and not p.close_up]
    return hashlib.sha256("\n".join(sorted(chosen)).encode()).hexdigest()


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def model_card(
    *,
    photos: Sequence[Photo],
    split: np.ndarray,
    y: np.ndarray,
    choice: Choice,
    evaluations: Sequence[Evaluation],
    head_file: Path,
    l2: float,
    tried: dict[float, float],
) -> str:
    """The model card (Markdown): data, classes, training, held-out figures, the date."""
    test = split == HELD_OUT
    close = np.array([p.close_up for p in photos])
    digest = hashlib.sha256(head_file.read_bytes()).hexdigest()
    floored = int(np.sum(np.isclose(choice.thresholds, THRESHOLD_FLOOR)))
    lines = [
        "# Model card: the learned scene head",
        "",
        "<!-- Written by `python -m labelkit.labelers.train_scenes`; edit that module, not this page. -->",
        "",
        f"- **File**: `labelkit/labelers/data/{head_file.name}` ({head_file.stat().st_size:,} bytes, "
        f"SHA-256 `{digest[:16]}…`; its first 8 hex digits are in every label's model version).",
        f"- **Trained**: {date.today().isoformat()}, by `python -m labelkit.labelers.train_scenes` "
        "(build time only: run time reads the file and never imports the training module).",
        "- **What it is**: one logistic regression per scene (one-vs-rest, multi-label) over the "
        "EfficientNet-Lite2 classifier's pooled 1280-d features, the vector the classifier computes "
        "for every photo anyway. At run time it is one (1280 x "
        f"{len(CLASSES)}) matrix product per photo (`labelkit/labelers/scenes.py`, `SceneHead`).",
        f"- **Classes** ({len(CLASSES)}): {', '.join(CLASSES)}. Every one is a scene of "
        "`labelkit/labelers/data/scenes.yml`, which gives its aliases, parents and categories.",
        "- **Fusion with the rules**: per class, the noisy-OR of the head's and the scene rules' "
        "probabilities, or the head's alone where the rules cost precision on the training folds "
        "(below); the "
        "Indoors/Outdoors exclusion comes last. Scenes the head does not know (Bathroom, Restaurant, "
        "Lake, Room, Text, Screenshot) keep their rules.",
        "",
        "## Data",
        "",
        "The scene set `../shared/data/scenes` (never in the repository, never used by `make test`): "
        f"{sum(not p.close_up for p in photos):,} photos with Rekognition-style scene labels; its README "
        'lists the sources. And close-ups, "no" to every scene but Indoors/Outdoors (see Caveats): '
        f"{sum(p.close_up and 'faces' in p.source for p in photos)} photos of the face set "
        f"`../shared/data/faces` and {sum(p.close_up and 'devset' in p.source for p in photos)} object "
        "crops from the development set `../shared/data/devset`. Per source:",
        "",
        "| source | photos | licence as stated |",
        "|---|---|---|",
    ]
    by_source: dict[str, list[Photo]] = {}
    for p in photos:
        by_source.setdefault(":".join(p.source.split(":")[:2]), []).append(p)
    for source, members in sorted(by_source.items(), key=lambda kv: -len(kv[1])):
        licences = sorted({m.licence for m in members})
        lines.append(f"| {source} | {len(members):,} | {'; '.join(licences)} |")
    lines += [
        "",
        "Caveats (from the set's README, and what was done about them):",
        "",
        "- **Every indoor photo but one is a grayscale 15-Scene photo.** So that grayscale does not "
        "mean Indoors, every colour photo is also used as a grayscale copy (same labels, weight "
        f"{GRAY_WEIGHT:g}); the 15-Scene outdoor classes are grayscale too. And so that colour does "
        f"not mean Outdoors, {' and '.join(COLOUR_BLIND)} are learnt from grayscale rows only (the "
        "grayscale photos and the copies). Whether colour indoor photos are found is checked outside "
        "the set: `make bench-quality` reports indoor/outdoor accuracy on the development set's colour "
        "COCO kitchens, bathrooms and bedrooms (and streets, snow, beaches).",
        "- **Every photo of the scene set is a scene**, so a head trained on it alone called a cup of "
        'coffee "Sky, Outdoors" and a portrait "Building". Close-ups teach it what is not a scene: '
        "the face set's photos, and from development-set photos the detector's best box of a small "
        "object class (food, tableware, a cat or dog, a phone, a book ...; score >= "
        f"{CROP_SCORE:g}, covering >= {CROP_AREA:.0%} of the photo, grown by {CROP_MARGIN:.0%}). "
        "Development-set photos whose scenes `make bench-quality` derives (an oven, refrigerator, "
        "toilet, bed, surfboard, skis, snowboard, bus or traffic light) are never cropped, so those "
        "figures stay unseen.",
        '- **Labels are incomplete**: a missing label is unknown, not a "no". What each source class '
        "settles is written down in `MAY_SHOW` (`labelkit/labelers/train_scenes.py`): a photo of "
        'Intel\'s "mountain" may show Snow, Sky, Forest ... without saying so (unknown: left out of '
        'that class\'s training and figures); every other label it lacks is a real "no". Indoors '
        "and Outdoors are known for every photo.",
        "- Intel photos are 100 x 100 px; the Night photos come from a few fixed webcams (near "
        "duplicates across the split are possible, so Night's held-out recall is optimistic); "
        "Beach has only 40 photos.",
        "",
        "## Training",
        "",
        f"- **Split**: stratified by source class and decided by each file's SHA-256: within each "
        f"source class, photos in hash order, every {HELD_OUT_EVERY}th is **held out** "
        f"({int((test & ~close).sum()):,} scene photos and {int((test & close).sum())} close-ups, never "
        f"trained or tuned on); the other {int((~test).sum()):,} train, in {FOLDS} folds the same way.",
        "- **Features**: the int8 classifier's pooled features (the default precision) of each photo "
        "as stored and of the grayscale copy of each colour photo; standardised (mean and scale are in "
        "the file).",
        f"- **Model**: logistic regression per class, weighted cross-entropy (unknown targets weigh "
        f"0), L2 penalty {l2:g} on the standardised weights, L-BFGS (scipy). Weights are stored as "
        "float16. The penalty is the one of "
        + ", ".join(f"{v:g} ({loss:.4f})" for v, loss in sorted(tried.items()))
        + " with the lowest out-of-fold log loss (in brackets; mean over classes, known labels only).",
        f"- **Thresholds** (the probability shown as confidence 55): per class, on the training "
        f"split's out-of-fold scores, the lowest threshold at which the precision is at least "
        f"{TARGET_PRECISION:g} at it and at every higher threshold keeping at least {MIN_KEPT} photos, "
        f"and never below {THRESHOLD_FLOOR:g}. The floor decides {floored} of the {len(CLASSES)} "
        "thresholds: within the set the known negatives are easy (another source, another style), so "
        "the precision rule alone picks thresholds near 0.01, which fire on most photos outside it "
        "(seen when the rule was chosen, 2026-12-07: on the development set an earlier head showed "
        "Indoors on 90% of the photos and Outdoors on 99% at such thresholds); 0.5 is the logistic "
        "regression's even odds.",
        f"- **Rules fused in** unless, on the out-of-fold scores, the noisy-OR with the rules "
        f"(at its own threshold, chosen the same way) has a precision below {TARGET_PRECISION:g} or "
        "less recall than the head alone. A tie keeps the rules: they hold evidence this set cannot "
        "show (a bus, an oven, a bed seen by the detector). Then, class by class, a class's rules "
        "are left out where that raises the out-of-fold indoor/outdoor accuracy: "
        + (", ".join(choice.dropped_for_sides) or "none")
        + f" (accuracy {choice.side_accuracy[0]:.3f} -> {choice.side_accuracy[1]:.3f}).",
        "",
        "Per class, out of fold (training split; precision against known negatives only):",
        "",
        "| class | photos (train) | head: recall / precision | head + rules: recall / precision "
        "| rules fused | threshold |",
        "|---|---|---|---|---|---|",
    ]
    fit = split >= 0
    for j, name in enumerate(CLASSES):
        h, f = choice.head[j], choice.fused[j]
        lines.append(
            f"| {name} | {int((y[fit, j] == 1).sum())} | {_pct(h.recall)} / {_pct(h.precision)} | "
            f"{_pct(f.recall)} / {_pct(f.precision)} | {'yes' if choice.use_rules[j] else 'no'} | "
            f"{choice.thresholds[j]:.2f} |"
        )
    lines += [
        "",
        "## Held-out figures",
        "",
        f"On the {int((test & ~close).sum()):,} held-out photos of the scene set (and, last row, the "
        f"{int((test & close).sum())} held-out close-ups). A scene counts at confidence >= {COUNTS_AT:g} "
        "(as in `make bench-quality`), its confidence raised to its most confident child's as the "
        "labeller does (Kitchen -> Indoors, Sunset -> Sky -> Outdoors). *Recall*: of the photos "
        "carrying the label, the share where it counts. *Precision*: of the photos where it counts, "
        'the share carrying it, among photos whose label is known (a real "no" or a yes). '
        "*Indoor/outdoor accuracy*: photos whose side (Indoors or Outdoors) counts and the other does "
        "not. The rules alone have no Sunset, Building or Market. `make bench-quality` measures the "
        "whole labeller on the same photos (docs/label-quality.md).",
        "",
        "| figure | " + " | ".join(ev.name for ev in evaluations) + " |",
        "|---|" + "---|" * len(evaluations),
        "| scene recall, all labels | " + " | ".join(f"{ev.scene_recall:.3f}" for ev in evaluations) + " |",
        "| scene recall without Indoors/Outdoors | "
        + " | ".join(f"{ev.scene_recall_no_sides:.3f}" for ev in evaluations)
        + " |",
        "| indoor/outdoor accuracy | " + " | ".join(f"{ev.indoor_outdoor:.3f}" for ev in evaluations) + " |",
        "| photos showing both sides or neither | "
        + " | ".join(str(ev.both_or_neither) for ev in evaluations)
        + " |",
        "| held-out close-ups (faces, objects) showing a scene other than Indoors/Outdoors | "
        + " | ".join(f"{ev.close_ups_with_scene} of {ev.close_ups}" for ev in evaluations)
        + " |",
        "",
        "Per class (recall / precision):",
        "",
        "| class | photos (held out) | " + " | ".join(ev.name for ev in evaluations) + " |",
        "|---|---|" + "---|" * len(evaluations),
    ]
    for j, name in enumerate(CLASSES):
        cells = [f"{_pct(ev.per_class[j].recall)} / {_pct(ev.per_class[j].precision)}" for ev in evaluations]
        lines.append(f"| {name} | {evaluations[0].per_class[j].positives} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Limits",
        "",
        "- The figures are from one set whose classes each come from one or two sources: a class "
        'partly means "looks like that source". Photos the project has never seen will score lower; '
        "`make bench-quality` also reports the development set (COCO photos).",
        "- Precision is against known negatives only, which are mostly photos of other sources.",
        "- Indoor classes were learnt from grayscale photos only.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from labelkit.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scenes"), help="the scene set")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "scene_head.npz")
    parser.add_argument("--card", type=Path, default=Path("docs/models/scene-head.md"), help="the model card")
    parser.add_argument("--cache", type=Path, default=Path("build/scene-features.npz"), help="feature cache")
    parser.add_argument("--model-dir", type=Path, default=settings.resolved_model_dir)
    parser.add_argument(
        "--faces", type=Path, default=Path("../shared/data/faces"), help="the face set (close-ups)"
    )
    parser.add_argument(
        "--devset",
        type=Path,
        default=Path("../shared/data/devset"),
        help="the development set (object crops)",
    )
    parser.add_argument(
        "--l2",
        default=",".join(map(str, L2_CHOICES)),
        help="L2 penalties to try, comma-separated (the lowest out-of-fold log loss wins)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for folder, name in (
        (args.data, "scenes.json"),
        (args.faces, "faces.json"),
        (args.devset, "devset.json"),
    ):
        if not (folder / name).is_file():
            parser.error(f"no {name} in {folder}")

    photos = load_photos(args.data) + face_photos(args.faces) + object_crops(args.devset, args.model_dir)
    split = assign_splits(photos)
    y = targets(photos)
    feats = cached_features(photos, args.data, args.model_dir, args.cache)
    rows = select_rows(feats, split)
    fit_photos = np.flatnonzero(split >= 0)
    test_photos = np.flatnonzero(split == HELD_OUT)
    close = np.array([photos[i].close_up for i in test_photos])

    logger.info("rules on every photo ...")
    rules_all = rule_scores(feats, rows.score)
    tried: dict[float, float] = {}
    best: tuple[float, np.ndarray] | None = None
    for l2 in sorted(float(v) for v in args.l2.split(",")):
        logger.info("out-of-fold scores (%d folds), L2 %g ...", FOLDS, l2)
        scores = out_of_fold(feats, y, split, rows, l2)
        tried[l2] = log_loss(scores[fit_photos], y[fit_photos])
        if best is None or tried[l2] < tried[best[0]]:
            best = (l2, scores)
    assert best is not None
    l2, oof = best
    choice = choose(oof[fit_photos], {k: v[fit_photos] for k, v in rules_all.items()}, y[fit_photos])
    logger.info("the final head, on the whole training split ...")
    head = train(feats, y, rows.train, rows.weight, l2)
    write_head(args.out, head, choice, held_out_sha256=held_out_digest(photos, split), l2=l2)

    # Held out: the head as written (float16 weights), the rules, both.
    from labelkit.labelers.scenes import SceneHead

    written = SceneHead(args.out)
    rules_test = {k: v[test_photos] for k, v in rules_all.items()}
    yt = y[test_photos]
    head_p = written.probabilities(feats.pooled[rows.score[test_photos]])
    head_fp32 = written.probabilities(feats.pooled[rows.score_fp32[test_photos]])
    nothing = np.zeros(len(CLASSES), dtype=bool)
    evaluations = [
        Evaluation.of(
            "head alone", shown(fused_scores(head_p, rules_test, nothing), choice.thresholds), yt, close
        ),
        Evaluation.of("rules alone", shown(rules_only(rules_test), rules_thresholds()), yt, close),
        Evaluation.of(
            "head + rules (shipped)",
            shown(fused_scores(head_p, rules_test, choice.use_rules), choice.thresholds),
            yt,
            close,
        ),
        Evaluation.of(
            "head + rules, fp32 classifier",
            shown(fused_scores(head_fp32, rules_test, choice.use_rules), choice.thresholds),
            yt,
            close,
        ),
    ]
    text = model_card(
        photos=photos,
        split=split,
        y=y,
        choice=choice,
        evaluations=evaluations,
        head_file=args.out,
        l2=l2,
        tried=tried,
    )
    args.card.parent.mkdir(parents=True, exist_ok=True)
    args.card.write_text(text, encoding="utf-8")
    for ev in evaluations:
        logger.info(
            "held out, %s: scene recall %.3f (%.3f without Indoors/Outdoors), indoor/outdoor %.3f, "
            "close-ups with a scene %d of %d",
            ev.name,
            ev.scene_recall,
            ev.scene_recall_no_sides,
            ev.indoor_outdoor,
            ev.close_ups_with_scene,
            ev.close_ups,
        )
    logger.info("wrote %s (%d bytes) and %s", args.out, args.out.stat().st_size, args.card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
