"""Fixtures for the infra_scripts tests: moto accounts, a tiny Lambda zip, stack options."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra_scripts import stack
from tests.integration import aws_fixtures

REGION = aws_fixtures.REGION
aws = aws_fixtures.aws


@pytest.fixture
def lambda_zip(tmp_path: Path) -> Path:
    """A stand-in for ``python -m infra_scripts.lambda_zip`` output (moto never runs it)."""
    path = tmp_path / "lambda.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("lambda_labeler/__init__.py", "")
        zf.writestr("lambda_labeler/handler.py", "def lambda_handler(event, context):\n    return {}\n")
    return path


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A small source tree to upload (the real checkout would work, but slower)."""
    src = tmp_path / "src"
    (src / "labelkit").mkdir(parents=True)
    (src / "requirements.txt").write_text("boto3\n")
    (src / "labelkit" / "__init__.py").write_text("")
    return src


@pytest.fixture
def clients(aws: None) -> stack.Clients:
    return stack.Clients(REGION)


@pytest.fixture
def make_opts(tmp_path: Path, lambda_zip: Path, source_dir: Path) -> Callable[..., stack.StackOptions]:
    def make(name: str = "demo", **overrides: Any) -> stack.StackOptions:
        values: dict[str, Any] = {
            "name": name,
            "region": REGION,
            "lambda_zip": lambda_zip,
            "os": "al2023",  # moto publishes the AL2023 SSM parameter, not Debian's
            "source_dir": source_dir,
            "outputs_dir": tmp_path / "stack-outputs",
        }
        values.update(overrides)
        return stack.StackOptions(**values)

    return make


class Echo:
    """Collects progress lines (and still prints them, for -s runs)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def echo() -> Echo:
    return Echo()


def no_sleep(_seconds: float) -> None:
    return None


def inventory(clients: stack.Clients, name: str) -> set[str]:
    """Every resource of the kinds the stack creates that carries ``labelkit:stack=name``."""
    found: set[str] = set()
    tag = stack.STACK_TAG

    def tagged(tags: dict[str, str]) -> bool:
        return tags.get(tag) == name

    for b in clients.s3.list_buckets().get("Buckets", []):
        try:
            tags = {t["Key"]: t["Value"] for t in clients.s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"]}
        except clients.s3.exceptions.ClientError:
            tags = {}
        if tagged(tags):
            found.add(f"s3:{b['Name']}")
    for url in clients.sqs.list_queues().get("QueueUrls", []):
        if tagged(clients.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})):
            found.add(f"sqs:{url}")
    for role in clients.iam.list_roles()["Roles"]:
        tags = {t["Key"]: t["Value"] for t in clients.iam.list_role_tags(RoleName=role["RoleName"])["Tags"]}
        if tagged(tags):
            found.add(f"iam-role:{role['RoleName']}")
            for p in clients.iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
                found.add(f"iam-policy:{role['RoleName']}/{p}")
    for profile in clients.iam.list_instance_profiles()["InstanceProfiles"]:
        if profile["InstanceProfileName"].startswith(f"labelkit-{name}-"):
            found.add(f"iam-profile:{profile['InstanceProfileName']}")
    for fn in clients.lambda_.list_functions()["Functions"]:
        if tagged(clients.lambda_.list_tags(Resource=fn["FunctionArn"])["Tags"]):
            found.add(f"lambda:{fn['FunctionName']}")
            for m in clients.lambda_.list_event_source_mappings(FunctionName=fn["FunctionName"])[
                "EventSourceMappings"
            ]:
                found.add(f"mapping:{m['UUID']}")
    for pool in clients.cognito.list_user_pools(MaxResults=60)["UserPools"]:
        desc = clients.cognito.describe_user_pool(UserPoolId=pool["Id"])["UserPool"]
        if tagged(desc.get("UserPoolTags", {})):
            found.add(f"cognito:{pool['Id']}")
            for c in clients.cognito.list_user_pool_clients(UserPoolId=pool["Id"])["UserPoolClients"]:
                found.add(f"cognito-client:{c['ClientId']}")
            for g in clients.cognito.list_groups(UserPoolId=pool["Id"])["Groups"]:
                found.add(f"cognito-group:{g['GroupName']}")
    for db in clients.rds.describe_db_instances()["DBInstances"]:
        if tagged({t["Key"]: t["Value"] for t in db.get("TagList", [])}):
            found.add(f"rds:{db['DBInstanceIdentifier']}")
    for s in clients.secrets.list_secrets()["SecretList"]:
        if tagged({t["Key"]: t["Value"] for t in s.get("Tags", [])}):
            found.add(f"secret:{s['Name']}")
    for inst in stack.find_instances(clients, name):
        found.add(f"ec2:{inst['InstanceId']}")
    for sg in clients.ec2.describe_security_groups(Filters=[{"Name": f"tag:{tag}", "Values": [name]}])[
        "SecurityGroups"
    ]:
        found.add(f"sg:{sg['GroupId']}")
    return found
