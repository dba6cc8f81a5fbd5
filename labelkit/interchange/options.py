"""What an export asks for: the format and the filters (:class:`ExportOptions`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    COCO = "coco"
    MANIFEST = "manifest"


FORMAT_FILES: dict[ExportFormat, tuple[str, str]] = {
    ExportFormat.CSV: ("labelkit-labels.csv", "text/csv"),
    ExportFormat.JSONL: ("labelkit-labels.jsonl", "application/x-ndjson"),
    ExportFormat.COCO: ("labelkit-coco.json", "application/json"),
    ExportFormat.MANIFEST: ("labelkit-labels.manifest", "application/x-ndjson"),
}


FORMAT_TITLES: dict[ExportFormat, str] = {
    ExportFormat.CSV: "CSV (one row per label)",
    ExportFormat.JSONL: "JSON Lines (one image per line; re-importable)",
    ExportFormat.COCO: "COCO (boxes + image_labels extension)",
    ExportFormat.MANIFEST: "SageMaker Ground Truth / Rekognition Custom Labels manifest",
}


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What to export. Dates are UTC days, both ends included; datetimes are taken as they are."""

    owner: str | None = None  # username; admins only for others
    labels: tuple[str, ...] = ()  # label names or parents (any of)
    reviewed_only: bool = False
    since: date | datetime | None = None
    until: date | datetime | None = None
    min_confidence: float | None = None
    #: The names of the people in the photos (``Person: <name>`` labels, issue #29): personal
    #: data, left out unless asked for.
    people: bool = False

    @property
    def filters_labels(self) -> bool:
        return bool(self.labels) or self.reviewed_only or self.min_confidence is not None


def _start(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time.min, tzinfo=UTC)


def _end(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)
