"""Label quality of the configured labeller: ``python -m bench.label_quality [--doc docs/benchmarks.md]``.

What is measured, and on what (the definitions are in :mod:`bench.label_metrics`):

* the development set ``../shared/data/devset`` (354 COCO 2017 photos with COCO's annotations;
  see its README). It is outside the repository on purpose and never used by ``make test``;
  ``--devset PATH`` points elsewhere, and a missing set is an error, not a skip;
* photos that ship in installed packages (scikit-image, scikit-learn, Debian's ``darknet`` if
  installed) with the hand-written expectations of ``bench/data/package_photos.yml``;
* scenes: the devset has no scene annotations, so scenes are derived from COCO's object
  annotations where they are unambiguous (``bench/data/scene_truth.yml``) - weaker than real
  scene annotations, and said so next to the figure;
* the scene set ``../shared/data/scenes`` (``--scenes PATH``; missing: an error): its held-out
  split, the photos the learned scene head was never trained or tuned on (the split is
  :func:`labelkit.labelers.train_scenes.assign_splits`; the head file records which photos it
  held out, and a different split is an error). Scene recall and precision per scene, and
  indoor/outdoor accuracy (:func:`bench.label_metrics.summarize_scene_set`).

The labeller is built as the app builds it (:func:`labelkit.labelers.make_labeler` over the
settings, so ``LABELKIT_*`` variables choose it), and is called on each photo's bytes one at a
time with ``min_confidence=50`` (the definitions' threshold) and the app's ``max_labels``; the
time of each call (decode + models + labels) is the per-photo latency. One warm-up call first.
``--json`` writes every figure and every photo's labels and misses, for tuning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.docs_page import add_doc_option, update_doc
from bench.label_metrics import (
    PERSON_AREA_MIN,
    SIDES,
    THRESHOLD,
    Box,
    PhotoScore,
    Ratio,
    SceneSetSummary,
    SceneTruth,
    Summary,
    Truth,
    TruthBox,
    counted,
    eligible_person_boxes,
    headline_agreement,
    match_boxes,
    person_instances,
    score_photo,
    side_of,
    summarize,
    summarize_scene_set,
    worst_classes,
)
from bench.photos import DARKNET_DATA, package_photo_path, source_dirs
from bench.text_quality import StageRecorder, text_report
from labelkit.domain import Label
from labelkit.errors import IntakeError
from labelkit.labelers.base import ImageInput, Labeler, LabelOptions
from labelkit.labelers.calibration import EXACT_SOURCES, in_fit_split, judge, reliability
from labelkit.labelers.coco_names import CocoNames, load_coco_names
from labelkit.primary import primary_of_labels
from labelkit.settings import Settings

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEVSET = Path("../shared/data/devset")  # relative to the project root
DEFAULT_SCENES = Path("../shared/data/scenes")  # relative to the project root
DATA_DIR = Path(__file__).resolve().parent / "data"
SCENE_TRUTH_PATH = DATA_DIR / "scene_truth.yml"
PACKAGE_PHOTOS_PATH = DATA_DIR / "package_photos.yml"

#: Issue 14's targets (measured there on photos the project does not have).
TARGETS: dict[str, tuple[str, float]] = {
    "coverage": (">=", 0.95),
    "person_recall": (">=", 0.90),
    "false_person": ("<=", 0.05),
    "object_recall": (">=", 0.55),
    "scene_recall": (">=", 0.50),
}
#: Issue 26's targets, on the scene set's held-out split.
SCENE_SET_TARGETS: dict[str, float] = {"scene_recall": 0.75, "indoor_outdoor": 0.90}


class DevsetMissing(SystemExit):
    pass


# --- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    truth: Truth
    path: Path


def load_scene_truth(coco: CocoNames, path: Path = SCENE_TRUTH_PATH) -> SceneTruth:
    truth = SceneTruth.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    truth.check_classes(coco)
    return truth


def resolve_devset(devset: Path) -> Path:
    folder = devset if devset.is_absolute() else ROOT / devset
    if not (folder / "devset.json").is_file():
        raise DevsetMissing(
            f"error: no development set at {folder} (devset.json missing). The label-quality "
            "benchmark needs the annotated COCO development set (devset.json and images/; default "
            f"{DEFAULT_DEVSET} from the project root); pass --devset PATH to use another copy."
        )
    return folder


def load_devset(folder: Path, coco: CocoNames, scenes: SceneTruth, limit: int | None = None) -> list[Photo]:
    records = json.loads((folder / "devset.json").read_text(encoding="utf-8"))
    if limit is not None:
        records = records[:limit]
    photos = []
    for rec in records:
        unknown = sorted(set(rec["objects"]) - set(coco.classes))
        if unknown:
            raise ValueError(f"{rec['file']}: classes not in COCO's 80: {unknown}")
        objects = frozenset(rec["objects"])
        major = frozenset(rec["objects_major"])
        width, height = int(rec["width"]), int(rec["height"])
        boxes = tuple(
            TruthBox(Box.from_pixels(b["bbox"], width, height), iscrowd=bool(b.get("iscrowd", 0)))
            for b in rec["person_boxes"]
        )
        truth = Truth(
            name=rec["file"],
            objects=objects,
            objects_major=major,
            person_area_max=float(rec["person_area_max"]),
            person_boxes=boxes,
            scenes=scenes.derive(objects, major),
        )
        photos.append(Photo(truth, folder / "images" / rec["file"]))
    return photos


class _Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(pattern=r"^(skimage|sklearn|darknet)/[^/]+$")
    person_area: float = Field(default=0.0, ge=0, le=1)
    objects: list[str] = Field(default_factory=list)
    scenes: list[str] = Field(default_factory=list)
    expect: list[str] = Field(default_factory=list)


class _PackagePhotos(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    photos: dict[str, _Expectation]


def load_package_photos(
    coco: CocoNames,
    scenes: SceneTruth,
    *,
    darknet_dir: Path = DARKNET_DATA,
    path: Path = PACKAGE_PHOTOS_PATH,
) -> tuple[list[Photo], list[str]]:
    """The package photos installed here, and the names of those that are not."""
    try:
        table = _PackagePhotos.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise ValueError(f"invalid {path}: {exc}") from exc
    dirs = source_dirs(darknet_dir)
    photos, missing = [], []
    for name, exp in table.photos.items():
        bad = sorted(set(exp.objects) - set(coco.classes)) + sorted(set(exp.scenes) - set(scenes.scenes))
        if bad:
            raise ValueError(f"{path}: {name}: unknown classes or scenes {bad}")
        file = package_photo_path(exp.file, dirs=dirs)
        if file is None:
            missing.append(name)
            continue
        objects = frozenset(exp.objects)
        truth = Truth(
            name=name,
            objects=objects,
            objects_major=objects,
            person_area_max=exp.person_area,
            scenes=tuple(exp.scenes),
            expect=tuple(tuple(alt.strip() for alt in e.split("|")) for e in exp.expect),
        )
        photos.append(Photo(truth, file))
    return photos, missing


# --- the scene set's held-out split (issue 26) ------------------------------------------


class ScenesMissing(SystemExit):
    pass


@dataclass(frozen=True)
class ScenePhoto:
    name: str
    path: Path
    truth: dict[str, int]  # scene -> 1 has it, 0 has not, -1 unknown


def resolve_scenes(scenes: Path) -> Path:
    folder = scenes if scenes.is_absolute() else ROOT / scenes
    if not (folder / "scenes.json").is_file():
        raise ScenesMissing(
            f"error: no scene set at {folder} (scenes.json missing). The label-quality benchmark "
            f"needs the labelled scene photos (default {DEFAULT_SCENES} from the project root); pass "
            "--scenes PATH to use another copy."
        )
    return folder


def load_scene_set(folder: Path, head_path: Path | None = None) -> list[ScenePhoto]:
    """The held-out photos of the scene set with every head class's truth; an error if the
    scene head was trained on another split (its figures would not be held out)."""
    import numpy as np

    from labelkit.labelers.scenes import HEAD_PATH
    from labelkit.labelers.train_scenes import (
        CLASSES,
        HELD_OUT,
        assign_splits,
        held_out_digest,
        load_photos,
        targets,
    )

    photos = load_photos(folder)
    split = assign_splits(photos)
    with np.load(head_path or HEAD_PATH, allow_pickle=False) as head:
        recorded = str(head["held_out_sha256"])
    if recorded != held_out_digest(photos, split):
        raise ScenesMissing(
            f"error: the scene head was trained with another held-out split than {folder} gives "
            "(other photos?): its figures there would not be held out. Train it again "
            "(python -m labelkit.labelers.train_scenes) or point --scenes at its set."
        )
    truth = targets(photos)
    return [
        ScenePhoto(p.file, folder / p.file, dict(zip(CLASSES, truth[i].tolist(), strict=True)))
        for i, p in enumerate(photos)
        if split[i] == HELD_OUT
    ]


def label_scene_set(labeler: Labeler, photos: Sequence[ScenePhoto], options: LabelOptions) -> list[Outcome]:
    as_photos = [
        Photo(Truth(name=p.name, objects=frozenset(), objects_major=frozenset(), person_area_max=0.0), p.path)
        for p in photos
    ]
    return label_photos(labeler, as_photos, options)


def _met(value: float | None, target: float) -> str:
    if value is None:
        return f">= {target:.2f}"
    return f">= {target:.2f}: {'met' if value >= target else 'NOT met'}"


def scene_set_report(summary: SceneSetSummary, devset_sides: Ratio | None) -> str:
    """The scene set's section: summary with issue 26's targets, then every scene."""
    lines = [
        f"Scene set, held-out split ({summary.photos} photos the scene head was never trained or tuned "
        "on; `../shared/data/scenes`, labels incomplete: a missing label is unknown, not a no). A scene "
        "is named when its name is among the counted labels' names, aliases or parents.",
        "",
        "| figure | scene set, held out | target (issue 26) |",
        "|---|---|---|",
        f"| scene recall (every labelled scene, Indoors/Outdoors included) | {_ratio(summary.scene_recall)} "
        f"| {_met(summary.scene_recall.value, SCENE_SET_TARGETS['scene_recall'])} |",
        f"| scene recall without Indoors/Outdoors | {_ratio(summary.scene_recall_no_sides)} | |",
        f"| indoor/outdoor accuracy (its side named, the other not) | {_ratio(summary.indoor_outdoor)} "
        f"| {_met(summary.indoor_outdoor.value, SCENE_SET_TARGETS['indoor_outdoor'])} |",
    ]
    if devset_sides is not None:
        lines.append(
            "| indoor/outdoor accuracy on the devset (photos whose derived scene settles the side: "
            f"kitchen, bathroom, bedroom / street, snow, beach) | {_ratio(devset_sides)} | |"
        )
    lines += [
        "",
        "Per scene (precision: of the held-out photos naming it whose truth is known, the share having it):",
        "",
        "| scene | photos | recall | precision |",
        "|---|---|---|---|",
    ]
    order = [*SIDES, *sorted(s for s in summary.recall if s not in SIDES)]
    for scene in order:
        if scene in summary.recall:
            r = summary.recall[scene]
            lines.append(f"| {scene} | {r.total} | {_ratio(r)} | {_ratio(summary.precision[scene])} |")
    return "\n".join(lines)


# --- running --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    labels: list[Label]
    seconds: float
    error: str | None = None


def label_photos(labeler: Labeler, photos: Sequence[Photo], options: LabelOptions) -> list[Outcome]:
    """Label each photo's bytes, one call each, timed (the bytes are read before the clock starts)."""
    out = []
    for photo in photos:
        data = photo.path.read_bytes()
        started = time.perf_counter()
        try:
            result = labeler.label(ImageInput(data), options)
        except IntakeError as exc:  # a photo the labeller refuses is a quality defect: no labels
            logger.warning("%s refused: %s", photo.truth.name, exc.reason)
            out.append(Outcome([], time.perf_counter() - started, error=exc.reason))
            continue
        out.append(Outcome(list(result.labels), time.perf_counter() - started))
    return out


