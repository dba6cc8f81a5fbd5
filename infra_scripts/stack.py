"""Provision, update and tear down one Labelkit stack on AWS.

A stack is everything named ``labelkit-<stack>-…`` and tagged
``labelkit:stack=<stack>``. No state file: every step looks its resources up by
name or tag, compares them with what they should be and changes only the
difference, so ``apply`` is idempotent and finishes what a failed run left
half-done, and ``plan`` is the same walk with no writes.

Steps (``apply`` order; ``destroy`` walks them backwards and deletes only
resources carrying the stack's tag):

1. secret      Secrets Manager ``labelkit/<stack>/db`` (the database password, if any)
2. queues      SQS ``labelkit-<stack>-jobs`` + ``…-jobs-dlq``, redrive, policy for the bucket
3. bucket      S3: public access blocked, SSE-S3, lifecycle, ``users/`` → SQS notification
4. cognito     user pool (e-mail sign-up), app client (no secret), ``admin`` group
5. iam         Lambda role and EC2 role/instance profile with least-privilege inline policies
6. network     security groups web (80/443 in), app (EC2 + Lambda), db (3306 from app)
7. database    RDS MySQL 8 (or ``--database-url``), then Alembic migrations where reachable
8. lambda      the labelling function from the zip + its SQS event source mapping
               (or none with ``create_lambda=False``: the host's listener labels instead)
9. source      the Labelkit source tarball in ``s3://bucket/deploy/`` (unless ``--source-url``)
10. instance   EC2 with the rendered user data (nginx + systemd + Labelkit)

Outputs go to ``stack-outputs/<stack>.env`` (``LABELKIT_*`` lines) and ``.json``.
Every function takes a :class:`Clients`; boto3 clients are built lazily on first
use (never at import), so moto's ``mock_aws`` works.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import secrets
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from sqlalchemy.engine import URL, make_url

from infra_scripts import iam
from infra_scripts.render import HostConfig, env_file_text, render_host_files
from labelkit import aws

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_rds import RDSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

ROOT = Path(__file__).resolve().parents[1]
STACK_TAG = "labelkit:stack"
ROLE_TAG = "labelkit:role"
USER_DATA_TAG = "labelkit:user-data-sha256"
PENDING = "<known after apply>"
LAMBDA_HANDLER = "lambda_labeler.handler.lambda_handler"
NOTIFICATION_ID = "labelkit-uploads"
SOURCE_KEY = "deploy/labelkit-src.tar.gz"
AMI_PARAMETERS = {
    "debian": "/aws/service/debian/release/12/latest/amd64",
    "al2023": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
}
_STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_SOURCE_EXCLUDE = {
    ".git", ".venv", "data", "build", "dist", "stack-outputs", "test-artifacts",
    "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules",
}  # fmt: skip


class StackError(Exception):
    """Something the operator has to fix (a name taken by someone else, a missing option)."""


# --- clients -----------------------------------------------------------------


class Clients:
    """boto3 clients for one region, built on first use (or injected by tests)."""

    def __init__(self, region: str, *, session: boto3.session.Session | None = None, **injected: Any) -> None:
        self.region = region
        self._session = session
        self._cache: dict[str, Any] = dict(injected)
        self._account: str | None = None

    def _get(self, service: str) -> Any:
        if service not in self._cache:
            if self._session is not None:
                self._cache[service] = self._session.client(  # type: ignore[call-overload]
                    service, region_name=self.region, config=aws.BOTO_CONFIG
                )
            else:
                self._cache[service] = aws.client(service, region=self.region)
        return self._cache[service]

    @property
    def s3(self) -> S3Client:
        return self._get("s3")

    @property
    def sqs(self) -> SQSClient:
        return self._get("sqs")

    @property
    def iam(self) -> IAMClient:
        return self._get("iam")

    @property
    def lambda_(self) -> LambdaClient:
        return self._get("lambda")

    @property
    def cognito(self) -> CognitoIdentityProviderClient:
        return self._get("cognito-idp")

    @property
    def rds(self) -> RDSClient:
        return self._get("rds")

    @property
    def ec2(self) -> EC2Client:
        return self._get("ec2")

    @property
    def ssm(self) -> SSMClient:
        return self._get("ssm")

    @property
    def secrets(self) -> SecretsManagerClient:
        return self._get("secretsmanager")

    @property
    def sts(self) -> STSClient:
        return self._get("sts")

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = self.sts.get_caller_identity()["Account"]
        return self._account


# --- options and names -----------------------------------------------------------


@dataclass
class StackOptions:
    name: str
    region: str = "us-east-1"
    # queue
    max_receives: int = 4
    visibility_timeout: int = 360  # >= 6x the Lambda timeout, as AWS advises
    # bucket
    thumbs_expire_days: int = 90
    exports_expire_days: int = 7
    # lambda (create_lambda=False: the EC2 host's listener labels instead)
    create_lambda: bool = True
    lambda_zip: Path | None = None
    lambda_timeout: int = 60
    lambda_memory: int = 1024
    batch_size: int = 10
    max_concurrency: int = 5
    lambda_subnet_ids: list[str] = field(default_factory=list)
    # database
    database_url: str = ""
    create_database: bool = True
    db_instance_class: str = "db.t4g.micro"
    db_engine_version: str = "8.0"
    db_storage_gb: int = 20
    migrate: bool = True
    final_snapshot: bool = True
    # instance
    create_instance: bool = True
    ami: str = ""
    os: Literal["debian", "al2023"] = "debian"
    instance_type: str = "t3.small"
    key_name: str = ""
    subnet_id: str = ""
    allow_cidr: str = "0.0.0.0/0"
    ssh_cidr: str = ""
    replace_instance: bool = False
    ec2_listener: bool = False
    server_name: str = "_"
    # source
    source_url: str = ""
    source_ref: str = ""
    source_dir: Path = ROOT
    # outputs
    outputs_dir: Path = Path("stack-outputs")

    def __post_init__(self) -> None:
        if not _STACK_NAME.match(self.name):
            raise StackError(
                f"stack name {self.name!r}: use 1-20 lowercase letters, digits or '-', starting with a letter"
            )
        if self.max_receives < 1 or self.batch_size < 1 or self.max_concurrency < 2:
            raise StackError("max receives and batch size must be >= 1, max concurrency >= 2")
        if not self.create_lambda and not self.create_instance:
            raise StackError("without the Lambda the EC2 host's listener labels: it needs the instance")
        if not self.create_lambda:
            self.ec2_listener = True
        if self.visibility_timeout < self.lambda_timeout:
            raise StackError("the queue's visibility timeout must be at least the Lambda timeout")

    @property
    def prefix(self) -> str:
        return f"labelkit-{self.name}"

    def bucket(self, account: str) -> str:
        return f"{self.prefix}-{account}-{self.region}"

    @property
    def queue(self) -> str:
        return f"{self.prefix}-jobs"

    @property
    def dlq(self) -> str:
        return f"{self.queue}-dlq"  # as labelkit.queue.sqs.ensure_queues names it

    @property
    def secret(self) -> str:
        return f"labelkit/{self.name}/db"

    @property
    def function(self) -> str:
        return f"{self.prefix}-labeler"

    @property
    def db_instance(self) -> str:
        return self.prefix

    @property
    def tags(self) -> dict[str, str]:
        return {STACK_TAG: self.name}


# --- changes and progress ----------------------------------------------------------

Action = Literal["create", "update", "delete", "replace"]
_SYMBOL = {"create": "+", "update": "~", "delete": "-", "replace": "±"}


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    name: str
    detail: str = ""

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{_SYMBOL[self.action]} {self.action} {self.kind} {self.name}{extra}"


@dataclass
class Run:
    """One walk over the stack: collects changes, prints progress, performs writes unless dry."""

    opts: StackOptions
    clients: Clients
    dry_run: bool = False
    echo: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    changes: list[Change] = field(default_factory=list)
    out: dict[str, str] = field(default_factory=dict)

    def change(self, action: Action, kind: str, name: str, detail: str = "") -> bool:
        """Record (and print) a change; True when it should be performed now."""
        c = Change(action, kind, name, detail)
        self.changes.append(c)
        self.echo(f"    {c}" if self.dry_run else f"    {c} ...")
        return not self.dry_run

    def ok(self, kind: str, name: str) -> None:
        self.echo(f"    = {kind} {name}: up to date")

    def note(self, text: str) -> None:
        self.echo(f"    ! {text}")

    @property
    def bucket(self) -> str:
        return self.opts.bucket(self.clients.account)


def _code(e: ClientError) -> str:
    return aws.error_code(e)


def _tag_list(tags: dict[str, str]) -> list[Any]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _tag_dict(items: list[Any] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _canon(doc: Any) -> str:
    """A comparable form of a JSON document (AWS may return it re-ordered or as a string)."""
    if isinstance(doc, str):
        doc = json.loads(doc)
    return json.dumps(doc, sort_keys=True)


# --- 1. secret ------------------------------------------------------------------


def _url_password(url: str) -> str | None:
    if not url:
        return None
    return make_url(url).password


def _url_without_password(url: str) -> str:
    if not url:
        return ""
    u = make_url(url)
    bare = URL.create(
        u.drivername, username=u.username, host=u.host, port=u.port, database=u.database, query=u.query
    )
    return bare.render_as_string(hide_password=False)


def _find_secret(run: Run) -> dict[str, Any] | None:
    try:
        return dict(run.clients.secrets.describe_secret(SecretId=run.opts.secret))
    except ClientError as e:
        if _code(e) == "ResourceNotFoundException":
            return None
        raise


def step_secret(run: Run) -> None:
    opts = run.opts
    url_password = _url_password(opts.database_url)
    wants_rds = not opts.database_url and opts.create_database
    if url_password is None and not wants_rds:
        run.out["database_secret_arn"] = ""
        run.echo("    (no database password to keep: no secret)")
        return
    sm = run.clients.secrets
    found = _find_secret(run)
    if found is not None and found.get("DeletedDate"):
        if run.change("update", "secret", opts.secret, "restore: it was scheduled for deletion"):
            sm.restore_secret(SecretId=opts.secret)
    if found is None:
        if run.change("create", "secret", opts.secret):
            if url_password is not None:
                value: dict[str, Any] = {"password": url_password}
            else:
                value = {
                    "engine": "mysql",
                    "username": "labelkit",
                    "password": secrets.token_urlsafe(24),
                    "port": 3306,
                    "dbname": "labelkit",
                }
            arn = sm.create_secret(
                Name=opts.secret,
                Description=f"Labelkit database password (stack {opts.name})",
                SecretString=json.dumps(value),
                Tags=_tag_list(opts.tags),
            )["ARN"]
            run.out["database_secret_arn"] = arn
        else:
            run.out["database_secret_arn"] = PENDING
        return
    run.out["database_secret_arn"] = found["ARN"]
    before = len(run.changes)
    if _tag_dict(found.get("Tags")).get(STACK_TAG) != opts.name:
        if run.change("update", "secret", opts.secret, "tags"):
            sm.tag_resource(SecretId=found["ARN"], Tags=_tag_list(opts.tags))
    if url_password is not None and not found.get("DeletedDate"):
        if secret_value(run).get("password") != url_password:
            if run.change("update", "secret", opts.secret, "password from --database-url"):
                sm.put_secret_value(
                    SecretId=found["ARN"], SecretString=json.dumps({"password": url_password})
                )
    if len(run.changes) == before and not found.get("DeletedDate"):
        run.ok("secret", opts.secret)


def secret_value(run: Run) -> dict[str, Any]:
    raw = run.clients.secrets.get_secret_value(SecretId=run.opts.secret).get("SecretString", "{}")
    doc = json.loads(raw)
    return doc if isinstance(doc, dict) else {"password": raw}


# --- 2. queues ---------------------------------------------------------------------


def _queue_url(sqs: SQSClient, name: str) -> str | None:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as e:
        if _code(e) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return None
        raise


def _queue_arn(run: Run, name: str) -> str:
    return f"arn:aws:sqs:{run.opts.region}:{run.clients.account}:{name}"


def _ensure_queue(run: Run, name: str, attrs: dict[str, str]) -> str:
    """Create queue ``name`` or bring its attributes and tags to ``attrs``; returns its URL."""
    sqs = run.clients.sqs
    url = _queue_url(sqs, name)
    if url is None:
        if run.change("create", "sqs queue", name):
            return sqs.create_queue(QueueName=name, Attributes=attrs, tags=run.opts.tags)["QueueUrl"]  # type: ignore[arg-type]
        return PENDING
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
    current: dict[str, str] = {str(k): v for k, v in attributes.items()}
    differs = []
    for key, want in attrs.items():
        have = current.get(key, "")
        if key in ("RedrivePolicy", "Policy"):
            same = bool(have) and _canon(_normalise_redrive(have)) == _canon(_normalise_redrive(want))
        else:
            same = str(have).lower() == want.lower()
        if not same:
            differs.append(key)
    tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    if differs:
        if run.change("update", "sqs queue", name, ", ".join(differs)):
            # All of them, not just the differing ones: moto (unlike SQS) forgets a Policy left out.
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)  # type: ignore[arg-type]
    if tags.get(STACK_TAG) != run.opts.name:
        if run.change("update", "sqs queue", name, "tags"):
            sqs.tag_queue(QueueUrl=url, Tags=run.opts.tags)
    if not differs and tags.get(STACK_TAG) == run.opts.name:
        run.ok("sqs queue", name)
    return url


def _normalise_redrive(doc: str) -> Any:
    parsed = json.loads(doc)
    if isinstance(parsed, dict) and "maxReceiveCount" in parsed:
        parsed["maxReceiveCount"] = int(parsed["maxReceiveCount"])
    return parsed


def step_queues(run: Run) -> None:
    """Mirrors :func:`labelkit.queue.sqs.ensure_queues` (same names and attributes), plus tags
    and the policy that lets the bucket send, and reports what it changes."""
    opts = run.opts
    dlq_url = _ensure_queue(
        run, opts.dlq, {"MessageRetentionPeriod": str(14 * 24 * 3600), "SqsManagedSseEnabled": "true"}
    )
    queue_arn = _queue_arn(run, opts.queue)
    redrive = {"deadLetterTargetArn": _queue_arn(run, opts.dlq), "maxReceiveCount": str(opts.max_receives)}
    policy = iam.queue_policy(queue_arn=queue_arn, bucket=run.bucket, account=run.clients.account)
    queue_url = _ensure_queue(
        run,
        opts.queue,
        {
            "VisibilityTimeout": str(opts.visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps(redrive),
            "Policy": json.dumps(policy),
            "SqsManagedSseEnabled": "true",
        },
    )
    run.out.update(queue_url=queue_url, dlq_url=dlq_url)


# --- 3. bucket ------------------------------------------------------------------------


def _bucket_exists(s3: S3Client, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except ClientError as e:
        if _code(e) in ("404", "NoSuchBucket", "NotFound"):
            return False
        if _code(e) in ("403", "AccessDenied"):
            raise StackError(f"bucket {bucket} exists but belongs to someone else") from e
        raise


def _bucket_tags(s3: S3Client, bucket: str) -> dict[str, str]:
    try:
        return _tag_dict(s3.get_bucket_tagging(Bucket=bucket).get("TagSet"))
    except ClientError as e:
        if _code(e) == "NoSuchTagSet":
            return {}
        raise


def lifecycle_rules(opts: StackOptions) -> list[dict[str, Any]]:
    return [
        {
            "ID": "thumbs-expire",
            "Status": "Enabled",
            "Filter": {"Prefix": "thumbs/"},
            "Expiration": {"Days": opts.thumbs_expire_days},
        },
        {
            "ID": "exports-expire",
            "Status": "Enabled",
            "Filter": {"Prefix": "exports/"},
            "Expiration": {"Days": opts.exports_expire_days},
        },
        {
            "ID": "abort-incomplete-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


def notification_config(queue_arn: str) -> dict[str, Any]:
    return {
        "QueueConfigurations": [
            {
                "Id": NOTIFICATION_ID,
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "users/"}]}},
            }
        ]
    }


_PUBLIC_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _read(call: Callable[[], Any], missing: tuple[str, ...]) -> Any:
    try:
        return call()
    except ClientError as e:
        if _code(e) in missing:
            return None
        raise


def _norm_notification(cfg: dict[str, Any] | None) -> str:
    out = []
    for q in (cfg or {}).get("QueueConfigurations", []):
        rules = q.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        out.append(
            {
                "arn": q.get("QueueArn"),
                "events": sorted(q.get("Events", [])),
                "rules": sorted((r["Name"].lower(), r["Value"]) for r in rules),
            }
        )
    return _canon(out)


def _norm_lifecycle(rules: list[dict[str, Any]] | None) -> str:
    out = []
    for r in rules or []:
        prefix = r.get("Filter", {}).get("Prefix", r.get("Prefix", ""))
        out.append(
            [
                r.get("ID"),
                r.get("Status"),
                prefix,
                r.get("Expiration", {}).get("Days"),
                r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
            ]
        )
    return _canon(sorted(out, key=str))


def step_bucket(run: Run) -> None:
    s3, opts, bucket = run.clients.s3, run.opts, run.bucket
    run.out.update(bucket=bucket, storage_url=f"s3://{bucket}")
    queue_arn = _queue_arn(run, opts.queue)
    exists = _bucket_exists(s3, bucket)
    if not exists:
        if not run.change("create", "s3 bucket", bucket, "private, SSE-S3, lifecycle, users/ -> SQS"):
            return
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if opts.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": opts.region}
        s3.create_bucket(**kwargs)
    before = len(run.changes)
    quiet = not exists  # a new bucket's settings are part of its "create"

    def setting(name: str, same: bool, apply: Callable[[], Any]) -> None:
        if same:
            return
        if quiet:
            apply()
        elif run.change("update", "s3 bucket", bucket, name):
            apply()

    tags = _bucket_tags(s3, bucket) if exists else {}
    setting(
        "tags",
        tags.get(STACK_TAG) == opts.name,
        lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _tag_list({**tags, **opts.tags})}),
    )
    block = _read(
        lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        ("NoSuchPublicAccessBlockConfiguration",),
    )
    setting(
        "public access block",
        block == _PUBLIC_BLOCK,
        lambda: s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration=_PUBLIC_BLOCK,  # type: ignore[arg-type]
        ),
    )
    enc = _read(
        lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"],
        ("ServerSideEncryptionConfigurationNotFoundError",),
    )
    enc_ok = bool(enc) and enc[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    setting(
        "default encryption",
        enc_ok,
        lambda: s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        ),
    )
    rules = lifecycle_rules(opts)
    have_rules = _read(
        lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        ("NoSuchLifecycleConfiguration",),
    )
    setting(
        "lifecycle",
        _norm_lifecycle(have_rules) == _norm_lifecycle(rules),
        lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={"Rules": rules},  # type: ignore[typeddict-item]
        ),
    )
    want_notif = notification_config(queue_arn)
    have_notif = s3.get_bucket_notification_configuration(Bucket=bucket) if exists else None
    setting(
        "event notification",
        _norm_notification(have_notif) == _norm_notification(want_notif),  # type: ignore[arg-type]
        lambda: s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration=want_notif,  # type: ignore[arg-type]
        ),
    )
    if exists and len(run.changes) == before:
        run.ok("s3 bucket", bucket)


# --- 4. cognito ------------------------------------------------------------------------

PASSWORD_POLICY = {
    "MinimumLength": 12,
    "RequireUppercase": True,
    "RequireLowercase": True,
    "RequireNumbers": True,
    "RequireSymbols": False,
    "TemporaryPasswordValidityDays": 7,
}
AUTH_FLOWS = ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"]


def find_user_pool(cognito: CognitoIdentityProviderClient, name: str) -> str | None:
    for page in cognito.get_paginator("list_user_pools").paginate(PaginationConfig={"PageSize": 60}):
        for pool in page.get("UserPools", []):
            if pool.get("Name") == name:
                return pool["Id"]
    return None


def _pool_settings(opts: StackOptions) -> dict[str, Any]:
    return {
        "Policies": {"PasswordPolicy": PASSWORD_POLICY},
        "AutoVerifiedAttributes": ["email"],
        "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": False},
        "AccountRecoverySetting": {"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
        "MfaConfiguration": "OFF",
        "UserPoolTags": opts.tags,
    }


def _client_settings() -> dict[str, Any]:
    return {
        "ExplicitAuthFlows": AUTH_FLOWS,
        "PreventUserExistenceErrors": "ENABLED",
        "EnableTokenRevocation": True,
    }


def step_cognito(run: Run) -> None:
    cognito, opts = run.clients.cognito, run.opts
    pool_name, client_name = opts.prefix, f"{opts.prefix}-web"
    pool_id = find_user_pool(cognito, pool_name)
    if pool_id is None:
        if run.change("create", "cognito user pool", pool_name, "e-mail sign-up, verified e-mail"):
            pool_id = cognito.create_user_pool(
                PoolName=pool_name, UsernameAttributes=["email"], **_pool_settings(opts)
            )["UserPool"]["Id"]
    else:
        pool = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
        have = pool.get("Policies", {}).get("PasswordPolicy", {})
        same = all(have.get(k) == v for k, v in PASSWORD_POLICY.items())
        same = same and "email" in pool.get("AutoVerifiedAttributes", [])
        same = same and pool.get("UserPoolTags", {}).get(STACK_TAG) == opts.name
        if not same:
            if run.change("update", "cognito user pool", pool_name, "password policy, verification, tags"):
                cognito.update_user_pool(UserPoolId=pool_id, **_pool_settings(opts))
        else:
            run.ok("cognito user pool", pool_name)
    run.out["user_pool_id"] = pool_id or PENDING

    client_id = None
    if pool_id is not None:
        for page in cognito.get_paginator("list_user_pool_clients").paginate(
            UserPoolId=pool_id, PaginationConfig={"PageSize": 60}
        ):
            for c in page.get("UserPoolClients", []):
                if c.get("ClientName") == client_name:
                    client_id = c["ClientId"]
    if client_id is None:
        if run.change("create", "cognito app client", client_name, "no secret; SRP, password, refresh"):
            assert pool_id is not None
            client_id = cognito.create_user_pool_client(
                UserPoolId=pool_id, ClientName=client_name, GenerateSecret=False, **_client_settings()
            )["UserPoolClient"]["ClientId"]
    else:
        assert pool_id is not None
        c = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]
        if sorted(c.get("ExplicitAuthFlows", [])) != AUTH_FLOWS or c.get("ClientSecret"):
            if c.get("ClientSecret"):
                raise StackError(f"app client {client_name} has a secret; delete it and apply again")
            if run.change("update", "cognito app client", client_name, "auth flows"):
                cognito.update_user_pool_client(
                    UserPoolId=pool_id, ClientId=client_id, ClientName=client_name, **_client_settings()
                )
        else:
            run.ok("cognito app client", client_name)
    run.out["client_id"] = client_id or PENDING

    has_group = False
    if pool_id is not None:
        has_group = (
            _read(
                lambda: cognito.get_group(GroupName="admin", UserPoolId=pool_id),
                ("ResourceNotFoundException",),
            )
            is not None
        )
    if not has_group:
        if run.change("create", "cognito group", "admin"):
            assert pool_id is not None
            cognito.create_group(GroupName="admin", UserPoolId=pool_id, Description="Labelkit administrators")
    else:
        run.ok("cognito group", "admin")


# --- 5. iam --------------------------------------------------------------------------


def _ensure_role(run: Run, name: str, service: str, policy: dict[str, Any], managed: list[str]) -> str:
    client, opts = run.clients.iam, run.opts
    trust = iam.trust_policy(service)
    role = _read(lambda: client.get_role(RoleName=name)["Role"], ("NoSuchEntity",))
    before = len(run.changes)
    if role is None:
        if run.change("create", "iam role", name, f"for {service}"):
            role = client.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=f"Labelkit stack {opts.name}",
                Tags=_tag_list(opts.tags),
            )["Role"]
    else:
        if _canon(role["AssumeRolePolicyDocument"]) != _canon(trust):
            if run.change("update", "iam role", name, "trust policy"):
                client.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        if _tag_dict(role.get("Tags")).get(STACK_TAG) != opts.name:
            if run.change("update", "iam role", name, "tags"):
                client.tag_role(RoleName=name, Tags=_tag_list(opts.tags))
    if role is not None:
        have = _read(
            lambda: client.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"],
            ("NoSuchEntity",),
        )
        if have is None or _canon(have) != _canon(policy):
            # A role created just now gets its policy as part of its "create".
            if len(run.changes) > before and run.changes[-1] == Change(
                "create", "iam role", name, f"for {service}"
            ):
                client.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
            elif run.change("update" if have else "create", "iam policy", name, "inline, least privilege"):
                client.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    attached = set()
    if role is not None:
        attached = {
            p["PolicyArn"]
            for p in client.list_attached_role_policies(RoleName=name).get("AttachedPolicies", [])
        }
    for arn in managed:
        if arn not in attached and not (role is None and run.dry_run):
            if run.change("update", "iam role", name, f"attach {arn.rsplit('/', 1)[-1]}"):
                client.attach_role_policy(RoleName=name, PolicyArn=arn)
    for arn in attached - set(managed):
        if run.change("update", "iam role", name, f"detach {arn.rsplit('/', 1)[-1]}"):
            client.detach_role_policy(RoleName=name, PolicyArn=arn)
    if len(run.changes) == before:
        run.ok("iam role", name)
    return role["Arn"] if role else PENDING


def _pool_arn(run: Run) -> str:
    pool_id = run.out.get("user_pool_id", PENDING)
    return f"arn:aws:cognito-idp:{run.opts.region}:{run.clients.account}:userpool/{pool_id}"


def step_iam(run: Run) -> None:
    opts, account = run.opts, run.clients.account
    secret_arn = run.out.get("database_secret_arn", "")
    lambda_policy = iam.lambda_policy(
        bucket=run.bucket,
        queue_arn=_queue_arn(run, opts.queue),
        region=opts.region,
        account=account,
        function_name=opts.function,
        secret_arn=secret_arn,
    )
    managed = [iam.LAMBDA_VPC_POLICY_ARN] if opts.lambda_subnet_ids else []
    if opts.create_lambda:
        run.out["lambda_role_arn"] = _ensure_role(
            run, f"{opts.prefix}-lambda", "lambda.amazonaws.com", lambda_policy, managed
        )
    if not opts.create_instance:
        return
    ec2_policy = iam.ec2_policy(
        bucket=run.bucket,
        queue_arn=_queue_arn(run, opts.queue),
        dlq_arn=_queue_arn(run, opts.dlq),
        user_pool_arn=_pool_arn(run),
        secret_arn=secret_arn,
        listener=opts.ec2_listener,
    )
    role_name = f"{opts.prefix}-ec2"
    _ensure_role(run, role_name, "ec2.amazonaws.com", ec2_policy, [])
    client = run.clients.iam
    profile = _read(
        lambda: client.get_instance_profile(InstanceProfileName=role_name)["InstanceProfile"],
        ("NoSuchEntity",),
    )
    if profile is None:
        if run.change("create", "iam instance profile", role_name):
            client.create_instance_profile(InstanceProfileName=role_name, Tags=_tag_list(opts.tags))
            client.add_role_to_instance_profile(InstanceProfileName=role_name, RoleName=role_name)
    elif role_name not in [r["RoleName"] for r in profile.get("Roles", [])]:
        if run.change("update", "iam instance profile", role_name, "add role"):
            client.add_role_to_instance_profile(InstanceProfileName=role_name, RoleName=role_name)
    else:
        run.ok("iam instance profile", role_name)


# --- 6. network -----------------------------------------------------------------------


def _default_vpc(run: Run) -> str:
    vpcs = run.clients.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise StackError("no default VPC in this region: create one (aws ec2 create-default-vpc)")
    return vpcs[0]["VpcId"]


def _find_sg(run: Run, name: str, vpc: str) -> dict[str, Any] | None:
    groups = run.clients.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]
    )["SecurityGroups"]
    return dict(groups[0]) if groups else None


def _has_rule(group: dict[str, Any], port: int, *, cidr: str = "", source: str = "") -> bool:
    for p in group.get("IpPermissions", []):
        if p.get("IpProtocol") == "tcp" and p.get("FromPort") == port and p.get("ToPort") == port:
            if cidr and any(r.get("CidrIp") == cidr for r in p.get("IpRanges", [])):
                return True
            if source and any(g.get("GroupId") == source for g in p.get("UserIdGroupPairs", [])):
                return True
    return False


def _ensure_sg(run: Run, name: str, vpc: str, description: str, rules: list[tuple[int, str, str]]) -> str:
    """``rules``: ``(port, cidr, source group id)`` ingress rules that must exist."""
    ec2, opts = run.clients.ec2, run.opts
    group = _find_sg(run, name, vpc)
    if group is None:
        if not run.change("create", "security group", name, description):
            return PENDING
        gid = ec2.create_security_group(
            GroupName=name,
            Description=description,
            VpcId=vpc,
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": _tag_list({**opts.tags, "Name": name})}
            ],
        )["GroupId"]
        group = {"GroupId": gid, "IpPermissions": [], "Tags": _tag_list(opts.tags)}
        quiet = True
    else:
        quiet = False
    gid = group["GroupId"]
    before = len(run.changes)
    if _tag_dict(group.get("Tags")).get(STACK_TAG) != opts.name:
        if run.change("update", "security group", name, "tags"):
            ec2.create_tags(Resources=[gid], Tags=_tag_list(opts.tags))
    for port, cidr, source in rules:
        if source == PENDING or _has_rule(group, port, cidr=cidr, source=source):
            continue
        if quiet or run.change("update", "security group", name, f"allow {port} from {cidr or source}"):
            perm: Any = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
            if cidr:
                perm["IpRanges"] = [{"CidrIp": cidr}]
            else:
                perm["UserIdGroupPairs"] = [{"GroupId": source}]
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[perm])
    if not quiet and len(run.changes) == before:
        run.ok("security group", name)
    return str(gid)


def _needs_rds(opts: StackOptions) -> bool:
    return not opts.database_url and opts.create_database


def step_network(run: Run) -> None:
    opts = run.opts
    if not (opts.create_instance or _needs_rds(opts) or opts.lambda_subnet_ids):
        run.echo("    (no instance, database or Lambda VPC: no security groups)")
        return
    vpc = _default_vpc(run)
    run.out["vpc_id"] = vpc
    app = _ensure_sg(run, f"{opts.prefix}-app", vpc, "Labelkit app (EC2 and Lambda)", [])
    run.out["app_sg"] = app
    if opts.create_instance:
        web_rules = [(80, opts.allow_cidr, ""), (443, opts.allow_cidr, "")]
        if opts.ssh_cidr:
            web_rules.append((22, opts.ssh_cidr, ""))
        run.out["web_sg"] = _ensure_sg(run, f"{opts.prefix}-web", vpc, "Labelkit web (nginx)", web_rules)
    if _needs_rds(opts):
        run.out["db_sg"] = _ensure_sg(
            run, f"{opts.prefix}-db", vpc, "Labelkit database (MySQL from the app)", [(3306, "", app)]
        )


# --- 7. database ------------------------------------------------------------------------


def _find_db(run: Run) -> dict[str, Any] | None:
    return _read(
        lambda: run.clients.rds.describe_db_instances(DBInstanceIdentifier=run.opts.db_instance)[
            "DBInstances"
        ][0],
        ("DBInstanceNotFound", "DBInstanceNotFoundFault"),
    )


def step_database(run: Run) -> None:
    opts = run.opts
    if opts.database_url:
        run.out["database_url"] = _url_without_password(opts.database_url)
        run.echo(f"    (using the existing database {run.out['database_url']})")
        return
    if not opts.create_database:
        run.out["database_url"] = ""
        run.note("no database: the host uses SQLite and the Lambda cannot reach it (--skip-rds)")
        return
    rds = run.clients.rds
    db: Any = _find_db(run)
    if db is None:
        if not run.change(
            "create",
            "rds instance",
            opts.db_instance,
            f"MySQL {opts.db_engine_version}, {opts.db_instance_class}",
        ):
            run.out["database_url"] = PENDING
            return
        password = secret_value(run)["password"]
        db = rds.create_db_instance(
            DBInstanceIdentifier=opts.db_instance,
            Engine="mysql",
            EngineVersion=opts.db_engine_version,
            DBInstanceClass=opts.db_instance_class,
            AllocatedStorage=opts.db_storage_gb,
            StorageType="gp3",
            StorageEncrypted=True,
            MasterUsername="labelkit",
            MasterUserPassword=password,
            DBName="labelkit",
            VpcSecurityGroupIds=[run.out["db_sg"]],
            PubliclyAccessible=False,
            BackupRetentionPeriod=7,
            CopyTagsToSnapshot=True,
            AutoMinorVersionUpgrade=True,
            Tags=_tag_list(opts.tags),
        )["DBInstance"]
    else:
        if _tag_dict(db.get("TagList")).get(STACK_TAG) != opts.name:
            raise StackError(
                f"RDS instance {opts.db_instance} exists but is not tagged {STACK_TAG}={opts.name}"
            )
        run.ok("rds instance", opts.db_instance)
    if db.get("DBInstanceStatus") != "available" or not db.get("Endpoint"):
        run.echo(f"    waiting for {opts.db_instance} to become available (5-15 minutes on AWS) ...")
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=opts.db_instance, WaiterConfig={"Delay": 20, "MaxAttempts": 90}
        )
        db = _find_db(run) or db
    endpoint = db["Endpoint"]
    url = f"mysql+pymysql://labelkit@{endpoint['Address']}:{endpoint.get('Port', 3306)}/labelkit"
    run.out["database_url"] = url
    stored = secret_value(run)
    if stored.get("host") != endpoint["Address"]:
        # Keep the secret shaped like an RDS-managed one (host, port, dbname) for other tools.
        stored.update(host=endpoint["Address"], port=endpoint.get("Port", 3306))
        run.clients.secrets.put_secret_value(SecretId=opts.secret, SecretString=json.dumps(stored))


def _db_revisions(url: str, password: str | None) -> tuple[set[str], set[str]]:
    """(current revisions of the database, head revisions of the migrations)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from labelkit.db.engine import make_engine
    from labelkit.db.migrate import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    engine = make_engine(url, password=password)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    return current, heads


