"""Label analytics as pandas DataFrames, for the dashboard's charts and for notebooks.

Every function takes a ``Session`` and a :class:`~labelkit.domain.Viewer`
and only shapes what the queries return (they live in :mod:`labelkit.db.queries`;
compare mode's maths in :mod:`labelkit.compare`), so a notebook sees the same numbers as the
dashboard and the same scoping rules apply::

    with transaction(engine) as s:
        df = analytics.label_table(session=s, viewer=Viewer(user_id, is_admin=True))
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from labelkit import compare
from labelkit.db.models import ImageStatus, TermKind, utcnow
from labelkit.db.queries import images as image_q
from labelkit.db.queries import stats as stats_q
from labelkit.domain import Viewer

LABEL_COLUMNS = ["label", "images", "mean_confidence", "confirmed", "rejected", "precision"]


def label_table(*, session: Session, viewer: Viewer, limit: int | None = None) -> pd.DataFrame:
    """One row per label (the model's or people's): images carrying it as a label or a parent
    (the gallery filter's count; rejected labels never count), the model's mean confidence
    (NaN when only people gave it), reviews and review precision."""
    stats = stats_q.label_stats(session=session, viewer=viewer, limit=limit)
    rows = [
        {
            "label": st.name,
            "images": st.images,
            "mean_confidence": round(st.mean_confidence, 1) if st.mean_confidence is not None else np.nan,
            "confirmed": st.confirmed,
            "rejected": st.rejected,
            # NaN (not None) keeps the column numeric for charts and CSV.
            "precision": st.precision if st.precision is not None else np.nan,
        }
        for st in stats
    ]
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def confidence_histogram(*, session: Session, viewer: Viewer, bin_width: int = 5) -> pd.DataFrame:
    """Model label confidences counted in ``bin_width``-point bins from 0 to 100, leaving out
    labels a person rejected (``bin_width`` divides 100; read from the per-point running totals)."""
    if 100 % bin_width:
        raise ValueError("bin_width must divide 100")
    points = stats_q.confidence_bins(session=session, viewer=viewer)
    edges = np.arange(0, 100 + bin_width, bin_width, dtype=float)
    counts = np.zeros(len(edges) - 1, dtype=int)
    for point, n in points.items():
        counts[min(point // bin_width, len(counts) - 1)] += n
    return pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:], "labels": counts})


def activity(*, session: Session, viewer: Viewer, days: int = 30) -> pd.DataFrame:
    """Uploads and labelled images per UTC day for the last ``days`` days (missing days are 0)."""
    today = utcnow().date()
    start = today - timedelta(days=days - 1)
    since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    counts = stats_q.activity_per_day(session=session, viewer=viewer, since=since)
    index = pd.date_range(start=start, end=today, freq="D")
    df = pd.DataFrame(
        {"uploads": 0, "labelled": 0},
        index=index,
    )
    for c in counts:
        day = pd.Timestamp(c.day)
        if day in df.index:
            df.loc[day, "uploads"] = c.uploads
            df.loc[day, "labelled"] = c.labelled
    df.index.name = "day"
    return df.reset_index()


def activity_long(*, session: Session, viewer: Viewer, days: int = 30) -> pd.DataFrame:
    """:func:`activity` in long form (day, series, images), the shape Altair likes."""
    wide = activity(session=session, viewer=viewer, days=days)
    return wide.melt(id_vars="day", var_name="series", value_name="images")


NO_REVIEWS = "no reviews yet"


def precision_text(precision: float | None) -> str:
    """A review precision as people read it: "83%", or "no reviews yet" (None or NaN)."""
    if precision is None or pd.isna(precision):
        return NO_REVIEWS
    return f"{precision:.0%}"


#: The over-time chart's bins, by how long the activity spans: up to 2 days per hour, up to
#: 120 days per day, beyond that per week (so the chart has at most ~50-120 points, never
#: 30 empty days around one busy afternoon).
HOURLY_UP_TO = timedelta(days=2)
DAILY_UP_TO = timedelta(days=120)
TIMELINE_COLUMNS = ["time", "series", "images"]


def activity_timeline(*, session: Session, viewer: Viewer) -> tuple[pd.DataFrame, str]:
    """Uploads and labelled images from the viewer's first to last activity, in long form
    (time, series, images; missing bins are 0), and the bin used: "hour", "day" or "week"."""
    span = stats_q.activity_span(session=session, viewer=viewer)
    if span is None:
        return pd.DataFrame(columns=TIMELINE_COLUMNS), "day"
    first, last = (pd.Timestamp(t).tz_convert("UTC").tz_localize(None) for t in span)
    if last - first <= pd.Timedelta(HOURLY_UP_TO):
        unit, freq = "hour", "h"
        start = first.floor("h")
        counted = [
            (pd.Timestamp(c.hour), c.uploads, c.labelled)
            for c in stats_q.activity_per_hour(session=session, viewer=viewer, since=start.to_pydatetime())
        ]
        index = pd.date_range(start=start, end=last.floor("h"), freq=freq)
    else:
        start = first.floor("D")
        counted = [
            (pd.Timestamp(c.day), c.uploads, c.labelled)
            for c in stats_q.activity_per_day(session=session, viewer=viewer, since=start.to_pydatetime())
        ]
        if last - first <= pd.Timedelta(DAILY_UP_TO):
            unit = "day"
            index = pd.date_range(start=start, end=last.floor("D"), freq="D")
        else:
            unit = "week"  # weeks start on Monday
            monday = start - pd.Timedelta(days=start.weekday())
            index = pd.date_range(start=monday, end=last.floor("D"), freq="W-MON")
            counted = [(t - pd.Timedelta(days=t.weekday()), u, lab) for t, u, lab in counted]
    wide = pd.DataFrame({"uploads": 0, "labelled": 0}, index=index)
    for t, uploads, labelled in counted:
        if t in wide.index:
            wide.loc[t, "uploads"] += uploads
            wide.loc[t, "labelled"] += labelled
    wide.index.name = "time"
    long = wide.reset_index().melt(id_vars="time", var_name="series", value_name="images")
    return long[TIMELINE_COLUMNS], unit


def categories(*, session: Session, viewer: Viewer, limit: int = 30) -> pd.DataFrame:
    """Images per category, most common first."""
    rows = stats_q.term_counts(session=session, viewer=viewer, kind=TermKind.CATEGORY, limit=limit)
    return pd.DataFrame(rows, columns=["category", "images"])


COOCCURRENCE_LATEST = 5000  # co-occurrence is counted over the viewer's latest this many images


def cooccurrence(
    *, session: Session, viewer: Viewer, top: int = 12, latest: int | None = COOCCURRENCE_LATEST
) -> pd.DataFrame:
    """Images carrying both labels, for every pair of the ``top`` most common labels, among the
    viewer's ``latest`` most recent images (``None``: all of them, O(images))."""
    names = [st.name for st in stats_q.label_stats(session=session, viewer=viewer, limit=top)]
    pairs = stats_q.label_cooccurrence(session=session, viewer=viewer, names=names, latest=latest)
    return pd.DataFrame([(p.a, p.b, p.images) for p in pairs], columns=["label_a", "label_b", "images"])


def status_counts(*, session: Session, viewer: Viewer) -> pd.DataFrame:
    counts = image_q.status_counts(session=session, viewer=viewer)
    return pd.DataFrame([(s.value, counts[s]) for s in ImageStatus], columns=["status", "images"])


def labelled_per_minute(*, session: Session, viewer: Viewer, minutes: int = 60) -> pd.DataFrame:
    """Images labelled per minute over the last ``minutes`` minutes (missing minutes are 0)."""
    now = pd.Timestamp(utcnow()).floor("min")
    start = now - pd.Timedelta(minutes=minutes - 1)
    times = stats_q.labelled_times(session=session, viewer=viewer, since=start.to_pydatetime())
    index = pd.date_range(start=start, end=now, freq="min")
    series = pd.Series(0, index=index, dtype=int)
    if times:
        counted = pd.Series(1, index=pd.DatetimeIndex(times).floor("min")).groupby(level=0).sum()
        series = series.add(counted.reindex(index, fill_value=0), fill_value=0).astype(int)
    return pd.DataFrame({"minute": index, "images": series.to_numpy()})


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(df: pd.DataFrame, *, bom: bool = False) -> bytes:
    """CSV bytes (UTF-8) safe to open in a spreadsheet; with ``bom`` they start with a UTF-8
    byte order mark, without which Excel reads the file in the machine's code page ("Café"
    becomes "CafÃ©").

    Text cells starting with ``=``, ``+``, ``-`` or ``@`` get a leading apostrophe so a
    label named like a formula is shown, not run (CSV injection).
    """
    safe = df.copy()
    for col in safe.columns:
        if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
            safe[col] = safe[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            )
    return safe.to_csv(index=False).encode("utf-8-sig" if bom else "utf-8")


# --------------------------------------------------------------------------- compare mode

AGREEMENT_COLUMNS = ["label", "a_images", "b_images", "both", "either", "jaccard"]
COST_COLUMNS = ["model_version", "labeller", "images", "labels", "cost_per_1000", "cost_so_far"]


def labeller_kind(model_version: str) -> str:
    """``"rekognition"`` for Amazon Rekognition's versions (``rekognition-3.0``), else ``"local"``."""
    return "rekognition" if model_version.startswith("rekognition") else "local"


def model_version_costs(*, session: Session, viewer: Viewer, price_per_1000: float) -> pd.DataFrame:
    """One row per model version: images and labels it produced, and its estimated API cost.

    Rekognition costs ``price_per_1000`` US dollars per 1,000 images (one DetectLabels
    call each; ``settings.rekognition_price_per_1000``). The local model has no API
    cost (it uses the worker's own CPU).
    """
    rows = []
    for mv in stats_q.model_versions(session=session, viewer=viewer):
        kind = labeller_kind(mv.model_version)
        per_1000 = price_per_1000 if kind == "rekognition" else 0.0
        rows.append(
            {
                "model_version": mv.model_version,
                "labeller": "Amazon Rekognition" if kind == "rekognition" else "Local model",
                "images": mv.images,
                "labels": mv.labels,
                "cost_per_1000": per_1000,
                "cost_so_far": round(mv.images * per_1000 / 1000, 4),
            }
        )
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def agreement_frame(agreement: compare.Agreement) -> pd.DataFrame:
    """:func:`~labelkit.compare.labeller_agreement`'s per-label numbers as a DataFrame
    (most frequent labels first)."""
    rows = [
        {
            "label": la.name,
            "a_images": la.a_images,
            "b_images": la.b_images,
            "both": la.both,
            "either": la.either,
            "jaccard": round(la.jaccard, 4),
        }
        for la in agreement.labels
    ]
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def agreement_histogram(agreement: compare.Agreement, *, bins: int = 10) -> pd.DataFrame:
    """Images per per-image-Jaccard bin (0-1), to show how agreement is spread."""
    values = np.asarray(list(agreement.per_image.values()), dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    return pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:], "images": counts.astype(int)})
