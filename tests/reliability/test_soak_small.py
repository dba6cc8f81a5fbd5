"""The soak benchmark (``bench/soak.py``) at a small size: 60 photos of mixed sizes uploaded
from a thread while two real listener processes label them. Nothing lost, nothing duplicated
(no timing assertions: the machine is shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import run_soak

pytestmark = [pytest.mark.slow, pytest.mark.model]


def test_small_soak_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    # GIVEN two listener processes and an uploader thread
    # WHEN 60 photos are uploaded while they label
    report = run_soak(images=60, listeners=2, work_dir=tmp_path, timeout=180)
    # THEN every photo is labelled exactly once
    assert report.uploaded == 60 and not report.upload_errors
    assert report.labelled == 60 and report.failed == 0
    assert report.lost == 0 and report.duplicated_label_rows == 0
    assert report.ok and report.throughput_images_per_s > 0
