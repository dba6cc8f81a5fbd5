"""The CloudFormation stack: the template passes cfn-lint, deploys into moto's CloudFormation,
plans without changing anything, applies changes and is destroyed without leftovers.

moto 5.2.5 creates these of the template's resource types: S3 bucket (name, encryption, tags),
SQS queues, IAM roles with inline and managed policies, the instance profile, the log group,
the Lambda function and its SQS event source mapping, security groups and ingress rules, the
RDS instance and the EC2 instance (the web cluster's resources: ``test_cluster_stack.py``). It
skips (with a warning) the queue policy, the Cognito user pool, client and group, the Secrets
Manager secrets and attachment, and the CloudWatch alarms; those, and the
bucket's public access block, lifecycle and notification, the instance's security groups,
IMDSv2 and disk settings, are checked against AWS's specification by cfn-lint only.
"""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from infra_scripts import __main__ as cli
from infra_scripts import cloudformation as cfn
from infra_scripts.render import read_env_file
from labelkit import aws
from labelkit.settings import Settings
from tests.helpers import free_port, wait_http
from tests.infra.conftest import MOTO_AMI, REGION, Echo, inventory, no_sleep

pytestmark = [
    pytest.mark.aws,
    # moto warns about each resource type its CloudFormation skips (listed above).
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]

Opts = Callable[..., cfn.DeployOptions]
ACCOUNT = "123456789012"
BUCKET = f"labelkit-demo-{ACCOUNT}-{REGION}"


def _client(service: str) -> Any:
    return aws.client(service, region=REGION)


def _statements(role: str) -> dict[str, dict[str, Any]]:
    doc: Any = _client("iam").get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
    if isinstance(doc, str):
        # moto stores a template's inline policy as Python's repr of it, not JSON.
        doc = ast.literal_eval(doc) if doc.startswith("{'") else json.loads(doc)
    # moto keeps AWS::NoValue as a null where AWS drops the element.
    statements = [s for s in doc["Statement"] if s is not None]
    for s in statements:
        if isinstance(s["Action"], list):
            s["Action"] = [a for a in s["Action"] if a is not None]
    return {s["Sid"]: s for s in statements}


def _user_data(instance_id: str) -> str:
    raw = _client("ec2").describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(raw["UserData"]["Value"]).decode()


def _lint(template: str) -> list[str]:
    matches = lint(template, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]


def test_template_passes_cfn_lint() -> None:
    # GIVEN the template, and the one destroy --no-final-snapshot deploys before deleting
    template = cfn.TEMPLATE.read_text(encoding="utf-8")
    # THEN both pass cfn-lint (every resource and property against AWS's specification)
    assert _lint(template) == []
    assert _lint(cfn.without_final_snapshot(template)) == []


def test_cfn_lint_finds_a_broken_property() -> None:
    # The check above can fail: a misspelt property is an error.
    broken = cfn.TEMPLATE.read_text(encoding="utf-8").replace(
        "ReceiveMessageWaitTimeSeconds:", "WaitSeconds:"
    )
    assert any(m.startswith("E3002") for m in _lint(broken))


def test_without_final_snapshot_switches_only_the_database() -> None:
    template = cfn.TEMPLATE.read_text(encoding="utf-8")
    edited = cfn.without_final_snapshot(template)
    assert template.count("DeletionPolicy: Snapshot") == 1
    assert "DeletionPolicy: Snapshot" not in edited
    assert len(edited) == len(template) - len("Snapshot") + len("Delete")
    with pytest.raises(cfn.DeployError):
        cfn.without_final_snapshot(edited)


