"""Scenes (Kitchen, Beach, Street, Night ...) from the other models' outputs, by rules as data.

Why rules: no package on the registries ships a scene model (Places365, CLIP) that could
be checked here, but three signals are already at hand: the classifier's ImageNet place
classes (seashore, lakeside, alp, library, restaurant ...), the set of detected objects
(oven + sink + refrigerator means a kitchen; a bed, a bedroom; a toilet, a bathroom) and a
few image features computed here from the small copy of the image the classifier sees
(sky-coloured top, green lower half, dark, flat synthetic regions). Which evidence counts
for which scene, how much, and the thresholds live in ``data/scenes.yml``, validated here.

Scoring is a noisy-OR: every piece of evidence is an independent chance ``w * s`` that the
scene is there, so two weak hints (an oven and a sink) make a stronger one. The result is
a probability, shown as confidence 55 at the scene's threshold (as the classifier's labels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labelkit.labelers.taxonomy import CompiledRules, RulesError, confidence_at

DATA_DIR = Path(__file__).resolve().parent / "data"
SCENES_PATH = DATA_DIR / "scenes.yml"
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

    @model_validator(mode="after")
    def _weights(self) -> SceneRule:
        for kind in (self.classifier, self.objects, self.features):
            bad = {k: w for k, w in kind.items() if not 0 < w <= 1}
            if bad:
                raise ValueError(f"scene {self.name!r}: weights must be in (0, 1]: {bad}")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"scene {self.name!r}: unknown features {unknown}; known: {list(FEATURES)}")
        if not (self.classifier or self.objects or self.features):
            raise ValueError(f"scene {self.name!r} has no evidence")
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


@dataclass(frozen=True)
class SceneRules:
    scenes: tuple[Scene, ...]
    exclusive: tuple[tuple[str, str], ...]
    version: str

    def score(
        self,
        *,
        entry_mass: np.ndarray | None,
        objects: dict[str, float] | None,
        features: dict[str, float],
    ) -> dict[str, float]:
        """Probability of every scene. ``entry_mass``: the classifier's probability per rules
        entry (None without classifier); ``objects``: best detection score per COCO class
        (None without detector); ``features``: :func:`scene_features`."""
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
        for a, b in self.exclusive:
            pa, pb = probs[a], probs[b]
            if pa >= pb:
                probs[b] = pb * (1.0 - pa)
            else:
                probs[a] = pa * (1.0 - pb)
        return probs

    def confidence(self, scene: Scene, probability: float) -> float:
        return confidence_at(probability, scene.threshold)


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


def load_scenes(rules: CompiledRules, path: Path = SCENES_PATH) -> SceneRules:
    """The compiled scene rules for these classifier rules, parsed once per process."""
    key = (rules.version, path)
    if key not in _CACHE:
        from labelkit.labelers.detect import coco_labels

        _CACHE[key] = load_scenes_text(
            path.read_text(encoding="utf-8"), rules, set(coco_labels().values()), set(rules.categories)
        )
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
