"""One place for configuration.

Every setting has a default that works on a laptop with no cloud account:
SQLite in ``./data/labelkit.db``, images in ``./data/images``, the local
SQLite-backed queue and the bundled local model. Environment variables with
the ``LABELKIT_`` prefix (or a ``.env`` file) override them; a MySQL URL, an
``s3://`` storage URL or an SQS queue URL switch the adapters.

Call :func:`get_settings` (cached) rather than building ``Settings`` in
modules, so tests can set the environment first and ``get_settings.cache_clear()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def s3_base_url(value: str) -> str:
    """``s3://bucket[/prefix]`` without a trailing slash ("" stays ""); ``ValueError`` otherwise."""
    value = value.strip().rstrip("/")
    if value and (not value.startswith("s3://") or not value[len("s3://") :].split("/")[0]):
        raise ValueError(f"{value!r} is not s3://bucket[/prefix]")
    return value


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """The size limits of the layers an upload crosses, all derived from Labelkit's own
    (``max_upload_bytes``), each a little above the one inside it, so a file intake
    accepts is never refused on the way and a file it refuses is refused with its reason:

    * ``widget_mb``: the upload widget's limit. Streamlit's browser code counts a "MB"
      as 10^6 bytes (2^20 only on Windows), so this is the smallest whole number of
      decimal megabytes that holds a file of exactly ``max_upload_bytes``
      (20 MiB = 20,971,520 bytes -> 21, which the widget shows as "21MB");
    * ``streamlit_mb``: ``server.maxUploadSize`` (Streamlit's server counts MiB and
      checks the request's Content-Length, multipart framing included, against it
      with no allowance): the widget's limit on any platform plus 1 MiB of framing;
    * ``proxy_mb``: nginx's ``client_max_body_size``: Streamlit's limit plus the 1 MiB
      of framing that Streamlit itself allows, so nginx never answers 413 for a body
      Streamlit would take.
    """

    widget_mb: int
    streamlit_mb: int
    proxy_mb: int

    @classmethod
    def for_bytes(cls, max_upload_bytes: int) -> UploadLimits:
        widget = max(1, math.ceil(max_upload_bytes / 1_000_000))
        return cls(widget_mb=widget, streamlit_mb=widget + 1, proxy_mb=widget + 2)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LABELKIT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- where things live -------------------------------------------------
    data_dir: Path = Field(
        default=Path("./data"),
        description="Where the defaults below live: the SQLite database, images and models.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means SQLite in data_dir/labelkit.db. "
        "mysql+pymysql://user@host/db switches to MySQL/RDS.",
    )
    database_password: SecretStr | None = Field(
        default=None, description="Password for database_url, if not inside it."
    )
    database_secret_arn: str = Field(
        default="", description="AWS Secrets Manager ARN holding the database password."
    )
    database_ssl_ca: str = Field(default="", description="CA bundle path for TLS to MySQL/RDS.")
    database_read_timeout: int = Field(
        default=30,
        ge=0,
        description="MySQL: seconds a statement may wait for the server's answer before the "
        "connection is given up (0: forever). Migrations run without it.",
    )
    database_idle_timeout: int = Field(
        default=30,
        ge=0,
        description="MySQL: the server ends a session idle this long (its wait_timeout), so a "
        "connection the client lost cannot keep row locks (0: the server's default).",
    )
    storage_url: str = Field(
        default="",
        description="Folder for images (default data_dir/images) or s3://bucket/prefix.",
    )
    queue_url: str = Field(
        default="local",
        description="'local' (SQLite-backed queue in the database) or an SQS queue URL.",
    )
    queue_name: str = Field(default="labelkit-jobs", description="The local queue's name in its table.")
    queue_visibility_timeout: int = Field(
        default=120, ge=1, description="Seconds a received job stays hidden (extended while it runs)."
    )
    queue_max_receives: int = Field(
        default=4, ge=1, description="Deliveries before a message is dead-lettered."
    )
    s3_notifies_queue: bool = Field(
        default=False,
        description="True when the S3 bucket's event notification feeds the queue "
        "(AWS mode): the dashboard then does not enqueue uploads itself.",
    )
    s3_sse: str = Field(default="AES256", description="S3 server-side encryption header.")
    manifest_s3_url: str = Field(
        default="",
        description="s3://bucket[/prefix] where the image folder is (or will be) copied, so a "
        "local-mode manifest can say source-ref s3://bucket/prefix/<key> (SageMaker and Rekognition "
        "Custom Labels read only s3:// references); empty: a local manifest names file paths. "
        "In S3 mode the storage bucket is used.",
    )
    aws_region: str = Field(
        default="us-east-1", description="Region for S3, SQS, Rekognition and Secrets Manager."
    )
    dashboard_bundle_max_bytes: int = Field(
        default=2_000_000_000,
        ge=1,
        description="Largest export bundle (photos and labels in a zip) the Export page makes, by "
        "the photos' size in bytes; larger ones are refused before they are built and made with "
        "`labelkit export --bundle`, which has no limit and writes straight to a file.",
    )

    # --- intake ------------------------------------------------------------
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="Upload size limit (20 MiB).")
    max_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description="Pixel limit (50 MP); larger images are refused before decoding.",
    )
    thumbnail_size: int = Field(default=320, description="Longest side (px) of the gallery thumbnails.")
    decode_memory_mb: int = Field(
        default=400,
        ge=16,
        description="Most memory one image may need to decode (estimated before decoding; "
        "the decoder process is also capped at about this much above its idle size).",
    )
    decode_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest one image may take to decode before it is refused."
    )
    decode_processes: int = Field(
        default=2, ge=1, description="Decoder processes per dashboard/worker process (decodes at once)."
    )
    decode_isolation: Literal["process", "none"] = Field(
        default="process",
        description="'process': decode in child processes with the deadline and memory cap; "
        "'none': in-process (no deadline; for debugging).",
    )

    # --- labelling ---------------------------------------------------------
    labeler: str = Field(
        default="local",
        description="'local', 'rekognition', or both comma-separated for compare mode.",
    )
    local_model: Literal["lite0", "lite2"] = Field(
        default="lite2", description="lite2 (more accurate) or lite0 (faster)."
    )
    local_precision: Literal["fp32", "int8"] = Field(
        default="int8",
        description="int8 (quantised, about 2x faster, same labels on the test photos) or fp32.",
    )
    local_models: str = Field(
        default="classifier,detector,faces,text,moderation",
        description="Which local models run, comma-separated: classifier (EfficientNet-Lite, "
        "fine-grained names and places), detector (COCO objects, one box each), faces, text (words "
        "in the photo, PP-OCRv6), moderation (the Explicit flag, open_nsfw). "
        "'classifier' alone is the fastest mode (the labeller before the detector existed).",
    )
    face_grouping: bool = Field(
        default=True,
        description="Describe each face the labeller boxes (dlib's face ResNet) and group faces into "
        "people per person (the People page, `labelkit people`); false: faces are boxed, never "
        "described or grouped, for everyone. Each person can also turn it off for themselves.",
    )
    detect_tiles: bool = Field(
        default=True,
        description="When the object detector's first pass finds a crowd (4+ persons) or 3+ small "
        "things, it runs again on 4 overlapping tiles of a larger copy and the boxes are merged "
        "(a crowd gets most of its person boxes); false: one pass only, faster on such photos.",
    )
    calibrate: bool = Field(
        default=True,
        description="Map the confidence of each COCO class's label (and the classifier names under "
        "it) through the calibration fitted on held-out photos, so a label at 90 is right about 9 "
        "times in 10 (docs/models/calibration.md); false: the fusion's raw scores.",
    )
    text_detect_side: int = Field(
        default=480,
        ge=64,
        le=2048,
        description="Longer side (px) of the photo the text model looks for lines in; photos with "
        "lines are then read from a copy of up to 1600 px. Larger finds smaller print and costs more.",
    )
    moderation_threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="The moderation model's probability (0-1) from which a photo is flagged Explicit.",
    )
    blur_explicit: bool = Field(
        default=True,
        description="The gallery blurs photos flagged Explicit until someone clicks Show on the card "
        "(an administrator's choice for the whole site; false shows them as they are).",
    )
    model_dir: Path | None = Field(
        default=None, description="Where exported ONNX models are cached (default data_dir/models)."
    )
    model_threads: int = Field(default=2, ge=1, description="onnxruntime threads.")
    min_confidence: float = Field(
        default=55.0, ge=0, le=100, description="Labels below this confidence are not kept."
    )
    max_labels: int = Field(default=20, ge=1, description="Most labels kept per image.")
    rekognition_price_per_1000: float = Field(
        default=1.00, description="US dollars per 1,000 DetectLabels calls, for the cost estimates."
    )

    # --- listener ----------------------------------------------------------
    listener_workers: int = Field(default=2, ge=1, description="Concurrent jobs per listener.")
    listener_wait_seconds: int = Field(
        default=20, ge=0, le=20, description="A listener's long-poll wait per receive, 0-20 seconds."
    )
    reconcile_every_seconds: int = Field(
        default=300,
        ge=5,
        description="How often a listener looks for images whose job will never come "
        "(dead-lettered, never enqueued) and settles them (labelkit.reconcile).",
    )
    review_target_precision: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="The precision a label's suggested minimum confidence keeps among people's "
        "reviews (the Labels page's thresholds from reviews; set by whoever runs Labelkit).",
    )

    # --- auth --------------------------------------------------------------
    auth_mode: Literal["local", "cognito"] = Field(default="local", description="local accounts or cognito.")
    # Sign-in throttle (local accounts): failures are counted per client + account, per
    # account and per client; past a budget each further attempt waits, the wait doubling.
    login_max_failures: int = Field(
        default=5, ge=1, description="Free failures per client + account (and per trusted browser)."
    )
    login_account_max_failures: int = Field(
        default=20, ge=1, description="Free failures per account from browsers it never signed in on."
    )
    login_client_max_failures: int = Field(
        default=50, ge=1, description="Free failures per client address, over all accounts and sign-ups."
    )
    login_backoff_seconds: int = Field(default=30, ge=1, description="First wait once a budget is spent.")
    login_backoff_max_seconds: int = Field(default=900, ge=1, description="Longest wait.")
    login_window_seconds: int = Field(
        default=3600, ge=60, description="A counter untouched this long starts again from zero."
    )
    login_parallel_hashes: int = Field(
        default=2, ge=1, description="Password hashes checked at once (argon2 takes 64 MiB each)."
    )
    password_min_strength: int = Field(
        default=3, ge=0, le=4, description="Least zxcvbn score (0-4) a new password needs."
    )
    session_max_seconds: int = Field(
        default=14 * 24 * 3600, ge=60, description="A signed-in browser signs in again after this."
    )
    session_idle_seconds: int = Field(
        default=8 * 3600, ge=60, description="A signed-in browser signs in again after this long without use."
    )
    trusted_device_days: int = Field(
        default=180, ge=1, description="How long a browser stays known to an account it signed in to."
    )
    cognito_user_pool_id: str = Field(
        default="", description="The user pool, e.g. eu-west-1_AbC123 (its region is taken from the id)."
    )
    cognito_client_id: str = Field(
        default="", description="The app client (needs ALLOW_USER_SRP_AUTH, ALLOW_REFRESH_TOKEN_AUTH)."
    )
    cognito_client_secret: SecretStr | None = Field(
        default=None, description="Only if the app client has a secret (SECRET_HASH is then sent)."
    )
    cognito_password_flow: Literal["srp", "user_password"] = Field(
        default="srp",
        description="How passwords are checked: SRP (never sent) or USER_PASSWORD_AUTH.",
    )

    @field_validator("labeler")
    @classmethod
    def _known_labelers(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = sorted(set(names) - {"local", "rekognition", "fake"})
        if not names or unknown:
            raise ValueError(f"unknown labeler(s) {unknown or value!r}; use local, rekognition")
        return ",".join(names)

    @field_validator("manifest_s3_url")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        return s3_base_url(value)

    @property
    def manifest_source_ref_base(self) -> str:
        """Where manifests say images are: the S3 storage, else ``manifest_s3_url``, else ""
        (the local folder's file paths)."""
        if self.resolved_storage_url.startswith("s3://"):
            return ""
        return self.manifest_s3_url

    @field_validator("local_models")
    @classmethod
    def _known_local_models(cls, value: str) -> str:
        names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
        known = ("classifier", "detector", "faces", "text", "moderation")
        unknown = sorted(set(names) - set(known))
        if not names or unknown:
            raise ValueError(f"unknown local model(s) {unknown or value!r}; use some of {', '.join(known)}")
        return ",".join(n for n in known if n in names)

    # --- derived -----------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'labelkit.db').as_posix()}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.data_dir / "images").as_posix()

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits.for_bytes(self.max_upload_bytes)

    @property
    def uses_sqs(self) -> bool:
        return self.queue_url.startswith(("https://", "http://"))

    @property
    def uses_s3(self) -> bool:
        return self.resolved_storage_url.startswith("s3://")

    @property
    def local_model_names(self) -> tuple[str, ...]:
        return tuple(self.local_models.split(","))

    @property
    def labeler_names(self) -> list[str]:
        return self.labeler.split(",")


@lru_cache
def get_settings() -> Settings:
    return Settings()