def test_apply_deploys_the_stack_into_moto(clients: cfn.Clients, make_opts: Opts) -> None:
    # GIVEN an empty account
    opts = make_opts()
    echo = Echo()
    # WHEN the stack is applied
    cs, out = cfn.apply(opts, clients, echo=echo, sleep=no_sleep)
    # THEN CloudFormation created it from one change set, and the resources are configured
    assert cs.kind == "CREATE" and not cs.empty
    assert "Apply complete: stack labelkit-demo is CREATE_COMPLETE." in echo.text
    types = {c["ResourceType"] for c in cs.changes}
    assert {"AWS::S3::Bucket", "AWS::Lambda::EventSourceMapping", "AWS::RDS::DBInstance"} <= types
    assert {"AWS::Cognito::UserPool", "AWS::EC2::Instance", "AWS::IAM::Role"} <= types

    s3 = _client("s3")
    assert out["bucket"] == BUCKET
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    sqs = _client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 4
    assert redrive["deadLetterTargetArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:labelkit-demo-jobs-dlq"
    assert attrs["VisibilityTimeout"] == "360" and attrs["ReceiveMessageWaitTimeSeconds"] == "20"
    assert out["dlq_url"].endswith("/labelkit-demo-jobs-dlq")

    # the Lambda, from the uploaded zip, and its SQS trigger
    lam = _client("lambda")
    fn = lam.get_function(FunctionName="labelkit-demo-labeler")["Configuration"]
    assert fn["Runtime"] == "python3.11" and fn["Handler"] == "lambda_labeler.handler.lambda_handler"
    assert fn["Role"].endswith(":role/labelkit-demo-lambda")
    env = fn["Environment"]["Variables"]
    assert env["LABELKIT_STORAGE_URL"] == f"s3://{BUCKET}"
    assert env["LABELKIT_QUEUE_URL"] == out["queue_url"]
    assert env["LABELKIT_QUEUE_MAX_RECEIVES"] == "4" and env["LABELKIT_S3_NOTIFIES_QUEUE"] == "true"
    assert env["LABELKIT_DATABASE_URL"] == out["database_url"]
    (mapping,) = lam.list_event_source_mappings(FunctionName="labelkit-demo-labeler")["EventSourceMappings"]
    assert mapping["EventSourceArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:labelkit-demo-jobs"
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}
    artifacts = f"labelkit-artifacts-{ACCOUNT}-{REGION}"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=artifacts)["Contents"]]
    assert any(k.startswith("lambda/") for k in keys) and any(k.startswith("source/") for k in keys)
    block = s3.get_public_access_block(Bucket=artifacts)["PublicAccessBlockConfiguration"]
    assert all(block.values())

    # IAM: least privilege, every resource named; the one "*" is DetectLabels
    lam_policy = _statements("labelkit-demo-lambda")
    assert lam_policy["ReadUploads"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/users/*"]
    assert lam_policy["ConsumeJobs"]["Resource"] == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:labelkit-demo-jobs"]
    assert [sid for sid, s in lam_policy.items() if s["Resource"] == "*"] == ["DetectLabels"]
    host = _statements("labelkit-demo-ec2")
    assert sorted(host["Images"]["Resource"]) == sorted(
        f"arn:aws:s3:::{BUCKET}/{p}/*" for p in ("exports", "thumbs", "users")
    )
    assert host["ReadSource"]["Resource"] == [f"arn:aws:s3:::{artifacts}/source/*"]
    assert "sqs:DeleteMessage" not in host["Queue"]["Action"]  # the Lambda labels, not the host
    assert "DetectLabels" not in host
    assert all(a.startswith(("cognito-idp:Admin", "cognito-idp:List")) for a in host["Users"]["Action"])
    profile = _client("iam").get_instance_profile(InstanceProfileName="labelkit-demo-ec2")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["labelkit-demo-ec2"]
    retention = _client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/labelkit-demo-labeler")
    assert retention["logGroups"][0]["retentionInDays"] == 30

    # RDS: MySQL, private, encrypted; the URL in the outputs carries no password
    (db,) = _client("rds").describe_db_instances()["DBInstances"]
    assert db["Engine"] == "mysql" and db["DBInstanceClass"] == "db.t4g.micro"
    assert db["PubliclyAccessible"] is False and db["StorageEncrypted"] is True
    assert out["database_url"] == f"mysql+pymysql://labelkit@{db['Endpoint']['Address']}:3306/labelkit"

    # security groups: nginx open to the world, MySQL only from the app group
    ec2 = _client("ec2")
    groups = {
        _tag(g, "Name"): g
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "tag:labelkit:stack", "Values": ["labelkit-demo"]}]
        )["SecurityGroups"]
    }
    assert sorted(groups) == ["labelkit-demo-app", "labelkit-demo-db", "labelkit-demo-web"]
    web_ports = sorted(p["FromPort"] for p in groups["labelkit-demo-web"]["IpPermissions"])
    assert web_ports == [80, 443]  # no SSH without --ssh-cidr
    (db_rule,) = groups["labelkit-demo-db"]["IpPermissions"]
    assert db_rule["FromPort"] == 3306
    assert [p["GroupId"] for p in db_rule["UserIdGroupPairs"]] == [groups["labelkit-demo-app"]["GroupId"]]

    # EC2: the instance profile, and user data that writes the stack's settings and bootstraps
    inst = ec2.describe_instances(InstanceIds=[out["instance_id"]])["Reservations"][0]["Instances"][0]
    assert inst["IamInstanceProfile"]["Arn"].endswith(":instance-profile/labelkit-demo-ec2")
    assert inst["ImageId"] == MOTO_AMI
    user_data = _user_data(out["instance_id"])
    assert "#cloud-config\ncloud_final_modules:\n  - [scripts-user, always]" in user_data
    assert f"readonly SOURCE_URL='{out['source_url']}'" in user_data
    assert "exec bash /run/labelkit-host/user-data.sh --source-in-place" in user_data
    assert "--enable-listener" not in user_data

    # the host's settings (from its user data) agree with the outputs' (where moto resolves both)
    stack_env = user_data.split("<<'LABELKIT_STACK_EOF'\n", 1)[1].split("LABELKIT_STACK_EOF", 1)[0]
    host_env = dict(line.split("=", 1) for line in stack_env.splitlines())
    out_env = cfn.settings_env(out)
    assert host_env.pop("LABELKIT_STACK") == "labelkit-demo" and out_env.pop("LABELKIT_STACK") == "demo"
    out_env.pop("LABELKIT_INSTANCE_ID")
    # Cognito and the secret are not created by moto: their references stay unresolved
    unresolved = {
        "LABELKIT_COGNITO_USER_POOL_ID",
        "LABELKIT_COGNITO_CLIENT_ID",
        "LABELKIT_DATABASE_SECRET_ARN",
    }
    assert {k: v for k, v in host_env.items() if k not in unresolved} == out_env

    # the outputs are settings the dashboard reads
    settings = Settings(_env_file=opts.outputs_dir / "demo.env")
    assert settings.queue_url == out["queue_url"] and settings.uses_sqs
    assert settings.storage_url == f"s3://{BUCKET}" and settings.s3_notifies_queue
    assert settings.auth_mode == "cognito" and settings.database_url == out["database_url"]
    saved = json.loads((opts.outputs_dir / "demo.json").read_text())
    assert saved == out and saved["lambda_arn"] == fn["FunctionArn"]

    # the single host is the whole web tier: no load balancer, no Auto Scaling group
    assert _client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert _client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert out["site_url"] == f"http://{inst['PublicDnsName']}" and out["load_balancer_dns"] == ""
    assert db["MultiAZ"] is False  # the demo profile

    # everything carries the stack's tag (or, where moto keeps none, its name)
    kinds = {f.split(":", 1)[0] for f in inventory(clients, "labelkit-demo")}
    assert kinds == {"s3", "sqs", "iam-role", "iam-profile", "lambda", "mapping", "rds", "ec2", "sg", "logs"}


def _tag(resource: dict[str, Any], key: str) -> str:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}.get(key, "")


def test_plan_changes_nothing_and_an_unchanged_stack_has_no_changes(
    clients: cfn.Clients, make_opts: Opts
) -> None:
    # GIVEN an empty account, WHEN planned
    opts = make_opts()
    echo = Echo()
    planned = cfn.plan(opts, clients, echo=echo, sleep=no_sleep)
    # THEN the change set lists the resources, and nothing exists afterwards
    # (moto lists all 40 resources; AWS leaves out the 16 whose conditions are off here: the
    # external database's secret, the web cluster and its alarms, the alarm topic)
    assert planned.kind == "CREATE" and "Plan: 40 to add." in echo.text
    assert "  + add     AWS::Lambda::EventSourceMapping              LabelerTrigger" in echo.lines
    assert "  + add     AWS::Events::Rule                            ReconcileSchedule" in echo.lines
    assert inventory(clients, "labelkit-demo") == set()
    assert cfn.describe_stack(opts, clients) is None  # not even the REVIEW_IN_PROGRESS shell
    assert clients.cloudformation.list_change_sets(StackName=opts.stack).get("Summaries", []) == []
    assert not (opts.outputs_dir / "demo.json").exists()
    assert "Buckets" not in _client("s3").list_buckets() or _client("s3").list_buckets()["Buckets"] == []

    # WHEN applied and planned again with the same inputs, THEN there is nothing to change
    cfn.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    before = inventory(clients, "labelkit-demo")
    echo = Echo()
    again = cfn.plan(opts, clients, echo=echo, sleep=no_sleep)
    assert again.empty and echo.lines == ["No changes: stack labelkit-demo is up to date."]
    # AND an apply without the zip keeps the code it has (the previous parameter values)
    opts.lambda_zip = None
    echo = Echo()
    cs, _ = cfn.apply(opts, clients, echo=echo, sleep=no_sleep)
    assert cs.empty and "No changes" in echo.text
    assert inventory(clients, "labelkit-demo") == before


def test_changed_options_are_planned_and_applied(
    clients: cfn.Clients, make_opts: Opts, tmp_path: Path
) -> None:
    # GIVEN a deployed stack
    cfn.apply(make_opts(), clients, echo=Echo(), sleep=no_sleep)
    queue_url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/labelkit-demo-jobs"
    lam = _client("lambda")
    code_before = lam.get_function(FunctionName="labelkit-demo-labeler")["Configuration"]["CodeSha256"]
    # WHEN an option and the Lambda's code change
    changed = make_opts(VisibilityTimeout="400")
    new_zip = tmp_path / "new.zip"
    with zipfile.ZipFile(new_zip, "w") as zf:
        zf.writestr("lambda_labeler/handler.py", "def lambda_handler(event, context):\n    return 1\n")
    changed.lambda_zip = new_zip
    planned = cfn.plan(changed, clients, echo=Echo(), sleep=no_sleep)
    # THEN the plan is an update (moto leaves parameter-driven changes out of the list, where
    # AWS names JobQueue, Labeler and Host), and apply makes it
    assert planned.kind == "UPDATE" and not planned.empty
    cfn.apply(changed, clients, echo=Echo(), sleep=no_sleep)
    attrs = _client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "400"
    assert (
        lam.get_function(FunctionName="labelkit-demo-labeler")["Configuration"]["CodeSha256"] != code_before
    )
    stack = cfn.describe_stack(changed, clients)
    assert stack is not None
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["VisibilityTimeout"] == "400" and params["MaxReceives"] == "4"
    assert cfn.plan(changed, clients, echo=Echo(), sleep=no_sleep).empty
    # AND options not given again keep their values (the timeout stays 400, the code stays new)
    kept = make_opts()
    kept.lambda_zip = None
    assert cfn.plan(kept, clients, echo=Echo(), sleep=no_sleep).empty


def test_destroy_leaves_nothing_tagged_with_the_stack(clients: cfn.Clients, make_opts: Opts) -> None:
    # GIVEN two stacks, and an upload in demo's bucket
    demo, other = make_opts("demo"), make_opts("other", Database="none")
    cfn.apply(demo, clients, echo=Echo(), sleep=no_sleep)
    cfn.apply(other, clients, echo=Echo(), sleep=no_sleep)
    other_before = inventory(clients, "labelkit-other")
    assert other_before
    _client("s3").put_object(Bucket=BUCKET, Key="users/u1/a.jpg", Body=b"x")

    # WHEN demo is destroyed
    echo = Echo()
    assert cfn.destroy(demo, clients, echo=echo, sleep=no_sleep) is True

    # THEN nothing tagged with it remains, the other stack is untouched, the outputs are gone
    assert inventory(clients, "labelkit-demo") == set()
    assert inventory(clients, "labelkit-other") == other_before
    assert f"emptied s3://{BUCKET} (1 object(s))" in echo.lines
    assert "Destroy complete: stack labelkit-demo is deleted." in echo.lines
    assert not (demo.outputs_dir / "demo.env").exists() and (demo.outputs_dir / "other.env").exists()
    assert cfn.describe_stack(demo, clients) is None
    echo = Echo()
    assert cfn.destroy(demo, clients, echo=echo, sleep=no_sleep) is False
    assert "Nothing to delete" in echo.text

    # AND it can be created again
    cs, _ = cfn.apply(demo, clients, echo=Echo(), sleep=no_sleep)
    assert cs.kind == "CREATE"


def test_worker_on_ec2_instead_of_lambda(clients: cfn.Clients, make_opts: Opts) -> None:
    # GIVEN the host's listener labels (no Lambda, so no VPC plumbing for one), no RDS, SSH open
    git = "https://github.com/example/labelkit.git"
    opts = make_opts(Worker="ec2", Database="none", SshCidr="203.0.113.4/32", SourceUrl=git)
    opts.lambda_zip = None
    _, out = cfn.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    # THEN there is no function, the host may consume the queue and call Rekognition
    assert _client("lambda").list_functions()["Functions"] == []
    assert [r["RoleName"] for r in _client("iam").list_roles()["Roles"]] == ["labelkit-demo-ec2"]
    host = _statements("labelkit-demo-ec2")
    assert "sqs:DeleteMessage" in host["Queue"]["Action"]
    assert host["DetectLabels"]["Action"] == ["rekognition:DetectLabels"]
    assert "DatabaseSecret" not in host
    assert "--enable-listener" in _user_data(out["instance_id"])
    assert out["lambda_arn"] == "" and out["database_url"] == ""
    assert _client("rds").describe_db_instances()["DBInstances"] == []
    web = _client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:Name", "Values": ["labelkit-demo-web"]}]
    )
    rules = {
        (p["FromPort"], r["CidrIp"]) for p in web["SecurityGroups"][0]["IpPermissions"] for r in p["IpRanges"]
    }
    assert (22, "203.0.113.4/32") in rules
    assert f"readonly SOURCE_URL='{git}'" in _user_data(out["instance_id"])
    # AND a later plan without --source-url keeps the git URL (it packs no tarball)
    again = make_opts()
    again.lambda_zip = None
    assert cfn.artifacts(again, cfn.describe_stack(again, clients)) == []
    assert cfn.plan(again, clients, echo=Echo(), sleep=no_sleep).empty


def test_lambda_in_a_vpc(clients: cfn.Clients, make_opts: Opts) -> None:
    # GIVEN subnets for the Lambda (and no host, no database)
    subnets = [s["SubnetId"] for s in _client("ec2").describe_subnets()["Subnets"]][:2]
    opts = make_opts(LambdaSubnetIds=",".join(subnets), CreateInstance="false", Database="none")
    cfn.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    # THEN it runs in them with the app security group (the role's managed VPC policy is
    # cfn-lint's to check: moto's CloudFormation ignores ManagedPolicyArns)
    vpc = _client("lambda").get_function(FunctionName="labelkit-demo-labeler")["Configuration"]["VpcConfig"]
    assert sorted(vpc["SubnetIds"]) == sorted(subnets)
    (group,) = _client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:Name", "Values": ["labelkit-demo-app"]}]
    )["SecurityGroups"]
    assert vpc["SecurityGroupIds"] == [group["GroupId"]]
    assert _client("ec2").describe_instances()["Reservations"] == []
    # AND a later plan that names no options packs no source for the host it does not have
    again = make_opts()
    again.lambda_zip = None
    assert cfn.plan(again, clients, echo=Echo(), sleep=no_sleep).empty


def test_existing_database_url(clients: cfn.Clients, make_opts: Opts) -> None:
    # GIVEN --database-url with a password
    url, password = cli.split_database_url("mysql+pymysql://app:s3cret@db.example.internal:3306/labelkit")
    assert (url, password) == ("mysql+pymysql://app@db.example.internal:3306/labelkit", "s3cret")
    opts = make_opts(Database="external", DatabaseUrl=url, DatabasePassword=password, CreateInstance="false")
    _, out = cfn.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    # THEN no RDS; the Lambda and the outputs carry the URL without the password
    assert _client("rds").describe_db_instances()["DBInstances"] == []
    env = _client("lambda").get_function(FunctionName="labelkit-demo-labeler")["Configuration"]["Environment"]
    assert env["Variables"]["LABELKIT_DATABASE_URL"] == url == out["database_url"]
    assert "s3cret" not in (opts.outputs_dir / "demo.env").read_text()
    assert cfn.plan(opts, clients, echo=Echo(), sleep=no_sleep).empty


def test_cli_plan_apply_outputs_render_destroy(
    aws: None, tmp_path: Path, lambda_zip: Path, source_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--stack", "cli", "--region", REGION, "--outputs-dir", str(tmp_path / "out")]
    options = ["--database", "none", "--ami", MOTO_AMI, "--source-dir", str(source_dir)]
    assert cli.main(["apply", *common, *options]) == 1  # refused before anything is created
    assert "needs --lambda-zip" in capsys.readouterr().err
    assert cli.main(["plan", *common, *options, "--lambda-zip", str(lambda_zip)]) == 0
    assert "Change set to create stack labelkit-cli" in capsys.readouterr().out
    assert cli.main(["apply", *common, *options, "--lambda-zip", str(lambda_zip)]) == 0
    assert "Apply complete" in capsys.readouterr().out
    assert cli.main(["plan", *common, *options, "--lambda-zip", str(lambda_zip)]) == 0
    assert "No changes: stack labelkit-cli is up to date." in capsys.readouterr().out
    (tmp_path / "out" / "cli.env").unlink()
    assert cli.main(["outputs", *common]) == 0
    assert "LABELKIT_QUEUE_URL=https://" in (tmp_path / "out" / "cli.env").read_text()
    host = tmp_path / "host"
    assert (
        cli.main(["render", "--out", str(host), "--stack", "cli", "--outputs-dir", str(tmp_path / "out")])
        == 0
    )
    rendered = read_env_file(host / "labelkit.env")
    assert rendered["LABELKIT_QUEUE_URL"].endswith("/labelkit-cli-jobs")
    assert "LABELKIT_INSTANCE_ID" not in rendered
    assert cli.main(["destroy", *common]) == 2  # no --yes and no terminal
    assert cli.main(["destroy", *common, "--yes", "--no-final-snapshot"]) == 0
    assert "Destroy complete" in capsys.readouterr().out
    assert cli.main(["plan", "--stack", "Bad_Name", "--region", REGION]) == 1
    assert "stack name 'Bad_Name'" in capsys.readouterr().err


def test_plan_against_a_moto_server(tmp_path: Path, source_dir: Path) -> None:
    """``python -m infra_scripts plan --stack demo`` with AWS_ENDPOINT_URL at a moto server."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60)
        env = {
            "PATH": "/usr/bin:/bin",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        }
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "infra_scripts",
                "plan",
                "--stack",
                "demo",
                "--source-dir",
                str(source_dir),
            ],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert "Change set to create stack labelkit-demo in us-east-1:" in result.stdout
    assert "AWS::Lambda::Function" in result.stdout and "Plan: 40 to add." in result.stdout
    assert "without --lambda-zip" in result.stdout
