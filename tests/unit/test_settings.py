"""Settings: defaults need no edits; environment switches adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labelkit.queue import make_queue
from labelkit.settings import Settings, get_settings
from labelkit.storage import make_store


def test_defaults_are_local_and_need_no_config() -> None:
    s = Settings()
    assert s.resolved_database_url == "sqlite:///data/labelkit.db"
    assert s.resolved_storage_url == "data/images"
    assert s.queue_url == "local" and not s.uses_sqs and not s.uses_s3
    assert s.labeler_names == ["local"] and s.local_model == "lite2"
    assert s.max_upload_bytes == 20 * 1024 * 1024 and s.max_pixels == 50_000_000


def test_environment_switches_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELKIT_DATABASE_URL", "mysql+pymysql://app@db.example/labelkit")
    monkeypatch.setenv("LABELKIT_STORAGE_URL", "s3://bucket/some/prefix")
    monkeypatch.setenv("LABELKIT_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs")
    monkeypatch.setenv("LABELKIT_LABELER", "local, rekognition")
    get_settings.cache_clear()
    s = get_settings()
    assert s.resolved_database_url.startswith("mysql+pymysql://")
    assert s.uses_s3 and s.uses_sqs and s.labeler_names == ["local", "rekognition"]
    store = make_store(s)  # no AWS call is made building adapters
    assert store.bucket == "bucket" and store.full_key("users/u/i.jpg") == "some/prefix/users/u/i.jpg"
    assert type(make_queue(s)).__name__ == "SqsQueue"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("LABELKIT_MAX_LABELS=7\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().max_labels == 7


def test_unknown_labeler_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="unknown labeler"):
        Settings(labeler="clip")


def test_local_models_setting_is_validated_and_ordered() -> None:
    from labelkit.settings import Settings

    assert Settings().local_model_names == ("classifier", "detector", "faces", "text", "moderation")
    assert Settings(local_models="moderation,text,classifier").local_model_names == (
        "classifier",
        "text",
        "moderation",
    )
    assert Settings(local_models="faces, classifier").local_model_names == ("classifier", "faces")
    with pytest.raises(ValueError, match="unknown local model"):
        Settings(local_models="classifier,clip")
    with pytest.raises(ValueError):
        Settings(local_models=" , ")