def evaluate(
    photos: Sequence[Photo], outcomes: Sequence[Outcome], coco: CocoNames, scenes: SceneTruth
) -> tuple[Summary, list[PhotoScore]]:
    scores = [
        score_photo(p.truth, o.labels, coco=coco, scene_words=scenes.scenes, seconds=o.seconds)
        for p, o in zip(photos, outcomes, strict=True)
    ]
    return summarize([p.truth for p in photos], scores), scores


def photo_records(
    photos: Sequence[Photo], outcomes: Sequence[Outcome], scores: Sequence[PhotoScore]
) -> list[dict[str, Any]]:
    """Per photo: the truth, what was found and missed, and the counted labels (for tuning)."""
    out = []
    for photo, outcome, score in zip(photos, outcomes, scores, strict=True):
        rec = asdict(score)
        rec.update(
            truth={
                "objects": sorted(photo.truth.objects),
                "objects_major": sorted(photo.truth.objects_major),
                "person_area_max": photo.truth.person_area_max,
                "scenes": list(photo.truth.scenes),
            },
            labels=[
                {
                    "name": lab.name,
                    "confidence": round(lab.confidence, 1),
                    "parents": lab.parents,
                    "aliases": lab.aliases,
                    "categories": lab.categories,
                    "instances": [i.model_dump() for i in lab.instances],
                }
                for lab in counted(outcome.labels)
            ],
            error=outcome.error,
        )
        out.append(rec)
    return out


