"""``python -m labelkit.export``: export labels as CSV, JSON Lines, COCO or a
SageMaker Ground Truth / Rekognition Custom Labels manifest, or import a JSON
Lines export or a manifest back as human labels.

Export (to ``--out`` or standard output)::

    python -m labelkit.export --format coco --out labels.json
    python -m labelkit.export --format manifest --label Animal --reviewed-only --out train.manifest
    python -m labelkit.export --format csv --as alice            # what alice may see, nothing else

Without ``--as`` the export runs as an administrator (this command runs where the
database is, like the notebooks). Import::

    python -m labelkit.export --import labels.jsonl --user alice [--replace]

Imported labels are human labels by ``--user``, on that user's images (all images
for an admin). Unknown images are reported, never created. Exit codes: 0 done,
1 bad arguments or an export that could not be made, 2 an import with unknown
images or unreadable lines (the rest was imported).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from labelkit import exports
from labelkit.db import repository as repo
from labelkit.db.engine import transaction
from labelkit.db.repository import Viewer
from labelkit.errors import LabelkitError
from labelkit.services import build_services
from labelkit.settings import get_settings

CLI_USER = "cli"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m labelkit.export",
        description="Export labels (CSV, JSON Lines, COCO, Ground Truth manifest) or import them back.",
    )
    p.add_argument("--format", choices=[f.value for f in exports.ExportFormat], default="jsonl")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")
    p.add_argument("--as", dest="as_user", default=None, help="export as this user (default: admin, all)")
    p.add_argument("--owner", default=None, help="only this user's images (username)")
    p.add_argument("--label", action="append", default=[], help="label or parent (repeatable: any of)")
    p.add_argument("--reviewed-only", action="store_true", help="only labels a person confirmed or added")
    p.add_argument("--since", type=date.fromisoformat, default=None, help="uploaded on or after (YYYY-MM-DD)")
    p.add_argument(
        "--until", type=date.fromisoformat, default=None, help="uploaded on or before (YYYY-MM-DD)"
    )
    p.add_argument("--min-confidence", type=float, default=None, help="labels at or above this (0-100)")
    p.add_argument("--import", dest="import_file", type=Path, default=None, help="JSON Lines or manifest")
    p.add_argument("--user", default=None, help="who the imported human labels are by (required to import)")
    p.add_argument("--replace", action="store_true", help="remove the images' human labels before importing")
    return p


def _err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    services = build_services(get_settings())
    storage_url = services.settings.resolved_storage_url
    try:
        if args.import_file is not None:
            return _import(args, services.engine, storage_url)
        with transaction(services.engine) as s:
            viewer = Viewer(user_id=CLI_USER, is_admin=True)
            if args.as_user:
                user = repo.get_user_by_username(session=s, username=args.as_user)
                if user is None:
                    _err(f"no user {args.as_user!r}")
                    return 1
                viewer = Viewer(user_id=user.id, is_admin=user.is_admin)
            options = exports.ExportOptions(
                owner=args.owner,
                labels=tuple(args.label),
                reviewed_only=args.reviewed_only,
                since=args.since,
                until=args.until,
                min_confidence=args.min_confidence,
            )
            result = exports.build_export(
                session=s, viewer=viewer, fmt=args.format, options=options, storage_url=storage_url
            )
    except LabelkitError as e:
        _err(f"error: {e}")
        return 1
    if args.out is None:
        sys.stdout.buffer.write(result.data)
        sys.stdout.flush()
    else:
        args.out.write_bytes(result.data)
        _err(f"wrote {args.out} ({result.images} images, {result.labels} labels, {args.format})")
    return 0


def _import(args: argparse.Namespace, engine: object, storage_url: str) -> int:
    from sqlalchemy.engine import Engine

    assert isinstance(engine, Engine)
    if not args.user:
        _err("--import needs --user NAME (the imported labels are that person's)")
        return 1
    try:
        text = args.import_file.read_bytes()
    except OSError as e:
        _err(f"cannot read {args.import_file}: {e}")
        return 1
    with transaction(engine) as s:
        user = repo.get_user_by_username(session=s, username=args.user)
        if user is None:
            _err(f"no user {args.user!r}")
            return 1
        report = exports.import_text(
            session=s,
            viewer=Viewer(user_id=user.id, is_admin=user.is_admin),
            text=text,
            storage_url=storage_url,
            replace=args.replace,
        )
    sys.stdout.write(report.summary() + "\n")
    for key in report.unknown:
        _err(f"unknown image: {key}")
    for line in report.errors:
        _err(line)
    return 2 if report.unknown or report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
