"""The Export page through the real app (AppTest): bundles, CSV for Excel, manifest source-refs."""

from __future__ import annotations

import pytest
import streamlit as st

from labelkit.auth import Principal
from labelkit.services import Services
from labelkit.settings import get_settings
from tests.dashboard.conftest import RED, app, drain, texts, upload


def _choose(at, fmt: str):  # type: ignore[no-untyped-def]
    at.selectbox(key="export_format").set_value(fmt).run()
    assert not at.exception
    return at


def test_export_page_offers_bundles_bom_and_says_what_source_ref_is(
    services: Services, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(services, alice, "red.jpg", RED)
    drain(services)
    at = app(alice, "app_pages/export.py")
    assert not at.exception
    # CSV: says it is not the Labels page's summary, and offers the Excel flavour
    at = _choose(at, "csv")
    assert "label summary" in texts(at)
    assert at.toggle(key="export_bom").label.startswith("For Excel")
    # COCO: a bundle with the images replaces the plain download
    at = _choose(at, "coco")
    assert "storage key" in texts(at)
    at.toggle(key="export_bundle").set_value(True).run()
    button = at.get("download_button")[0]
    assert button.proto.label == "Download labelkit-coco-bundle.zip"
    # Manifest in local mode: says source-ref is a file path; no s3 choice without the setting
    at = _choose(at, "manifest")
    at.toggle(key="export_bundle").set_value(False).run()
    assert "a file path on this machine" in texts(at) and "LABELKIT_MANIFEST_S3_URL" in texts(at)
    assert at.radio(key="export_source_ref").options == ["file paths on this machine"]

    # GIVEN a bucket configured for manifests, THEN the s3:// form is offered (and chosen)
    monkeypatch.setenv("LABELKIT_MANIFEST_S3_URL", "s3://bucket/photos")
    get_settings.cache_clear()
    st.cache_resource.clear()  # the app keeps its settings as a resource
    at = _choose(app(alice, "app_pages/export.py"), "manifest")
    radio = at.radio(key="export_source_ref")
    assert radio.options == ["file paths on this machine", "S3 URIs under s3://bucket/photos/"]
    assert radio.value == "s3" and "s3://bucket/photos/…" in texts(at)
