"""``python -m labelkit.demo`` loads the package-shipped photos through the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelkit import demo
from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.services import build_services
from labelkit.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.model
def test_demo_uploads_and_labels_the_shipped_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_MODEL_DIR", str(ROOT / "data" / "models"))
    get_settings.cache_clear()
    assert demo.main(["--user", "demo", "--password", "demo-password-1"]) == 0
    services = build_services(Settings(data_dir=tmp_path / "data"))
    principal = LocalAuth(services.engine).sign_in("demo", "demo-password-1")
    with transaction(services.engine) as s:
        page = image_q.list_images(session=s, viewer=principal.viewer, page_size=100)
        cats = image_q.list_images(session=s, viewer=principal.viewer, flt=image_q.ImageFilter(label="Cat"))
    assert page.total == len(demo.shipped_photos()) >= 10
    assert {i.status for i in page.items} == {ImageStatus.LABELLED}
    assert [i.original_name for i in cats.items] == ["chelsea the cat.png"]
    # Running it again uploads nothing twice.
    results, _ = demo.load_demo(username="demo", password=None, label=False)
    assert {r.outcome for r in results} == {"duplicate"}
