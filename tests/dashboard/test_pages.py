"""Every page through the real app (AppTest), signed in, on SQLite and MariaDB."""

from __future__ import annotations

import pytest
import streamlit as st
from sqlalchemy import select

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus, LabelRow, LabelSource, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import worker as worker_q
from labelkit.services import Services
from tests.dashboard.conftest import BLUE, GREEN, RED, app, drain, elements, jpeg, texts, upload


def _status(services: Services, who: Principal, image_id: str) -> ImageStatus:
    with transaction(services.engine) as s:
        return image_q.get_image(session=s, viewer=who.viewer, image_id=image_id).status


def _gallery_names(at) -> list[str]:
    return [m.value.strip("*").replace("\\", "") for m in at.main.markdown if m.value.startswith("**")]


def test_upload_many_files_reports_each_outcome(services: Services, alice: Principal) -> None:
    # GIVEN the upload page
    at = app(alice, "app_pages/upload.py")
    assert at.file_uploader[0].accept_multiple_files
    # WHEN four files are dropped at once: two photos, a copy of one, and a text file
    at.file_uploader[0].set_value(
        [
            ("red.jpg", RED, "image/jpeg"),
            ("green.jpg", GREEN, "image/jpeg"),
            ("red again.jpg", RED, "image/jpeg"),
            ("notes.jpg", b"just some text, honest", "image/jpeg"),
        ]
    )
    at.run()
    # THEN each file has its outcome, with reasons
    assert not at.exception
    assert [m.value for m in at.metric] == ["2", "1", "1"]
    shown = texts(at)
    assert "red.jpg** — queued for labelling" in shown
    assert "red again.jpg** — Already uploaded as “red.jpg”." in shown
    assert "notes.jpg** — rejected: Not an image: the file looks like plain text." in shown
    # AND the new images are in the gallery at once, pending, with auto-refresh on
    at.switch_page("app_pages/gallery.py").run()
    assert sorted(_gallery_names(at)) == ["green.jpg", "red.jpg"]
    assert "Labelling in progress" in texts(at)
    # AND once labelled, the gallery shows it
    drain(services)
    at.run()
    assert "Labelling in progress" not in texts(at)
    # each card names its most specific label ("Red Thing", not its parent "Thing")
    assert "Red Thing · " in texts(at)


