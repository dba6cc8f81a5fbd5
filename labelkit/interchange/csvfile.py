"""CSV: the labels table, spreadsheet-safe, optionally with a UTF-8 byte order mark for Excel."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from labelkit import analytics
from labelkit.interchange.gather import ImageEntry
from labelkit.interchange.tables import _label_df


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def to_csv(entries: Sequence[ImageEntry], *, bom: bool = False) -> bytes:
    df = _label_df(entries)
    for col in ("parents", "categories"):
        df[col] = df[col].map(lambda v: "; ".join(v) if isinstance(v, list) else "")
    for col in ("uploaded_at", "created_at"):
        df[col] = df[col].map(lambda v: v.isoformat() if pd.notna(v) else "")
    return analytics.to_csv(df, bom=bom)
