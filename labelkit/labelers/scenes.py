"""Scenes (Kitchen, Beach, Street, Night ...): a learned head and rules as data, fused.

Two sources of evidence:

* **The learned scene head** (:class:`SceneHead`, ``data/scene_head.npz``): a logistic
  regression per scene over the classifier's pooled 1280-d features, the vector the
  classifier computes anyway (one matrix product at run time, no second model run). It is
  trained at build time by :mod:`labelkit.labelers.train_scenes` on the scene set; its model
  card (``docs/models/scene-head.md``) has the data, classes and held-out figures. Its file
  also holds, per scene, the threshold and whether the rules below are fused in.
* **Rules** (below), because no package on the registries ships a scene model (Places365,
  CLIP) that could be checked here, but three signals are already at hand: the classifier's ImageNet place
classes (seashore, lakeside, alp, library, restaurant ...), the set of detected objects
(oven + sink + refrigerator means a kitchen; a bed, a bedroom; a toilet, a bathroom) and a
few image features computed here from the small copy of the image the classifier sees
(sky-coloured top, green lower half, dark, flat synthetic regions). Which evidence counts
for which scene, how much, and the thresholds live in ``data/scenes.yml``, validated here.

Scoring is a noisy-OR: every piece of evidence is an independent chance ``w * s`` that the
scene is there, so two weak hints (an oven and a sink) make a stronger one. The result is
a probability, shown as confidence 55 at the scene's threshold (as the classifier's labels).

**Fusion** (:meth:`SceneRules.with_head`): for a scene the head knows, the probability is the
head's, or, where the training found that the rules add evidence on held-apart photos, the
noisy-OR of the head's and the rules' (:func:`fuse_probability`); its threshold is the
head file's (chosen there for a precision of 0.8). Scenes the head does not know (Bathroom,
Restaurant, Lake, Text ...) keep their rules and thresholds. Indoors/Outdoors exclusion
comes last.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labelkit.errors import LabelerError
from labelkit.labelers.taxonomy import CompiledRules, RulesError, confidence_at

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
SCENES_PATH = DATA_DIR / "scenes.yml"
HEAD_PATH = DATA_DIR / "scene_head.npz"
#: The head file's layout (``format`` in the file); bump both when it changes.
HEAD_FORMAT = 1
FEATURES = ("sky", "vegetation", "vegetation_low", "snow_low", "water_low", "dark", "flat")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SceneDefaults(_Strict):
    threshold: float = Field(gt=0, lt=1)
    category: str


Weight = float


class SceneRule(_Strict):
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    threshold: float | None = Field(default=None, gt=0, lt=1)
    classifier: dict[str, Weight] = Field(default_factory=dict)
    objects: dict[str, Weight] = Field(default_factory=dict)
    features: dict[str, Weight] = Field(default_factory=dict)
    #: The learned head is this scene's only evidence (checked against the head's classes).
    learned: bool = False

    @model_validator(mode="after")
    def _weights(self) -> SceneRule:
        for kind in (self.classifier, self.objects, self.features):
            bad = {k: w for k, w in kind.items() if not 0 < w <= 1}
            if bad:
                raise ValueError(f"scene {self.name!r}: weights must be in (0, 1]: {bad}")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"scene {self.name!r}: unknown features {unknown}; known: {list(FEATURES)}")
        if not (self.classifier or self.objects or self.features or self.learned):
            raise ValueError(f"scene {self.name!r} has no evidence (rules, or learned: true)")
        return self


class ScenesFile(_Strict):
    version: int = Field(ge=1)
    defaults: SceneDefaults
    exclusive: list[tuple[str, str]] = Field(default_factory=list)
    scenes: list[SceneRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ScenesFile:
        names = [s.name for s in self.scenes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate scene names: {dupes}")
        known = set(names)
        for scene in self.scenes:
            missing = sorted(set(scene.parents) - known)
            if missing:
                raise ValueError(f"scene {scene.name!r}: parents are not scenes: {missing}")
        for pair in self.exclusive:
            missing = sorted(set(pair) - known)
            if missing:
                raise ValueError(f"exclusive: not scenes: {missing}")
        return self


@dataclass(frozen=True, slots=True)
class Scene:
    name: str
    threshold: float
    aliases: tuple[str, ...]
    parents: tuple[str, ...]  # all ancestors, nearest first
    categories: tuple[str, ...]
    classifier: tuple[tuple[int, float], ...]  # (rules entry index, weight)
    objects: tuple[tuple[str, float], ...]  # (COCO class, weight)
    features: tuple[tuple[str, float], ...]
    learned: bool = False  # the head is its only evidence


def fuse_probability(head: float, rules: float, *, use_rules: bool) -> float:
    """A scene's probability from the head's and the rules': their noisy-OR (two independent
    chances that the scene is there) where the rules add evidence, else the head's alone."""
    if not use_rules:
        return head
    return 1.0 - (1.0 - head) * (1.0 - rules)