def test_upload_refuses_files_over_the_size_limit_with_intake_message(
    services: Services, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(alice, "app_pages/upload.py")
    limit_mb = services.settings.max_upload_bytes / 2**20
    assert at.file_uploader[0].proto.max_upload_size_mb > limit_mb  # Streamlit's cap is above intake's
    # (issue 24, item 9) one byte over the limit: both sizes exact, so they differ
    assert services.settings.max_upload_bytes == 20 * 2**20
    big = RED + b"\0" * (services.settings.max_upload_bytes + 1 - len(RED))
    at.file_uploader[0].set_value(("huge.jpg", big, "image/jpeg")).run()
    assert (
        "huge.jpg** — rejected: File is too big: 20,971,521 bytes; the limit is 20,971,520 bytes (20 MiB)."
    ) in texts(at)


def test_gallery_filters_by_label_parent_status_and_confidence(services: Services, alice: Principal) -> None:
    for name, data in (("red.jpg", RED), ("green.jpg", GREEN), ("blue.jpg", BLUE)):
        upload(services, alice, name, data)
    drain(services)
    upload(services, alice, "later.jpg", jpeg((200, 200, 30)))
    # ?label= (as linked from the Labels page) filters; the parent "Thing" finds all children
    at = app(alice, "app_pages/gallery.py", label="Red Thing")
    assert _gallery_names(at) == ["red.jpg"]
    at.text_input(key="flt_label").set_value("Thing").run()
    assert sorted(_gallery_names(at)) == ["blue.jpg", "green.jpg", "red.jpg"]
    at.text_input(key="flt_label").set_value("").run()
    assert len(_gallery_names(at)) == 4
    at.selectbox(key="flt_status").set_value("pending").run()
    assert _gallery_names(at) == ["later.jpg"]
    at.selectbox(key="flt_status").set_value(None)
    at.slider(key="flt_conf").set_value(95).run()
    assert "No images match these filters." in texts(at)
    at.slider(key="flt_conf").set_value(0)
    at.selectbox(key="flt_category").set_value("Test Category").run()
    assert len(_gallery_names(at)) == 3


def test_gallery_search_box(services: Services, alice: Principal) -> None:
    # GIVEN labelled photos (the fake labeller: "<Colour> Thing", parent "Thing")
    for name, data in (("red.jpg", RED), ("green.jpg", GREEN), ("blue.jpg", BLUE)):
        upload(services, alice, name, data)
    drain(services)
    at = app(alice, "app_pages/gallery.py")
    assert at.text_input(key="flt_label").placeholder == "dog beach · dog -cat · dog | cat"
    # WHEN searching with the syntax, in any case
    at.text_input(key="flt_label").set_value('THING -"red thing"').run()
    # THEN the matches, each saying why it matched, and the search is in the URL
    assert sorted(_gallery_names(at)) == ["blue.jpg", "green.jpg"]
    assert ":material/search: Thing" in texts(at)
    assert at.query_params["label"] == 'THING -"red thing"'
    at.text_input(key="flt_label").set_value('"red thing" | "blue thing"').run()
    assert sorted(_gallery_names(at)) == ["blue.jpg", "red.jpg"]
    # WHEN nothing matches, it says so and offers the nearest labels
    at.text_input(key="flt_label").set_value("red thingy").run()
    assert _gallery_names(at) == []
    assert "No photos match" in texts(at)
    assert "suggest_Red Thing" in [b.key for b in at.button]
    at.button(key="suggest_Red Thing").click().run()
    assert at.text_input(key="flt_label").value == '"Red Thing"'
    assert _gallery_names(at) == ["red.jpg"]


def test_gallery_empty_state(services: Services, alice: Principal) -> None:
    at = app(alice, "app_pages/gallery.py")
    assert "No images yet — upload some." in texts(at)


def test_image_page_confirm_reject_add(services: Services, alice: Principal) -> None:
    image_id = upload(services, alice, "red.jpg", RED)
    drain(services)
    at = app(alice, "app_pages/image.py", image=image_id)
    assert not at.exception
    assert "Red Thing" in texts(at) and "parents: Thing" in texts(at) and "1 box" in texts(at)
    assert at.image  # the display copy with its box
    at.button(key="confirm::Red Thing").click().run()
    at.button(key="reject::Thing").click().run()
    at.text_input(key="new_label::0").input("Tomato")
    at.button(key="add_label").click().run()
    at.run()  # the page reruns itself after an edit; AppTest needs the explicit run
    assert "Confirmed] by alice" in texts(at) and "Rejected] by alice" in texts(at)
    assert "Tomato" in texts(at)
    with transaction(services.engine) as s:
        human = {
            r.name: (r.review, r.created_by)
            for r in s.scalars(select(LabelRow).where(LabelRow.source == LabelSource.HUMAN))
        }
        model = s.scalars(select(LabelRow).where(LabelRow.source == LabelSource.MODEL)).all()
    assert human == {
        "Red Thing": (ReviewState.CONFIRMED, alice.user_id),
        "Thing": (ReviewState.REJECTED, alice.user_id),
        "Tomato": (ReviewState.CONFIRMED, alice.user_id),
    }
    assert all(r.review == ReviewState.UNREVIEWED for r in model)  # model rows untouched


def test_image_page_delete_with_confirmation(services: Services, alice: Principal) -> None:
    image_id = upload(services, alice, "red.jpg", RED)
    at = app(alice, "app_pages/image.py", image=image_id)
    at.button(key="delete").click().run()
    assert "cannot be undone" in texts(at)
    at.button(key="delete_cancel").click().run()
    assert _status(services, alice, image_id) == ImageStatus.PENDING
    at.button(key="delete").click().run()
    at.button(key="delete_confirm").click().run()
    with transaction(services.engine) as s:
        assert image_q.list_images(session=s, viewer=alice.viewer).total == 0
    assert services.queue.stats().visible == 0
    assert "Deleted red.jpg." in texts(at)


def test_image_page_retry_of_a_failed_image(services: Services, alice: Principal) -> None:
    image_id = upload(services, alice, "red.jpg", RED)
    services.queue.purge_matching(image_id)
    with transaction(services.engine) as s:
        worker_q.mark_failed(session=s, image_id=image_id, reason="The model crashed.")
    at = app(alice, "app_pages/image.py", image=image_id)
    assert "Labelling failed: The model crashed" in texts(at)
    at.button(key="retry").click().run()
    assert _status(services, alice, image_id) == ImageStatus.PENDING
    assert services.queue.stats().visible == 1
    drain(services)
    assert _status(services, alice, image_id) == ImageStatus.LABELLED


def test_missing_image_id(services: Services, alice: Principal) -> None:
    at = app(alice, "app_pages/image.py", image="does-not-exist")
    assert [t.value for t in at.title] == ["Image not found"]
    at = app(alice, "app_pages/image.py")
    assert [t.value for t in at.title] == ["Image not found"]


def test_labels_page_charts_table_and_csv(services: Services, alice: Principal) -> None:
    at = app(alice, "app_pages/labels.py")
    assert "No labels yet" in texts(at)
    for name, data in (("red.jpg", RED), ("red2.jpg", jpeg((230, 20, 40))), ("blue.jpg", BLUE)):
        upload(services, alice, name, data)
    drain(services)
    st.cache_data.clear()  # the page caches its queries for 15 s; the worker ran behind its back
    at = app(alice, "app_pages/labels.py")
    assert not at.exception
    charts = elements(at, "vega_lite_chart")
    assert len(charts) == 5  # per label, confidence, over time, categories, co-occurrence
    table = at.dataframe[0].value
    assert list(table["label"]) == ["Thing", "Red Thing", "Blue Thing"]
    assert list(table["images"]) == [3, 2, 1]
    csv = at.download_button(key="labels_csv")
    assert csv.proto.label == "Download label summary (CSV)"
    # Choosing a label opens the filtered gallery
    at.selectbox(key="labels_open").set_value("Red Thing").run()
    at.button(key="labels_open_btn").click().run()
    assert sorted(_gallery_names(at)) == ["red.jpg", "red2.jpg"]


def test_review_accept_reject_and_bulk(services: Services, alice: Principal) -> None:
    red, blue = upload(services, alice, "red.jpg", RED), upload(services, alice, "blue.jpg", BLUE)
    drain(services)
    at = app(alice, "app_pages/review.py")
    assert "2 photos with 4 labels waiting for review" in texts(at)
    # one label of one photo at a time ...
    at.button(key=f"accept::{red}::Red Thing").click().run()
    at.button(key=f"reject::{red}::Thing").click().run()
    assert "1 photo with 2 labels waiting for review" in texts(at)
    # ... or all of a ticked photo's labels at once
    at.checkbox(key=f"rsel::{blue}").check().run()
    at.button(key="accept_selected").click().run()
    assert "Nothing to review" in texts(at)
    with transaction(services.engine) as s:
        reviews = {
            (r.image_id, r.name): r.review
            for r in s.scalars(select(LabelRow).where(LabelRow.source == LabelSource.HUMAN))
        }
    assert reviews == {
        (red, "Red Thing"): ReviewState.CONFIRMED,
        (red, "Thing"): ReviewState.REJECTED,
        (blue, "Blue Thing"): ReviewState.CONFIRMED,
        (blue, "Thing"): ReviewState.CONFIRMED,
    }


def test_pipeline_page_for_admins_with_retry_and_redrive(
    services: Services, alice: Principal, bob: Principal
) -> None:
    # GIVEN bob's image that failed and whose message went to the dead-letter queue
    image_id = upload(services, bob, "red.jpg", RED)
    services.queue.visibility_timeout = 0  # type: ignore[attr-defined]
    for _ in range(services.settings.queue_max_receives + 1):
        services.queue.receive(max_messages=1)
    with transaction(services.engine) as s:
        worker_q.mark_failed(session=s, image_id=image_id, reason="Labelling failed after 3 attempts: boom")
    assert services.queue.stats().dead == 1
    # WHEN the admin opens the pipeline page
    at = app(alice, "app_pages/pipeline.py")
    assert not at.exception
    assert [m.value for m in at.metric][:3] == ["0", "0", "1"]
    assert "boom" in texts(at) and "Dead letters (1)" in texts(at)
    # THEN a dead letter can be redriven and a failed image retried
    dead = services.queue.dead_letters()[0]
    at.button(key=f"redrive::{dead.message_id}").click().run()
    assert services.queue.stats().dead == 0
    at.button(key=f"retry::{image_id}").click().run()
    assert _status(services, bob, image_id) == ImageStatus.PENDING
