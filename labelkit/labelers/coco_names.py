"""COCO's 80 detection classes and the Rekognition names they go by (``data/coco_to_rekognition.yml``).

One table, two users: a COCO detector names its detections with the first name of each class,
and the label-quality benchmark (``bench/label_quality.py``) accepts any of a class's names when
it checks whether a labeller found that class. The names under ``person`` are the person words.
The file is data, validated here (pydantic, unknown keys rejected) and parsed once per process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labelkit.errors import ConfigError

COCO_NAMES_PATH = Path(__file__).resolve().parent / "data" / "coco_to_rekognition.yml"
#: COCO 2017 has 80 detection classes (its 90 ids have 10 gaps).
COCO_CLASS_COUNT = 80


class CocoNamesError(ConfigError):
    """``coco_to_rekognition.yml`` is invalid (raised at load time, with the reason)."""


class CocoNames(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    classes: dict[str, list[str]]

    @field_validator("classes")
    @classmethod
    def _valid(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(value) != COCO_CLASS_COUNT:
            raise ValueError(f"expected COCO's {COCO_CLASS_COUNT} classes, found {len(value)}")
        bad_keys = sorted(k for k in value if k != k.strip().lower() or not k)
        if bad_keys:
            raise ValueError(f"class keys must be COCO's lowercase names: {bad_keys}")
        empty = sorted(k for k, names in value.items() if not names)
        if empty:
            raise ValueError(f"classes without a name: {empty}")
        blank = sorted(k for k, names in value.items() if any(not n or n != n.strip() for n in names))
        if blank:
            raise ValueError(f"blank or padded names under: {blank}")
        # A name under two classes would make "which class was found" ambiguous.
        owner: dict[str, str] = {}
        clashes = []
        for key, names in value.items():
            for name in names:
                folded = name.casefold()
                if folded in owner and owner[folded] != key:
                    clashes.append(f"{name!r} under {owner[folded]!r} and {key!r}")
                owner.setdefault(folded, key)
        if clashes:
            raise ValueError(f"names under two classes: {clashes}")
        return value

    def label_name(self, coco_class: str) -> str:
        """The Rekognition label a detection of ``coco_class`` becomes."""
        return self.classes[coco_class][0]

    def names(self, coco_class: str) -> tuple[str, ...]:
        """Every name that counts as ``coco_class`` (the label name first)."""
        return tuple(self.classes[coco_class])

    @property
    def person_words(self) -> tuple[str, ...]:
        return self.names("person")


def parse_coco_names(data: Any) -> CocoNames:
    """Validate parsed YAML, raising :class:`CocoNamesError` with the reason."""
    try:
        return CocoNames.model_validate(data)
    except ValidationError as exc:
        raise CocoNamesError(f"invalid COCO name table: {exc}") from exc


@lru_cache(maxsize=1)
def load_coco_names(path: Path = COCO_NAMES_PATH) -> CocoNames:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CocoNamesError(f"cannot read {path}: {exc}") from exc
    return parse_coco_names(data)