@dataclass(frozen=True)
class SceneRules:
    scenes: tuple[Scene, ...]
    exclusive: tuple[tuple[str, str], ...]
    version: str
    head: SceneHead | None = None

    def with_head(self, head: SceneHead) -> SceneRules:
        """These rules fused with the learned head: the head's scenes take its thresholds.
        ``RulesError`` if a head class is not a scene here, or a ``learned`` scene is not a
        head class (the head file and scenes.yml disagree)."""
        head.load()
        names = {s.name for s in self.scenes}
        unknown = sorted(set(head.classes) - names)
        unlearned = sorted(s.name for s in self.scenes if s.learned and s.name not in head.classes)
        if unknown or unlearned:
            raise RulesError(
                f"the scene head ({head.path.name}) and the scene rules disagree: head classes that "
                f"are not scenes {unknown}; learned scenes the head does not have {unlearned}"
            )
        thresholds = dict(zip(head.classes, head.thresholds.tolist(), strict=True))
        scenes = tuple(
            replace(s, threshold=thresholds[s.name]) if s.name in thresholds else s for s in self.scenes
        )
        return SceneRules(
            scenes=scenes, exclusive=self.exclusive, version=f"{self.version}+{head.version}", head=head
        )

    def score(
        self,
        *,
        entry_mass: np.ndarray | None,
        objects: dict[str, float] | None,
        features: dict[str, float],
        pooled: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Probability of every scene. ``entry_mass``: the classifier's probability per rules
        entry (None without classifier); ``objects``: best detection score per COCO class
        (None without detector); ``features``: :func:`scene_features`; ``pooled``: the
        classifier's pooled features (C,), required with a head."""
        probs = self.rule_scores(entry_mass=entry_mass, objects=objects, features=features)
        if self.head is not None:
            if pooled is None:
                raise ValueError("scenes with a learned head need the classifier's pooled features")
            head = self.head.probabilities(np.asarray(pooled)[None])[0]
            for k, name in enumerate(self.head.classes):
                probs[name] = fuse_probability(
                    float(head[k]), probs[name], use_rules=bool(self.head.use_rules[k])
                )
        return self.exclude(probs)

    def exclude(self, probs: dict[str, float]) -> dict[str, float]:
        """Of two exclusive scenes, the less likely one and every scene under it (Outdoors: Sky,
        Street ...) scaled down by (1 - p of the other): an indoor photo's bright ceiling is not
        a sky that would make it Outdoors again through Sky's parent."""
        for a, b in self.exclusive:
            pa, pb = probs[a], probs[b]
            loser, factor = (b, 1.0 - pa) if pa >= pb else (a, 1.0 - pb)
            for scene in self.scenes:
                if scene.name == loser or loser in scene.parents:
                    probs[scene.name] *= factor
        return probs

    def rule_scores(
        self,
        *,
        entry_mass: np.ndarray | None,
        objects: dict[str, float] | None,
        features: dict[str, float],
    ) -> dict[str, float]:
        """Every scene's probability by the rules alone, before the exclusion (0 for a
        ``learned`` scene)."""
        probs: dict[str, float] = {}
        for scene in self.scenes:
            miss = 1.0
            if entry_mass is not None:
                for index, weight in scene.classifier:
                    miss *= 1.0 - min(1.0, weight * float(entry_mass[index]))
            if objects:
                for name, weight in scene.objects:
                    miss *= 1.0 - min(1.0, weight * objects.get(name, 0.0))
            for name, weight in scene.features:
                miss *= 1.0 - min(1.0, weight * features.get(name, 0.0))
            probs[scene.name] = 1.0 - miss
        return probs

    def confidence(self, scene: Scene, probability: float) -> float:
        return confidence_at(probability, scene.threshold)


class SceneHead:
    """The learned scene head (``data/scene_head.npz``): locate -> load once -> predict.

    The file (written by :mod:`labelkit.labelers.train_scenes`; numpy's npz, no pickles):
    ``format`` (:data:`HEAD_FORMAT`), ``classes`` (K scene names), ``feature`` (what the input
    is), ``mean``/``scale`` (D,) the feature normalisation, ``weight`` (D, K) float16, ``bias``
    (K,), ``thresholds`` (K,) per-class probability shown as confidence 55, ``use_rules``
    (K,) whether the rules are fused in, ``trained`` (the date).
    """

    name = "scene head"

    def __init__(self, path: Path = HEAD_PATH) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._loaded = False
        self.classes: tuple[str, ...] = ()
        self._mean = self._scale = self._weight = self._bias = np.zeros(0, dtype=np.float32)
        self.thresholds = np.zeros(0, dtype=np.float32)
        self.use_rules = np.zeros(0, dtype=bool)

    @classmethod
    def from_arrays(
        cls,
        *,
        classes: tuple[str, ...],
        mean: np.ndarray,
        scale: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        thresholds: np.ndarray,
        use_rules: np.ndarray,
    ) -> SceneHead:
        """A head that is not (yet) a file: what the training evaluates."""
        head = cls(Path("<in memory>"))
        head._set(classes, mean, scale, weight, bias, thresholds, use_rules)
        head.__dict__["digest"] = "in-memory"
        head._loaded = True
        return head

    # --- 1. locate ------------------------------------------------------------------

    def files(self) -> list[Path]:
        return [self.path]

    def missing(self) -> list[Path]:
        return [p for p in self.files() if not p.is_file()]

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the file: part of the model version, so new weights relabel photos."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def version(self) -> str:
        return f"head{HEAD_FORMAT}.{self.digest[:8]}"

    # --- 2. load once ---------------------------------------------------------------

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            if self.missing():
                raise LabelerError(
                    f"The {self.name} file {self.path} is missing: it ships with the package "
                    "(reinstall it; `python -m labelkit.labelers.train_scenes` writes it again).",
                    permanent=False,
                )
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    if int(data["format"]) != HEAD_FORMAT:
                        raise ValueError(f"format {int(data['format'])}, this code reads {HEAD_FORMAT}")
                    self._set(
                        tuple(str(c) for c in data["classes"]),
                        data["mean"],
                        data["scale"],
                        data["weight"],
                        data["bias"],
                        data["thresholds"],
                        data["use_rules"],
                    )
            except (OSError, KeyError, ValueError) as exc:
                raise LabelerError(
                    f"Cannot load the {self.name} {self.path}: {exc}", permanent=False
                ) from exc
            logger.info("loaded the %s (%d scenes)", self.name, len(self.classes))
            self._loaded = True

    def _set(
        self,
        classes: tuple[str, ...],
        mean: np.ndarray,
        scale: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        thresholds: np.ndarray,
        use_rules: np.ndarray,
    ) -> None:
        d, k = np.shape(weight)
        shapes = [np.shape(mean), np.shape(scale), np.shape(bias), np.shape(thresholds), np.shape(use_rules)]
        if len(classes) != k or shapes != [(d,), (d,), (k,), (k,), (k,)]:
            raise ValueError(f"inconsistent shapes: {k} classes, weight {d}x{k}, others {shapes}")
        self.classes = classes
        self._mean = np.asarray(mean, dtype=np.float32)
        self._scale = np.asarray(scale, dtype=np.float32)
        self._weight = np.asarray(weight, dtype=np.float32)
        self._bias = np.asarray(bias, dtype=np.float32)
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.use_rules = np.asarray(use_rules, dtype=bool)

    # --- 3. predict -----------------------------------------------------------------

    def preprocess(self, pooled: np.ndarray) -> np.ndarray:
        """(B, D) pooled features -> normalised as in training."""
        x = np.asarray(pooled, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._mean.shape[0]:
            raise LabelerError(
                f"the {self.name} expects ({self._mean.shape[0]},) pooled features, got {x.shape[1:]}",
                permanent=True,
            )
        out: np.ndarray = (x - self._mean) / self._scale
        return out

    def infer(self, z: np.ndarray) -> np.ndarray:
        out: np.ndarray = z @ self._weight + self._bias
        return out

    def postprocess(self, logits: np.ndarray) -> np.ndarray:
        out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the logistic function, no overflow
        return out

    def probabilities(self, pooled: np.ndarray) -> np.ndarray:
        """(B, D) pooled features -> (B, K) probability of each of :attr:`classes`."""
        self.load()
        return self.postprocess(self.infer(self.preprocess(pooled)))


def parse_scenes(data: Any) -> ScenesFile:
    try:
        return ScenesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(f"invalid scene rules: {exc}") from exc


def compile_scenes(
    parsed: ScenesFile,
    rules: CompiledRules,
    coco_names: set[str],
    categories: set[str],
    *,
    digest: str = "",
) -> SceneRules:
    """Resolve names against the classifier's rules and COCO's classes."""
    index_of = {e.name: i for i, e in enumerate(rules.entries)}
    by_name = {s.name: s for s in parsed.scenes}
    problems: list[str] = []

    def ancestors(name: str, seen: tuple[str, ...] = ()) -> list[str]:
        out: list[str] = []
        for parent in by_name[name].parents:
            if parent in seen or parent == name:
                problems.append(f"scene {name!r}: parent cycle through {parent!r}")
                continue
            for a in [parent, *ancestors(parent, (*seen, name))]:
                if a not in out:
                    out.append(a)
        return out

    scenes = []
    for rule in parsed.scenes:
        unknown_cls = sorted(set(rule.classifier) - set(index_of))
        unknown_obj = sorted(set(rule.objects) - coco_names)
        cats = rule.categories or [parsed.defaults.category]
        unknown_cat = sorted(set(cats) - categories)
        if unknown_cls:
            problems.append(f"scene {rule.name!r}: not classifier labels in rules.yml: {unknown_cls}")
        if unknown_obj:
            problems.append(f"scene {rule.name!r}: not COCO classes: {unknown_obj}")
        if unknown_cat:
            problems.append(f"scene {rule.name!r}: categories not declared in rules.yml: {unknown_cat}")
        scenes.append(
            Scene(
                name=rule.name,
                threshold=rule.threshold or parsed.defaults.threshold,
                aliases=tuple(rule.aliases),
                parents=tuple(ancestors(rule.name)),
                categories=tuple(cats),
                classifier=tuple((index_of[k], w) for k, w in rule.classifier.items() if k in index_of),
                objects=tuple(rule.objects.items()),
                features=tuple(rule.features.items()),
                learned=rule.learned,
            )
        )
    if problems:
        raise RulesError("invalid scene rules: " + "; ".join(problems))
    return SceneRules(
        scenes=tuple(scenes),
        exclusive=tuple(parsed.exclusive),
        version=f"{parsed.version}.{digest[:8]}" if digest else str(parsed.version),
    )


def load_scenes_text(
    text: str, rules: CompiledRules, coco_names: set[str], categories: set[str]
) -> SceneRules:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"scene rules are not valid YAML: {exc}") from exc
    digest = hashlib.sha256(text.encode()).hexdigest()
    return compile_scenes(parse_scenes(data), rules, coco_names, categories, digest=digest)


_CACHE: dict[tuple[str, Path], SceneRules] = {}
_HEADS: dict[Path, SceneHead] = {}
_HEADS_LOCK = threading.Lock()


def load_scenes(rules: CompiledRules, path: Path = SCENES_PATH) -> SceneRules:
    """The compiled scene rules for these classifier rules, parsed once per process."""
    key = (rules.version, path)
    if key not in _CACHE:
        from labelkit.labelers.detect import coco_labels

        _CACHE[key] = load_scenes_text(
            path.read_text(encoding="utf-8"), rules, set(coco_labels().values()), set(rules.categories)
        )
    return _CACHE[key]


def scene_head(path: Path = HEAD_PATH) -> SceneHead:
    """The scene head of this file, one per process (its weights load on first use)."""
    with _HEADS_LOCK:
        if path not in _HEADS:
            _HEADS[path] = SceneHead(path)
        return _HEADS[path]


def load_scenes_with_head(
    rules: CompiledRules, path: Path = SCENES_PATH, head_path: Path = HEAD_PATH
) -> SceneRules:
    """:func:`load_scenes` fused with the learned head (:meth:`SceneRules.with_head`), once per process."""
    key = (f"{rules.version}+head", head_path)
    if key not in _CACHE:
        _CACHE[key] = load_scenes(rules, path).with_head(scene_head(head_path))
    return _CACHE[key]


# --- image features ----------------------------------------------------------------------


def scene_features(rgb: np.ndarray) -> dict[str, float]:
    """Cheap colour features of a small (H, W, 3) uint8 copy of the image, each in [0, 1]."""
    step = max(1, max(rgb.shape[:2]) // 64)
    small = np.asarray(rgb[::step, ::step], dtype=np.float32) / 255.0
    h = small.shape[0]
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    value = small.max(axis=-1)
    low = small.min(axis=-1)
    chroma = value - low
    sat = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
    hue = _hue(r, g, b, value, chroma)

    blue = (hue >= 185) & (hue <= 250) & (sat >= 0.15) & (value >= 0.45)
    overcast = (value >= 0.75) & (sat < 0.12)
    # Sky is smooth: a textured bright/blue region (a blue car, a white wall with detail) is not.
    grad = np.zeros_like(value)
    grad[:-1, :] += np.abs(np.diff(value, axis=0))
    grad[:, :-1] += np.abs(np.diff(value, axis=1))
    smooth = grad < 0.06
    top = slice(0, max(1, h // 3))
    lower = slice(h // 2, h)
    green = (hue >= 60) & (hue <= 170) & (sat >= 0.2) & (value >= 0.12)
    white = (value >= 0.72) & (sat <= 0.12)
    water = (hue >= 170) & (hue <= 250) & (sat >= 0.2) & (value >= 0.2)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    brightness = float(luma.mean()) * 255.0
    flat = np.zeros_like(value, dtype=bool)
    flat[1:, 1:] = (small[1:, 1:] == small[:-1, 1:]).all(axis=-1) & (small[1:, 1:] == small[1:, :-1]).all(
        axis=-1
    )
    return {
        "sky": float(((blue | overcast) & smooth)[top].mean()),
        "vegetation": float(green.mean()),
        "vegetation_low": float(green[lower].mean()),
        "snow_low": float((white & smooth)[lower].mean()),
        "water_low": float((water & smooth)[lower].mean()),
        "dark": float(np.clip((30.0 - brightness) / 18.0, 0.0, 1.0)),
        "flat": float(flat.mean()),
    }


def _hue(r: np.ndarray, g: np.ndarray, b: np.ndarray, value: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Hue in degrees (0-360) of RGB arrays in [0, 1]; 0 where chroma is 0."""
    c = np.maximum(chroma, 1e-6)
    hue = np.where(
        value == r,
        ((g - b) / c) % 6.0,
        np.where(value == g, (b - r) / c + 2.0, (r - g) / c + 4.0),
    )
    out: np.ndarray = np.where(chroma > 0, hue * 60.0, 0.0)
    return out
