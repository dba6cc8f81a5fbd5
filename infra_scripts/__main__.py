"""``python -m infra_scripts plan|apply|destroy|render|migrate`` — thin CLI over :mod:`infra_scripts.stack`.

    python -m infra_scripts plan    --stack demo --lambda-zip build/lambda.zip
    python -m infra_scripts apply   --stack demo --lambda-zip build/lambda.zip
    python -m infra_scripts destroy --stack demo --yes
    python -m infra_scripts render  --out build/host [--stack demo]
    python -m infra_scripts migrate          # on a host: Alembic upgrade with LABELKIT_* settings

Credentials and region come from the usual AWS sources (environment, profile,
instance role); ``--region`` overrides the region.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from infra_scripts.render import HostConfig, render_host_files, write_host_files
from infra_scripts.stack import (
    Clients,
    StackError,
    StackOptions,
    apply,
    destroy,
    plan,
    settings_env,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m infra_scripts", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def stack_command(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--stack", required=True, help="stack name (1-20 of a-z, 0-9, '-')")
        c.add_argument("--region", default=None, help="AWS region (default: the AWS configuration's)")
        c.add_argument("--outputs-dir", type=Path, default=Path("stack-outputs"))
        return c

    for name, help_text in (("plan", "show what apply would change"), ("apply", "create or update")):
        c = stack_command(name, help_text)
        c.add_argument(
            "--lambda-zip", type=Path, help="the Lambda package (python -m infra_scripts.lambda_zip)"
        )
        c.add_argument("--max-receives", type=int, default=4, help="deliveries before dead-lettering")
        c.add_argument("--visibility-timeout", type=int, default=360)
        c.add_argument("--lambda-timeout", type=int, default=60)
        c.add_argument("--lambda-memory", type=int, default=1024)
        c.add_argument("--max-concurrency", type=int, default=5, help="Lambda pollers' maximum concurrency")
        c.add_argument("--lambda-subnet-ids", default="", help="comma-separated: run the Lambda in a VPC")
        c.add_argument("--database-url", default="", help="use this database instead of creating RDS")
        c.add_argument("--skip-rds", action="store_true", help="no database at all (the host uses SQLite)")
        c.add_argument("--skip-migrate", action="store_true")
        c.add_argument("--db-instance-class", default="db.t4g.micro")
        c.add_argument("--db-engine-version", default="8.0")
        c.add_argument("--skip-instance", action="store_true", help="no EC2 instance")
        c.add_argument("--ami", default="", help="AMI id (default: latest for --os via SSM)")
        c.add_argument("--os", choices=["debian", "al2023"], default="debian")
        c.add_argument("--instance-type", default="t3.small")
        c.add_argument("--key-name", default="")
        c.add_argument("--subnet-id", default="")
        c.add_argument("--allow-cidr", default="0.0.0.0/0", help="who may reach nginx (80/443)")
        c.add_argument("--ssh-cidr", default="", help="open port 22 to this CIDR")
        c.add_argument("--server-name", default="_", help="nginx server_name")
        c.add_argument(
            "--worker",
            choices=["lambda", "ec2"],
            default="lambda",
            help="who labels: the Lambda (default) or python -m sqs_listener on the EC2 host (no Lambda)",
        )
        c.add_argument("--ec2-listener", action="store_true", help="also run sqs_listener on the host")
        c.add_argument("--replace-instance", action="store_true", help="replace it if its user data changed")
        c.add_argument(
            "--source-url", default="", help="git URL or s3:// tarball (default: upload this tree)"
        )
        c.add_argument("--source-ref", default="", help="git branch or tag for --source-url")
        c.add_argument(
            "--source-dir", type=Path, default=None, help="tree to upload (default: this checkout)"
        )
        c.add_argument("--thumbs-expire-days", type=int, default=90)
        c.add_argument("--exports-expire-days", type=int, default=7)

    d = stack_command("destroy", "delete everything tagged with the stack")
    d.add_argument("--yes", action="store_true", help="do not ask")
    d.add_argument("--no-final-snapshot", action="store_true", help="delete RDS without a final snapshot")

    r = sub.add_parser("render", help="render the host files (nginx, systemd, env, user data) to a folder")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--stack", default="", help="take the settings from stack-outputs/STACK.json")
    r.add_argument("--outputs-dir", type=Path, default=Path("stack-outputs"))
    r.add_argument("--source-url", default="")
    r.add_argument("--server-name", default="_")
    r.add_argument("--http-port", type=int, default=80)
    r.add_argument("--tls", action="store_true", help="HTTPS server + redirect from HTTP")
    r.add_argument("--ssl-certificate", default=HostConfig.ssl_certificate)
    r.add_argument("--ssl-certificate-key", default=HostConfig.ssl_certificate_key)
    r.add_argument("--no-ipv6", action="store_true")
    r.add_argument("--enable-listener", action="store_true")

    sub.add_parser("migrate", help="run the Alembic migrations with the LABELKIT_* settings")
    return p


def _region(args: argparse.Namespace) -> str:
    if args.region:
        return str(args.region)
    import boto3

    return boto3.session.Session().region_name or "us-east-1"


def _options(args: argparse.Namespace) -> StackOptions:
    opts = StackOptions(name=args.stack, region=_region(args), outputs_dir=args.outputs_dir)
    if args.command == "destroy":
        opts.final_snapshot = not args.no_final_snapshot
        return opts
    opts.lambda_zip = args.lambda_zip
    opts.max_receives = args.max_receives
    opts.visibility_timeout = args.visibility_timeout
    opts.lambda_timeout = args.lambda_timeout
    opts.lambda_memory = args.lambda_memory
    opts.max_concurrency = args.max_concurrency
    opts.lambda_subnet_ids = [s for s in args.lambda_subnet_ids.split(",") if s]
    opts.database_url = args.database_url
    opts.create_database = not args.skip_rds
    opts.migrate = not args.skip_migrate
    opts.db_instance_class = args.db_instance_class
    opts.db_engine_version = args.db_engine_version
    opts.create_instance = not args.skip_instance
    opts.ami = args.ami
    opts.os = args.os
    opts.instance_type = args.instance_type
    opts.key_name = args.key_name
    opts.subnet_id = args.subnet_id
    opts.allow_cidr = args.allow_cidr
    opts.ssh_cidr = args.ssh_cidr
    opts.server_name = args.server_name
    opts.create_lambda = args.worker == "lambda"
    opts.ec2_listener = args.ec2_listener or args.worker == "ec2"
    opts.replace_instance = args.replace_instance
    opts.source_url = args.source_url
    opts.source_ref = args.source_ref
    if args.source_dir is not None:
        opts.source_dir = args.source_dir
    opts.thumbs_expire_days = args.thumbs_expire_days
    opts.exports_expire_days = args.exports_expire_days
    opts.__post_init__()  # re-validate after the updates
    return opts


def _render(args: argparse.Namespace) -> int:
    env: dict[str, str] = {}
    source_url = args.source_url
    if args.stack:
        path = args.outputs_dir / f"{args.stack}.json"
        if not path.exists():
            print(f"no outputs for stack {args.stack}: {path} (run apply first)", file=sys.stderr)
            return 1
        out = json.loads(path.read_text(encoding="utf-8"))
        env = settings_env(out, StackOptions(name=args.stack, region=out.get("region", "us-east-1")))
        env.pop("LABELKIT_INSTANCE_ID", None)
        source_url = source_url or out.get("source_url", "")
    cfg = HostConfig(
        env=env,
        stack=args.stack,
        source_url=source_url,
        server_name=args.server_name,
        http_port=args.http_port,
        tls=args.tls,
        ssl_certificate=args.ssl_certificate,
        ssl_certificate_key=args.ssl_certificate_key,
        ipv6=not args.no_ipv6,
        enable_listener=args.enable_listener,
    )
    for path in write_host_files(args.out, render_host_files(cfg)):
        print(f"wrote {path}")
    return 0


def _migrate() -> int:
    from labelkit.db.engine import dispose_engines, get_engine
    from labelkit.db.migrate import upgrade
    from labelkit.settings import get_settings

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(get_engine(settings))
    dispose_engines()
    print("database migrated to head")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "render":
            return _render(args)
        if args.command == "migrate":
            return _migrate()
        opts = _options(args)
        clients = Clients(opts.region)
        if args.command == "plan":
            plan(opts, clients)
        elif args.command == "apply":
            apply(opts, clients)
        else:
            if not args.yes:
                if not sys.stdin.isatty():
                    print("destroy deletes data (bucket, database): pass --yes", file=sys.stderr)
                    return 2
                answer = input(f"Delete every resource of stack {opts.name} in {opts.region}? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    print("aborted")
                    return 1
            destroy(opts, clients)
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as e:
        # Credentials, permissions, limits: AWS's own message says what to fix.
        print(f"AWS error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