# --- report ---------------------------------------------------------------------------


def _most_confident_leaf(labels: Sequence[Label]) -> str | None:
    """The card's label before issue 26: the most specific counted label, most confident first."""
    shown = counted(labels)
    above = {p for lab in shown for p in lab.parents}
    leaves = [lab for lab in shown if lab.name not in above] or shown
    return min(leaves, key=lambda lab: (-lab.confidence, lab.name)).name if leaves else None


#: A crowd photo: at least this many annotated person boxes (not iscrowd).
CROWD_PERSONS = 8


def labeler_without(name: str, settings: Settings, switch: str) -> Labeler | None:
    """The configured labeller with one of the local labeller's switches off (``detect_tiles``:
    the detector's tiled pass; ``calibrate``: the confidence calibration), to compare with; None
    when it is not the local labeller or the switch is off already."""
    from labelkit.labelers import make_labeler

    if name != "local" or not getattr(settings, switch):
        return None
    return make_labeler(name, settings.model_copy(update={switch: False}))


def crowd_report(
    photos: Sequence[Photo],
    outcomes: Sequence[Outcome],
    coco: CocoNames,
    one_pass: Labeler | None,
    options: LabelOptions,
) -> tuple[str, dict[str, Any]]:
    """Person box recall on the devset's crowd photos, with the tiled detector pass and (the
    local labeller) without it."""
    crowds = [
        (p, o)
        for p, o in zip(photos, outcomes, strict=True)
        if sum(not b.iscrowd for b in p.truth.person_boxes) >= CROWD_PERSONS
    ]

    def recall(labels_per_photo: Sequence[Sequence[Label]]) -> Ratio:
        hits = total = 0
        for (photo, _), labels in zip(crowds, labels_per_photo, strict=True):
            truth = eligible_person_boxes(photo.truth.person_boxes)
            total += len(truth)
            hits += match_boxes(truth, person_instances(labels, coco.person_words))
        return Ratio(hits, total)

    tiled = recall([o.labels for _, o in crowds])
    figures: dict[str, Any] = {"photos": len(crowds), "tiled": tiled.as_dict()}
    rows = [f"| as configured (tiled pass on) | {_ratio(tiled)} |"]
    if one_pass is not None:
        single = label_photos(one_pass, [p for p, _ in crowds], options)
        once = recall([o.labels for o in single])
        figures["one_pass"] = once.as_dict()
        rows.append(f"| one pass (`LABELKIT_DETECT_TILES=false`) | {_ratio(once)} |")
    lines = [
        f"Crowds (issue 26): person box recall (boxes >= 1%, not crowd, IoU >= 0.5) on the "
        f"{len(crowds)} devset photos with >= {CROWD_PERSONS} annotated persons. The tiled pass's "
        "time is the `detector_tiles` stage below (it runs on photos with 4+ persons or 3+ small "
        "things; on the others it costs the check only).",
        "",
        "| detector | person box recall in crowds |",
        "|---|---|",
        *rows,
    ]
    return "\n".join(lines), figures


