"""Text in photos and the moderation flag, without the models: the DetectText /
DetectModerationLabels shapes ``labelkit label --json`` prints (checked with botocore's own
service model), the rules that make Text / Document / Screenshot from lines read, and the
words a line is searchable by."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import numpy as np
import pytest
from botocore.validate import ParamValidator

from labelkit.db.counts import text_tokens
from labelkit.domain import BoundingBox, Label, LabelResult, ModerationLabel, TextDetection
from labelkit.label import json_line
from labelkit.labelers.ocr import (
    Line,
    TextOutput,
    Word,
    detections,
    merge_labels,
    text_labels,
    without_sides_on_pages,
)
from labelkit.search.service import text_words

SOON = [
    TextDetection(
        text="GET WELL SOON",
        type="LINE",
        id=0,
        confidence=98.5,
        box=BoundingBox(left=0.1, top=0.2, width=0.6, height=0.1),
        polygon=[(0.1, 0.2), (0.7, 0.2), (0.7, 0.3), (0.1, 0.3)],
    ),
    TextDetection(
        text="SOON",
        type="WORD",
        id=1,
        parent_id=0,
        confidence=97.0,
        box=BoundingBox(left=0.5, top=0.2, width=0.2, height=0.1),
    ),
]
RESULT = LabelResult(
    model_version="efficientnet-lite2-int8+ocr+mod-f1.1234abcd",
    labels=[Label(name="Text", confidence=98.5, categories=["Text and Documents"])],
    text=SOON,
    moderation=[ModerationLabel(name="Explicit", confidence=93.25)],
    text_model_version="ppocrv6s-480",
    moderation_model_version="opennsfw-80",
)


def _errors(operation: str, document: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model("rekognition")
    shape = model.operation_model(operation).output_shape
    report = ParamValidator().validate(document, shape)
    return report.generate_report() if report.has_errors() else ""


def test_json_line_has_detect_text_and_moderation_responses_beside_the_labels() -> None:
    # GIVEN a result with a line of text, its word and an Explicit flag
    # WHEN it is printed as a --json line (through JSON, as a reader gets it)
    line = json.loads(json.dumps(json_line("photos/card.jpg", RESULT)))
    # THEN the line has the three responses, each exactly its Rekognition shape
    assert set(line) == {"image", "response", "text", "moderation", "primary"}
    assert _errors("DetectText", line["text"]) == ""
    assert _errors("DetectModerationLabels", line["moderation"]) == ""
    assert _errors("DetectLabels", line["response"]) == ""
    # AND the text is the line, then its word pointing at it, with boxes and polygons
    first, word = line["text"]["TextDetections"]
    assert (first["DetectedText"], first["Type"], first["Id"]) == ("GET WELL SOON", "LINE", 0)
    assert "ParentId" not in first
    assert (word["DetectedText"], word["Type"], word["ParentId"]) == ("SOON", "WORD", 0)
    assert word["Geometry"]["BoundingBox"] == {"Width": 0.2, "Height": 0.1, "Left": 0.5, "Top": 0.2}
    assert len(word["Geometry"]["Polygon"]) == 4
    assert line["text"]["TextModelVersion"] == "ppocrv6s-480"
    assert line["moderation"]["ModerationLabels"] == [
        {"Confidence": 93.25, "Name": "Explicit", "ParentName": "", "TaxonomyLevel": 1}
    ]
    # AND the DetectLabels response is untouched by either (no Explicit among its labels)
    assert [lab["Name"] for lab in line["response"]["Labels"]] == ["Text"]


def test_json_line_of_a_labeller_without_text_or_moderation_has_both_keys_empty() -> None:
    # GIVEN a result from a labeller that reads no text and flags nothing (Rekognition's DetectLabels)
    plain = LabelResult(model_version="rekognition-3.0", labels=[Label(name="Cat", confidence=90.0)])
    # WHEN printed
    line = json.loads(json.dumps(json_line("cat.jpg", plain)))
    # THEN both keys are there, empty, and still valid responses
    assert line["text"] == {"TextDetections": []}
    assert line["moderation"] == {"ModerationLabels": []}
    assert (
        _errors("DetectText", line["text"]) == ""
        and _errors("DetectModerationLabels", line["moderation"]) == ""
    )


def _line(
    text: str, top: float, *, height: float = 0.04, left: float = 0.05, width: float = 0.8, tilt: float = 0.0
) -> Line:
    quad = np.array(
        [[left, top], [left + width, top + tilt], [left + width, top + tilt + height], [left, top + height]],
        dtype=np.float32,
    )
    return Line(text, 0.95, quad, (Word(text.split()[0], 0.95, quad),))


def _names(labels: list[Label]) -> list[str]:
    return [lab.name for lab in labels]


def test_text_document_and_screenshot_rules() -> None:
    # GIVEN nothing read: no label
    assert text_labels(TextOutput(), flat=0.9) == []
    # GIVEN one line on a photo (a sign): Text only, at the line's confidence
    sign = TextOutput(lines=[_line("GET WELL SOON", 0.4, height=0.12)])
    labels = text_labels(sign, flat=0.0)
    assert _names(labels) == ["Text"] and labels[0].confidence == pytest.approx(95.0)
    assert labels[0].categories == ["Text and Documents"]
    # GIVEN a far-off shop sign (a line covering 0.2% of the photo): read and stored, no label
    assert text_labels(TextOutput(lines=[_line("SHADES", 0.5, height=0.02, width=0.1)]), flat=0.0) == []
    # GIVEN a page: six lines covering a quarter of the photo -> Document (under Text)
    page = TextOutput(lines=[_line(f"line {i} of print", 0.1 + 0.12 * i, height=0.05) for i in range(6)])
    labels = text_labels(page, flat=0.0)
    assert _names(labels) == ["Text", "Document"] and labels[1].parents == ["Text"]
    # ... but three lines are not a document, however large
    assert _names(text_labels(TextOutput(lines=page.lines[:3]), flat=0.0)) == ["Text"]
    # ... nor a stack of road signs: large lines of a word or two
    signs = TextOutput(
        lines=[
            _line(name, 0.1 + 0.2 * i, height=0.12)
            for i, name in enumerate(("Severins-", "brücke", "Koelnmesse", "Im Sionstal"))
        ]
    )
    assert _names(text_labels(signs, flat=0.0)) == ["Text"]
    # GIVEN small upright lines on flat colours: a screenshot
    ui = TextOutput(
        lines=[_line(f"Menu item {i}", 0.05 + 0.05 * i, height=0.02, width=0.2) for i in range(5)]
    )
    assert "Screenshot" in _names(text_labels(ui, flat=0.6))
    # ... not on a photo (no flat colours), nor with tilted lines, nor with large print
    assert "Screenshot" not in _names(text_labels(ui, flat=0.1))
    tilted = TextOutput(
        lines=[_line(f"Menu item {i}", 0.05 + 0.05 * i, height=0.02, width=0.2, tilt=0.03) for i in range(5)]
    )
    assert "Screenshot" not in _names(text_labels(tilted, flat=0.6))
    large = TextOutput(lines=[_line(f"Big {i}", 0.05 + 0.2 * i, height=0.12) for i in range(4)])
    assert "Screenshot" not in _names(text_labels(large, flat=0.6))


def test_text_labels_merge_with_the_scene_rules_labels_of_the_same_name() -> None:
    # GIVEN the fusion's Text (from the classifier's Website class, with its own alias) at 60
    fused = [Label(name="Text", confidence=60.0, aliases=["Document"], categories=["Text and Documents"])]
    # WHEN the text read says Text at 95 and Document
    merged = merge_labels(
        fused,
        text_labels(
            TextOutput(lines=[_line(f"l{i} words", 0.1 * i + 0.1, height=0.06) for i in range(5)]), flat=0.0
        ),
    )
    # THEN one Text at the higher confidence, keeping both's aliases; Document added
    by_name = {lab.name: lab for lab in merged}
    assert sorted(by_name) == ["Document", "Text"]
    assert by_name["Text"].confidence == pytest.approx(95.0)
    assert by_name["Text"].aliases == ["Document", "Writing", "Words"]


def test_detections_number_lines_then_words_pointing_at_their_lines() -> None:
    out = TextOutput(lines=[_line("GET WELL", 0.1), _line("SOON", 0.3)])
    found = detections(out)
    assert [(d.type, d.id, d.parent_id, d.text) for d in found] == [
        ("LINE", 0, None, "GET WELL"),
        ("LINE", 1, None, "SOON"),
        ("WORD", 2, 0, "GET"),
        ("WORD", 3, 1, "SOON"),
    ]
    assert found[0].confidence == pytest.approx(95.0)
    assert found[0].box.top == pytest.approx(0.1) and found[0].box.height == pytest.approx(0.04)


def test_words_are_searchable_lower_cased_whole_and_in_pieces() -> None:
    assert text_tokens("SOON") == ["soon"]
    assert text_tokens("Region-based") == ["region-based", "region", "based"]
    assert text_tokens("(coins)") == ["coins"]
    assert text_tokens("np.zeros_like(coins)") == ["np.zeros_like(coins", "np", "zeros_like", "coins"]
    assert text_tokens("a I") == []  # too short to search by
    # A typed word looks for itself and its singular; a phrase is not one word
    assert text_words("Soon!") == ["soon"]
    assert text_words("signs") == ["signs", "sign"]
    assert text_words("get well") == []


def test_a_page_or_a_screen_is_neither_indoors_nor_outdoors() -> None:
    def lab(name: str, confidence: float) -> Label:
        return Label(name=name, confidence=confidence)

    page = [lab("Document", 90.0), lab("Outdoors", 98.0), lab("Indoors", 20.0), lab("Text", 100.0)]
    assert [x.name for x in without_sides_on_pages(page)] == ["Document", "Text"]
    screen = [lab("Screenshot", 70.0), lab("Indoors", 60.0)]
    assert [x.name for x in without_sides_on_pages(screen)] == ["Screenshot"]
    # a sign in a street is text, not a page: the street keeps its side
    sign = [lab("Text", 95.0), lab("Outdoors", 97.0), lab("Document", 30.0)]
    assert [x.name for x in without_sides_on_pages(sign)] == ["Text", "Outdoors", "Document"]
