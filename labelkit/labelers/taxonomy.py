"""ImageNet taxonomy and label rules: from 1,000 class probabilities to friendly labels.

Why this exists: EfficientNet-Lite's scores are flat (the top class often gets only
0.2-0.4) and its classes are very specific ("Egyptian cat", "espresso"). Summing the
leaf probabilities up the WordNet hypernym graph gives confident general labels
("Cat" 0.88, "Animal" 0.91 on a cat photo). Which WordNet nodes are shown, under
which name, with which aliases, categories and thresholds is data, not code: it lives
in ``data/rules.yml`` and is validated here (pydantic, unknown keys rejected). The
graph comes from ``data/imagenet_taxonomy.json``, generated once from WordNet by
``scripts/generate_taxonomy.py``, so run time needs neither WordNet nor nltk.

Both files are parsed once per process (:func:`load_rules` is cached) into a matrix,
so scoring a batch is one ``probs @ matrix``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labelkit.errors import ConfigError

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
TAXONOMY_PATH = DATA_DIR / "imagenet_taxonomy.json"
RULES_PATH = DATA_DIR / "rules.yml"
NUM_CLASSES = 1000
#: The probability at a label's threshold is reported as this confidence
#: (Rekognition's default MinConfidence), so the default options show exactly the
#: labels whose rules say they are present.
CONFIDENCE_AT_THRESHOLD = 55.0

_WNID = re.compile(r"^n\d{8}$")


class RulesError(ConfigError):
    """``rules.yml`` or the taxonomy is invalid (raised at load time, with the reason)."""


# --- the rules file's schema -------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_wnids(values: list[str]) -> list[str]:
    bad = [v for v in values if not _WNID.match(v)]
    if bad:
        raise ValueError(f"not WordNet noun ids (n + 8 digits): {bad}")
    return values


class Defaults(_Strict):
    class_threshold: float = Field(gt=0, le=1)
    label_threshold: float = Field(gt=0, le=1)
    category: str


class LabelRule(_Strict):
    """A group label: the summed probability of every class under its synsets."""

    name: str = Field(min_length=1)
    synsets: list[str] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list)
    threshold: float | None = Field(default=None, gt=0, le=1)
    aliases: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    box: bool = False

    _wnids = field_validator("synsets", "exclude")(_check_wnids)


class ClassRule(_Strict):
    """Overrides for one ImageNet class shown under its own name."""

    name: str | None = Field(default=None, min_length=1)
    aliases: list[str] = Field(default_factory=list)
    threshold: float | None = Field(default=None, gt=0, le=1)
    categories: list[str] = Field(default_factory=list)
    hide: bool = False
    box: bool = True


class RulesFile(_Strict):
    version: int = Field(ge=1)
    defaults: Defaults
    categories: list[str] = Field(min_length=1)
    labels: list[LabelRule]
    classes: dict[str, ClassRule] = Field(default_factory=dict)

    @field_validator("classes")
    @classmethod
    def _class_keys(cls, value: dict[str, ClassRule]) -> dict[str, ClassRule]:
        _check_wnids(list(value))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RulesFile:
        known = set(self.categories)
        used = {self.defaults.category}
        for rule in self.labels:
            used.update(rule.categories)
        for override in self.classes.values():
            used.update(override.categories)
        unknown = sorted(used - known)
        if unknown:
            raise ValueError(f"categories not declared under 'categories': {unknown}")
        names = [r.name.casefold() for r in self.labels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate label names: {dupes}")
        return self


# --- compiled form -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One label the labeller can return (a group label or a single class)."""

    name: str
    threshold: float
    aliases: tuple[str, ...]
    categories: tuple[str, ...]
    parents: tuple[str, ...]
    box: bool
    classes: tuple[int, ...]  # ImageNet class indices whose probabilities are summed
    is_group: bool