def headline_report(
    photos: Sequence[Photo], outcomes: Sequence[Outcome], coco: CocoNames, scenes: SceneTruth
) -> tuple[str, dict[str, Any]]:
    """Headline agreement on the devset (definition: bench/label_metrics.py), the rule of
    labelkit.primary against the card's earlier rule (the most confident specific label)."""
    truths = [p.truth for p in photos]

    def named(labels: Sequence[Label], name: str | None) -> Label | None:
        return next((lab for lab in labels if lab.name == name), None)

    now = headline_agreement(
        truths,
        [named(o.labels, primary_of_labels(o.labels)) for o in outcomes],
        coco=coco,
        scene_words=scenes.scenes,
    )
    before = headline_agreement(
        truths,
        [named(o.labels, _most_confident_leaf(o.labels)) for o in outcomes],
        coco=coco,
        scene_words=scenes.scenes,
    )
    lines = [
        "Headline label (issue 26): of the devset photos whose main subject the annotations settle "
        "(the person when the largest covers >= 10%; else the only COCO class covering >= 1%; "
        "else a derived scene), the share whose headline names it:",
        "",
        "| rule | headline agreement |",
        "|---|---|",
        f"| `labelkit.primary` (the cards, review queue and exports) | {_ratio(now)} |",
        f"| the most confident specific label (the cards before) | {_ratio(before)} |",
    ]
    return "\n".join(lines), {"primary": now.as_dict(), "most_confident_leaf": before.as_dict()}


