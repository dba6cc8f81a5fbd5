"""The dashboard load benchmark (``bench.dashboard_load``) at a tiny size, on SQLite and MariaDB.

GIVEN a database filled by the query benchmark's generator WHEN two sessions (a user and the
admin) render the Gallery and Labels pages of the real app at once THEN every render shows
what that viewer owns, raises nothing, and is timed. No timing thresholds.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bench.dashboard_load import (
    GALLERY_PAGE_SIZE,
    LoadResult,
    Sample,
    Who,
    run_load,
    summary,
    table,
)
from bench.queries import GenerateReport, generate
from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import ImageTerm, LabelRow, LabelSource, TermKind

# Real Streamlit sessions over a generated database: `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


def test_two_sessions_render_gallery_and_labels_without_errors(engine: Engine, db_url: str) -> None:
    gen = generate(engine, images=300, labels_per_image=10, users=20, chunk=300)
    with transaction(engine) as s:
        # The Labels page lists every name an image carries as a label or a parent (the gallery
        # filter's "images with X"), and names people reviewed.
        carried = s.scalars(
            select(ImageTerm.term).where(ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT])).distinct()
        )
        reviewed = s.scalars(select(LabelRow.name).where(LabelRow.source == LabelSource.HUMAN).distinct())
        distinct_labels = len({*carried, *reviewed})

    result = run_load(db_url, sessions=2, reruns=1, timeout=300)

    assert [(w.role, w.images) for w in result.sessions] == [
        ("user", gen.heaviest_user_images),
        ("admin", gen.images),
    ]
    assert result.errors == [], result.errors
    assert len(result.samples) == 2 * 2 * 2  # sessions x pages x (first + 1 rerun)
    assert all(s.seconds > 0 for s in result.samples)
    assert result.wall_seconds >= max(s.seconds for s in result.samples)
    assert GALLERY_PAGE_SIZE <= result.photos <= 2 * GALLERY_PAGE_SIZE  # the two first pages (overlapping)
    for s in result.samples:
        who = result.sessions[s.session]
        if s.page == "gallery":
            # A full first page of cards, each with a thumbnail made from the photo written for it.
            assert s.rows == s.thumbnails == min(GALLERY_PAGE_SIZE, who.images), s
        else:
            assert 0 < s.rows <= distinct_labels, s
            if who.role == "admin":
                assert s.rows == distinct_labels, s

    rows = summary(result)
    assert [(r["page"], r["kind"], r["renders"], r["errors"]) for r in rows] == [
        ("gallery", "first", 2, 0),
        ("gallery", "rerun", 2, 0),
        ("labels", "first", 2, 0),
        ("labels", "rerun", 2, 0),
    ]
    assert all(0 < r["p50"] <= r["p95"] <= r["max"] for r in rows)
    assert all(1 <= r["busy"] <= 2 for r in rows)
    assert rows[0]["busy"] == 2  # both sessions start at once
    text = table(result, gen, "test db", cores=2, reruns=1)
    assert "2 simultaneous sessions" in text and "8 renders, 0 errors" in text
    assert "| gallery | first | 2 |" in text and "failed" not in text


def test_a_failed_render_is_counted_and_reported() -> None:
    who = [Who(Principal(user_id="u1", username="u1"), 10)]
    result = LoadResult(
        sessions=who,
        samples=[
            Sample(0, "user", "gallery", "first", 0.5, 10, 10, start=0.0, end=0.5),
            Sample(0, "user", "gallery", "rerun", 0.2, 0, 0, error="KeyError: boom", start=0.5, end=0.7),
        ],
        wall_seconds=0.7,
    )
    assert len(result.errors) == 1
    text = table(result, GenerateReport(images=10, users=1), "test db", cores=2, reruns=1)
    assert "2 renders, 1 errors" in text
    assert "| gallery | rerun | 1 | 0.20 | 0.20 | 0.20 | 0.00 | 1.0 | 1 |" in text
    assert "**1 renders failed**, e.g.: KeyError: boom" in text
