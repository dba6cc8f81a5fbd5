"""Deploy the Labelkit stack, ``infra_scripts/labelkit.yaml``, with CloudFormation change sets.

CloudFormation keeps the state, works out what changes, creates and deletes in dependency
order and rolls a failed create or update back; this module only feeds it:

* :func:`plan`    creates a change set, prints it and deletes it again (nothing changes)
* :func:`apply`   uploads the Lambda zip and the source tarball to the artifacts bucket
                  (as ``aws cloudformation package`` does), creates a change set, prints it,
                  executes it and prints the stack's events until it settles
* :func:`destroy` empties the stack's bucket (CloudFormation deletes only empty buckets),
                  drops the database's final snapshot if asked, deletes the stack and waits
* :func:`write_outputs` writes ``stack-outputs/<stack>.env`` (``LABELKIT_*``) and ``.json``

For ``WebTier=cluster`` (an Application Load Balancer and an Auto Scaling group of hosts),
plan and apply first refuse what the template's rules would (no shared database, no hosts)
and pick the load balancer's subnets when none are given (:func:`prepare_cluster`).

``--stack demo`` is the CloudFormation stack ``labelkit-demo``. Every boto3 client is built
on first use (never at import), or injected, so moto's ``mock_aws`` works.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from botocore.exceptions import ClientError

from infra_scripts.render import env_file_text
from labelkit import aws
from labelkit.retry import poll

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.literals import CapabilityType, ChangeSetTypeType
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("labelkit.yaml")
CAPABILITIES: list[CapabilityType] = [
    "CAPABILITY_NAMED_IAM"
]  # the roles have names (labelkit-<stack>-lambda, -ec2)
STACK_TAG = "labelkit:stack"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_SOURCE_EXCLUDE = {
    ".git", ".venv", "data", "build", "dist", "stack-outputs", "test-artifacts",
    "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules",
}  # fmt: skip

# The template's outputs: (key in stack-outputs/<stack>.json, LABELKIT_* setting or "").
OUTPUTS: dict[str, tuple[str, str]] = {
    "Bucket": ("bucket", ""),
    "StorageUrl": ("storage_url", "LABELKIT_STORAGE_URL"),
    "QueueUrl": ("queue_url", "LABELKIT_QUEUE_URL"),
    "DlqUrl": ("dlq_url", "LABELKIT_DLQ_URL"),
    "QueueMaxReceives": ("queue_max_receives", "LABELKIT_QUEUE_MAX_RECEIVES"),
    "QueueVisibilityTimeout": ("queue_visibility_timeout", "LABELKIT_QUEUE_VISIBILITY_TIMEOUT"),
    "UserPoolId": ("user_pool_id", "LABELKIT_COGNITO_USER_POOL_ID"),
    "ClientId": ("client_id", "LABELKIT_COGNITO_CLIENT_ID"),
    "LambdaArn": ("lambda_arn", "LABELKIT_LAMBDA_ARN"),
    "DatabaseUrl": ("database_url", "LABELKIT_DATABASE_URL"),
    "DatabaseSecretArn": ("database_secret_arn", "LABELKIT_DATABASE_SECRET_ARN"),
    "InstanceId": ("instance_id", "LABELKIT_INSTANCE_ID"),
    "PublicDns": ("public_dns", ""),
    "SourceUrl": ("source_url", ""),
    "LoadBalancerDns": ("load_balancer_dns", ""),
    "AutoScalingGroup": ("auto_scaling_group", ""),
    "SiteUrl": ("site_url", ""),
}
# Settings that are the same for every stack.
FIXED_SETTINGS = {
    "LABELKIT_S3_NOTIFIES_QUEUE": "true",
    "LABELKIT_LABELER": "rekognition",
    "LABELKIT_AUTH_MODE": "cognito",
}


class DeployError(Exception):
    """Something the operator has to fix (a bad name, a missing zip, a failed stack)."""


class Clients:
    """boto3 clients for one region, built on first use (or injected by tests)."""

    def __init__(self, region: str, **injected: Any) -> None:
        self.region = region
        self._cache: dict[str, Any] = dict(injected)

    def _get(self, service: str) -> Any:
        if service not in self._cache:
            self._cache[service] = aws.client(service, region=self.region)
        return self._cache[service]

    @property
    def cloudformation(self) -> CloudFormationClient:
        return self._get("cloudformation")

    @property
    def s3(self) -> S3Client:
        return self._get("s3")

    @property
    def ec2(self) -> Any:  # (boto3-stubs is installed without its ec2 part)
        return self._get("ec2")

    @property
    def sts(self) -> STSClient:
        return self._get("sts")

    @property
    def account(self) -> str:
        if "account" not in self._cache:
            self._cache["account"] = self.sts.get_caller_identity()["Account"]
        return str(self._cache["account"])


@dataclass
class DeployOptions:
    """One stack. ``parameters`` holds the template parameters given on the command line:
    the others take the template's default on create and keep their value on update."""

    name: str
    region: str = "us-east-1"
    parameters: dict[str, str] = field(default_factory=dict)
    lambda_zip: Path | None = None
    source_dir: Path = ROOT
    artifacts_bucket: str = ""  # default: labelkit-artifacts-<account>-<region>
    outputs_dir: Path = Path("stack-outputs")
    final_snapshot: bool = True
    poll_seconds: float = 10.0
    timeout_seconds: float = 3 * 3600.0  # RDS alone takes up to ~15 minutes

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise DeployError(
                f"stack name {self.name!r}: use 1-20 lowercase letters, digits or '-', starting with a letter"
            )

    @property
    def stack(self) -> str:
        return f"labelkit-{self.name}"