def step_migrate(run: Run) -> None:
    opts = run.opts
    if not opts.migrate:
        run.echo("    (migrations skipped: --skip-migrate)")
        return
    if not opts.database_url:
        if _needs_rds(opts):
            run.echo("    (the RDS instance is private: the EC2 host migrates it on boot)")
        return
    from labelkit.db.engine import make_engine
    from labelkit.db.migrate import upgrade

    url = opts.database_url
    current, heads = _db_revisions(url, None)
    shown = _url_without_password(url)
    if current == heads:
        run.ok("database schema", shown)
        return
    if run.change("update", "database schema", shown, f"alembic upgrade {', '.join(sorted(heads))}"):
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()


# --- 8. lambda ------------------------------------------------------------------------


def lambda_env(run: Run) -> dict[str, str]:
    out, opts = run.out, run.opts
    env = {
        "LABELKIT_DATABASE_URL": out.get("database_url", ""),
        "LABELKIT_DATABASE_SECRET_ARN": out.get("database_secret_arn", ""),
        "LABELKIT_STORAGE_URL": f"s3://{run.bucket}",
        "LABELKIT_QUEUE_URL": out.get("queue_url", PENDING),
        "LABELKIT_QUEUE_MAX_RECEIVES": str(opts.max_receives),
        "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": str(opts.visibility_timeout),
        "LABELKIT_S3_NOTIFIES_QUEUE": "true",
        "LABELKIT_LABELER": "rekognition",
        "LABELKIT_AWS_REGION": opts.region,
        "LABELKIT_DATA_DIR": "/tmp/labelkit",  # the only writable place in Lambda
    }
    return {k: v for k, v in env.items() if v}


