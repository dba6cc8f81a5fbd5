"""Domain exceptions.

Outside errors (botocore ``ClientError``, ``SQLAlchemyError``, Pillow's
``UnidentifiedImageError`` ...) are translated at the edge into this small tree,
so callers only need to know about these::

    LabelkitError
    ├── ConfigError            settings that cannot work together
    ├── IntakeError            an upload or object that is not an acceptable image
    │                          (``reason`` is shown to people as is)
    ├── DecoderUnavailable     the decoder process could not be started (the machine,
    │                          not the image: worth retrying)
    ├── StorageError           the object store failed
    │   └── ObjectNotFound
    ├── QueueError             the job queue failed
    ├── LabelerError           the labeller failed (``permanent`` = retrying cannot help)
    ├── NotFound               a row that does not exist, or is not yours
    ├── PermissionDenied       an action the signed-in user may not take
    └── AuthError              sign-in / sign-up problems (message shown to people)
        └── AccountLocked
"""

from __future__ import annotations


class LabelkitError(Exception):
    """Base class of every error Labelkit raises on purpose."""


class ConfigError(LabelkitError):
    pass


class IntakeError(LabelkitError):
    """The bytes are not an image Labelkit accepts. ``reason`` is for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DecoderUnavailable(LabelkitError):
    """The sandboxed decoder (``labelkit.sandbox``) could not be started."""


class StorageError(LabelkitError):
    pass


class ObjectNotFound(StorageError):
    pass


class QueueError(LabelkitError):
    pass


class LabelerError(LabelkitError):
    """The labeller failed; ``permanent`` means a retry cannot succeed."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class NotFound(LabelkitError):
    pass


class PermissionDenied(LabelkitError):
    pass


class AuthError(LabelkitError):
    pass


class AccountLocked(AuthError):
    pass