Echo = Callable[[str], None]
Sleep = Callable[[float], None]


# --- artifacts -----------------------------------------------------------------------


def artifacts_bucket(opts: DeployOptions, clients: Clients) -> str:
    return opts.artifacts_bucket or f"labelkit-artifacts-{clients.account}-{opts.region}"


def _source_files(root: Path) -> list[Path]:
    if (root / ".git").exists():
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.decode()
        files = [root / n for n in listed.split("\0") if n]
    else:
        files = [p for p in root.rglob("*") if not (_SOURCE_EXCLUDE & set(p.relative_to(root).parts))]
    return sorted(p for p in files if p.is_file() and not p.is_symlink())


def source_tarball(root: Path) -> bytes:
    """A reproducible ``.tar.gz`` of the Labelkit sources (same tree, same bytes)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in _source_files(root):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@dataclass(frozen=True)
class Artifact:
    key: str
    body: bytes


def artifacts(opts: DeployOptions, stack: Mapping[str, Any] | None = None) -> list[Artifact]:
    """What apply uploads, under content-addressed keys: a new zip or tree is a new key, so
    the change set shows the Lambda or the host changing, and an unchanged one shows nothing."""
    found = []
    if opts.lambda_zip is not None:
        if not opts.lambda_zip.is_file():
            raise DeployError(f"--lambda-zip {opts.lambda_zip}: no such file (make lambda-zip)")
        body = opts.lambda_zip.read_bytes()
        found.append(Artifact(f"lambda/{hashlib.sha256(body).hexdigest()[:32]}.zip", body))
    previous = {p["ParameterKey"]: p.get("ParameterValue") for p in (stack or {}).get("Parameters", [])}
    host = opts.parameters.get("CreateInstance", previous.get("CreateInstance", "true")) != "false"
    # A SourceUrl given now, or one the stack has that is not ours (a git URL), is kept.
    ours = previous.get("SourceUrl", "").startswith("s3://") or not previous.get("SourceUrl")
    if host and "SourceUrl" not in opts.parameters and ours:
        body = source_tarball(opts.source_dir)
        found.append(Artifact(f"source/{hashlib.sha256(body).hexdigest()[:32]}.tar.gz", body))
    return found


def upload_artifacts(bucket: str, items: list[Artifact], clients: Clients, echo: Echo) -> None:
    """Create the artifacts bucket if it is missing (private, encrypted), then upload what it lacks."""
    s3 = clients.s3
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        if aws.error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        echo(f"creating the artifacts bucket {bucket}")
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if clients.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": clients.region}
        s3.create_bucket(**kwargs)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
    for item in items:
        try:
            s3.head_object(Bucket=bucket, Key=item.key)
            continue
        except ClientError as e:
            if aws.error_code(e) not in ("404", "NoSuchKey", "NotFound"):
                raise
        echo(f"uploading s3://{bucket}/{item.key} ({len(item.body) // 1024} KiB)")
        s3.put_object(Bucket=bucket, Key=item.key, Body=item.body, ServerSideEncryption="AES256")


# --- the web cluster's network ----------------------------------------------------------

CLUSTER_ZONES = 2  # zones the CLI picks for WebTier=cluster when no subnets are given


def _effective(opts: DeployOptions, stack: Mapping[str, Any] | None, name: str) -> str:
    """A parameter's value after this plan or apply: given, else the stack's, else the default."""
    if name in opts.parameters:
        return opts.parameters[name]
    if _exists(stack):
        assert stack is not None
        for p in stack.get("Parameters", []):
            if p["ParameterKey"] == name:
                return str(p.get("ParameterValue", ""))
    return template_defaults()[name]


def public_subnets(clients: Clients, vpc_id: str, *, zones: int = CLUSTER_ZONES) -> tuple[str, list[str]]:
    """(the VPC, one subnet per zone in ``zones`` zones) where the load balancer can go: subnets
    that give instances a public IP (the default VPC's default subnets are such), the first
    zones by name. ``vpc_id`` "" means the region's default VPC."""
    ec2 = clients.ec2
    if not vpc_id:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise DeployError("the region has no default VPC: pass --vpc-id and --lb-subnet-ids")
        vpc_id = vpcs[0]["VpcId"]
    by_zone: dict[str, str] = {}
    pages = ec2.get_paginator("describe_subnets").paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    for page in pages:
        for s in sorted(page["Subnets"], key=lambda s: s["SubnetId"]):
            if s.get("MapPublicIpOnLaunch") and s.get("State", "available") == "available":
                by_zone.setdefault(s["AvailabilityZone"], s["SubnetId"])
    if len(by_zone) < zones:
        raise DeployError(
            f"VPC {vpc_id} has public subnets (ones that give instances a public IP) in "
            f"{len(by_zone)} zone(s); the load balancer needs {zones}: pass --lb-subnet-ids"
        )
    return vpc_id, [by_zone[z] for z in sorted(by_zone)[:zones]]


def prepare_cluster(
    opts: DeployOptions, clients: Clients, stack: Mapping[str, Any] | None, echo: Echo
) -> None:
    """For WebTier=cluster, check what the template's rules would refuse later (after uploads),
    and pick the load balancer's subnets if neither the options nor the stack name them."""
    if _effective(opts, stack, "WebTier") != "cluster":
        return
    if _effective(opts, stack, "CreateInstance") == "false":
        raise DeployError("--web-tier cluster runs the dashboard on EC2 hosts: drop --no-instance")
    if _effective(opts, stack, "Database") == "none":
        raise DeployError(
            "--web-tier cluster needs one database every host shares: RDS (the default) or "
            "--database-url, not --database none (SQLite on each host)"
        )
    if _effective(opts, stack, "LoadBalancerSubnetIds"):
        return
    vpc_id, subnets = public_subnets(clients, _effective(opts, stack, "VpcId"))
    opts.parameters["LoadBalancerSubnetIds"] = ",".join(subnets)
    echo(
        f"WebTier=cluster: the load balancer and the hosts go in {', '.join(subnets)} of {vpc_id} "
        "(--lb-subnet-ids to choose others)"
    )


# --- stacks and change sets ------------------------------------------------------------


def describe_stack(opts: DeployOptions, clients: Clients) -> dict[str, Any] | None:
    try:
        stacks = clients.cloudformation.describe_stacks(StackName=opts.stack)["Stacks"]
    except ClientError as e:
        if aws.error_code(e) == "ValidationError" and "does not exist" in str(e):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def _exists(stack: Mapping[str, Any] | None) -> bool:
    # A stack that a plan's CREATE change set left in REVIEW_IN_PROGRESS has no resources yet.
    return stack is not None and stack["StackStatus"] != "REVIEW_IN_PROGRESS"


class _TemplateLoader(yaml.SafeLoader):
    """Reads the template's plain YAML; intrinsic functions (``!Ref`` and the like) become None."""


_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_defaults(template: str | None = None) -> dict[str, str]:
    """Every template parameter with its default, as CloudFormation would pass it."""
    text = template if template is not None else TEMPLATE.read_text(encoding="utf-8")
    params = yaml.load(text, Loader=_TemplateLoader)["Parameters"]
    return {name: str(spec.get("Default", "")) for name, spec in params.items()}


def stack_parameters(
    opts: DeployOptions, clients: Clients, stack: Mapping[str, Any] | None, items: list[Artifact]
) -> list[dict[str, Any]]:
    """Every template parameter, spelled out: the given ones and the artifacts' keys; for an
    existing stack the previous value of the others (so an apply never resets what it was not
    told); for a new one the template's default. Spelled out rather than UsePreviousValue, so
    an unchanged stack gets exactly the parameters it has (moto compares them as given)."""
    given = dict(opts.parameters)
    bucket = artifacts_bucket(opts, clients)
    for item in items:
        given["ArtifactsBucket"] = bucket
        if item.key.startswith("lambda/"):
            given["LambdaCodeKey"] = item.key
        else:
            given["SourceUrl"] = f"s3://{bucket}/{item.key}"
    previous = {}
    if _exists(stack):
        assert stack is not None
        previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    out: list[dict[str, Any]] = []
    for name, default in template_defaults().items():
        if name in given:
            out.append({"ParameterKey": name, "ParameterValue": given.pop(name)})
        elif previous.get(name) == "****":  # NoEcho: CloudFormation never shows it back
            out.append({"ParameterKey": name, "UsePreviousValue": True})
        else:
            out.append({"ParameterKey": name, "ParameterValue": previous.get(name, default)})
    if given:
        raise DeployError(f"the template has no parameter(s) {', '.join(sorted(given))}")
    return out


@dataclass
class ChangeSet:
    id: str
    stack_id: str
    kind: str  # CREATE or UPDATE
    changes: list[dict[str, Any]]
    empty: bool = False  # CloudFormation found nothing to change


def create_change_set(
    opts: DeployOptions,
    clients: Clients,
    parameters: list[dict[str, Any]],
    *,
    template: str | None = None,
    sleep: Sleep = time.sleep,
) -> ChangeSet:
    cfn = clients.cloudformation
    stack = describe_stack(opts, clients)
    kind: ChangeSetTypeType = "UPDATE" if _exists(stack) else "CREATE"
    name = f"labelkit-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    try:
        created = cfn.create_change_set(
            StackName=opts.stack,
            ChangeSetName=name,
            ChangeSetType=kind,
            TemplateBody=template if template is not None else TEMPLATE.read_text(encoding="utf-8"),
            Parameters=parameters,  # type: ignore[arg-type]
            Capabilities=CAPABILITIES,
            Tags=[{"Key": STACK_TAG, "Value": opts.stack}],
            Description=f"python -m infra_scripts for stack {opts.name}",
        )
    except ClientError as e:
        if any(s in str(e) for s in _NO_CHANGES):  # moto says so at once; AWS fails the change set
            assert stack is not None
            return ChangeSet("", stack["StackId"], kind, [], empty=True)
        raise
    desc = poll(
        lambda: cfn.describe_change_set(ChangeSetName=created["Id"], StackName=opts.stack),
        done=lambda d: d["Status"] in ("CREATE_COMPLETE", "FAILED"),
        every=min(opts.poll_seconds, 5.0),
        timeout=opts.timeout_seconds,
        sleep=sleep,
    )
    changes = [dict(c["ResourceChange"]) for c in desc.get("Changes", []) if "ResourceChange" in c]
    while desc.get("NextToken"):
        desc = cfn.describe_change_set(
            ChangeSetName=created["Id"], StackName=opts.stack, NextToken=desc["NextToken"]
        )
        changes += [dict(c["ResourceChange"]) for c in desc.get("Changes", []) if "ResourceChange" in c]
    if desc["Status"] == "FAILED":
        reason = desc.get("StatusReason", "")
        if any(s in reason for s in _NO_CHANGES):
            cfn.delete_change_set(ChangeSetName=created["Id"], StackName=opts.stack)
            return ChangeSet("", created["StackId"], kind, [], empty=True)
        raise DeployError(f"the change set failed: {reason}")
    if desc["Status"] != "CREATE_COMPLETE":
        raise DeployError(f"the change set is still {desc['Status']} after {opts.timeout_seconds:.0f} s")
    return ChangeSet(created["Id"], created["StackId"], kind, changes)


_ACTION = {"Add": "+ add", "Modify": "~ modify", "Remove": "- remove", "Import": "> import"}


def describe_change(change: Mapping[str, Any]) -> str:
    action = _ACTION.get(change.get("Action", ""), f"? {change.get('Action', '').lower()}")
    line = f"  {action:<9} {change.get('ResourceType', ''):<44} {change.get('LogicalResourceId', '')}"
    notes = []
    if change.get("Replacement") in ("True", "Conditional"):
        notes.append("replacement" if change["Replacement"] == "True" else "may be replaced")
    properties = sorted(
        {d["Target"]["Name"] for d in change.get("Details", []) if d.get("Target", {}).get("Name")}
    )
    if properties:
        notes.append(", ".join(properties))
    return line + (f" ({'; '.join(notes)})" if notes else "")


def print_change_set(cs: ChangeSet, opts: DeployOptions, echo: Echo) -> None:
    if cs.empty:
        echo(f"No changes: stack {opts.stack} is up to date.")
        return
    verb = "create" if cs.kind == "CREATE" else "update"
    echo(f"Change set to {verb} stack {opts.stack} in {opts.region}:")
    for change in cs.changes:
        echo(describe_change(change))
    counts: dict[str, int] = {}
    for change in cs.changes:
        counts[change.get("Action", "?")] = counts.get(change.get("Action", "?"), 0) + 1
    summary = ", ".join(f"{n} to {a.lower()}" for a, n in counts.items()) or "parameters only"
    echo(f"Plan: {summary}.")


def _discard(cs: ChangeSet, opts: DeployOptions, clients: Clients) -> None:
    cfn = clients.cloudformation
    if cs.id:
        cfn.delete_change_set(ChangeSetName=cs.id, StackName=opts.stack)
    if cs.kind == "CREATE":
        stack = describe_stack(opts, clients)
        if stack is not None and stack["StackStatus"] == "REVIEW_IN_PROGRESS":
            cfn.delete_stack(StackName=cs.stack_id)


def newest_event(clients: Clients, stack_id: str) -> str:
    """The id of the stack's latest event ("" if none): where the next wait starts printing."""
    events = clients.cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
    return events[0]["EventId"] if events else ""


def wait_for_stack(
    opts: DeployOptions, clients: Clients, stack_id: str, *, after: str, echo: Echo, sleep: Sleep
) -> str:
    """Print the stack's events newer than ``after`` until it leaves ``*_IN_PROGRESS``;
    returns the final status. (Event ids, not times: the local clock may be off.)"""
    cfn = clients.cloudformation
    seen = after

    def report() -> str:
        """Print the events since the last call; the stack's status now."""
        nonlocal seen
        new: list[Any] = []
        for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id):
            ids = [e["EventId"] for e in page["StackEvents"]]
            if seen in ids:  # newest first: the rest is what we printed before
                new += page["StackEvents"][: ids.index(seen)]
                break
            new += page["StackEvents"]
        for e in reversed(new):
            reason = f"  {e['ResourceStatusReason']}" if e.get("ResourceStatusReason") else ""
            echo(
                f"  {e['Timestamp']:%H:%M:%S} {e.get('ResourceStatus', ''):<20} "
                f"{e.get('ResourceType', ''):<44} {e.get('LogicalResourceId', '')}{reason}"
            )
        if new:
            seen = new[0]["EventId"]
        return str(cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"])

    def finished(status: str) -> bool:
        return not status.endswith("_IN_PROGRESS")

    status = poll(report, done=finished, every=opts.poll_seconds, timeout=opts.timeout_seconds, sleep=sleep)
    if not finished(status):
        raise DeployError(f"stack {opts.stack} is still {status} after {opts.timeout_seconds:.0f} s")
    return status


# --- plan / apply / destroy -------------------------------------------------------------


def plan(
    opts: DeployOptions, clients: Clients, *, echo: Echo = print, sleep: Sleep = time.sleep
) -> ChangeSet:
    """Print what apply would change. Uploads nothing, and deletes its change set again."""
    stack = describe_stack(opts, clients)
    prepare_cluster(opts, clients, stack, echo)
    cs = create_change_set(
        opts, clients, stack_parameters(opts, clients, stack, artifacts(opts, stack)), sleep=sleep
    )
    if cs.kind == "CREATE" and not opts.lambda_zip and opts.parameters.get("Worker", "lambda") == "lambda":
        echo("note: planned without --lambda-zip: AWS refuses to create the Lambda without it")
    try:
        print_change_set(cs, opts, echo)
    finally:
        _discard(cs, opts, clients)
    return cs


def apply(
    opts: DeployOptions, clients: Clients, *, echo: Echo = print, sleep: Sleep = time.sleep
) -> tuple[ChangeSet, dict[str, str]]:
    """Create or update the stack; returns the change set it ran and the stack's outputs."""
    stack = describe_stack(opts, clients)
    if stack is not None and stack["StackStatus"] == "ROLLBACK_COMPLETE":
        # A first create that failed leaves an empty stack that can only be deleted.
        echo(f"stack {opts.stack} failed to create before (ROLLBACK_COMPLETE): deleting it first")
        after = newest_event(clients, stack["StackId"])
        clients.cloudformation.delete_stack(StackName=stack["StackId"])
        wait_for_stack(opts, clients, stack["StackId"], after=after, echo=echo, sleep=sleep)
        stack = None
    prepare_cluster(opts, clients, stack, echo)
    items = artifacts(opts, stack)
    params = stack_parameters(opts, clients, stack, items)
    if not _exists(stack) and not opts.lambda_zip and opts.parameters.get("Worker", "lambda") == "lambda":
        raise DeployError("creating the stack with the Lambda worker needs --lambda-zip (make lambda-zip)")
    upload_artifacts(artifacts_bucket(opts, clients), items, clients, echo)
    cs = create_change_set(opts, clients, params, sleep=sleep)
    print_change_set(cs, opts, echo)
    if cs.empty:
        return cs, write_outputs(opts, clients)
    after = newest_event(clients, cs.stack_id)
    clients.cloudformation.execute_change_set(ChangeSetName=cs.id, StackName=opts.stack)
    status = wait_for_stack(opts, clients, cs.stack_id, after=after, echo=echo, sleep=sleep)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployError(
            f"stack {opts.stack} ended {status}: CloudFormation rolled the change back "
            "(the events above say why)"
        )
    out = write_outputs(opts, clients)
    echo(f"Apply complete: stack {opts.stack} is {status}.")
    if out.get("site_url"):
        echo(f"Site: {out['site_url']}")
    echo(f"Outputs: {opts.outputs_dir / (opts.name + '.env')} and {opts.outputs_dir / (opts.name + '.json')}")
    return cs, out


def without_final_snapshot(template: str) -> str:
    """The template with the database deleted outright instead of snapshotted first."""
    edited = template.replace("DeletionPolicy: Snapshot", "DeletionPolicy: Delete", 1)
    if edited == template:
        raise DeployError("the deployed template has no 'DeletionPolicy: Snapshot' to switch off")
    return edited


def _empty_bucket(s3: S3Client, bucket: str, echo: Echo) -> None:
    try:
        pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket))
    except ClientError as e:
        if aws.error_code(e) == "NoSuchBucket":
            return
        raise
    count = 0
    for page in pages:
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})  # type: ignore[typeddict-item]
            count += len(objects)
    echo(f"emptied s3://{bucket} ({count} object(s))")


