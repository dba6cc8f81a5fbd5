"""``RekognitionLabeler``: Amazon Rekognition DetectLabels behind the ``Labeler`` protocol.

Rekognition reads an S3 object itself when the image lives in S3
(``Image={"S3Object": ...}``), so the bytes are not uploaded twice; other
images are sent inline (``Image={"Bytes": ...}``). Its answer maps one to one
onto :class:`~labelkit.labelers.base.LabelResult`, except that boxes passing the
frame (``Left + Width > 1``, a negative ``Left``) are cut at the image's edges
(:meth:`~labelkit.labelers.base.BoundingBox.clamped`).

Rekognition's limits are checked *before* calling it, so an image it must
refuse costs no request (and no money), and the reason is one a person
understands:

* JPEG or PNG only (sniffed from the bytes, never from the name);
* at most 15 MB for an S3 object, 5 MB for inline bytes;
* at least 80 pixels on each side.

Errors (``ClientError`` / ``BotoCoreError`` are translated here, at the edge)::

    IntakeError                  the bytes are not a readable image (from labelkit.images)
    LabelerError(permanent=True) Rekognition cannot take this image; retrying cannot help
                                 (limits above, InvalidImageFormatException,
                                 ImageTooLargeException, InvalidS3ObjectException,
                                 InvalidParameterException)
    LabelerError(permanent=False) throttling, 5xx, network, access: worth another delivery

Throttling is first absorbed by botocore's *adaptive* retry mode (10 attempts,
client-side rate limiting), so a ``LabelerError`` for it means the retries ran out.
The boto3 client is injected or built lazily on first use, never at import.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from labelkit import aws
from labelkit.domain import LabelResult
from labelkit.errors import LabelerError
from labelkit.images import inspect_image, sniff_format
from labelkit.labelers.base import ImageInput, LabelOptions

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient

    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["RekognitionLabeler", "estimated_cost"]

MB: Final = 1024 * 1024
MAX_S3_OBJECT_BYTES: Final = 15 * MB
MAX_INLINE_BYTES: Final = 5 * MB
MIN_SIDE: Final = 80
FORMATS: Final = ("JPEG", "PNG")
DEFAULT_MODEL_VERSION: Final = "rekognition-3.0"

# Rekognition's answers that no later delivery can change, with the reason shown to people.
_PERMANENT: Final[dict[str, str]] = {
    "InvalidImageFormatException": "Rekognition cannot read this image format.",
    "ImageTooLargeException": "The image is too large for Rekognition.",
    "InvalidS3ObjectException": "Rekognition cannot read the stored file from S3.",
    "InvalidParameterException": "Rekognition refused the request as invalid.",
}


def estimated_cost(images: int, *, price_per_1000: float) -> float:
    """US dollars for ``images`` DetectLabels calls at ``price_per_1000``
    (``settings.rekognition_price_per_1000``; one call per image)."""
    return max(0, images) * price_per_1000 / 1000


class RekognitionLabeler:
    """Labels images with DetectLabels (general labels and image properties)."""

    def __init__(
        self,
        region: str = "us-east-1",
        client: RekognitionClient | None = None,
        *,
        max_pixels: int = 50_000_000,
        image_properties: bool = True,
        price_per_1000: float = 1.0,
    ) -> None:
        self.region = region
        self.max_pixels = max_pixels
        self.image_properties = image_properties
        self.price_per_1000 = price_per_1000
        self._client = client
        self._lock = threading.Lock()
        self._version = DEFAULT_MODEL_VERSION

    @classmethod
    def from_settings(cls, settings: Settings) -> RekognitionLabeler:
        return cls(
            region=settings.aws_region,
            max_pixels=settings.max_pixels,
            price_per_1000=settings.rekognition_price_per_1000,
        )

    def __repr__(self) -> str:
        return f"RekognitionLabeler(region={self.region!r})"

    @property
    def client(self) -> RekognitionClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = aws.client("rekognition", region=self.region)
        return self._client

    @property
    def model_version(self) -> str:
        """``rekognition-<LabelModelVersion>``: the last version Rekognition reported (3.0 before any)."""
        return self._version

    @property
    def estimated_cost_per_1000(self) -> float:
        """US dollars per 1,000 images, as configured (``LABELKIT_REKOGNITION_PRICE_PER_1000``)."""
        return estimated_cost(1000, price_per_1000=self.price_per_1000)

    # --- the Labeler protocol ------------------------------------------------

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        in_s3 = bool(image.s3_bucket and image.s3_key)
        self.check_limits(image.data, in_s3=in_s3)
        request = self.request_for(image, options)
        try:
            response = self.client.detect_labels(**request)
        except ClientError as e:
            raise _translate_client_error(e) from e
        except BotoCoreError as e:
            raise LabelerError(f"Rekognition could not be reached: {e}") from e
        result = LabelResult.from_rekognition(dict(response))
        self._version = result.model_version
        return result

    # --- pieces, public for tests and the cost page ---------------------------

    def check_limits(self, data: bytes, *, in_s3: bool) -> None:
        """Refuse, without calling Rekognition, an image it would refuse.

        ``IntakeError`` for bytes that are no image at all; a permanent
        ``LabelerError`` for an image outside Rekognition's limits.
        """
        fmt = sniff_format(data)
        if fmt is not None and fmt not in FORMATS:
            raise LabelerError(f"Rekognition accepts only JPEG and PNG; this image is {fmt}.", permanent=True)
        limit = MAX_S3_OBJECT_BYTES if in_s3 else MAX_INLINE_BYTES
        if len(data) > limit:
            where = "stored in S3" if in_s3 else "sent inline"
            raise LabelerError(
                f"The image is {len(data) / MB:.1f} MB; Rekognition accepts at most "
                f"{limit // MB} MB for an image {where}.",
                permanent=True,
            )
        # Full intake check (type, pixel limit, a verification decode): a damaged file
        # fails here as an IntakeError, before any request is paid for.
        info = inspect_image(data, max_bytes=limit, max_pixels=self.max_pixels)
        if min(info.width, info.height) < MIN_SIDE:
            raise LabelerError(
                f"The image is {info.width} × {info.height} pixels; Rekognition needs at least "
                f"{MIN_SIDE} pixels on each side.",
                permanent=True,
            )

    def request_for(self, image: ImageInput, options: LabelOptions) -> dict[str, Any]:
        """The DetectLabels parameters for ``image`` and ``options``."""
        if image.s3_bucket and image.s3_key:
            target: dict[str, Any] = {"S3Object": {"Bucket": image.s3_bucket, "Name": image.s3_key}}
        else:
            target = {"Bytes": image.data}
        features = ["GENERAL_LABELS"] + (["IMAGE_PROPERTIES"] if self.image_properties else [])
        request: dict[str, Any] = {
            "Image": target,
            "MaxLabels": options.max_labels,
            "MinConfidence": options.min_confidence,
            "Features": features,
        }
        filters = {
            name: list(values)
            for name, values in (
                ("LabelInclusionFilters", options.include_labels),
                ("LabelExclusionFilters", options.exclude_labels),
                ("LabelCategoryInclusionFilters", options.include_categories),
                ("LabelCategoryExclusionFilters", options.exclude_categories),
            )
            if values
        }
        if filters:
            request["Settings"] = {"GeneralLabels": filters}
        return request


def _translate_client_error(error: ClientError) -> LabelerError:
    code = aws.error_code(error)
    message = str(error.response.get("Error", {}).get("Message", "")).strip()
    detail = f" ({message})" if message else ""
    if code in _PERMANENT:
        return LabelerError(_PERMANENT[code] + detail, permanent=True)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in ("ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"):
        return LabelerError(f"Rekognition is throttling requests ({code}); it will be retried.{detail}")
    if status >= 500 or code in ("InternalServerError", "ServiceUnavailableException"):
        return LabelerError(f"Rekognition is unavailable ({code or status}); it will be retried.{detail}")
    # Access denied, expired credentials, unknown codes: a fix on our side makes a retry work.
    logger.warning("Rekognition error %s: %s", code, message)
    return LabelerError(f"Rekognition failed ({code or status}).{detail}")