def _zip_sha256(path: Path) -> str:
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def _find_function(run: Run) -> dict[str, Any] | None:
    return _read(
        lambda: run.clients.lambda_.get_function(FunctionName=run.opts.function),
        ("ResourceNotFoundException",),
    )


def _upload_zip(run: Run, path: Path, sha: str) -> str:
    key = f"deploy/lambda-{hashlib.sha256(sha.encode()).hexdigest()[:16]}.zip"
    run.clients.s3.upload_file(str(path), run.bucket, key)
    return key


def _with_iam_retry(run: Run, call: Callable[[], Any]) -> Any:
    """A just-created role takes a few seconds to become assumable by Lambda/EC2."""
    for attempt in range(12):
        try:
            return call()
        except ClientError as e:
            message = str(e)
            propagating = "cannot be assumed" in message or "Invalid IAM Instance Profile" in message
            if _code(e) not in ("InvalidParameterValueException", "InvalidParameterValue") or not propagating:
                raise
            if attempt == 11:
                raise
            run.echo("    (waiting for the new IAM role to propagate)")
            run.sleep(5)
    raise AssertionError("unreachable")


def step_lambda(run: Run) -> None:
    opts, lam = run.opts, run.clients.lambda_
    if not opts.create_lambda:
        run.echo("    (no Lambda: the EC2 host's listener labels the uploads)")
        return
    found = _find_function(run)
    env = lambda_env(run)
    vpc: dict[str, Any] = {}
    if opts.lambda_subnet_ids:
        vpc = {
            "SubnetIds": list(opts.lambda_subnet_ids),
            "SecurityGroupIds": [run.out.get("app_sg", PENDING)],
        }
    config: dict[str, Any] = {
        "Runtime": "python3.11",
        "Handler": LAMBDA_HANDLER,
        "Role": run.out.get("lambda_role_arn", PENDING),
        "Timeout": opts.lambda_timeout,
        "MemorySize": opts.lambda_memory,
        "Environment": {"Variables": env},
        "Description": f"Labelkit labeller (stack {opts.name})",
    }
    if vpc:
        config["VpcConfig"] = vpc
    sha = _zip_sha256(opts.lambda_zip) if opts.lambda_zip else None
    if found is None:
        if opts.lambda_zip is None and not run.dry_run:
            raise StackError(
                "creating the Lambda function needs --lambda-zip (python -m infra_scripts.lambda_zip)"
            )
        if run.change("create", "lambda function", opts.function, "python3.11, from the zip"):
            assert opts.lambda_zip is not None and sha is not None
            key = _upload_zip(run, opts.lambda_zip, sha)
            fn = _with_iam_retry(
                run,
                lambda: lam.create_function(
                    FunctionName=opts.function,
                    Code={"S3Bucket": run.bucket, "S3Key": key},
                    Architectures=["x86_64"],
                    Tags=opts.tags,
                    **config,
                ),
            )
            lam.get_waiter("function_active_v2").wait(FunctionName=opts.function)
            run.out["lambda_arn"] = fn["FunctionArn"]
        else:
            run.out["lambda_arn"] = PENDING
    else:
        cfg = found["Configuration"]
        run.out["lambda_arn"] = cfg["FunctionArn"]
        before = len(run.changes)
        tags = found.get("Tags", {})
        if tags.get(STACK_TAG) != opts.name:
            if run.change("update", "lambda function", opts.function, "tags"):
                lam.tag_resource(Resource=cfg["FunctionArn"], Tags=opts.tags)
        have = {
            "Runtime": cfg.get("Runtime"),
            "Handler": cfg.get("Handler"),
            "Role": cfg.get("Role"),
            "Timeout": cfg.get("Timeout"),
            "MemorySize": cfg.get("MemorySize"),
            "Environment": {"Variables": cfg.get("Environment", {}).get("Variables", {})},
            "Description": cfg.get("Description"),
        }
        if vpc:
            have_vpc = cfg.get("VpcConfig") or {}
            have["VpcConfig"] = {
                "SubnetIds": have_vpc.get("SubnetIds", []),
                "SecurityGroupIds": have_vpc.get("SecurityGroupIds", []),
            }
        differs = sorted(k for k in config if _dumps(have.get(k)) != _dumps(config[k]))
        if differs:
            if run.change("update", "lambda function", opts.function, "configuration: " + ", ".join(differs)):
                _with_iam_retry(
                    run, lambda: lam.update_function_configuration(FunctionName=opts.function, **config)
                )
                lam.get_waiter("function_updated_v2").wait(FunctionName=opts.function)
        if sha is not None and cfg.get("CodeSha256") != sha:
            if run.change("update", "lambda function", opts.function, "code"):
                assert opts.lambda_zip is not None
                key = _upload_zip(run, opts.lambda_zip, sha)
                lam.update_function_code(FunctionName=opts.function, S3Bucket=run.bucket, S3Key=key)
                lam.get_waiter("function_updated_v2").wait(FunctionName=opts.function)
        if len(run.changes) == before:
            run.ok("lambda function", opts.function)
    _ensure_mapping(run, found is not None)