def destroy(opts: DeployOptions, clients: Clients, *, echo: Echo = print, sleep: Sleep = time.sleep) -> bool:
    """Delete the stack (the bucket's objects first). False when there was no such stack."""
    stack = describe_stack(opts, clients)
    if stack is None:
        echo(f"Nothing to delete: no stack {opts.stack} in {opts.region}.")
        return False
    cfn, stack_id = clients.cloudformation, stack["StackId"]
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in _resources(clients, stack_id)
    }
    if physical.get("Bucket"):
        _empty_bucket(clients.s3, physical["Bucket"], echo)
    after = newest_event(clients, stack_id)
    if not opts.final_snapshot and "DbInstance" in physical:
        body = cfn.get_template(StackName=stack_id, TemplateStage="Original")["TemplateBody"]
        text = body if isinstance(body, str) else json.dumps(body)
        echo("switching the database's final snapshot off")
        try:
            cfn.update_stack(
                StackName=stack_id,
                TemplateBody=without_final_snapshot(text),
                Parameters=[
                    {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
                    for p in stack.get("Parameters", [])
                ],
                Capabilities=CAPABILITIES,
            )
            wait_for_stack(opts, clients, stack_id, after=after, echo=echo, sleep=sleep)
        except ClientError as e:
            if not any(s in str(e) for s in _NO_CHANGES):
                raise
    echo(f"Deleting stack {opts.stack} in {opts.region}:")
    after = newest_event(clients, stack_id)
    cfn.delete_stack(StackName=stack_id)
    status = wait_for_stack(opts, clients, stack_id, after=after, echo=echo, sleep=sleep)
    if status != "DELETE_COMPLETE":
        raise DeployError(f"stack {opts.stack} ended {status} (the events above say why)")
    for suffix in (".env", ".json"):
        (opts.outputs_dir / f"{opts.name}{suffix}").unlink(missing_ok=True)
    echo(f"Destroy complete: stack {opts.stack} is deleted.")
    return True


def _resources(clients: Clients, stack_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in clients.cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_id):
        found += [dict(r) for r in page["StackResourceSummaries"]]
    return found


# --- outputs --------------------------------------------------------------------------


def _outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: str(o.get("OutputValue", "")) for o in stack.get("Outputs", [])}