def calibration_report(
    photos: Sequence[Photo], outcomes: Sequence[Outcome], raw: Labeler | None, options: LabelOptions
) -> tuple[str, dict[str, Any]]:
    """Expected calibration error of the shown class labels on the devset photos the calibration
    was not fitted on, with the calibration and (the local labeller) without it."""
    from labelkit.labelers.fusion import load_fusion
    from labelkit.labelers.taxonomy import load_rules

    covered = load_fusion(load_rules()).targets
    held = [(p, o) for p, o in zip(photos, outcomes, strict=True) if not in_fit_split(p.path.name)]

    def ece(labels_per_photo: Sequence[Sequence[Label]]) -> Any:
        return reliability(
            j
            for (p, _), labels in zip(held, labels_per_photo, strict=True)
            for key, j in judge(labels, p.truth.objects, covered)
            if key in EXACT_SOURCES
        )

    now = ece([o.labels for _, o in held])
    before = ece([o.labels for o in label_photos(raw, [p for p, _ in held], options)]) if raw else None
    lines = [
        f"Calibration (issue 26): expected calibration error (10 bins) of the shown labels of COCO "
        f"classes, right when the class is annotated, on the {len(held)} devset photos the "
        "calibration was not fitted on (docs/models/calibration.md):",
        "",
        "| labeller | labels | ECE |",
        "|---|---|---|",
        f"| as configured | {now.count} | {now.ece:.3f} |",
    ]
    if before is not None:
        lines.append(
            f"| without the calibration (`LABELKIT_CALIBRATE=false`) | {before.count} | {before.ece:.3f} |"
        )
    figures = {"held_out_photos": len(held), "ece": now.as_dict()}
    if before is not None:
        figures["ece_uncalibrated"] = before.as_dict()
    return "\n".join(lines), figures


def indoor_outdoor_of(photos: Sequence[Photo], outcomes: Sequence[Outcome]) -> Ratio:
    """Indoor/outdoor accuracy on devset photos whose derived scenes settle the side."""
    from bench.label_metrics import indoor_outdoor

    return indoor_outdoor([side_of(p.truth.scenes) for p in photos], [o.labels for o in outcomes])


def _ratio(r: Ratio) -> str:
    return "–" if r.value is None else f"{r.value:.2f} ({r.hits}/{r.total})"


def _target(key: str, devset: Summary | None) -> str:
    if key not in TARGETS:
        return "reported" if key == "person_box_recall" else ""
    op, value = TARGETS[key]
    if devset is None or getattr(devset, key).value is None:
        return f"{op} {value:.2f}"
    measured = getattr(devset, key).value
    met = measured >= value if op == ">=" else measured <= value
    return f"{op} {value:.2f}: {'met' if met else 'NOT met'}"


ROWS = [
    ("coverage", "coverage (photos with a label)"),
    ("person_recall", "person recall (largest person >= 2% of the photo)"),
    ("false_person", "false person (photos with no person annotated)"),
    ("person_box_recall", "person box recall (boxes >= 1%, not crowd, IoU >= 0.5)"),
    ("object_recall", "object recall (COCO classes covering >= 1%)"),
    ("object_recall_no_person", "object recall without person"),
    ("object_precision", "object precision (named COCO classes that are annotated)"),
    ("scene_recall", "scene recall (scenes derived from COCO objects)"),
    ("scene_recall_loose", "scene recall, loose (words inside categories count too)"),
    ("expect_recall", "other expected things named (hand-written)"),
]


