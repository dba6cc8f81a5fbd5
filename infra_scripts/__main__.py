"""``python -m infra_scripts plan|apply|destroy|outputs|migrate|render`` — thin CLI over
:mod:`infra_scripts.cloudformation` and the template ``infra_scripts/labelkit.yaml``.

    python -m infra_scripts plan    --stack demo --lambda-zip build/lambda.zip
    python -m infra_scripts apply   --stack demo --lambda-zip build/lambda.zip
    python -m infra_scripts plan    --stack demo --web-tier cluster --profile production \
        [--certificate-arn ARN] [--alarm-email you@example.com]   # load balancer + hosts in 2+ zones
    python -m infra_scripts outputs --stack demo     # stack-outputs/demo.env and .json
    python -m infra_scripts migrate --stack demo     # Alembic against the stack's database
    python -m infra_scripts destroy --stack demo --yes [--no-final-snapshot]
    python -m infra_scripts render  --out build/host [--stack demo | --env-file FILE]
    python -m infra_scripts migrate                  # on a host: with the LABELKIT_* settings

Credentials and region come from the usual AWS sources (environment, profile, instance
role); ``--region`` overrides the region, and ``AWS_ENDPOINT_URL`` points every client
elsewhere (a moto server, for instance). Template parameters not given keep their value
on an existing stack and take the template's default on a new one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import text
from sqlalchemy.engine import Engine

from infra_scripts.cloudformation import Clients, DeployError, DeployOptions, settings_env
from infra_scripts.render import HostConfig, read_env_file, render_host_files, write_host_files

# Command-line options that set template parameters: (flag, parameter, argparse keywords).
PARAMETER_FLAGS: list[tuple[str, str, dict[str, Any]]] = [
    ("--worker", "Worker", {"choices": ["lambda", "ec2"], "help": "who labels (ec2: the host's listener)"}),
    ("--lambda-timeout", "LambdaTimeout", {"type": int}),
    ("--lambda-memory", "LambdaMemory", {"type": int}),
    ("--batch-size", "BatchSize", {"type": int}),
    ("--max-concurrency", "MaxConcurrency", {"type": int, "help": "the SQS trigger's maximum concurrency"}),
    ("--lambda-subnet-ids", "LambdaSubnetIds", {"help": "comma-separated: run the Lambda in a VPC"}),
    ("--max-receives", "MaxReceives", {"type": int, "help": "deliveries before dead-lettering"}),
    ("--visibility-timeout", "VisibilityTimeout", {"type": int}),
    ("--exports-expire-days", "ExportsExpireDays", {"type": int}),
    ("--database", "Database", {"choices": ["rds", "none"], "help": "a new RDS MySQL, or none (SQLite)"}),
    ("--db-instance-class", "DbInstanceClass", {}),
    ("--db-engine-version", "DbEngineVersion", {}),
    ("--db-storage-gb", "DbStorageGb", {"type": int}),
    ("--db-subnet-ids", "DbSubnetIds", {"help": "comma-separated subnets for RDS"}),
    ("--profile", "Profile", {"choices": ["demo", "production"], "help": "production: RDS Multi-AZ"}),
    (
        "--db-multi-az",
        "DbMultiAz",
        {"action": argparse.BooleanOptionalAction, "help": "RDS Multi-AZ (default: from --profile)"},
    ),
    ("--instance", "CreateInstance", {"action": argparse.BooleanOptionalAction, "help": "the EC2 host"}),
    (
        "--web-tier",
        "WebTier",
        {"choices": ["single", "cluster"], "help": "one host, or a load balancer and an Auto Scaling group"},
    ),
    (
        "--lb-subnet-ids",
        "LoadBalancerSubnetIds",
        {"help": "cluster: public subnets in 2+ zones, comma-separated (default: the VPC's public ones)"},
    ),
    ("--host-subnet-ids", "HostSubnetIds", {"help": "cluster: the hosts' subnets (default: the same)"}),
    ("--hosts-min", "HostsMin", {"type": int}),
    ("--hosts-desired", "HostsDesired", {"type": int}),
    ("--hosts-max", "HostsMax", {"type": int}),
    ("--certificate-arn", "CertificateArn", {"help": "cluster: ACM certificate for HTTPS (else HTTP only)"}),
    ("--idle-timeout", "LoadBalancerIdleTimeout", {"type": int, "help": "cluster: seconds (default 300)"}),
    ("--stickiness-seconds", "StickinessSeconds", {"type": int, "help": "cluster: the sticky cookie's life"}),
    ("--alarm-email", "AlarmEmail", {"help": "send the CloudWatch alarms to this address"}),
    ("--os", "Os", {"choices": ["debian", "al2023"]}),
    ("--ami", "ImageId", {"help": "AMI id (default: the latest for --os)"}),
    ("--instance-type", "InstanceType", {}),
    ("--key-name", "KeyName", {}),
    ("--vpc-id", "VpcId", {"help": "default: the default VPC"}),
    ("--subnet-id", "SubnetId", {}),
    ("--allow-cidr", "AllowCidr", {"help": "who may reach nginx (80/443)"}),
    ("--ssh-cidr", "SshCidr", {"help": "open port 22 to this CIDR"}),
    ("--server-name", "ServerName", {"help": "nginx server_name"}),
    (
        "--ec2-listener",
        "Ec2Listener",
        {"action": argparse.BooleanOptionalAction, "help": "listener on the host"},
    ),
    ("--source-url", "SourceUrl", {"help": "git URL or s3:// tarball (default: upload this checkout)"}),
    ("--source-ref", "SourceRef", {"help": "git branch or tag for --source-url"}),
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m infra_scripts", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def stack_command(name: str, help_text: str, *, required: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--stack", required=required, default="", help="1-20 of a-z, 0-9, '-'")
        c.add_argument("--region", default=None, help="AWS region (default: the AWS configuration's)")
        c.add_argument("--outputs-dir", type=Path, default=Path("stack-outputs"))
        return c

    for name, help_text in (("plan", "print the change set apply would run"), ("apply", "create or update")):
        c = stack_command(name, help_text)
        c.add_argument("--lambda-zip", type=Path, help="the Lambda package (make lambda-zip)")
        c.add_argument(
            "--source-dir", type=Path, default=None, help="tree to upload (default: this checkout)"
        )
        c.add_argument("--artifacts-bucket", default="", help="default: labelkit-artifacts-ACCOUNT-REGION")
        c.add_argument("--database-url", default=None, help="an existing database instead of RDS")
        for flag, _, kwargs in PARAMETER_FLAGS:
            c.add_argument(flag, default=None, **kwargs)

    d = stack_command("destroy", "delete the stack and everything in it")
    d.add_argument("--yes", action="store_true", help="do not ask")
    d.add_argument("--no-final-snapshot", action="store_true", help="delete RDS without a final snapshot")

    stack_command("outputs", "write stack-outputs/STACK.env and .json")
    stack_command("migrate", "Alembic upgrade: the stack's database, or LABELKIT_* settings", required=False)

    r = sub.add_parser("render", help="render the host files (nginx, systemd, env, user data) to a folder")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--stack", default="", help="take the settings from stack-outputs/STACK.json")
    r.add_argument("--env-file", type=Path, default=None, help="take the settings from this LABELKIT_* file")
    r.add_argument("--outputs-dir", type=Path, default=Path("stack-outputs"))
    r.add_argument("--source-url", default="")
    r.add_argument("--source-ref", default="")
    r.add_argument("--server-name", default="_")
    r.add_argument("--http-port", type=int, default=80)
    r.add_argument("--tls", action="store_true", help="HTTPS server + redirect from HTTP")
    r.add_argument("--ssl-certificate", default=HostConfig.ssl_certificate)
    r.add_argument("--ssl-certificate-key", default=HostConfig.ssl_certificate_key)
    r.add_argument("--no-ipv6", action="store_true")
    r.add_argument("--enable-listener", action="store_true")
    r.add_argument(
        "--load-balancer",
        action="store_true",
        help="a cluster host: behind the load balancer (plain HTTP; client address and scheme from it)",
    )
    r.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="with --load-balancer: where the load balancer's requests come from (the VPC); repeatable",
    )
    r.add_argument("--load-balancer-idle-timeout", type=int, default=HostConfig.load_balancer_idle_timeout)
    return p


def _region(args: argparse.Namespace) -> str:
    if args.region:
        return str(args.region)
    import boto3

    return boto3.session.Session().region_name or "us-east-1"


def split_database_url(url: str) -> tuple[str, str]:
    """(the URL without its password, the password or "")."""
    from sqlalchemy.engine import URL, make_url

    u = make_url(url)
    bare = URL.create(
        u.drivername, username=u.username, host=u.host, port=u.port, database=u.database, query=u.query
    )
    return bare.render_as_string(hide_password=False), u.password or ""


def _options(args: argparse.Namespace) -> DeployOptions:
    opts = DeployOptions(name=args.stack, region=_region(args), outputs_dir=args.outputs_dir)
    if args.command == "destroy":
        opts.final_snapshot = not args.no_final_snapshot
    if args.command not in ("plan", "apply"):
        return opts
    params: dict[str, str] = {}
    for flag, name, _ in PARAMETER_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            params[name] = str(value).lower() if isinstance(value, bool) else str(value)
    if args.database_url is not None:
        url, password = split_database_url(args.database_url)
        params.update(Database="external", DatabaseUrl=url, DatabasePassword=password)
    opts.parameters = params
    opts.lambda_zip = args.lambda_zip
    opts.artifacts_bucket = args.artifacts_bucket
    if args.source_dir is not None:
        opts.source_dir = args.source_dir
    return opts


def _render(args: argparse.Namespace) -> int:
    env: dict[str, str] = {}
    source_url = args.source_url
    if args.env_file is not None:
        env = read_env_file(args.env_file)
    elif args.stack:
        path = args.outputs_dir / f"{args.stack}.json"
        if not path.exists():
            print(f"no outputs for stack {args.stack}: {path} (run apply or outputs first)", file=sys.stderr)
            return 1
        out = json.loads(path.read_text(encoding="utf-8"))
        env = settings_env(out)
        source_url = source_url or out.get("source_url", "")
    env.pop("LABELKIT_INSTANCE_ID", None)  # the host's own id is not a setting it needs
    if args.load_balancer and not args.trusted_proxy:
        print("--load-balancer needs --trusted-proxy CIDR (the VPC's range)", file=sys.stderr)
        return 2
    try:
        cfg = _host_config(args, env, source_url)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in write_host_files(args.out, render_host_files(cfg)):
        print(f"wrote {path}")
    return 0


def _host_config(args: argparse.Namespace, env: dict[str, str], source_url: str) -> HostConfig:
    return HostConfig(
        env=env,
        stack=args.stack or env.get("LABELKIT_STACK", ""),
        region=env.get("LABELKIT_AWS_REGION", HostConfig.region),
        source_url=source_url,
        source_ref=args.source_ref,
        server_name=args.server_name,
        http_port=args.http_port,
        tls=args.tls,
        ssl_certificate=args.ssl_certificate,
        ssl_certificate_key=args.ssl_certificate_key,
        ipv6=not args.no_ipv6,
        enable_listener=args.enable_listener,
        load_balancer=args.load_balancer,
        trusted_proxies=tuple(args.trusted_proxy),
        load_balancer_idle_timeout=args.load_balancer_idle_timeout,
    )


MIGRATION_LOCK_SECONDS = 900


def upgrade_one_at_a_time(engine: Engine) -> None:
    """Alembic upgrade to head, one host at a time.

    Every host migrates when it boots, and a cluster's hosts boot together (the stack's
    create, a scale-out, a rolling update's new host beside the old ones). MySQL runs DDL
    outside transactions, so two upgrades at once would both try to create the same tables:
    here a named lock (``GET_LOCK``, per database) makes the others wait for the first and
    then find the schema at head. SQLite is one host's own file and needs none."""
    from labelkit.db.migrate import upgrade

    if engine.dialect.name not in ("mysql", "mariadb"):
        upgrade(engine)
        return
    name = f"labelkit_migrate:{engine.url.database}"[:64]
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT GET_LOCK(:name, :seconds)"), {"name": name, "seconds": MIGRATION_LOCK_SECONDS}
        ).scalar()
        if got != 1:
            raise DeployError(
                f"another host has been migrating the database for {MIGRATION_LOCK_SECONDS} s; "
                "not migrating alongside it"
            )
        try:
            upgrade(engine)
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def _migrate(args: argparse.Namespace) -> int:
    from labelkit.db.engine import dispose_engines, get_engine, make_engine
    from labelkit.settings import get_settings

    if not args.stack:  # on a host: the LABELKIT_* settings say where the database is
        settings = get_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_one_at_a_time(get_engine(settings))
        dispose_engines()
        print("database migrated to head")
        return 0
    from infra_scripts.cloudformation import write_outputs
    from labelkit.aws import secret_password

    opts = _options(args)
    out = write_outputs(opts, Clients(opts.region))
    if not out["database_url"]:
        print(f"stack {opts.stack} has no database (the host uses SQLite)", file=sys.stderr)
        return 1
    password = None
    if out["database_secret_arn"]:
        password = secret_password(out["database_secret_arn"], region=opts.region)
    engine = make_engine(out["database_url"], password=password)
    try:
        upgrade_one_at_a_time(engine)  # RDS is private: this works from inside the VPC (or over a tunnel)
    finally:
        engine.dispose()
    print(f"database of stack {opts.stack} migrated to head")
    return 0


def main(argv: list[str] | None = None) -> int:
    from infra_scripts import cloudformation as cfn

    args = _parser().parse_args(argv)
    try:
        if args.command == "render":
            return _render(args)
        if args.command == "migrate":
            return _migrate(args)
        opts = _options(args)
        clients = Clients(opts.region)
        if args.command == "plan":
            cfn.plan(opts, clients)
        elif args.command == "apply":
            cfn.apply(opts, clients)
        elif args.command == "outputs":
            cfn.write_outputs(opts, clients)
            print(f"wrote {opts.outputs_dir / (opts.name + '.env')} and .json")
        else:
            if not args.yes:
                if not sys.stdin.isatty():
                    print("destroy deletes data (bucket, database): pass --yes", file=sys.stderr)
                    return 2
                answer = input(f"Delete stack {opts.stack} in {opts.region} and everything in it? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    print("aborted")
                    return 1
            cfn.destroy(opts, clients)
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as e:
        # Credentials, permissions, limits, template errors: AWS's own message says what to fix.
        print(f"AWS error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