def outputs_json(name: str, region: str, outputs: Mapping[str, str]) -> dict[str, str]:
    """``stack-outputs/<stack>.json``: the stack, its region and every output by its JSON key."""
    return {"stack": name, "region": region, **{key: outputs.get(o, "") for o, (key, _) in OUTPUTS.items()}}


def settings_env(out: Mapping[str, str]) -> dict[str, str]:
    """``LABELKIT_*`` settings for the dashboard and listener, from ``outputs_json``."""
    by_json_key = {key: setting for key, setting in OUTPUTS.values() if setting}
    env = {"LABELKIT_STACK": out.get("stack", ""), "LABELKIT_AWS_REGION": out.get("region", "")}
    env.update({setting: out.get(key, "") for key, setting in by_json_key.items()})
    env.update(FIXED_SETTINGS)
    return {k: v for k, v in env.items() if v}


def write_outputs(opts: DeployOptions, clients: Clients) -> dict[str, str]:
    stack = describe_stack(opts, clients)
    if not _exists(stack):
        raise DeployError(f"no stack {opts.stack} in {opts.region} (run apply first)")
    assert stack is not None
    out = outputs_json(opts.name, opts.region, _outputs(stack))
    opts.outputs_dir.mkdir(parents=True, exist_ok=True)
    env_text = env_file_text(settings_env(out), stack=opts.name)
    (opts.outputs_dir / f"{opts.name}.env").write_text(env_text, encoding="utf-8")
    (opts.outputs_dir / f"{opts.name}.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out