def _ensure_mapping(run: Run, function_exists: bool) -> None:
    opts, lam = run.opts, run.clients.lambda_
    queue_arn = _queue_arn(run, opts.queue)
    want: dict[str, Any] = {
        "BatchSize": opts.batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": opts.max_concurrency},
    }
    mappings = []
    if function_exists or not run.dry_run:
        mappings = lam.list_event_source_mappings(FunctionName=opts.function, EventSourceArn=queue_arn).get(
            "EventSourceMappings", []
        )
    label = f"{opts.queue} -> {opts.function}"
    if not mappings:
        if run.change("create", "event source mapping", label, "batch 10, partial batch failures"):
            lam.create_event_source_mapping(
                EventSourceArn=queue_arn, FunctionName=opts.function, Enabled=True, **want
            )
        return
    m = mappings[0]
    have = {
        "BatchSize": m.get("BatchSize"),
        "FunctionResponseTypes": m.get("FunctionResponseTypes", []),
        "ScalingConfig": {"MaximumConcurrency": m.get("ScalingConfig", {}).get("MaximumConcurrency")},
    }
    if _dumps(have) != _dumps(want):
        if run.change("update", "event source mapping", label, "batch size, response types, concurrency"):
            lam.update_event_source_mapping(UUID=m["UUID"], **want)
    else:
        run.ok("event source mapping", label)


