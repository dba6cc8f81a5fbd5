"""Text in photos (PP-OCRv6 small from rapidocr) and the moderation flag (open_nsfw), with the
real models on photos that ship in packages. No network: one test labels with every socket
refused."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import sklearn.datasets
from PIL import Image, ImageDraw, ImageFont

from labelkit.domain import LabelResult
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.local import LocalLabeler
from labelkit.labelers.moderation import EXPLICIT_THRESHOLD

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]


def _png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(out, format="JPEG", quality=92)
    return out.getvalue()


def package_photos() -> dict[str, bytes]:
    """Every photo scikit-image and scikit-learn ship that the benchmarks use (safe photos)."""
    photos = {name: _png(getattr(skimage.data, name)()) for name in ("page", "text")}
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        photos[name] = _jpeg(getattr(skimage.data, name)())
    photos["motorcycle_left"] = (Path(skimage.data.__file__).parent / "motorcycle_left.png").read_bytes()
    images = Path(sklearn.datasets.__file__).parent / "images"
    for name in ("china", "flower"):
        photos[name] = (images / f"{name}.jpg").read_bytes()
    return photos


def screenshot() -> bytes:
    """A mail client's window, drawn: flat colours, a title bar, menu entries and subjects."""
    im = Image.new("RGB", (1280, 800), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, 1280, 52), fill=(32, 56, 120))
    draw.rectangle((0, 52, 260, 800), fill=(240, 242, 246))
    font = ImageFont.load_default(size=18)
    draw.text((18, 16), "Inbox - Mail", fill=(255, 255, 255), font=font)
    for i, entry in enumerate(("Inbox", "Starred", "Sent", "Drafts", "Archive")):
        draw.text((24, 80 + 40 * i), entry, fill=(20, 20, 20), font=font)
    subjects = (
        "Meeting moved to Thursday",
        "Your invoice is ready",
        "Photos from the weekend",
        "Get well soon",
    )
    for i, subject in enumerate(subjects):
        draw.text((290, 80 + 40 * i), subject, fill=(20, 20, 20), font=font)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def reader() -> LocalLabeler:
    """The text and moderation stages alone (the other models have their own tests)."""
    return LocalLabeler(models=("text", "moderation"))


@pytest.fixture(scope="module")
def read(reader: LocalLabeler) -> dict[str, tuple[LabelResult, dict[str, float]]]:
    out = {}
    for name, data in {**package_photos(), "screenshot": screenshot()}.items():
        result = reader.label(ImageInput(data), LabelOptions())
        out[name] = (result, reader.timings())
    return out


def _names(result: LabelResult) -> list[str]:
    return [lab.name for lab in result.labels]


def _words(result: LabelResult) -> list[str]:
    return [d.text.casefold().strip(".,:()") for d in result.text or [] if d.type == "WORD"]


def test_the_page_is_read_line_by_line_and_word_by_word(
    read: dict[str, tuple[LabelResult, dict[str, float]]],
) -> None:
    result, timings = read["page"]
    # THEN its seven lines are read, top to bottom, the heading first
    lines = [line.text for line in result.lines]
    assert len(lines) == 7
    assert lines[0] == "Region-based segmentation"
    assert "histogram of grey values:" in lines
    # AND its words are words, each pointing at its line, with a box inside the line's
    words = _words(result)
    for word in ("segmentation", "markers", "coins", "background", "pixels", "unambiguously", "histogram"):
        assert word in words
    line_of = {d.id: d for d in result.lines}
    for word in (d for d in result.text or [] if d.type == "WORD"):
        parent = line_of[word.parent_id or 0]
        assert parent.box.left - 0.02 <= word.box.left <= parent.box.left + parent.box.width
        assert parent.box.top - 0.02 <= word.box.top <= parent.box.top + parent.box.height
    # AND it is labelled Text and Document, not Screenshot (a photographed page is not flat)
    assert {"Text", "Document"} <= set(_names(result)) and "Screenshot" not in _names(result)
    # AND a page is neither Indoors nor Outdoors (the scene head alone said Outdoors 98)
    assert not {"Indoors", "Outdoors"} & set(_names(result))
    assert timings["text_recognise"] > 0


def test_the_handwriting_is_text_and_its_formula_is_partly_read(
    read: dict[str, tuple[LabelResult, dict[str, float]]],
) -> None:
    result, _ = read["text"]
    # THEN the slanted handwritten maths is text ...
    assert "Text" in _names(result)
    # ... and the "(t - x)" of its formula is read as a minus before an x
    assert any("-x" in line.text.replace(" ", "") for line in result.lines), [
        line.text for line in result.lines
    ]


