"""``python -m labelkit.label --json`` prints Rekognition's own DetectLabelsResponse shape.

Checked with botocore's service model for DetectLabels and its ``ParamValidator``, which
refuses any key the shape does not have (the old ``Image`` key) and any wrong type.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from labelkit.domain import BoundingBox, DominantColor, ImageProperties, Instance, Label, LabelResult
from labelkit.label import json_line

RESULT = LabelResult(
    model_version="efficientnet-lite2-int8+ssd",
    labels=[
        Label(
            name="Cat",
            confidence=91.5,
            parents=["Mammal", "Animal"],
            aliases=["Kitten"],
            categories=["Animals and Pets"],
            instances=[Instance(box=BoundingBox(left=0.1, top=0.2, width=0.5, height=0.6), confidence=80.0)],
        ),
        Label(name="Sofa", confidence=61.0),
    ],
    image_properties=ImageProperties(
        brightness=61.5,
        sharpness=89.9,
        contrast=70.25,
        dominant_colors=[
            DominantColor(
                red=30, green=120, blue=200, hex_code="1e78c8", simplified_color="blue", pixel_percent=71.5
            )
        ],
    ),
)


def _errors(document: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model("rekognition")
    shape = model.operation_model("DetectLabels").output_shape
    report = ParamValidator().validate(document, shape)
    return report.generate_report() if report.has_errors() else ""


def test_json_line_response_is_exactly_a_detect_labels_response() -> None:
    # GIVEN a labelling result with boxes, parents, aliases, categories and image properties
    # WHEN it is printed as a --json line (through JSON, as a reader gets it)
    line = json.loads(json.dumps(json_line("photos/cat.jpg", RESULT)))
    # THEN the file name sits beside the response (with the DetectText and DetectModerationLabels
    # responses, tests/unit/test_text_and_moderation.py), and the response passes botocore's model
    assert (
        set(line) == {"image", "response", "text", "moderation", "primary"}
        and line["image"] == "photos/cat.jpg"
    )
    assert _errors(line["response"]) == ""
    assert line["response"]["Labels"][0]["Instances"][0]["BoundingBox"]["Left"] == 0.1
    # and it reads back into the same result
    assert LabelResult.from_rekognition(line["response"], model_version=RESULT.model_version) == RESULT


def test_the_validator_refuses_a_key_rekognition_does_not_send() -> None:
    # The old output put the file name inside the response: botocore's model refuses that.
    assert "Unknown parameter" in _errors({"Image": "cat.jpg", **RESULT.to_rekognition()})