# --- 9. source ---------------------------------------------------------------------


def _source_files(root: Path) -> list[Path]:
    if (root / ".git").exists():
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.decode()
        names = {n for n in listed.split("\0") if n}
        files = [root / n for n in names]
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


def step_source(run: Run) -> None:
    opts = run.opts
    if opts.source_url:
        run.out["source_url"] = opts.source_url
        run.echo(f"    (the host fetches {opts.source_url})")
        return
    if not opts.create_instance:
        return
    blob = source_tarball(opts.source_dir)
    sha = hashlib.sha256(blob).hexdigest()
    run.out["source_url"] = f"s3://{run.bucket}/{SOURCE_KEY}"
    head = None
    if _bucket_exists(run.clients.s3, run.bucket):
        head = _read(
            lambda: run.clients.s3.head_object(Bucket=run.bucket, Key=SOURCE_KEY), ("404", "NoSuchKey")
        )
    if head is not None and head.get("Metadata", {}).get("sha256") == sha:
        run.ok("source tarball", run.out["source_url"])
        return
    action: Action = "create" if head is None else "update"
    if run.change(
        action, "source tarball", run.out["source_url"], f"{len(blob) // 1024} KiB from {opts.source_dir}"
    ):
        run.clients.s3.put_object(
            Bucket=run.bucket,
            Key=SOURCE_KEY,
            Body=blob,
            Metadata={"sha256": sha},
            ServerSideEncryption="AES256",
        )