@pytest.mark.parametrize("name", ["chelsea", "china", "rocket"])
def test_a_photo_without_text_has_no_text_label_and_costs_only_the_detection(
    name: str, read: dict[str, tuple[LabelResult, dict[str, float]]]
) -> None:
    result, timings = read[name]
    # THEN nothing is read, no label comes from text ...
    assert result.text == [] and not {"Text", "Document", "Screenshot"} & set(_names(result))
    # ... and only the detection stage ran: the recogniser never did
    assert timings["text_detect"] > 0
    assert "text_recognise" not in timings


def test_a_screenshot_is_read_and_labelled_screenshot(
    read: dict[str, tuple[LabelResult, dict[str, float]]],
) -> None:
    result, _ = read["screenshot"]
    assert "Get well soon" in [line.text for line in result.lines]
    assert {"Text", "Screenshot"} <= set(_names(result))
    assert not {"Indoors", "Outdoors"} & set(_names(result))


def test_no_package_photo_is_flagged_and_all_score_far_below_the_threshold(reader: LocalLabeler) -> None:
    # GIVEN the nine package photos (all safe)
    assert reader.moderator is not None
    prepared = [reader.prepare(ImageInput(data)) for data in package_photos().values()]
    scores = reader.moderator.predict([p.moderation for p in prepared if p.moderation is not None])
    # THEN every score is far below the Explicit threshold (0.8; the highest, the astronaut, ~0.03)
    assert len(scores) == 9 and max(scores) < 0.1 < EXPLICIT_THRESHOLD
    # AND labelling says so in the DetectModerationLabels shape: nothing flagged
    result = reader.label(ImageInput(package_photos()["astronaut"]), LabelOptions())
    assert result.moderation == [] and result.to_moderation()["ModerationLabels"] == []


def test_cli_json_has_text_and_moderation_on_every_line(full_model_dir: Path, tmp_path: Path) -> None:
    # GIVEN a page of text and a photo without any
    page, cat = tmp_path / "page.png", tmp_path / "chelsea.jpg"
    page.write_bytes(_png(skimage.data.page()))
    cat.write_bytes(_jpeg(skimage.data.chelsea()))
    env = {**os.environ, "LABELKIT_MODEL_DIR": str(full_model_dir)}
    env.pop("LABELKIT_LOCAL_MODELS", None)
    # WHEN the CLI labels them with --json (every local model, the default)
    out = subprocess.run(
        [sys.executable, "-m", "labelkit.label", "--json", str(page), str(cat)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=ROOT,
        env=env,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    # THEN every line has the DetectText and DetectModerationLabels responses beside the labels
    assert [set(line) for line in lines] == [{"image", "response", "text", "moderation", "primary"}] * 2
    assert [line["primary"] for line in lines] == ["Document", "Cat"]  # and each its headline label
    page_text, cat_text = (line["text"]["TextDetections"] for line in lines)
    assert page_text[0] == {
        **page_text[0],
        "DetectedText": "Region-based segmentation",
        "Type": "LINE",
        "Id": 0,
    }
    assert any(d["Type"] == "WORD" and d["DetectedText"] == "segmentation" for d in page_text)
    assert cat_text == []
    assert [line["moderation"]["ModerationLabels"] for line in lines] == [[], []]
    assert "Text" in [lab["Name"] for lab in lines[0]["response"]["Labels"]]


NO_NETWORK = textwrap.dedent(
    """
    import socket, sys, urllib.request

    def refuse(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
            raise OSError(f"network refused in this test: {event} {args[:2]}")

    sys.addaudithook(refuse)
    try:  # the guard works: a download fails at once
        urllib.request.urlopen("https://www.modelscope.cn/models/RapidAI/RapidOCR", timeout=5)
    except OSError as exc:
        print("blocked:", exc)
    else:
        raise SystemExit("the network guard let a request through")

    from skimage.data import page
    from PIL import Image
    import io
    from labelkit.labelers.base import ImageInput, LabelOptions
    from labelkit.labelers.local import LocalLabeler

    buf = io.BytesIO()
    Image.fromarray(page()).save(buf, format="PNG")
    result = LocalLabeler(models=("text", "moderation")).label(ImageInput(buf.getvalue()), LabelOptions())
    print("read:", [line.text for line in result.lines])
    """
)


def test_text_and_moderation_models_load_and_run_with_every_socket_refused(tmp_path: Path) -> None:
    # GIVEN a process where opening any connection or resolving any host fails, behind
    # proxies that do not exist and with a home of its own (no cache to fall back on)
    env = {
        **os.environ,
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "HOME": str(tmp_path),
    }
    # WHEN it loads the text and moderation models and reads the page
    proc = subprocess.run(
        [sys.executable, "-c", NO_NETWORK],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    # THEN it worked from the installed packages alone
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "network refused in this test" in proc.stdout.splitlines()[0]
    assert "Region-based segmentation" in proc.stdout
