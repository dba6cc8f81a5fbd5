"""moto fixtures shared by the AWS adapter tests.

A test module binds the ones it uses explicitly (an assignment rather than
``from ... import`` keeps ruff's F401/F811 quiet about fixture parameters)::

    from tests.integration import aws_fixtures

    aws = aws_fixtures.aws
    s3_client = aws_fixtures.s3_client

``aws`` sets fake credentials and a region, removes anything that could send
requests elsewhere (``AWS_ENDPOINT_URL``, profiles, config files) and runs the
test inside ``mock_aws``, so nothing can reach the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from moto import mock_aws

from labelkit import aws as lk_aws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    with mock_aws():
        yield


@pytest.fixture
def s3_client(aws: None) -> S3Client:
    client: S3Client = lk_aws.client("s3", region=REGION)
    return client


@pytest.fixture
def sqs_client(aws: None) -> SQSClient:
    client: SQSClient = lk_aws.client("sqs", region=REGION)
    return client
