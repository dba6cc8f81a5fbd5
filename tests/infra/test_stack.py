"""infra_scripts.stack against moto: apply, idempotency, plan, destroy, recovery from a failure."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from infra_scripts import __main__ as cli
from infra_scripts import stack
from labelkit.settings import Settings
from tests.infra.conftest import REGION, Echo, inventory, no_sleep

pytestmark = pytest.mark.aws

Opts = Callable[..., stack.StackOptions]


def _statements(clients: stack.Clients, role: str) -> dict[str, dict[str, Any]]:
    doc: Any = clients.iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    return {s["Sid"]: s for s in doc["Statement"]}


def test_apply_creates_everything_configured(clients: stack.Clients, make_opts: Opts, echo: Echo) -> None:
    # GIVEN an empty account
    opts = make_opts()
    # WHEN the stack is applied
    changes, out = stack.apply(opts, clients, echo=echo, sleep=no_sleep)
    # THEN every resource exists with the intended configuration
    assert changes and all(c.action == "create" for c in changes)
    bucket = out["bucket"]
    assert bucket == f"labelkit-demo-123456789012-{REGION}"
    s3 = clients.s3
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    lifecycle = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert lifecycle["thumbs-expire"]["Filter"]["Prefix"] == "thumbs/"
    assert lifecycle["exports-expire"]["Filter"]["Prefix"] == "exports/"
    assert lifecycle["exports-expire"]["Expiration"]["Days"] == 7
    notif = s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    assert len(notif) == 1
    queue_arn = f"arn:aws:sqs:{REGION}:123456789012:labelkit-demo-jobs"
    assert notif[0]["QueueArn"] == queue_arn
    assert notif[0]["Events"] == ["s3:ObjectCreated:*"]
    assert [(r["Name"].lower(), r["Value"]) for r in notif[0]["Filter"]["Key"]["FilterRules"]] == [
        ("prefix", "users/")
    ]

    # queues: redrive to the DLQ after 4 receives; the bucket may send
    attrs = clients.sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 4
    assert redrive["deadLetterTargetArn"].endswith(":labelkit-demo-jobs-dlq")
    assert attrs["VisibilityTimeout"] == "360"
    policy = json.loads(attrs["Policy"])["Statement"][0]
    assert policy["Principal"] == {"Service": "s3.amazonaws.com"}
    assert policy["Condition"]["ArnEquals"]["aws:SourceArn"] == f"arn:aws:s3:::{bucket}"

    # the notification really reaches the queue (moto delivers it; first a TestEvent)
    s3.put_object(Bucket=bucket, Key="users/u1/img 1.jpg", Body=b"x")
    s3.put_object(Bucket=bucket, Key="thumbs/u1/img.jpg", Body=b"x")  # not notified
    bodies = [
        json.loads(m["Body"])
        for m in clients.sqs.receive_message(QueueUrl=out["queue_url"], MaxNumberOfMessages=10)["Messages"]
    ]
    keys = [unquote_plus(r["s3"]["object"]["key"]) for b in bodies for r in b.get("Records", [])]
    assert keys == ["users/u1/img 1.jpg"]

    # cognito: e-mail sign-up, password policy, client without secret, admin group
    pool = clients.cognito.describe_user_pool(UserPoolId=out["user_pool_id"])["UserPool"]
    assert pool["UsernameAttributes"] == ["email"]
    assert pool["AutoVerifiedAttributes"] == ["email"]
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    assert pool["UserPoolTags"] == {"labelkit:stack": "demo"}
    client = clients.cognito.describe_user_pool_client(
        UserPoolId=out["user_pool_id"], ClientId=out["client_id"]
    )["UserPoolClient"]
    assert sorted(client["ExplicitAuthFlows"]) == [
        "ALLOW_REFRESH_TOKEN_AUTH",
        "ALLOW_USER_PASSWORD_AUTH",
        "ALLOW_USER_SRP_AUTH",
    ]
    assert "ClientSecret" not in client
    assert clients.cognito.get_group(GroupName="admin", UserPoolId=out["user_pool_id"])["Group"]

    # IAM: least privilege, scoped resources
    lam = _statements(clients, "labelkit-demo-lambda")
    assert lam["ReadUploads"]["Action"] == ["s3:GetObject"]
    assert lam["ReadUploads"]["Resource"] == [f"arn:aws:s3:::{bucket}/users/*"]
    assert sorted(lam["ConsumeJobs"]["Action"]) == [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    assert lam["ConsumeJobs"]["Resource"] == [queue_arn]
    assert lam["DatabaseSecret"]["Resource"] == [out["database_secret_arn"]]
    assert lam["Logs"]["Resource"][0].endswith(":log-group:/aws/lambda/labelkit-demo-labeler")
    wildcard = [sid for sid, s in lam.items() if s["Resource"] == "*"]
    assert wildcard == ["DetectLabels"]
    ec2 = _statements(clients, "labelkit-demo-ec2")
    assert sorted(ec2["Images"]["Resource"]) == sorted(
        f"arn:aws:s3:::{bucket}/{p}/*" for p in ("users", "thumbs", "exports")
    )
    assert "sqs:DeleteMessage" not in ec2["Queue"]["Action"]  # the Lambda labels, not the host
    assert ec2["Users"]["Resource"] == [
        f"arn:aws:cognito-idp:{REGION}:123456789012:userpool/{out['user_pool_id']}"
    ]
    assert all(
        a.startswith("cognito-idp:Admin") or a.startswith("cognito-idp:List") for a in ec2["Users"]["Action"]
    )
    assert "DetectLabels" not in ec2
    trust: Any = clients.iam.get_role(RoleName="labelkit-demo-lambda")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}

    # Lambda and its event source mapping
    fn = clients.lambda_.get_function(FunctionName="labelkit-demo-labeler")
    cfg = fn["Configuration"]
    assert cfg["Runtime"] == "python3.11"
    assert cfg["Handler"] == "lambda_labeler.handler.lambda_handler"
    env = cfg["Environment"]["Variables"]
    assert env["LABELKIT_STORAGE_URL"] == f"s3://{bucket}"
    assert env["LABELKIT_QUEUE_URL"] == out["queue_url"]
    assert env["LABELKIT_S3_NOTIFIES_QUEUE"] == "true"
    assert env["LABELKIT_LABELER"] == "rekognition"
    assert env["LABELKIT_DATABASE_SECRET_ARN"] == out["database_secret_arn"]
    assert env["LABELKIT_DATABASE_URL"].startswith("mysql+pymysql://labelkit@labelkit-demo.")
    assert fn["Tags"] == {"labelkit:stack": "demo"}
    (mapping,) = clients.lambda_.list_event_source_mappings(FunctionName="labelkit-demo-labeler")[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == queue_arn
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}

    # RDS with its password in Secrets Manager; the output URL carries no password
    db = clients.rds.describe_db_instances(DBInstanceIdentifier="labelkit-demo")["DBInstances"][0]
    assert db["Engine"] == "mysql" and db["DBInstanceClass"] == "db.t4g.micro"
    assert db["PubliclyAccessible"] is False and db["StorageEncrypted"] is True
    secret = json.loads(clients.secrets.get_secret_value(SecretId=out["database_secret_arn"])["SecretString"])
    assert len(secret["password"]) >= 24 and secret["host"] == db["Endpoint"]["Address"]
    assert secret["password"] not in out["database_url"]

    # EC2: instance profile, IMDSv2, user data that installs Labelkit with the outputs
    (inst,) = stack.find_instances(clients, "demo")
    assert inst["IamInstanceProfile"]["Arn"].endswith("instance-profile/labelkit-demo-ec2")
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    raw = clients.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
    user_data = base64.b64decode(raw["UserData"]["Value"]).decode()
    assert user_data.startswith("#!/bin/bash")
    assert f"LABELKIT_QUEUE_URL={out['queue_url']}" in user_data
    assert f"SOURCE_URL='s3://{bucket}/deploy/labelkit-src.tar.gz'" in user_data
    assert secret["password"] not in user_data
    assert clients.s3.head_object(Bucket=bucket, Key="deploy/labelkit-src.tar.gz")["Metadata"]["sha256"]

    # every created resource carries the stack tag
    found = inventory(clients, "demo")
    for kind in ("s3", "sqs", "iam-role", "lambda", "cognito", "rds", "secret", "ec2", "sg"):
        assert any(f.startswith(kind + ":") for f in found), kind

    # outputs the dashboard's settings can read
    env_file = opts.outputs_dir / "demo.env"
    settings = Settings(_env_file=env_file)
    assert settings.queue_url == out["queue_url"] and settings.uses_sqs
    assert settings.storage_url == f"s3://{bucket}" and settings.uses_s3
    assert settings.auth_mode == "cognito" and settings.cognito_client_id == out["client_id"]
    assert settings.s3_notifies_queue is True
    assert settings.database_secret_arn == out["database_secret_arn"]
    saved = json.loads((opts.outputs_dir / "demo.json").read_text())
    assert saved["instance_id"] == inst["InstanceId"] and saved["lambda_arn"] == cfg["FunctionArn"]
    assert "Apply complete" in echo.text


def test_second_apply_changes_nothing(clients: stack.Clients, make_opts: Opts) -> None:
    opts = make_opts()
    stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    before = inventory(clients, "demo")
    echo = Echo()
    changes, _ = stack.apply(opts, clients, echo=echo, sleep=no_sleep)
    assert changes == []
    assert "No changes: stack demo is up to date." in echo.text
    assert inventory(clients, "demo") == before


def test_plan_lists_creates_then_no_changes(clients: stack.Clients, make_opts: Opts) -> None:
    opts = make_opts()
    echo = Echo()
    planned = stack.plan(opts, clients, echo=echo)
    assert planned and {c.action for c in planned} == {"create"}
    kinds = {c.kind for c in planned}
    assert {"s3 bucket", "sqs queue", "lambda function", "event source mapping", "rds instance"} <= kinds
    assert {"cognito user pool", "cognito app client", "iam role", "ec2 instance"} <= kinds
    assert inventory(clients, "demo") == set()  # plan writes nothing
    assert not (opts.outputs_dir / "demo.json").exists()

    applied, _ = stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    assert [(c.kind, c.name) for c in applied] == [(c.kind, c.name) for c in planned]
    echo = Echo()
    assert stack.plan(opts, clients, echo=echo) == []
    assert "No changes" in echo.text


def test_plan_shows_updates_for_drift(clients: stack.Clients, make_opts: Opts) -> None:
    opts = make_opts()
    _, out = stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    # someone loosens the bucket and changes the redrive by hand
    clients.s3.delete_public_access_block(Bucket=out["bucket"])
    changed = make_opts(max_receives=7)
    planned = stack.plan(changed, clients, echo=Echo())
    details = {(c.kind, c.detail) for c in planned}
    assert ("s3 bucket", "public access block") in details
    assert any(k == "sqs queue" and "RedrivePolicy" in d for k, d in details)
    stack.apply(changed, clients, echo=Echo(), sleep=no_sleep)
    attrs = clients.sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["RedrivePolicy"])
    assert int(json.loads(attrs["Attributes"]["RedrivePolicy"])["maxReceiveCount"]) == 7
    assert stack.plan(changed, clients, echo=Echo()) == []


def test_failure_half_way_is_finished_by_a_second_apply(
    clients: stack.Clients, make_opts: Opts, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = make_opts()

    def broken_bucket(run: stack.Run) -> None:
        raise RuntimeError("network went away")

    # GIVEN an apply that dies right after the queues step
    with monkeypatch.context() as m:
        m.setattr(stack, "step_bucket", broken_bucket)
        with pytest.raises(RuntimeError, match="network went away"):
            stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    partial = inventory(clients, "demo")
    assert any(f.startswith("sqs:") for f in partial)
    assert not any(f.startswith(("s3:", "lambda:")) for f in partial)

    # WHEN apply runs again, THEN it creates only what is missing and finishes
    changes, out = stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    assert not any(c.kind in ("sqs queue", "secret") for c in changes)
    assert any(c.kind == "s3 bucket" for c in changes)
    assert len([u for u in clients.sqs.list_queues()["QueueUrls"] if "labelkit-demo" in u]) == 2
    assert stack.plan(opts, clients, echo=Echo()) == []
    assert out["instance_id"].startswith("i-")


def test_destroy_removes_only_this_stack(clients: stack.Clients, make_opts: Opts) -> None:
    # GIVEN two stacks, and a look-alike queue nobody tagged
    demo, other = make_opts("demo"), make_opts("other", create_database=False)
    stack.apply(demo, clients, echo=Echo(), sleep=no_sleep)
    stack.apply(other, clients, echo=Echo(), sleep=no_sleep)
    other_before = inventory(clients, "other")
    assert other_before
    clients.sqs.create_queue(QueueName="labelkit-third-jobs")

    # WHEN demo is destroyed
    echo = Echo()
    deleted = stack.destroy(demo, clients, echo=echo, sleep=no_sleep)

    # THEN nothing tagged demo remains, other is untouched, in dependency order
    assert inventory(clients, "demo") == set()
    assert inventory(clients, "other") == other_before
    kinds = [c.kind for c in deleted]
    assert kinds.index("ec2 instance") < kinds.index("security group")
    assert kinds.index("lambda function") < kinds.index("iam role")
    assert kinds.index("rds instance") < kinds.index("security group")
    assert kinds.index("s3 bucket") < kinds.index("sqs queue")
    assert not (demo.outputs_dir / "demo.env").exists()
    assert (demo.outputs_dir / "other.env").exists()

    stack.destroy(make_opts("third", create_database=False), clients, echo=echo, sleep=no_sleep)
    assert "labelkit-third-jobs is not tagged" in echo.text
    assert any(u.endswith("/labelkit-third-jobs") for u in clients.sqs.list_queues()["QueueUrls"])

    # a destroyed stack can be applied again (the secret is restored from its recovery window)
    changes, _ = stack.apply(demo, clients, echo=Echo(), sleep=no_sleep)
    assert ("update", "secret") in {(c.action, c.kind) for c in changes}
    assert stack.plan(demo, clients, echo=Echo()) == []


def test_existing_database_url_with_password_goes_to_a_secret(
    clients: stack.Clients, make_opts: Opts
) -> None:
    opts = make_opts(
        database_url="mysql+pymysql://app:s3cret@db.example.internal:3306/labelkit",
        migrate=False,
        create_instance=False,
    )
    _, out = stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    assert out["database_url"] == "mysql+pymysql://app@db.example.internal:3306/labelkit"
    secret = json.loads(clients.secrets.get_secret_value(SecretId=out["database_secret_arn"])["SecretString"])
    assert secret == {"password": "s3cret"}
    assert clients.rds.describe_db_instances()["DBInstances"] == []
    assert "s3cret" not in (opts.outputs_dir / "demo.env").read_text()
    assert stack.plan(opts, clients, echo=Echo()) == []


def test_lambda_vpc_config_attaches_the_managed_policy(
    clients: stack.Clients, make_opts: Opts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # read when IAM is first used
    subnets = [s["SubnetId"] for s in clients.ec2.describe_subnets()["Subnets"]][:2]
    opts = make_opts(lambda_subnet_ids=subnets, create_instance=False, create_database=False)
    stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    attached = clients.iam.list_attached_role_policies(RoleName="labelkit-demo-lambda")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AWSLambdaVPCAccessExecutionRole"]
    vpc = clients.lambda_.get_function(FunctionName="labelkit-demo-labeler")["Configuration"]["VpcConfig"]
    assert sorted(vpc["SubnetIds"]) == sorted(subnets)
    assert stack.plan(opts, clients, echo=Echo()) == []


def test_lambda_code_update_is_detected(clients: stack.Clients, make_opts: Opts, tmp_path: Path) -> None:
    opts = make_opts(create_instance=False, create_database=False)
    stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    import zipfile

    new_zip = tmp_path / "new.zip"
    with zipfile.ZipFile(new_zip, "w") as zf:
        zf.writestr("lambda_labeler/handler.py", "def lambda_handler(e, c):\n    return 1\n")
    changed = make_opts(create_instance=False, create_database=False, lambda_zip=new_zip)
    changes, _ = stack.apply(changed, clients, echo=Echo(), sleep=no_sleep)
    assert [(c.kind, c.detail) for c in changes] == [("lambda function", "code")]
    assert stack.plan(changed, clients, echo=Echo()) == []


def test_cli_plan_apply_destroy(aws: None, tmp_path: Path, lambda_zip: Path, source_dir: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    common = ["--stack", "cli", "--region", REGION, "--outputs-dir", str(tmp_path / "out")]
    apply_args = [*common, "--lambda-zip", str(lambda_zip), "--skip-rds", "--os", "al2023",
                  "--source-dir", str(source_dir)]  # fmt: skip
    no_zip = [*common, "--skip-rds", "--skip-instance"]
    assert cli.main(["apply", *no_zip]) == 1  # refused before anything is created
    assert "needs --lambda-zip" in capsys.readouterr().err
    assert cli.main(["plan", *apply_args]) == 0
    assert "to create" in capsys.readouterr().out
    assert cli.main(["apply", *apply_args]) == 0
    assert "Apply complete" in capsys.readouterr().out
    assert cli.main(["apply", *apply_args]) == 0
    assert "No changes: stack cli is up to date." in capsys.readouterr().out
    assert cli.main(["render", "--out", str(tmp_path / "host"), "--stack", "cli",
                     "--outputs-dir", str(tmp_path / "out")]) == 0  # fmt: skip
    assert "LABELKIT_QUEUE_URL=https://" in (tmp_path / "host" / "labelkit.env").read_text()
    assert cli.main(["destroy", *common]) == 2  # no --yes and no terminal
    assert cli.main(["destroy", *common, "--yes", "--no-final-snapshot"]) == 0
    assert "Destroy complete" in capsys.readouterr().out
    assert cli.main(["plan", "--stack", "Bad_Name", "--region", REGION]) == 1


def test_worker_on_ec2_instead_of_lambda(clients: stack.Clients, make_opts: Opts) -> None:
    # GIVEN the listener on the host does the labelling (no VPC plumbing for a Lambda)
    opts = make_opts(create_lambda=False, lambda_zip=None, create_database=False)
    changes, out = stack.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    kinds = {c.kind for c in changes}
    assert "lambda function" not in kinds and "event source mapping" not in kinds
    assert clients.lambda_.list_functions()["Functions"] == []
    assert [r["RoleName"] for r in clients.iam.list_roles()["Roles"]] == ["labelkit-demo-ec2"]
    ec2 = _statements(clients, "labelkit-demo-ec2")
    assert "sqs:DeleteMessage" in ec2["Queue"]["Action"]
    assert ec2["DetectLabels"]["Action"] == ["rekognition:DetectLabels"]
    (inst,) = stack.find_instances(clients, "demo")
    raw = clients.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
    assert "ENABLE_LISTENER='yes'" in base64.b64decode(raw["UserData"]["Value"]).decode()
    assert out["lambda_arn"] == ""
    assert stack.plan(opts, clients, echo=Echo()) == []