# --- 10. instance ---------------------------------------------------------------------


def settings_env(out: dict[str, str], opts: StackOptions) -> dict[str, str]:
    """``LABELKIT_*`` settings for the dashboard and listener (unknown extras are ignored)."""
    env = {
        "LABELKIT_STACK": opts.name,
        "LABELKIT_AWS_REGION": opts.region,
        "LABELKIT_STORAGE_URL": out.get("storage_url", ""),
        "LABELKIT_QUEUE_URL": out.get("queue_url", ""),
        "LABELKIT_DLQ_URL": out.get("dlq_url", ""),
        "LABELKIT_QUEUE_MAX_RECEIVES": str(opts.max_receives),
        "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": str(opts.visibility_timeout),
        "LABELKIT_S3_NOTIFIES_QUEUE": "true",
        "LABELKIT_LABELER": "rekognition",
        "LABELKIT_AUTH_MODE": "cognito",
        "LABELKIT_COGNITO_USER_POOL_ID": out.get("user_pool_id", ""),
        "LABELKIT_COGNITO_CLIENT_ID": out.get("client_id", ""),
        "LABELKIT_DATABASE_URL": out.get("database_url", ""),
        "LABELKIT_DATABASE_SECRET_ARN": out.get("database_secret_arn", ""),
        "LABELKIT_LAMBDA_ARN": out.get("lambda_arn", ""),
        "LABELKIT_INSTANCE_ID": out.get("instance_id", ""),
    }
    return {k: v for k, v in env.items() if v and v != PENDING}


def host_config(run: Run) -> HostConfig:
    opts = run.opts
    env = settings_env(run.out, opts)
    env.pop("LABELKIT_INSTANCE_ID", None)  # not known before launch
    return HostConfig(
        env=env,
        stack=opts.name,
        region=opts.region,
        source_url=run.out.get("source_url", ""),
        source_ref=opts.source_ref,
        enable_listener=opts.ec2_listener,
        server_name=opts.server_name,
    )


