"""``labelkit upload PATH... --user NAME`` (issue 27 item 4): a folder through the same intake as
the dashboard, a verdict per file, refusals in a CSV, resumable, accounts made on request, and
S3 prefixes (moto)."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
import skimage.data
from moto import mock_aws
from PIL import Image

from labelkit import bulk_import, upload
from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.services import build_services
from labelkit.settings import Settings, get_settings

PASSWORD = "correct horse battery staple 9"


def _jpeg(seed: int, size: tuple[int, int] = (120, 90)) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three photos, a text file named .jpg, notes, a hidden folder and a subfolder."""
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    for i in range(3):
        (root / f"p{i}.jpg").write_bytes(_jpeg(i))
    (root / "broken.JPG").write_bytes(b'=HYPERLINK("http://x") not a photo')
    (root / "notes.txt").write_text("not a photo")
    (root / ".thumbnails" / "t.jpg").write_bytes(_jpeg(10))
    (root / "trip" / "deep.png").write_bytes(_png(skimage.data.coffee()))
    return root


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _names(settings: Settings, username: str) -> list[str]:
    services = build_services(settings)
    viewer = LocalAuth(services.engine).sign_in(username, PASSWORD).viewer
    with transaction(services.engine) as s:
        page = image_q.list_images(session=s, viewer=viewer, page_size=100)
    return sorted(i.original_name for i in page.items)


def _account(settings: Settings, username: str) -> None:
    LocalAuth(build_services(settings).engine).sign_up(username, PASSWORD)


