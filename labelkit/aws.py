"""Small helpers for talking to AWS.

Every adapter takes an optional boto3 client and builds one only when it is
first needed (never at import or construction time, so moto's ``mock_aws`` and
tests that set credentials late keep working). Built clients use adaptive
retries, which back off on throttling as well as on transient errors.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from labelkit.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)

# read_timeout must stay above SQS's longest long poll (20 s).
BOTO_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 10},
    connect_timeout=10,
    read_timeout=60,
)


def client(service: str, *, region: str, client: Any | None = None) -> Any:
    """``client`` if given, else a new boto3 client for ``service`` in ``region``.

    A fresh ``boto3.session.Session`` is used because the default session is not
    safe to build clients from in several threads at once.
    """
    if client is not None:
        return client
    config = BOTO_CONFIG
    if service == "s3":
        # SigV4 presigned URLs (SigV2 is deprecated and refused in newer regions).
        config = config.merge(Config(signature_version="s3v4"))
    return boto3.session.Session().client(service, region_name=region, config=config)  # type: ignore[call-overload]


# Functions below take a ``client`` argument that shadows the helper's name.
_client = client


def error_code(error: ClientError) -> str:
    """The AWS error code of ``error`` (``""`` if absent)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def secret_password(secret_arn: str, *, region: str, client: SecretsManagerClient | None = None) -> str:
    """The password stored in a Secrets Manager secret.

    The secret is either JSON with a ``"password"`` key (as RDS-managed secrets
    are) or the plain password string.
    """
    sm: SecretsManagerClient = _client("secretsmanager", region=region, client=client)
    try:
        resp = sm.get_secret_value(SecretId=secret_arn)
    except (ClientError, BotoCoreError) as e:
        raise ConfigError(f"cannot read the database secret {secret_arn}: {e}") from e
    raw = resp.get("SecretString")
    if raw is None:
        raise ConfigError(f"secret {secret_arn} has no string value")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(doc, dict):
        password = doc.get("password")
        if not isinstance(password, str):
            raise ConfigError(f"secret {secret_arn} is JSON without a string 'password' key")
        return password
    return raw