def report(
    *,
    model_version: str,
    devset: Summary | None,
    package: Summary,
    devset_label: str,
    package_photos: Sequence[Photo],
    package_outcomes: Sequence[Outcome],
    package_scores: Sequence[PhotoScore],
    missing: Sequence[str],
    load_average: float,
) -> str:
    cols = [devset_label, f"package photos ({package.photos})"]
    lines = [
        f"Labeller `{model_version}`, measured {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"with `make bench-quality` (1-minute load average {load_average:.1f} before the run); "
        f"a label counts at confidence >= {THRESHOLD:.0f}.",
        "",
        f"| figure | {cols[0]} | {cols[1]} | target (issue 14) |",
        "|---|---|---|---|",
    ]
    for key, title in ROWS:
        dv = _ratio(getattr(devset, key)) if devset else "–"
        pk = getattr(package, key)
        # Package expectations list what was checked by eye, not every object or person box.
        pk_text = "–" if key in ("object_precision", "person_box_recall") else _ratio(pk)
        lines.append(f"| {title} | {dv} | {pk_text} | {_target(key, devset)} |")
    for summary_key, title, fmt in (
        ("mean_labels", "labels per photo (mean)", "{:.1f}"),
        ("latency", "ms per photo, p50 / p95", ""),
    ):
        cells = []
        for s in (devset, package):
            if s is None:
                cells.append("–")
            elif summary_key == "mean_labels":
                cells.append(fmt.format(s.mean_labels))
            else:
                cells.append(
                    f"{s.latency_ms['p50']:.0f} / {s.latency_ms['p95']:.0f}" if s.latency_ms else "–"
                )
        lines.append(f"| {title} | {cells[0]} | {cells[1]} | |")
    if devset is not None:
        worst = worst_classes(devset.per_class)
        lines += [
            "",
            f"Worst classes on the devset (photos where the class covers >= 1%; at least 3 photos; "
            f"{sum(r.hits == 0 for r in devset.per_class.values())} of the {len(devset.per_class)} "
            "classes present are never found):",
            "",
            "| COCO class | photos | recall |",
            "|---|---|---|",
        ]
        lines += [f"| {c} | {devset.per_class[c].total} | {devset.per_class[c].value:.2f} |" for c in worst]
        lines += ["", "Derived scenes on the devset:", "", "| scene | photos | recall |", "|---|---|---|"]
        lines += [f"| {s} | {r.total} | {r.value:.2f} |" for s, r in devset.per_scene.items()]
    lines += ["", "Package photos:", "", "| photo | labels (confidence >= 50) | missed |", "|---|---|---|"]
    for photo, outcome, score in zip(package_photos, package_outcomes, package_scores, strict=True):
        shown = ", ".join(f"{lab.name} {lab.confidence:.0f}" for lab in counted(outcome.labels)[:6]) or "none"
        misses = (
            ["person"] if photo.truth.person_area_max >= PERSON_AREA_MIN and not score.person_word else []
        )
        misses += [
            *score.objects_missed,
            *(f"scene {s}" for s in score.scenes_missed),
            *score.expect_missed,
        ]
        if not photo.truth.has_person and score.person_word:
            misses.append("FALSE person")
        misses = list(dict.fromkeys(misses))  # "person" is both the person figure and an object
        missed = ", ".join(m.replace("|", " or ") for m in misses) or "-"  # a bare | would split the cell
        lines.append(f"| {photo.truth.name} | {shown} | {missed} |")
    if missing:
        lines += ["", f"Not installed here, so not measured: {', '.join(missing)}."]
    return "\n".join(lines)


