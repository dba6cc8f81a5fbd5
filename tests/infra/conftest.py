"""Fixtures for the infra_scripts tests: moto with its CloudFormation, a tiny Lambda zip,
a small source tree, deploy options, and an inventory of what carries the stack's tag."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend
from moto.cloudformation.parsing import ResourceMap
from moto.ec2.models.security_groups import SecurityGroup

from infra_scripts import cloudformation as cfn
from tests.integration import aws_fixtures

REGION = aws_fixtures.REGION
# An AMI that moto knows (the template's default resolves AWS's public SSM parameter,
# which moto does not publish for Debian).
MOTO_AMI = "ami-12c6146b"


aws = aws_fixtures.aws


@pytest.fixture(autouse=True)
def aws_change_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 runs a change set but then keeps the stack's old outputs and parameters
    (it refreshes them only in UpdateStack); AWS shows the new ones. Refresh them the same way."""
    original = CloudFormationBackend.execute_change_set

    def execute_change_set(
        self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
    ) -> None:
        original(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        assert change_set is not None
        stack = self.stacks[change_set.stack_id]
        stack.parameters = change_set.parameters
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    monkeypatch.setattr(CloudFormationBackend, "execute_change_set", execute_change_set)


def _if_conditions(node: Any) -> set[str]:
    """The conditions a resource's properties choose by (``Fn::If``)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("Fn::If"), list) and node["Fn::If"]:
            found.add(str(node["Fn::If"][0]))
        for value in node.values():
            found |= _if_conditions(value)
    elif isinstance(node, list):
        for item in node:
            found |= _if_conditions(item)
    return found


@pytest.fixture(autouse=True)
def aws_change_set_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 lists an update's changes from the templates' text alone, so a parameter that
    switches resources on or off through their conditions (WebTier=single -> cluster) lists none.
    AWS evaluates the conditions with the new parameters: it adds the resources whose condition
    became true, removes those whose condition became false and modifies those whose
    ``Fn::If`` chooses differently. List them the same way (the listing only: executing such a
    change set in moto still creates and deletes nothing for it)."""
    original = ChangeSet.diff

    def diff(self: ChangeSet) -> list[Change]:
        changes = original(self)
        if self.change_set_type != "UPDATE":
            return changes
        old = self.stack.resource_map
        new = ResourceMap(
            self.stack_id,
            self.stack_name,
            dict(self.parameters),
            {},
            old._region_name,
            old._account_id,
            self.template_dict,
            None,
        )
        new.load_mapping()
        new.load_parameters()
        new.load_conditions()

        def active(rmap: ResourceMap, resources: dict[str, Any]) -> dict[str, str]:
            return {
                name: r["Type"]
                for name, r in resources.items()
                if not r.get("Condition") or rmap.lazy_condition_map[r["Condition"]]
            }

        before = active(old, old._resource_json_map)
        after = active(new, self.template_dict["Resources"])
        names = set(self.template_dict.get("Conditions", {}))
        flipped = {c for c in names if old.lazy_condition_map[c] != new.lazy_condition_map[c]}
        modified = {c.logical_resource_id for c in changes if c.action == "Modify"}
        listed = [Change("Add", n, after[n]) for n in after if n not in before]
        listed += [Change("Remove", n, before[n]) for n in before if n not in after]
        listed += [
            Change("Modify", n, after[n])
            for n in after
            if n in before and (n in modified or _if_conditions(self.template_dict["Resources"][n]) & flipped)
        ]
        return listed

    monkeypatch.setattr(ChangeSet, "diff", diff)


@pytest.fixture(autouse=True)
def aws_security_group_vpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 answers ``Fn::GetAtt`` on a security group for ``GroupId`` only; AWS also gives
    ``VpcId`` (the cluster's target group takes its VPC from the web security group)."""
    original = SecurityGroup.get_cfn_attribute

    def get_cfn_attribute(self: SecurityGroup, attribute_name: str) -> str:
        if attribute_name == "VpcId":
            return str(self.vpc_id)
        return original(self, attribute_name)

    monkeypatch.setattr(SecurityGroup, "has_cfn_attr", classmethod(lambda cls, a: a in ("GroupId", "VpcId")))
    monkeypatch.setattr(SecurityGroup, "get_cfn_attribute", get_cfn_attribute)


@pytest.fixture
def lambda_zip(tmp_path: Path) -> Path:
    """A stand-in for ``make lambda-zip`` output (moto stores it, never runs it)."""
    path = tmp_path / "lambda.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("lambda_labeler/__init__.py", (2020, 1, 1, 0, 0, 0)), "")
        zf.writestr(
            zipfile.ZipInfo("lambda_labeler/handler.py", (2020, 1, 1, 0, 0, 0)),
            "def lambda_handler(event, context):\n    return {}\n",
        )
    return path


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A small source tree to upload (the real checkout works too, only slower)."""
    src = tmp_path / "src"
    (src / "labelkit").mkdir(parents=True)
    (src / "requirements.txt").write_text("boto3\n")
    (src / "labelkit" / "__init__.py").write_text("")
    return src


@pytest.fixture
def clients(aws: None) -> cfn.Clients:
    return cfn.Clients(REGION)


@pytest.fixture
def make_opts(tmp_path: Path, lambda_zip: Path, source_dir: Path) -> Callable[..., cfn.DeployOptions]:
    def make(name: str = "demo", **parameters: str) -> cfn.DeployOptions:
        return cfn.DeployOptions(
            name=name,
            region=REGION,
            parameters={"ImageId": MOTO_AMI, **parameters},
            lambda_zip=lambda_zip,
            source_dir=source_dir,
            outputs_dir=tmp_path / "stack-outputs",
            poll_seconds=0.05,
            timeout_seconds=120,
        )

    return make


class Echo:
    """Collects progress lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def no_sleep(_seconds: float) -> None:
    return None


def _tags(items: list[Any] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def inventory(clients: cfn.Clients, stack: str) -> set[str]:
    """Every resource of the kinds the template creates that carries ``labelkit:stack=stack``
    (the CloudFormation stack's name, e.g. ``labelkit-demo``), or is named after the stack
    where the service keeps no tags in moto (instance profiles, log groups)."""
    from labelkit import aws

    def client(service: str) -> Any:
        return aws.client(service, region=clients.region)

    s3, sqs, iam, lam, rds, ec2, logs = (
        client(s) for s in ("s3", "sqs", "iam", "lambda", "rds", "ec2", "logs")
    )
    found: set[str] = set()

    def tagged(tags: dict[str, str]) -> bool:
        return tags.get(cfn.STACK_TAG) == stack

    for b in s3.list_buckets().get("Buckets", []):
        try:
            tags = _tags(s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"])
        except s3.exceptions.ClientError:
            tags = {}
        if tagged(tags):
            found.add(f"s3:{b['Name']}")
    for url in sqs.list_queues().get("QueueUrls", []):
        if tagged(sqs.list_queue_tags(QueueUrl=url).get("Tags", {})):
            found.add(f"sqs:{url}")
    for role in iam.list_roles()["Roles"]:
        if tagged(_tags(iam.list_role_tags(RoleName=role["RoleName"])["Tags"])):
            found.add(f"iam-role:{role['RoleName']}")
    for profile in iam.list_instance_profiles()["InstanceProfiles"]:
        if profile["InstanceProfileName"].startswith(f"{stack}-"):
            found.add(f"iam-profile:{profile['InstanceProfileName']}")
    for fn in lam.list_functions()["Functions"]:
        if fn["FunctionName"].startswith(f"{stack}-"):
            found.add(f"lambda:{fn['FunctionName']}")
    for m in lam.list_event_source_mappings()["EventSourceMappings"]:
        if f":function:{stack}-" in m["FunctionArn"]:
            found.add(f"mapping:{m['UUID']}")
    for db in rds.describe_db_instances()["DBInstances"]:
        if tagged(_tags(db.get("TagList"))):
            found.add(f"rds:{db['DBInstanceIdentifier']}")
    for r in ec2.describe_instances(Filters=[{"Name": f"tag:{cfn.STACK_TAG}", "Values": [stack]}])[
        "Reservations"
    ]:
        for i in r["Instances"]:
            if i["State"]["Name"] != "terminated":
                found.add(f"ec2:{i['InstanceId']}")
    for sg in ec2.describe_security_groups(Filters=[{"Name": f"tag:{cfn.STACK_TAG}", "Values": [stack]}])[
        "SecurityGroups"
    ]:
        found.add(f"sg:{sg['GroupId']}")
    for group in logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{stack}-")["logGroups"]:
        found.add(f"logs:{group['logGroupName']}")
    return found