def test_a_folder_goes_through_the_intake_with_a_verdict_per_file(
    env: Settings, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _account(env, "alice")
    # WHEN alice uploads the folder (not recursive)
    code = upload.main([str(folder), "--user", "alice"])
    out = capsys.readouterr().out
    # THEN the three photos are in, the text file named .jpg is refused, and the rest left out
    assert code == 1  # some were refused
    assert _names(env, "alice") == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert re.search(r"^refused\s+\S*broken\.JPG\s+\(Not an image", out, re.M), out
    assert len(re.findall(r"^accepted\s", out, re.M)) == 3
    assert "notes.txt" not in out and "t.jpg" not in out and "deep.png" not in out
    assert "3 accepted, 0 skipped (already uploaded), 1 refused" in out
    # and the refusals CSV names the file and why, safe to open in a spreadsheet
    written = re.search(r"the refused files and why: (\S+\.csv)", out)
    assert written, out
    rows = list(csv.DictReader(Path(written.group(1)).open(encoding="utf-8")))
    assert [Path(r["file"]).name for r in rows] == ["broken.JPG"]
    assert rows[0]["reason"].startswith("Not an image")


def test_it_resumes_after_a_stop_and_sends_nothing_twice(
    env: Settings, folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _account(env, "alice")
    # GIVEN an import stopped (Ctrl-C) after its third file (broken.JPG, p0.jpg, p1.jpg)
    real = bulk_import.import_one
    calls = []

    def stopping(*args: object, **kwargs: object) -> bulk_import.FileVerdict:
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(upload, "import_one", stopping)
    assert upload.main([str(folder), "--user", "alice", "-r"]) == 130
    assert "run the same command again" in capsys.readouterr().out
    assert len(_names(env, "alice")) == 2
    # WHEN it runs again THEN the two are skipped (without decoding) and the rest go in
    monkeypatch.setattr(upload, "import_one", real)
    assert upload.main([str(folder), "--user", "alice", "-r", "--refusals", "r.csv"]) == 1
    out = capsys.readouterr().out
    assert "2 accepted, 2 skipped (already uploaded), 1 refused" in out
    assert _names(env, "alice") == ["deep.png", "p0.jpg", "p1.jpg", "p2.jpg"]
    # and a third run changes nothing
    assert upload.main([str(folder), "--user", "alice", "-r", "--refusals", "r.csv"]) == 1
    assert "0 accepted, 4 skipped" in capsys.readouterr().out
    assert len(_names(env, "alice")) == 4


def test_the_same_photos_go_to_another_account_too(env: Settings, folder: Path) -> None:
    _account(env, "admin")  # the first account is the admin, who sees everyone's photos
    _account(env, "alice")
    _account(env, "bob")
    upload.main([str(folder), "--user", "alice", "--quiet"])
    upload.main([str(folder), "--user", "bob", "--quiet"])
    assert _names(env, "bob") == _names(env, "alice") == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_an_account_is_made_only_when_asked(
    env: Settings, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no account named carol
    assert upload.main([str(folder / "p0.jpg"), "--user", "carol"]) == 2
    assert "no account named 'carol'" in capsys.readouterr().err
    # WHEN asked to make it THEN it prints a password that signs in, and the photo is hers
    assert upload.main([str(folder / "p0.jpg"), "--user", "carol", "--create-user"]) == 0
    out = capsys.readouterr().out
    found = re.search(r"created account 'carol' with password '([^']+)'", out)
    assert found, out
    principal = LocalAuth(build_services(env).engine).sign_in("carol", found.group(1))
    with transaction(build_services(env).engine) as s:
        page = image_q.list_images(session=s, viewer=principal.viewer, page_size=10)
    assert [i.original_name for i in page.items] == ["p0.jpg"]
    assert page.items[0].status == ImageStatus.PENDING  # queued for a listener


def test_bad_paths_and_big_files_get_a_clear_message(
    env: Settings, folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _account(env, "alice")
    assert upload.main([str(folder / "nope"), "--user", "alice"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    # a file over the upload limit is refused before it is read
    monkeypatch.setenv("LABELKIT_MAX_UPLOAD_BYTES", "2000")
    get_settings.cache_clear()
    big = folder / "trip" / "deep.png"
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self}"))
    assert upload.main([str(big), "--user", "alice"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"refused\s+\S+deep\.png\s+\(The file is 0\.\d MB; the limit is 0 MB", out), out


def test_the_progress_bar_shows_files_bytes_and_rate(
    env: Settings, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _account(env, "alice")
    upload.main([str(folder), "--user", "alice", "--progress", "--quiet"])
    err = capsys.readouterr().err
    assert "4/4 files" in err and "B/s" in err and "100%" in err


def test_the_command_documents_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labelkit.cli", "upload", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    for word in ("--user", "--create-user", "--recursive", "s3://bucket/prefix", "skipped", "CSV"):
        assert word in done.stdout, word


def test_an_s3_prefix_is_imported(
    env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    _account(env, "alice")
    with mock_aws():
        s3 = boto3.client("s3", region_name=env.aws_region)
        s3.create_bucket(
            Bucket="holiday",
            **(
                {}
                if env.aws_region == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": env.aws_region}}
            ),
        )
        s3.put_object(Bucket="holiday", Key="2026/a.jpg", Body=_jpeg(1))
        s3.put_object(Bucket="holiday", Key="2026/day2/b.jpg", Body=_jpeg(2))
        s3.put_object(Bucket="holiday", Key="2026/readme.txt", Body=b"hi")
        s3.put_object(Bucket="holiday", Key="2027/c.jpg", Body=_jpeg(3))
        assert upload.main(["s3://holiday/2026", "--user", "alice"]) == 0
        assert _names(env, "alice") == ["a.jpg"]
        assert upload.main(["s3://holiday/2026/", "--user", "alice", "--recursive"]) == 0
        assert "1 accepted, 1 skipped" in capsys.readouterr().out
        assert _names(env, "alice") == ["a.jpg", "b.jpg"]
        assert upload.main(["s3://no-such-bucket/x", "--user", "alice"]) == 2
        assert "could not be listed" in capsys.readouterr().err


@pytest.mark.model
def test_label_labels_them_before_returning(env: Settings, tmp_path: Path) -> None:
    _account(env, "alice")
    photos = tmp_path / "cats"
    photos.mkdir()
    shutil.copy(Path(skimage.data.__file__).parent / "chelsea.png", photos / "chelsea.png")
    assert upload.main([str(photos), "--user", "alice", "--label"]) == 0
    services = build_services(env)
    viewer = LocalAuth(services.engine).sign_in("alice", PASSWORD).viewer
    with transaction(services.engine) as s:
        cats = image_q.list_images(session=s, viewer=viewer, flt=image_q.ImageFilter(label="Cat"))
    assert [i.original_name for i in cats.items] == ["chelsea.png"]
    assert cats.items[0].status == ImageStatus.LABELLED
