"""The Labels page tells the truth (issue 16, item 4): review precision says "no reviews yet"
rather than "None", every bar of the top labels keeps its name, and the over-time chart
spans the data (first to last activity) in hours, days or weeks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import update

from labelkit import analytics
from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import Image, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import ImageFeatures, Label, LabelResult
from labelkit.features import embedding
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


def test_taught_labels_are_learned_from_the_button_and_shown_with_their_quality(
    services: Services, alice: Principal
) -> None:
    # GIVEN eight photos: four alike (a cluster of embeddings) and four of another kind, and
    # alice's "Sunset" on three of the alike ones
    ids = [upload(services, alice, f"p{i}.jpg", jpeg((30 * i, 10, 200 - 20 * i))) for i in range(8)]
    drain(services)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2, embedding.EMBED_DIM))
    with transaction(services.engine) as s:
        for i, image_id in enumerate(ids):
            vec = centres[i // 4] + 0.1 * rng.standard_normal(embedding.EMBED_DIM)
            features = ImageFeatures(embedding=embedding.pack(vec), embedding_model="test-embedding")
            worker_q.save_features(session=s, image_id=image_id, features=features)
        for image_id in ids[:3]:
            label_q.set_human_label(
                session=s, viewer=alice.viewer, image_id=image_id, name="Sunset", review=ReviewState.CONFIRMED
            )
    st.cache_data.clear()
    at = app(alice, "app_pages/labels.py")
    assert not at.exception
    assert any("Nothing taught yet" in c.value for c in at.caption)
    # WHEN alice asks it to learn now
    at.button(key="labels_learn").click().run()
    assert not at.exception
    # THEN the page names the taught label with its cross-validated quality and suggestions
    lines = [m.value.replace("\\", "") for m in at.markdown if "taught from" in m.value]  # unescaped
    assert len(lines) == 1 and "Sunset: taught from 3 photos; precision" in lines[0], lines
    assert "suggested on 1 photo at" in lines[0]
    # AND the fourth alike photo waits first in Review, marked as a suggestion
    review = app(alice, "app_pages/review.py")
    assert not review.exception
    assert any("Sunset" in m.value and "suggested" in m.value for m in review.markdown)


def _thresholds_table(at) -> pd.DataFrame:
    (table,) = [d.value for d in at.dataframe if "suggested minimum" in d.value.columns]
    return table


def test_a_minimum_from_reviews_is_applied_from_the_labels_page(services: Services, alice: Principal) -> None:
    # GIVEN alice's "Cat" at 10..100: confirmed from 50, rejected below, one unreviewed at 15
    ids = {}
    for c in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 15):
        ids[c] = upload(services, alice, f"p{c}.jpg", jpeg((2 * c, 50, 90)))
    drain(services)
    with transaction(services.engine) as s:
        for c, image_id in ids.items():
            result = LabelResult(model_version="m-1", labels=[Label(name="Cat", confidence=float(c))])
            worker_q.save_model_labels(session=s, image_id=image_id, result=result)
            if c != 15:
                review = ReviewState.CONFIRMED if c >= 50 else ReviewState.REJECTED
                label_q.set_human_label(
                    session=s, viewer=alice.viewer, image_id=image_id, name="Cat", review=review
                )
    st.cache_data.clear()
    at = app(alice, "app_pages/labels.py")
    assert not at.exception
    # THEN the thresholds table shows Cat's precision with its interval and the suggestion
    table = _thresholds_table(at)
    cat = table[table["label"] == "Cat"].iloc[0]
    assert cat["reviews"] == 10 and str(cat["precision"]).startswith("60% (")
    assert (cat["suggested minimum"], cat["photos now"], cat["photos after"]) == (50.0, 7, 6)
    # WHEN alice applies it
    at.selectbox(key="thresholds_label").select("Cat").run()
    at.button(key="thresholds_apply").click().run()
    assert not at.exception
    # THEN the unreviewed Cat at 15 is not carried any more, and the page says what changed
    with transaction(services.engine) as s:
        cats = image_q.list_images(session=s, viewer=alice.viewer, flt=image_q.ImageFilter(label="Cat"))
    assert {i.id for i in cats.items} == {ids[c] for c in (50, 60, 70, 80, 90, 100)}
    table = _thresholds_table(at)
    assert table[table["label"] == "Cat"].iloc[0]["minimum now"] == 50.0