def find_instances(clients: Clients, stack: str) -> list[dict[str, Any]]:
    reservations = clients.ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{STACK_TAG}", "Values": [stack]},
            {"Name": f"tag:{ROLE_TAG}", "Values": ["web"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    return [dict(i) for r in reservations for i in r["Instances"]]


def lookup_ami(run: Run) -> str:
    if run.opts.ami:
        return run.opts.ami
    param = AMI_PARAMETERS[run.opts.os]
    try:
        return run.clients.ssm.get_parameter(Name=param)["Parameter"]["Value"]
    except ClientError as e:
        if _code(e) != "ParameterNotFound":
            raise
    if run.opts.os == "debian":
        images = run.clients.ec2.describe_images(
            Owners=["136693071363"],  # Debian's AWS account
            Filters=[
                {"Name": "name", "Values": ["debian-12-amd64-*"]},
                {"Name": "state", "Values": ["available"]},
            ],
        )["Images"]
        if images:
            return max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"]
    raise StackError(f"no AMI found for {run.opts.os} ({param}); pass --ami")


def step_instance(run: Run) -> None:
    opts = run.opts
    if not opts.create_instance:
        run.echo("    (no instance: --skip-instance)")
        return
    user_data = render_host_files(host_config(run))["user-data.sh"]
    ud_sha = hashlib.sha256(user_data.encode()).hexdigest()
    found = find_instances(run.clients, opts.name)
    name = f"{opts.prefix}-web"
    if found:
        inst: Any = found[0]
        run.out.update(instance_id=inst["InstanceId"], public_dns=inst.get("PublicDnsName", ""))
        if _tag_dict(inst.get("Tags")).get(USER_DATA_TAG) == ud_sha:
            run.ok("ec2 instance", f"{name} {inst['InstanceId']}")
            return
        if not opts.replace_instance:
            run.note(
                f"{inst['InstanceId']} was started with other user data (settings or templates changed); "
                "pass --replace-instance to replace it, or run `sudo labelkit-bootstrap` on it"
            )
            return
        if not run.change("replace", "ec2 instance", f"{name} {inst['InstanceId']}", "new user data"):
            return
        _terminate(run, [inst["InstanceId"]])
    elif not run.change("create", "ec2 instance", name, f"{opts.instance_type}, {opts.os}"):
        run.out["instance_id"] = PENDING
        return
    kwargs: dict[str, Any] = {
        "ImageId": lookup_ami(run),
        "InstanceType": opts.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": user_data,
        "IamInstanceProfile": {"Name": f"{opts.prefix}-ec2"},
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3", "Encrypted": True}}
        ],
        "TagSpecifications": [
            {
                "ResourceType": "instance",
                "Tags": _tag_list({**opts.tags, ROLE_TAG: "web", USER_DATA_TAG: ud_sha, "Name": name}),
            },
            {"ResourceType": "volume", "Tags": _tag_list(opts.tags)},
        ],
    }
    groups = [run.out["web_sg"], run.out["app_sg"]]
    if opts.subnet_id:
        kwargs["NetworkInterfaces"] = [
            {"DeviceIndex": 0, "SubnetId": opts.subnet_id, "Groups": groups, "AssociatePublicIpAddress": True}
        ]
    else:
        kwargs["SecurityGroupIds"] = groups
    if opts.key_name:
        kwargs["KeyName"] = opts.key_name
    inst = _with_iam_retry(run, lambda: run.clients.ec2.run_instances(**kwargs))["Instances"][0]
    run.echo(f"    waiting for {inst['InstanceId']} to run ...")
    run.clients.ec2.get_waiter("instance_running").wait(
        InstanceIds=[inst["InstanceId"]], WaiterConfig={"Delay": 5, "MaxAttempts": 60}
    )
    described = run.clients.ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]
    inst = described["Instances"][0]
    run.out.update(instance_id=inst["InstanceId"], public_dns=inst.get("PublicDnsName", ""))


def _terminate(run: Run, ids: list[str]) -> None:
    run.clients.ec2.terminate_instances(InstanceIds=ids)
    run.echo(f"    waiting for {', '.join(ids)} to terminate ...")
    run.clients.ec2.get_waiter("instance_terminated").wait(
        InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
    )


# --- outputs --------------------------------------------------------------------------

OUTPUT_KEYS = [
    "stack", "region", "bucket", "storage_url", "queue_url", "dlq_url", "user_pool_id", "client_id",
    "lambda_arn", "database_url", "database_secret_arn", "instance_id", "public_dns", "source_url",
]  # fmt: skip


def outputs(run: Run) -> dict[str, str]:
    merged = {"stack": run.opts.name, "region": run.opts.region, **run.out}
    return {k: merged.get(k, "") for k in OUTPUT_KEYS}


def write_outputs(run: Run) -> tuple[Path, Path]:
    out_dir = run.opts.outputs_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    env_path, json_path = out_dir / f"{run.opts.name}.env", out_dir / f"{run.opts.name}.json"
    env_path.write_text(env_file_text(settings_env(run.out, run.opts), stack=run.opts.name), encoding="utf-8")
    json_path.write_text(json.dumps(outputs(run), indent=2) + "\n", encoding="utf-8")
    return env_path, json_path


# --- plan / apply / destroy ---------------------------------------------------------------


def _steps() -> list[tuple[str, Callable[[Run], None]]]:
    # Looked up at call time, so a test can monkeypatch one step.
    return [
        ("secret", step_secret),
        ("queues", step_queues),
        ("bucket", step_bucket),
        ("cognito", step_cognito),
        ("iam", step_iam),
        ("network", step_network),
        ("database", step_database),
        ("migrate", step_migrate),
        ("lambda", step_lambda),
        ("source", step_source),
        ("instance", step_instance),
    ]


def _walk(run: Run) -> None:
    steps = _steps()
    for i, (name, step) in enumerate(steps, 1):
        run.echo(f"[{i}/{len(steps)}] {name}")
        step(run)


def plan(opts: StackOptions, clients: Clients, *, echo: Callable[[str], None] = print) -> list[Change]:
    """What ``apply`` would change (read-only)."""
    run = Run(opts, clients, dry_run=True, echo=echo)
    echo(f"Plan for stack {opts.name} in {opts.region} (account {clients.account}):")
    _walk(run)
    if run.changes:
        counts = {a: sum(c.action == a for c in run.changes) for a in ("create", "update", "replace")}
        echo("Plan: " + ", ".join(f"{n} to {a}" for a, n in counts.items() if n) + ".")
    else:
        echo(f"No changes: stack {opts.name} is up to date.")
    return run.changes


def apply(
    opts: StackOptions,
    clients: Clients,
    *,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Change], dict[str, str]]:
    """Create or update the stack; returns the changes made and the outputs."""
    run = Run(opts, clients, echo=echo, sleep=sleep)
    if opts.lambda_zip is not None and not opts.lambda_zip.is_file():
        raise StackError(f"--lambda-zip {opts.lambda_zip}: no such file")
    if opts.create_lambda and opts.lambda_zip is None and _find_function(run) is None:
        raise StackError(
            "creating the Lambda function needs --lambda-zip (python -m infra_scripts.lambda_zip)"
        )
    echo(f"Applying stack {opts.name} in {opts.region} (account {clients.account}):")
    if opts.create_lambda and _needs_rds(opts) and not opts.lambda_subnet_ids:
        # The RDS instance is private; a Lambda outside the VPC cannot reach it.
        echo(
            "WARNING: the Lambda runs outside the VPC and cannot reach the private RDS database. "
            "Pass --lambda-subnet-ids (subnets with a NAT gateway or VPC endpoints for S3, "
            "Rekognition and Secrets Manager), or use --worker ec2."
        )
    _walk(run)
    env_path, json_path = write_outputs(run)
    if run.changes:
        echo(f"Apply complete: {len(run.changes)} change(s).")
    else:
        echo(f"No changes: stack {opts.name} is up to date.")
    echo(f"Outputs: {env_path} and {json_path}")
    return run.changes, outputs(run)


def _tagged(tags: dict[str, str], stack: str) -> bool:
    return tags.get(STACK_TAG) == stack


def _skip(run: Run, kind: str, name: str) -> None:
    run.note(f"{kind} {name} is not tagged {STACK_TAG}={run.opts.name}: left alone")


def _empty_bucket(s3: S3Client, bucket: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})  # type: ignore[typeddict-item]


