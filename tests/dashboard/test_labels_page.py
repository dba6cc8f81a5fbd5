"""The Labels page tells the truth (issue 16, item 4): review precision says "no reviews yet"
rather than "None", every bar of the top labels keeps its name, and the over-time chart
spans the data (first to last activity) in hours, days or weeks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st
from sqlalchemy import update

from labelkit import analytics
from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import Image, ReviewState
from labelkit.db.queries import labels as label_q
from labelkit.services import Services
from tests.dashboard.conftest import BLUE, RED, app, drain, elements, jpeg, upload


def _specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in elements(at, "vega_lite_chart")]


def test_precision_says_no_reviews_yet_until_someone_reviews(services: Services, alice: Principal) -> None:
    # GIVEN two labelled photos and one review of "Red Thing"
    red = upload(services, alice, "red.jpg", RED)
    upload(services, alice, "blue.jpg", BLUE)
    drain(services)
    with transaction(services.engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice.viewer, image_id=red, name="Red Thing", review=ReviewState.CONFIRMED
        )
    st.cache_data.clear()
    # WHEN alice opens the Labels page
    at = app(alice, "app_pages/labels.py")
    assert not at.exception
    # THEN the reviewed label shows its precision, the others say so in words (never "None")
    shown = dict(zip(at.dataframe[0].value["label"], at.dataframe[0].value["precision"], strict=True))
    assert shown == {"Thing": "no reviews yet", "Red Thing": "100%", "Blue Thing": "no reviews yet"}
    # AND the CSV keeps the numbers (blank where nobody reviewed)
    csv = at.download_button(key="labels_csv")
    assert csv.proto.label == "Download label summary (CSV)"
    with transaction(services.engine) as s:
        table = analytics.label_table(session=s, viewer=alice.viewer)
    assert pd.isna(table.set_index("label").loc["Thing", "precision"])
    rows = {line.split(",")[0]: line for line in analytics.to_csv(table).decode().splitlines()[1:]}
    assert rows["Thing"].endswith(",0,0,") and rows["Red Thing"].endswith(",1,0,1.0")


def test_every_bar_of_the_top_labels_is_named(services: Services, alice: Principal) -> None:
    upload(services, alice, "red.jpg", RED)
    drain(services)
    st.cache_data.clear()
    at = app(alice, "app_pages/labels.py")
    bars = _specs(at)[0]
    y = bars["encoding"]["y"]
    # Vega-Lite hides labels it thinks overlap (every other one at 15 bars): not here
    assert y["field"] == "label" and y["axis"]["labelOverlap"] is False
    assert y["axis"]["labelLimit"] >= 200
    assert bars["height"] >= 24 * 2  # room per bar, for every name


def _at(services: Services, image_ids: list[str], times: list[datetime]) -> None:
    with transaction(services.engine) as s:
        for image_id, t in zip(image_ids, times, strict=True):
            s.execute(
                update(Image)
                .where(Image.id == image_id)
                .values(created_at=t, labelled_at=t + timedelta(minutes=1))
            )


def test_over_time_spans_the_data_in_a_bin_that_fits(services: Services, alice: Principal) -> None:
    ids = [upload(services, alice, f"p{i}.jpg", jpeg((250 - 20 * i, 20 * i, 0))) for i in range(3)]
    drain(services)
    # GIVEN three photos uploaded within one afternoon
    base = datetime(2026, 3, 4, 13, 20, tzinfo=UTC)
    _at(services, ids, [base, base + timedelta(hours=1), base + timedelta(hours=3, minutes=30)])
    with transaction(services.engine) as s:
        frame, unit = analytics.activity_timeline(session=s, viewer=alice.viewer)
    # THEN the chart is per hour, from the first to the last activity, not 30 days
    assert unit == "hour"
    uploads = frame[frame["series"] == "uploads"].set_index("time")["images"]
    assert list(uploads.index) == list(pd.date_range("2026-03-04 13:00", "2026-03-04 16:00", freq="h"))
    assert list(uploads) == [1, 1, 0, 1]
    assert frame[frame["series"] == "labelled"]["images"].sum() == 3
    st.cache_data.clear()
    at = app(alice, "app_pages/labels.py")
    assert "Per hour, from your first upload to the latest activity (UTC)." in [c.value for c in at.caption]
    assert _specs(at)[2]["encoding"]["x"]["field"] == "time"
    # GIVEN the same photos spread over three weeks THEN per day, first day to last
    _at(services, ids, [base, base + timedelta(days=2), base + timedelta(days=20)])
    with transaction(services.engine) as s:
        frame, unit = analytics.activity_timeline(session=s, viewer=alice.viewer)
    uploads = frame[frame["series"] == "uploads"]
    assert unit == "day" and len(uploads) == 21 and uploads["images"].sum() == 3
    assert uploads["time"].min() == pd.Timestamp("2026-03-04") and uploads["time"].max() == pd.Timestamp(
        "2026-03-24"
    )
    # GIVEN a year THEN per week (Mondays), every upload counted once
    _at(services, ids, [base, base + timedelta(days=100), base + timedelta(days=365)])
    with transaction(services.engine) as s:
        frame, unit = analytics.activity_timeline(session=s, viewer=alice.viewer)
    uploads = frame[frame["series"] == "uploads"]
    assert unit == "week" and uploads["images"].sum() == 3
    assert all(t.weekday() == 0 for t in uploads["time"]) and 50 <= len(uploads) <= 54


def test_over_time_without_images(services: Services, alice: Principal) -> None:
    with transaction(services.engine) as s:
        frame, unit = analytics.activity_timeline(session=s, viewer=alice.viewer)
    assert frame.empty and list(frame.columns) == ["time", "series", "images"]


def test_the_headline_counts_labelled_images_and_names_the_most_common_label(
    services: Services, alice: Principal
) -> None:
    """Issue 24 item 7: "Labelled images (top label) 16" for 43 labelled images read as the
    number labelled. The page says how many are labelled, and names the top label apart."""
    # GIVEN three labelled photos (the fake labeller gives each "Thing" and its colour), two of
    # them red, and "Thing" rejected on two: the most common label is on fewer than all
    ids = [
        upload(services, alice, name, data)
        for name, data in (("red.jpg", RED), ("blue.jpg", BLUE), ("red2.jpg", jpeg((200, 30, 30))))
    ]
    drain(services)
    with transaction(services.engine) as s:
        for image_id in ids[1:]:
            label_q.set_human_label(
                session=s, viewer=alice.viewer, image_id=image_id, name="Thing", review=ReviewState.REJECTED
            )
    st.cache_data.clear()
    at = app(alice, "app_pages/labels.py")
    shown = {m.label: m.value for m in at.metric}
    # THEN the count is of labelled images, and the most common label is named with its count
    assert shown["Labelled images"] == "3"
    assert shown["Most common label"] == "Red Thing"
    (most,) = [m for m in at.metric if m.label == "Most common label"]
    assert most.help.startswith("On 2 labelled images")
    assert not [m for m in at.metric if "top label" in m.label]
