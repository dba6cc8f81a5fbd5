"""Fixtures for the real-model tests: the exported models in the repository's model cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelkit.labelers.build import ensure_exported
from labelkit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# The repository's default caches (make model writes them). Anchored here because the
# shared conftest moves every test into its own temporary working directory.
MODEL_DIR = ROOT / Settings().resolved_model_dir
CONVERT_VENV = ROOT / Settings().data_dir / "build" / "tf-venv"


@pytest.fixture(scope="session")
def full_model_dir() -> Path:
    """Every local model exported/converted (a no-op after `make model`)."""
    from labelkit.labelers.detect_build import ensure_detector

    ensure_exported(["lite2"], MODEL_DIR, precisions=("fp32", "int8"))
    ensure_detector(MODEL_DIR, CONVERT_VENV)
    return MODEL_DIR