# --- entry point ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from labelkit.labelers import make_labeler
    from labelkit.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--devset",
        type=Path,
        default=DEFAULT_DEVSET,
        help=f"the development set (default {DEFAULT_DEVSET}, relative to the project root)",
    )
    parser.add_argument(
        "--scenes",
        type=Path,
        default=DEFAULT_SCENES,
        help=f"the scene set (default {DEFAULT_SCENES}, relative to the project root): its held-out split",
    )
    parser.add_argument("--limit", type=int, help="only the first N devset photos (a quick run)")
    parser.add_argument("--json", type=Path, help="write every figure and per-photo result here")
    add_doc_option(parser, "quality")
    parser.add_argument(
        "--labeler", default=settings.labeler_names[0], help="which labeller (default: the configured one)"
    )
    parser.add_argument("--darknet-dir", type=Path, default=DARKNET_DATA, help="Debian darknet's photos")
    args = parser.parse_args(argv)
    if args.doc and args.limit:
        parser.error("--doc with --limit would put a partial run into docs/benchmarks.md")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    coco = load_coco_names()
    scenes = load_scene_truth(coco)
    folder = resolve_devset(args.devset)  # fail before loading any model
    devset_photos = load_devset(folder, coco, scenes, limit=args.limit)
    package_photos, missing = load_package_photos(coco, scenes, darknet_dir=args.darknet_dir)
    scene_photos = load_scene_set(resolve_scenes(args.scenes))
    if args.limit:
        scene_photos = scene_photos[: args.limit]

    # Every call's text, flag and per-model milliseconds are kept (bench/text_quality.py).
    labeler = StageRecorder(make_labeler(args.labeler, settings))
    options = LabelOptions(min_confidence=THRESHOLD, max_labels=settings.max_labels)
    warm = devset_photos[0] if devset_photos else package_photos[0]
    labeler.label(ImageInput(warm.path.read_bytes()), options)  # loads the models: not timed
    labeler.reset()

    load_average = os.getloadavg()[0]  # other work on the machine slows the latency figures
    print(f"labelling {len(devset_photos)} devset photos ...", file=sys.stderr)
    dev_outcomes = label_photos(labeler, devset_photos, options)
    print(f"labelling {len(package_photos)} package photos ...", file=sys.stderr)
    pkg_outcomes = label_photos(labeler, package_photos, options)
    dev_summary, dev_scores = evaluate(devset_photos, dev_outcomes, coco, scenes)
    pkg_summary, pkg_scores = evaluate(package_photos, pkg_outcomes, coco, scenes)

    label = f"devset ({dev_summary.photos} COCO photos{', --limit' if args.limit else ''})"
    text = report(
        model_version=labeler.model_version,
        devset=dev_summary,
        package=pkg_summary,
        devset_label=label,
        package_photos=package_photos,
        package_outcomes=pkg_outcomes,
        package_scores=pkg_scores,
        missing=missing,
        load_average=load_average,
    )
    headline_section, headline_figures = headline_report(devset_photos, dev_outcomes, coco, scenes)
    text += "\n\n" + headline_section
    crowd_section, crowd_figures = crowd_report(
        devset_photos, dev_outcomes, coco, labeler_without(args.labeler, settings, "detect_tiles"), options
    )
    text += "\n\n" + crowd_section
    calibration_section, calibration_figures = calibration_report(
        devset_photos, dev_outcomes, labeler_without(args.labeler, settings, "calibrate"), options
    )
    text += "\n\n" + calibration_section
    text_section, text_figures = text_report(
        package={p.truth.name: p.path.read_bytes() for p in package_photos},
        devset=[p.path.read_bytes() for p in devset_photos],
        recorder=labeler,
    )
    text += "\n\n" + text_section
    print(f"labelling {len(scene_photos)} held-out scene photos ...", file=sys.stderr)
    scene_outcomes = label_scene_set(labeler, scene_photos, options)
    scene_summary = summarize_scene_set([p.truth for p in scene_photos], [o.labels for o in scene_outcomes])
    devset_sides = indoor_outdoor_of(devset_photos, dev_outcomes)
    text += "\n\n" + scene_set_report(scene_summary, devset_sides)
    print(text)
    if args.json:
        doc = {
            "model_version": labeler.model_version,
            "labeler": args.labeler,
            "measured": date.today().isoformat(),
            "threshold": THRESHOLD,
            "definitions": "bench/label_metrics.py",
            "devset": str(folder),
            "limit": args.limit,
            "sets": {
                "devset": {
                    "summary": dev_summary.as_dict(),
                    "photos": photo_records(devset_photos, dev_outcomes, dev_scores),
                },
                "package": {
                    "summary": pkg_summary.as_dict(),
                    "photos": photo_records(package_photos, pkg_outcomes, pkg_scores),
                    "not_installed": list(missing),
                },
            },
            "headline": headline_figures,
            "crowds": crowd_figures,
            "calibration": calibration_figures,
            "text_and_moderation": text_figures,
            "scene_set": {
                "folder": str(args.scenes),
                "summary": scene_summary.as_dict(),
                "devset_indoor_outdoor": devset_sides.as_dict(),
                "photos": [
                    {
                        "name": p.name,
                        "truth": p.truth,
                        "labels": [
                            {"name": lab.name, "confidence": round(lab.confidence, 1)}
                            for lab in counted(o.labels)
                        ],
                    }
                    for p, o in zip(scene_photos, scene_outcomes, strict=True)
                ],
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.doc:
        update_doc(args.doc, text, name="quality", title="Label quality")
        print(f"updated {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
