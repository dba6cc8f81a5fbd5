"""Helpers for the reliability tests: real listener processes, a photo corpus (both
from :mod:`labelkit.testing.workers`, which the benchmarks use too), and checks that
nothing was lost or duplicated."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus, LabelRow
from labelkit.services import Services
from labelkit.settings import Settings
from labelkit.testing.workers import (
    MODEL_DIR,
    ROOT,
    listener_env,
    local_listener_env,
    local_settings,
    make_owner,
    photos,
    start_listener,
    status_counts,
    stop,
    unsettled,
    upload_many,
    wait_until,
)

__all__ = [
    "MODEL_DIR",
    "ROOT",
    "assert_each_labelled_exactly_once",
    "listener_env",
    "local_listener_env",
    "local_settings",
    "make_owner",
    "photos",
    "point_dashboard_at",
    "start_listener",
    "status_counts",
    "stop",
    "unsettled",
    "upload_many",
    "wait_until",
]


def assert_each_labelled_exactly_once(services: Services, ids: list[str]) -> None:
    """Every image labelled, none failed, and no label row written twice."""
    with transaction(services.engine) as s:
        statuses = dict(s.execute(select(Image.id, Image.status).where(Image.id.in_(ids))).all())
        per_key = s.execute(
            select(LabelRow.image_id, LabelRow.model_version, LabelRow.name, LabelRow.instance, func.count())
            .group_by(LabelRow.image_id, LabelRow.model_version, LabelRow.name, LabelRow.instance)
            .having(func.count() > 1)
        ).all()
        labelled_with_rows = s.scalar(select(func.count(func.distinct(LabelRow.image_id))))
        versions = s.scalars(select(func.distinct(LabelRow.model_version))).all()
    missing = [i for i in ids if statuses.get(i) != ImageStatus.LABELLED]
    assert not missing, f"{len(missing)} images not labelled: {[statuses.get(i) for i in missing][:5]}"
    assert per_key == [], f"duplicated label rows: {per_key[:5]}"
    assert labelled_with_rows == len(ids)
    assert len(versions) == 1


def point_dashboard_at(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make an AppTest of the dashboard use the same database, folder and queue as ``settings``."""
    import streamlit as st

    from labelkit.settings import get_settings

    for name, value in {
        "LABELKIT_DATA_DIR": str(settings.data_dir),
        "LABELKIT_MODEL_DIR": str(settings.resolved_model_dir),
        "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": str(settings.queue_visibility_timeout),
        "LABELKIT_QUEUE_MAX_RECEIVES": str(settings.queue_max_receives),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