def destroy(
    opts: StackOptions,
    clients: Clients,
    *,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Change]:
    """Delete everything tagged with the stack, dependants first. Untagged look-alikes stay."""
    run = Run(opts, clients, echo=echo, sleep=sleep)
    stack = opts.name
    echo(f"Destroying stack {stack} in {opts.region} (account {clients.account}):")
    for i, (name, fn) in enumerate(_destroy_steps(), 1):
        echo(f"[{i}/{len(_destroy_steps())}] {name}")
        fn(run)
    for suffix in (".env", ".json"):
        (opts.outputs_dir / f"{stack}{suffix}").unlink(missing_ok=True)
    echo(
        f"Destroy complete: {len(run.changes)} resource(s) deleted." if run.changes else "Nothing to delete."
    )
    return run.changes


def _destroy_steps() -> list[tuple[str, Callable[[Run], None]]]:
    return [
        ("instance", _destroy_instance),
        ("lambda", _destroy_lambda),
        ("database", _destroy_database),
        ("secret", _destroy_secret),
        ("network", _destroy_network),
        ("cognito", _destroy_cognito),
        ("iam", _destroy_iam),
        ("bucket", _destroy_bucket),
        ("queues", _destroy_queues),
    ]


def _destroy_instance(run: Run) -> None:
    ids = [i["InstanceId"] for i in find_instances(run.clients, run.opts.name)]
    for iid in ids:
        run.change("delete", "ec2 instance", iid)
    if ids:
        _terminate(run, ids)


def _destroy_lambda(run: Run) -> None:
    lam, opts = run.clients.lambda_, run.opts
    found = _find_function(run)
    if found is None:
        return
    if not _tagged(found.get("Tags", {}), opts.name):
        return _skip(run, "lambda function", opts.function)
    for m in lam.list_event_source_mappings(FunctionName=opts.function).get("EventSourceMappings", []):
        run.change("delete", "event source mapping", m["UUID"])
        lam.delete_event_source_mapping(UUID=m["UUID"])
    run.change("delete", "lambda function", opts.function)
    lam.delete_function(FunctionName=opts.function)


def _destroy_database(run: Run) -> None:
    opts = run.opts
    db = _find_db(run)
    if db is None:
        return
    if not _tagged(_tag_dict(db.get("TagList")), opts.name):
        return _skip(run, "rds instance", opts.db_instance)
    kwargs: dict[str, Any] = {"DBInstanceIdentifier": opts.db_instance, "DeleteAutomatedBackups": True}
    if opts.final_snapshot:
        snap = f"{opts.db_instance}-final-{time.strftime('%Y%m%d%H%M%S')}"
        kwargs["FinalDBSnapshotIdentifier"] = snap
        detail = f"final snapshot {snap}"
    else:
        kwargs["SkipFinalSnapshot"] = True
        detail = "no final snapshot"
    run.change("delete", "rds instance", opts.db_instance, detail)
    if db.get("DBInstanceStatus") != "deleting":
        run.clients.rds.delete_db_instance(**kwargs)
    run.echo("    waiting for the database to be deleted (minutes on AWS) ...")
    run.clients.rds.get_waiter("db_instance_deleted").wait(
        DBInstanceIdentifier=opts.db_instance, WaiterConfig={"Delay": 20, "MaxAttempts": 90}
    )


def _destroy_secret(run: Run) -> None:
    found = _find_secret(run)
    if found is None or found.get("DeletedDate"):
        return
    if not _tagged(_tag_dict(found.get("Tags")), run.opts.name):
        return _skip(run, "secret", run.opts.secret)
    run.change("delete", "secret", run.opts.secret, "7-day recovery window; apply restores it")
    run.clients.secrets.delete_secret(SecretId=found["ARN"], RecoveryWindowInDays=7)


def _destroy_network(run: Run) -> None:
    opts, ec2 = run.opts, run.clients.ec2
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        return
    for role in ("db", "web", "app"):  # db refers to app
        name = f"{opts.prefix}-{role}"
        group = _find_sg(run, name, vpcs[0]["VpcId"])
        if group is None:
            continue
        if not _tagged(_tag_dict(group.get("Tags")), opts.name):
            _skip(run, "security group", name)
            continue
        run.change("delete", "security group", name)
        # Lambda's VPC network interfaces linger for a while after the function is gone.
        for attempt in range(60):
            try:
                ec2.delete_security_group(GroupId=group["GroupId"])
                break
            except ClientError as e:
                if _code(e) != "DependencyViolation" or attempt == 59:
                    raise
                run.sleep(10)


def _destroy_cognito(run: Run) -> None:
    cognito, opts = run.clients.cognito, run.opts
    pool_id = find_user_pool(cognito, opts.prefix)
    if pool_id is None:
        return
    pool = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    if not _tagged(pool.get("UserPoolTags", {}), opts.name):
        return _skip(run, "cognito user pool", opts.prefix)
    run.change("delete", "cognito user pool", opts.prefix, "with its app client, group and users")
    cognito.delete_user_pool(UserPoolId=pool_id)


def _get_role(client: IAMClient, name: str) -> Any:
    try:
        return client.get_role(RoleName=name)["Role"]
    except ClientError as e:
        if _code(e) == "NoSuchEntity":
            return None
        raise


def _destroy_iam(run: Run) -> None:
    client, opts = run.clients.iam, run.opts
    profile_name = f"{opts.prefix}-ec2"
    profile = _read(
        lambda: client.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"],
        ("NoSuchEntity",),
    )
    if profile is not None:
        tags = _tag_dict(profile.get("Tags"))
        if not tags:  # some APIs (and moto) leave the profile's tags out: go by its role's
            for role in profile.get("Roles", []):
                tags = _tag_dict(role.get("Tags")) or _tag_dict(
                    client.get_role(RoleName=role["RoleName"])["Role"].get("Tags")
                )
        if _tagged(tags, opts.name):
            run.change("delete", "iam instance profile", profile_name)
            for role in profile.get("Roles", []):
                client.remove_role_from_instance_profile(
                    InstanceProfileName=profile_name, RoleName=role["RoleName"]
                )
            client.delete_instance_profile(InstanceProfileName=profile_name)
        else:
            _skip(run, "iam instance profile", profile_name)
    for name in (f"{opts.prefix}-lambda", f"{opts.prefix}-ec2"):
        role = _get_role(client, name)
        if role is None:
            continue
        if not _tagged(_tag_dict(role.get("Tags")), opts.name):
            _skip(run, "iam role", name)
            continue
        run.change("delete", "iam role", name, "with its policies")
        for policy in client.list_role_policies(RoleName=name).get("PolicyNames", []):
            client.delete_role_policy(RoleName=name, PolicyName=policy)
        for att in client.list_attached_role_policies(RoleName=name).get("AttachedPolicies", []):
            client.detach_role_policy(RoleName=name, PolicyArn=att["PolicyArn"])
        client.delete_role(RoleName=name)


def _destroy_bucket(run: Run) -> None:
    s3, bucket = run.clients.s3, run.bucket
    if not _bucket_exists(s3, bucket):
        return
    if not _tagged(_bucket_tags(s3, bucket), run.opts.name):
        return _skip(run, "s3 bucket", bucket)
    run.change("delete", "s3 bucket", bucket, "and every object in it")
    _empty_bucket(s3, bucket)
    s3.delete_bucket(Bucket=bucket)


def _destroy_queues(run: Run) -> None:
    sqs, opts = run.clients.sqs, run.opts
    for name in (opts.queue, opts.dlq):
        url = _queue_url(sqs, name)
        if url is None:
            continue
        if not _tagged(sqs.list_queue_tags(QueueUrl=url).get("Tags", {}), opts.name):
            _skip(run, "sqs queue", name)
            continue
        run.change("delete", "sqs queue", name)
        sqs.delete_queue(QueueUrl=url)
