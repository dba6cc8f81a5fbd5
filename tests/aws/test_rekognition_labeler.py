"""RekognitionLabeler against botocore's Stubber (real DetectLabels shapes, validated by botocore).

moto's DetectLabels answer is canned, so chosen answers and errors come from the
Stubber, which also checks the exact request parameters. Images that break
Rekognition's limits must be refused before any request: a Stubber with nothing
queued fails the test if one is made.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from PIL import Image

from labelkit import aws as lk_aws
from labelkit.domain import BoundingBox, DominantColor, ImageProperties, Instance, Label, LabelResult
from labelkit.errors import IntakeError, LabelerError
from labelkit.labelers import make_labeler
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.rekognition import RekognitionLabeler, estimated_cost
from labelkit.settings import Settings
from tests.integration.aws_fixtures import REGION, aws  # noqa: F401

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient

pytestmark = pytest.mark.aws


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (200, 150)) -> bytes:
    im = Image.new("RGB", size, (30, 120, 200))
    im.paste((250, 200, 20), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    im.save(out, format=fmt)
    return out.getvalue()


JPEG = image_bytes()

# A DetectLabels response as Rekognition sends it (GENERAL_LABELS + IMAGE_PROPERTIES).
DETECT_LABELS_RESPONSE: dict[str, Any] = {
    "Labels": [
        {
            "Name": "Dog",
            "Confidence": 98.71,
            "Instances": [
                {
                    "BoundingBox": {"Width": 0.42, "Height": 0.61, "Left": 0.12, "Top": 0.3},
                    "Confidence": 97.5,
                    "DominantColors": [
                        {
                            "Red": 140,
                            "Blue": 60,
                            "Green": 100,
                            "HexCode": "8c643c",
                            "CSSColor": "sienna",
                            "SimplifiedColor": "brown",
                            "PixelPercent": 55.2,
                        }
                    ],
                },
                {
                    # Rekognition can overshoot the frame by a hair: clamped inside (Left + Width = 1).
                    "BoundingBox": {"Width": 0.30, "Height": 0.5, "Left": 0.7000001, "Top": 0.5},
                    "Confidence": 81.0,
                },
            ],
            "Parents": [{"Name": "Animal"}, {"Name": "Canine"}, {"Name": "Mammal"}, {"Name": "Pet"}],
            "Aliases": [{"Name": "Puppy"}],
            "Categories": [{"Name": "Animals and Pets"}],
        },
        {
            "Name": "Grass",
            "Confidence": 76.25,
            "Instances": [],
            "Parents": [{"Name": "Plant"}],
            "Aliases": [{"Name": "Lawn"}],
            "Categories": [{"Name": "Plants and Flowers"}],
        },
    ],
    "ImageProperties": {
        "Quality": {"Brightness": 61.5, "Sharpness": 89.9, "Contrast": 70.25},
        "DominantColors": [
            {
                "Red": 30,
                "Blue": 200,
                "Green": 120,
                "HexCode": "1e78c8",
                "CSSColor": "steelblue",
                "SimplifiedColor": "blue",
                "PixelPercent": 71.5,
            },
            {
                "Red": 250,
                "Blue": 20,
                "Green": 200,
                "HexCode": "fac814",
                "CSSColor": "gold",
                "SimplifiedColor": "yellow",
                "PixelPercent": 28.5,
            },
        ],
        "Foreground": {"Quality": {"Brightness": 70.0, "Sharpness": 90.0}, "DominantColors": []},
        "Background": {"Quality": {"Brightness": 55.0, "Sharpness": 80.0}, "DominantColors": []},
    },
    "LabelModelVersion": "3.0",
}

EXPECTED = LabelResult(
    labels=[
        Label(
            name="Dog",
            confidence=98.71,
            parents=["Animal", "Canine", "Mammal", "Pet"],
            aliases=["Puppy"],
            categories=["Animals and Pets"],
            instances=[
                Instance(box=BoundingBox(left=0.12, top=0.3, width=0.42, height=0.61), confidence=97.5),
                Instance(
                    box=BoundingBox(left=0.7000001, top=0.5, width=1.0 - 0.7000001, height=0.5),
                    confidence=81.0,
                ),
            ],
        ),
        Label(
            name="Grass",
            confidence=76.25,
            parents=["Plant"],
            aliases=["Lawn"],
            categories=["Plants and Flowers"],
        ),
    ],
    image_properties=ImageProperties(
        brightness=61.5,
        sharpness=89.9,
        contrast=70.25,
        dominant_colors=[
            DominantColor(
                red=30, green=120, blue=200, hex_code="1e78c8", simplified_color="blue", pixel_percent=71.5
            ),
            DominantColor(
                red=250, green=200, blue=20, hex_code="fac814", simplified_color="yellow", pixel_percent=28.5
            ),
        ],
    ),
    model_version="rekognition-3.0",
)


@pytest.fixture
def client(aws: None) -> RekognitionClient:  # noqa: F811
    rek: RekognitionClient = lk_aws.client("rekognition", region=REGION)
    return rek


@pytest.fixture
def stubber(client: RekognitionClient) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def labeler(client: RekognitionClient, stubber: Stubber) -> RekognitionLabeler:
    return RekognitionLabeler(region=REGION, client=client)


def test_s3_image_is_read_by_rekognition_and_mapped_one_to_one(
    labeler: RekognitionLabeler, stubber: Stubber
) -> None:
    # GIVEN an image stored in S3 and Rekognition's answer for it
    stubber.add_response(
        "detect_labels",
        DETECT_LABELS_RESPONSE,
        expected_params={
            "Image": {"S3Object": {"Bucket": "photos", "Name": "uploads/users/u1/i1.jpg"}},
            "MaxLabels": 20,
            "MinConfidence": 55.0,
            "Features": ["GENERAL_LABELS", "IMAGE_PROPERTIES"],
        },
    )
    # WHEN it is labelled
    result = labeler.label(
        ImageInput(data=JPEG, s3_bucket="photos", s3_key="uploads/users/u1/i1.jpg"), LabelOptions()
    )
    # THEN Rekognition read the object itself and every field maps one to one
    assert result == EXPECTED
    assert result.labels[0].instances[1].box.left <= 1.0
    assert labeler.model_version == "rekognition-3.0"


def test_boxes_past_the_frame_are_clamped_inside_the_image(
    labeler: RekognitionLabeler, stubber: Stubber
) -> None:
    # GIVEN Rekognition answers with boxes that pass the image's edges
    boxes = [
        {"Left": 0.8, "Top": 0.1, "Width": 0.5, "Height": 0.2},  # right edge at 1.3
        {"Left": -0.1, "Top": 0.9, "Width": 0.4, "Height": 0.3},  # starts left of the image
        {"Left": 0.2, "Top": -0.25, "Width": 0.3, "Height": 1.5},  # taller than the image
    ]
    response = {
        "Labels": [
            {
                "Name": "Dog",
                "Confidence": 90.0,
                "Instances": [{"BoundingBox": b, "Confidence": 90.0} for b in boxes],
            }
        ],
        "LabelModelVersion": "3.0",
    }
    stubber.add_response("detect_labels", response)
    # WHEN it is labelled
    result = labeler.label(ImageInput(data=JPEG), LabelOptions())
    # THEN every box lies inside the image, cut at its edges (not shifted)
    got = [i.box for i in result.labels[0].instances]
    for box in got:
        assert 0 <= box.left and 0 <= box.top
        assert box.left + box.width <= 1.0 and box.top + box.height <= 1.0
    assert (got[0].left, got[0].width) == pytest.approx((0.8, 0.2))
    assert (got[1].left, got[1].width, got[1].top, got[1].height) == pytest.approx((0.0, 0.3, 0.9, 0.1))
    assert (got[2].top, got[2].height) == pytest.approx((0.0, 1.0))


def test_bytes_are_sent_inline_with_the_filters_that_are_set(
    labeler: RekognitionLabeler, stubber: Stubber
) -> None:
    options = LabelOptions(
        min_confidence=80,
        max_labels=5,
        include_categories=("Animals and Pets", "Plants and Flowers"),
        exclude_labels=("Grass",),
    )
    stubber.add_response(
        "detect_labels",
        {"Labels": [], "LabelModelVersion": "3.1"},
        expected_params={
            "Image": {"Bytes": JPEG},
            "MaxLabels": 5,
            "MinConfidence": 80.0,
            "Features": ["GENERAL_LABELS", "IMAGE_PROPERTIES"],
            "Settings": {
                "GeneralLabels": {
                    "LabelExclusionFilters": ["Grass"],
                    "LabelCategoryInclusionFilters": ["Animals and Pets", "Plants and Flowers"],
                }
            },
        },
    )
    result = labeler.label(ImageInput(data=JPEG), options)
    assert result == LabelResult(labels=[], model_version="rekognition-3.1")
    # The version Rekognition reports becomes the labeller's (the pipeline records it).
    assert labeler.model_version == "rekognition-3.1"


def test_all_four_filters_and_no_image_properties(client: RekognitionClient, stubber: Stubber) -> None:
    labeler = RekognitionLabeler(region=REGION, client=client, image_properties=False)
    options = LabelOptions(
        include_labels=("Dog",),
        exclude_labels=("Cat",),
        include_categories=("Animals and Pets",),
        exclude_categories=("Weapons",),
    )
    request = labeler.request_for(ImageInput(data=JPEG), options)
    assert request["Features"] == ["GENERAL_LABELS"]
    assert request["Settings"] == {
        "GeneralLabels": {
            "LabelInclusionFilters": ["Dog"],
            "LabelExclusionFilters": ["Cat"],
            "LabelCategoryInclusionFilters": ["Animals and Pets"],
            "LabelCategoryExclusionFilters": ["Weapons"],
        }
    }
    # botocore accepts it as a valid request
    stubber.add_response("detect_labels", {"Labels": []}, expected_params=request)
    assert labeler.label(ImageInput(data=JPEG), options).model_version == "rekognition-unknown"


@pytest.mark.parametrize(
    ("data", "s3", "reason"),
    [
        (image_bytes("WEBP"), True, "Rekognition accepts only JPEG and PNG; this image is WEBP."),
        (image_bytes("GIF"), False, "Rekognition accepts only JPEG and PNG; this image is GIF."),
        (
            image_bytes("PNG", (50, 50)),
            True,
            "The image is 50 × 50 pixels; Rekognition needs at least 80 pixels on each side.",
        ),
        (
            image_bytes("JPEG", (400, 79)),
            False,
            "The image is 400 × 79 pixels; Rekognition needs at least 80 pixels on each side.",
        ),
        (
            JPEG + b"\0" * (15 * 1024 * 1024),
            True,
            "Rekognition accepts at most 15 MB for an image stored in S3.",
        ),
        (
            JPEG + b"\0" * (5 * 1024 * 1024),
            False,
            "Rekognition accepts at most 5 MB for an image sent inline.",
        ),
    ],
    ids=["webp", "gif", "50x50", "79px-high", "over-15MB-s3", "over-5MB-bytes"],
)
def test_images_outside_rekognitions_limits_are_refused_without_a_call(
    labeler: RekognitionLabeler, stubber: Stubber, data: bytes, s3: bool, reason: str
) -> None:
    # GIVEN a Stubber with no response queued (any request would fail the test)
    image = ImageInput(data=data, s3_bucket="photos" if s3 else None, s3_key="k.jpg" if s3 else None)
    # WHEN / THEN the labeller refuses it permanently, with a reason for people
    with pytest.raises(LabelerError) as info:
        labeler.label(image, LabelOptions())
    assert info.value.permanent is True
    assert reason in info.value.reason


def test_a_png_just_big_enough_is_sent(labeler: RekognitionLabeler, stubber: Stubber) -> None:
    png = image_bytes("PNG", (80, 80))
    stubber.add_response("detect_labels", {"Labels": [], "LabelModelVersion": "3.0"})
    assert labeler.label(ImageInput(data=png), LabelOptions()).labels == []


@pytest.mark.parametrize(
    "data",
    [b"", b"%PDF-1.7 not an image", JPEG[: len(JPEG) // 2]],
    ids=["empty", "pdf", "truncated-jpeg"],
)
def test_bytes_that_are_no_readable_image_are_an_intake_error_without_a_call(
    labeler: RekognitionLabeler, stubber: Stubber, data: bytes
) -> None:
    with pytest.raises(IntakeError):
        labeler.label(ImageInput(data=data, s3_bucket="photos", s3_key="k.jpg"), LabelOptions())


@pytest.mark.parametrize(
    ("code", "status", "permanent", "reason"),
    [
        ("InvalidImageFormatException", 400, True, "Rekognition cannot read this image format."),
        ("ImageTooLargeException", 400, True, "The image is too large for Rekognition."),
        ("InvalidS3ObjectException", 400, True, "Rekognition cannot read the stored file from S3."),
        ("InvalidParameterException", 400, True, "Rekognition refused the request as invalid."),
        ("ThrottlingException", 400, False, "Rekognition is throttling requests (ThrottlingException)"),
        (
            "ProvisionedThroughputExceededException",
            400,
            False,
            "Rekognition is throttling requests (ProvisionedThroughputExceededException)",
        ),
        ("InternalServerError", 500, False, "Rekognition is unavailable (InternalServerError)"),
        ("AccessDeniedException", 403, False, "Rekognition failed (AccessDeniedException)"),
    ],
)
def test_rekognition_errors_are_translated(
    labeler: RekognitionLabeler, stubber: Stubber, code: str, status: int, permanent: bool, reason: str
) -> None:
    stubber.add_client_error(
        "detect_labels", service_error_code=code, service_message="details here", http_status_code=status
    )
    with pytest.raises(LabelerError) as info:
        labeler.label(ImageInput(data=JPEG, s3_bucket="photos", s3_key="k.jpg"), LabelOptions())
    assert info.value.permanent is permanent
    assert info.value.reason.startswith(reason)
    assert "details here" in info.value.reason


class _Unreachable:
    """A client whose every call fails below the HTTP layer (DNS, connection)."""

    def detect_labels(self, **_: Any) -> dict[str, Any]:
        raise EndpointConnectionError(endpoint_url="https://rekognition.us-east-1.amazonaws.com/")


def test_network_errors_are_transient() -> None:
    labeler = RekognitionLabeler(region=REGION, client=_Unreachable())  # type: ignore[arg-type]
    with pytest.raises(LabelerError) as info:
        labeler.label(ImageInput(data=JPEG), LabelOptions())
    assert info.value.permanent is False
    assert "could not be reached" in info.value.reason


def test_client_is_built_lazily_with_adaptive_retries(aws: None) -> None:  # noqa: F811
    settings = Settings(labeler="rekognition", aws_region="eu-west-1", rekognition_price_per_1000=1.25)
    labeler = make_labeler("rekognition", settings)
    assert isinstance(labeler, RekognitionLabeler)
    assert labeler._client is None  # nothing built by the factory
    client = labeler.client
    assert client is labeler.client
    assert client.meta.region_name == "eu-west-1"
    # botocore stores max_attempts=10 (retries) as 11 attempts in all.
    retries = client.meta.config.retries  # type: ignore[attr-defined]
    assert retries == {"mode": "adaptive", "total_max_attempts": 11}
    assert labeler.estimated_cost_per_1000 == pytest.approx(1.25)
    assert estimated_cost(2500, price_per_1000=1.0) == pytest.approx(2.5)
