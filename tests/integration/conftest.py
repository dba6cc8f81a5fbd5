"""Fixtures shared by the integration tests that run the product's own commands in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labelkit.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for a fresh local install in ``tmp_path`` (SQLite, local store and queue), run
    from there, with the checkout's exported models (``labelkit upload --label`` labels with them)."""
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_MODEL_DIR", str(ROOT / "data" / "models"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
