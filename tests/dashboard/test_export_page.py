"""The Export page through the real app (AppTest): bundles (made on disk, offered from there,
refused above the dashboard's limit), CSV for Excel, manifest source-refs."""

from __future__ import annotations

import zipfile

import pytest
import streamlit as st

from dashboard import downloads, web
from labelkit.auth import Principal
from labelkit.services import Services
from labelkit.settings import get_settings
from tests.dashboard.conftest import GREEN, RED, app, drain, texts, upload


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
    # COCO: a bundle with the images replaces the plain download (it is prepared first)
    at = _choose(at, "coco")
    assert "storage key" in texts(at)
    at.toggle(key="export_bundle").set_value(True).run()
    assert at.button(key="export_bundle_prepare").label == "Prepare labelkit-coco-bundle.zip"
    assert not at.get("download_button")
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


def _bundle_files(services: Services) -> list[str]:
    folder = downloads.directory(services.settings)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_bundle_is_made_on_disk_with_progress_then_offered_from_there(
    services: Services, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two photos, one uploaded under a Windows device name
    upload(services, alice, "red.jpg", RED)
    upload(services, alice, "CON.jpg", GREEN)
    drain(services)
    monkeypatch.setattr(downloads, "MOUNTED", False)  # served without the download route first
    monkeypatch.setattr(web, "SERVED", False)
    at = _choose(app(alice, "app_pages/export.py"), "coco")
    at.toggle(key="export_bundle").set_value(True).run()
    assert "Photos in the bundle: about" in texts(at) and "up to 2 GB" in texts(at)
    assert _bundle_files(services) == []  # nothing is made before it is asked for
    # WHEN the bundle is prepared
    at.button(key="export_bundle_prepare").click().run()
    assert not at.exception
    # THEN it is a file on the server (under a random name), offered for download with its size
    files = _bundle_files(services)
    assert len(files) == 2 and {f.rsplit(".", 1)[1] for f in files} == {"bin", "json"}
    token = files[0].rsplit(".", 1)[0]
    zf = zipfile.ZipFile(downloads.file_path(downloads.directory(services.settings), token))
    assert sorted(n for n in zf.namelist() if n.startswith("images/")) == [
        "images/_CON.jpg",
        "images/red.jpg",
    ]
    button = at.get("download_button")[0]
    assert (
        button.proto.label.startswith("Download labelkit-coco-bundle.zip (") and "kB)" in button.proto.label
    )
    assert "2 photos and" in texts(at) and "kept on the server for an hour" in texts(at)
    assert not at.get("button") or all(b.key != "export_bundle_prepare" for b in at.button)
    assert at.get("download_button")[0].proto.deferred_file_id  # read when clicked, not at every run

    # GIVEN the download route is mounted and served (dashboard/asgi.py), THEN the page links to it
    monkeypatch.setattr(downloads, "MOUNTED", True)
    at.run()
    assert not at.get("link_button")  # mounted, but the app is not served by dashboard/asgi.py
    monkeypatch.setattr(web, "SERVED", True)
    at.run()
    links = at.get("link_button")
    assert len(links) == 1 and links[0].proto.url == f"/download/{token}"
    assert not at.get("download_button")

    # WHEN the filters change, THEN the file made for the old ones is removed and a new one is asked for
    at.slider(key="export_conf").set_value(50).run()
    assert _bundle_files(services) == [] and not at.get("link_button")
    assert at.button(key="export_bundle_prepare").label == "Prepare labelkit-coco-bundle.zip"


def test_a_bundle_above_the_limit_is_refused_before_it_is_made_and_names_the_command(
    services: Services, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(services, alice, "red.jpg", RED)
    drain(services)
    # GIVEN a dashboard limit below what the photos weigh
    monkeypatch.setenv("LABELKIT_DASHBOARD_BUNDLE_MAX_BYTES", "100")
    get_settings.cache_clear()
    st.cache_resource.clear()
    at = _choose(app(alice, "app_pages/export.py"), "manifest")
    # WHEN a bundle is asked for
    at.toggle(key="export_bundle").set_value(True).run()
    # THEN it is refused with both sizes, the setting, and the command that makes it
    assert "more than the 100 bytes the dashboard bundles" in texts(at)
    assert "LABELKIT_DASHBOARD_BUNDLE_MAX_BYTES" in texts(at)
    assert [c.value for c in at.code] == [
        "labelkit export --format manifest --bundle --as alice --out labelkit-manifest-bundle.zip"
    ]
    # and nothing is offered or written
    assert all(b.key != "export_bundle_prepare" for b in at.button)
    assert not at.get("download_button") and _bundle_files(services) == []