@dataclass(frozen=True)
class CompiledRules:
    entries: tuple[Entry, ...]
    matrix: np.ndarray  # (1000, len(entries)) float32, 1 where class i counts for entry j
    thresholds: np.ndarray  # (len(entries),) float32
    class_wnids: tuple[str, ...]
    version: str  # "<rules version>.<hash of rules + taxonomy>"
    categories: tuple[str, ...] = ()  # every category the rules declare

    def mass(self, probs: np.ndarray) -> np.ndarray:
        """Summed probability of every entry, (B, 1000) -> (B, E).

        Same as ``probs @ matrix`` but over the few non-zeros only (the matrix is ~0.5%
        full), which is ~10x cheaper.
        """
        flat, starts = self._segments
        out: np.ndarray = np.add.reduceat(np.asarray(probs, dtype=np.float32)[:, flat], starts, axis=1)
        return out

    @cached_property
    def _segments(self) -> tuple[np.ndarray, np.ndarray]:
        flat = np.concatenate([np.asarray(e.classes, dtype=np.int64) for e in self.entries])
        sizes = np.array([len(e.classes) for e in self.entries], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return flat, starts

    def confidence(self, mass: np.ndarray) -> np.ndarray:
        """Map probability mass to Rekognition-like confidence (0-100), per entry.

        Piecewise linear: 0 -> 0, the entry's threshold -> 55, 1 -> 100. Monotonic,
        so ranking within an entry is kept and ``min_confidence=55`` means "the rules
        say it is there".
        """
        t = self.thresholds
        m = np.clip(mass, 0.0, 1.0)
        below = CONFIDENCE_AT_THRESHOLD * m / t
        above = CONFIDENCE_AT_THRESHOLD + (100.0 - CONFIDENCE_AT_THRESHOLD) * (m - t) / (1.0 - t + 1e-9)
        out: np.ndarray = np.clip(np.where(m >= t, above, below), 0.0, 100.0)
        return out


def confidence_at(probability: float, threshold: float) -> float:
    """One probability as a confidence, the same piecewise-linear map as
    :meth:`CompiledRules.confidence`: 0 -> 0, ``threshold`` -> 55, 1 -> 100."""
    p = min(1.0, max(0.0, float(probability)))
    if p >= threshold:
        return CONFIDENCE_AT_THRESHOLD + (100.0 - CONFIDENCE_AT_THRESHOLD) * (p - threshold) / (
            1.0 - threshold + 1e-9
        )
    return CONFIDENCE_AT_THRESHOLD * p / threshold


def _friendly(name: str) -> str:
    """WordNet lemma -> display name: capitalise each word, keep inner capitals (iPod)."""
    return " ".join(w[:1].upper() + w[1:] for w in name.replace("_", " ").split())


def parse_rules(data: Any) -> RulesFile:
    """Validate parsed YAML as a rules file, raising :class:`RulesError` with the reason."""
    try:
        return RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(f"invalid label rules: {exc}") from exc


def compile_rules(rules: RulesFile, taxonomy: dict[str, Any], *, digest: str = "") -> CompiledRules:
    """Resolve the rules against the taxonomy into entries and a scoring matrix."""
    classes = taxonomy.get("classes", [])
    synsets = taxonomy.get("synsets", {})
    if len(classes) != NUM_CLASSES or [c["index"] for c in classes] != list(range(NUM_CLASSES)):
        raise RulesError(f"taxonomy must list classes 0..{NUM_CLASSES - 1} in order")
    wnids = tuple(c["wnid"] for c in classes)
    index_of = {w: i for i, w in enumerate(wnids)}
    # Every class counts for itself and for each of its ancestors.
    under: dict[str, set[int]] = {}
    for i, c in enumerate(classes):
        for node in [c["wnid"], *c["ancestors"]]:
            under.setdefault(node, set()).add(i)

    problems: list[str] = []
    for wnid in rules.classes:
        if wnid not in index_of:
            problems.append(f"classes: {wnid} is not one of the 1,000 ImageNet classes")

    groups: list[tuple[LabelRule, frozenset[int]]] = []
    for rule in rules.labels:
        members: set[int] = set()
        for wnid in rule.synsets:
            if wnid not in synsets:
                problems.append(f"label {rule.name!r}: {wnid} is not in the taxonomy")
            members |= under.get(wnid, set())
        for wnid in rule.exclude:
            if wnid not in synsets:
                problems.append(f"label {rule.name!r}: exclude {wnid} is not in the taxonomy")
            members -= under.get(wnid, set())
        if not members and not problems:
            problems.append(f"label {rule.name!r} covers no ImageNet class")
        groups.append((rule, frozenset(members)))
    if problems:
        raise RulesError("invalid label rules: " + "; ".join(problems))

    def parents_of(members: frozenset[int], *, strict: bool, skip: str) -> list[tuple[LabelRule, int]]:
        found = [
            (rule, len(other))
            for rule, other in groups
            if rule.name != skip and members <= other and (not strict or members != other)
        ]
        found.sort(key=lambda item: (item[1], item[0].name))  # nearest (smallest) first
        return found

    def categories_of(own: list[str], parents: list[tuple[LabelRule, int]]) -> tuple[str, ...]:
        out: list[str] = []
        for cat in [*own, *(c for rule, _ in parents for c in rule.categories)]:
            if cat not in out:
                out.append(cat)
        return tuple(out or [rules.defaults.category])

    entries: list[Entry] = []
    for rule, group_members in groups:
        parents = parents_of(group_members, strict=True, skip=rule.name)
        entries.append(
            Entry(
                name=rule.name,
                threshold=rule.threshold or rules.defaults.label_threshold,
                aliases=tuple(rule.aliases),
                categories=categories_of(rule.categories, parents),
                parents=tuple(p.name for p, _ in parents),
                box=rule.box,
                classes=tuple(sorted(group_members)),
                is_group=True,
            )
        )
    for i, c in enumerate(classes):
        override = rules.classes.get(c["wnid"], ClassRule())
        if override.hide:
            continue
        name = override.name or _friendly(c["names"][0])
        lemma_aliases = [_friendly(n) for n in c["names"][1:]]
        aliases = [a for a in dict.fromkeys([*override.aliases, *lemma_aliases]) if a != name]
        parents = parents_of(frozenset({i}), strict=False, skip=name)
        entries.append(
            Entry(
                name=name,
                threshold=override.threshold or rules.defaults.class_threshold,
                aliases=tuple(aliases),
                categories=categories_of(override.categories, parents),
                parents=tuple(p.name for p, _ in parents),
                box=override.box,
                classes=(i,),
                is_group=False,
            )
        )
    names = [e.name.casefold() for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RulesError(
            f"invalid label rules: names used twice (rename or hide a class under 'classes'): {dupes}"
        )
    matrix = np.zeros((NUM_CLASSES, len(entries)), dtype=np.float32)
    for j, entry in enumerate(entries):
        matrix[list(entry.classes), j] = 1.0
    thresholds = np.array([e.threshold for e in entries], dtype=np.float32)
    return CompiledRules(
        entries=tuple(entries),
        matrix=matrix,
        thresholds=thresholds,
        class_wnids=wnids,
        version=f"{rules.version}.{digest[:8]}" if digest else str(rules.version),
        categories=tuple(rules.categories),
    )


def load_rules_text(rules_text: str, taxonomy_text: str) -> CompiledRules:
    """Parse, validate and compile rules and taxonomy given as text."""
    try:
        data = yaml.safe_load(rules_text)
    except yaml.YAMLError as exc:
        raise RulesError(f"label rules are not valid YAML: {exc}") from exc
    rules = parse_rules(data)
    try:
        taxonomy = json.loads(taxonomy_text)
    except ValueError as exc:
        raise RulesError(f"taxonomy is not valid JSON: {exc}") from exc
    digest = hashlib.sha256(rules_text.encode() + b"\0" + taxonomy_text.encode()).hexdigest()
    return compile_rules(rules, taxonomy, digest=digest)


@lru_cache(maxsize=4)
def load_rules(rules_path: Path = RULES_PATH, taxonomy_path: Path = TAXONOMY_PATH) -> CompiledRules:
    """The compiled rules, parsed once per process (cached)."""
    compiled = load_rules_text(
        rules_path.read_text(encoding="utf-8"), taxonomy_path.read_text(encoding="utf-8")
    )
    logger.debug("loaded %d label entries (rules %s)", len(compiled.entries), compiled.version)
    return compiled


@lru_cache(maxsize=2)
def load_taxonomy(taxonomy_path: Path = TAXONOMY_PATH) -> dict[str, Any]:
    """The parsed taxonomy file (cached; callers must not modify it)."""
    data: dict[str, Any] = json.loads(taxonomy_path.read_text(encoding="utf-8"))
    return data


def classes_under(taxonomy: dict[str, Any], wnids: list[str] | tuple[str, ...]) -> frozenset[int]:
    """ImageNet class indices under any of ``wnids`` (a class counts for itself and every
    ancestor), as the rules' group labels count them. Unknown wnids raise ``RulesError``."""
    synsets = taxonomy.get("synsets", {})
    unknown = [w for w in wnids if w not in synsets]
    if unknown:
        raise RulesError(f"not in the taxonomy: {unknown}")
    wanted = set(wnids)
    return frozenset(c["index"] for c in taxonomy["classes"] if wanted & {c["wnid"], *c["ancestors"]})
