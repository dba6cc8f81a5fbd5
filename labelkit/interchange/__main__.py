"""``python -m labelkit.interchange``: export labels as CSV, JSON Lines, COCO or a
SageMaker Ground Truth / Rekognition Custom Labels manifest, or import a JSON
Lines export or a manifest back as human labels.

Export (to ``--out`` or standard output)::

    python -m labelkit.interchange --format coco --out labels.json
    python -m labelkit.interchange --format manifest --label Animal --reviewed-only --out train.manifest
    python -m labelkit.interchange --format csv --as alice            # what alice may see, nothing else

Without ``--as`` the export runs as an administrator (this command runs where the
database is, like the notebooks). ``--bom`` starts a CSV with a UTF-8 byte order mark
(for Excel). A manifest's ``source-ref`` is where the image is stored: ``s3://...`` in S3
mode, a file path on this machine in local mode, or ``s3://`` under
``LABELKIT_MANIFEST_S3_URL`` with ``--s3-refs`` (or under ``--source-ref-base URL``).

A bundle (COCO or manifest) is a zip of the images under readable, unique names and the
annotation file pointing at them (``images/<name>``), written to ``--out`` photo by photo in
pieces (any size: the dashboard makes bundles up to ``LABELKIT_DASHBOARD_BUNDLE_MAX_BYTES``
and names this command beyond that; ``labelkit export`` is the same command)::

    python -m labelkit.interchange --format coco --bundle --out coco.zip
    python -m labelkit.interchange --format manifest --bundle \
        --source-ref-base s3://bucket/dataset --out ds.zip

Import::

    python -m labelkit.interchange --import labels.jsonl --user alice [--replace]

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

from labelkit import interchange
from labelkit.db.engine import transaction
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer, system_viewer
from labelkit.errors import LabelkitError
from labelkit.services import build_services
from labelkit.settings import Settings, get_settings, s3_base_url
from labelkit.storage import ObjectStore


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m labelkit.interchange",
        description="Export labels (CSV, JSON Lines, COCO, Ground Truth manifest) or import them back.",
    )
    p.add_argument("--format", choices=[f.value for f in interchange.ExportFormat], default="jsonl")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")
    p.add_argument("--as", dest="as_user", default=None, help="export as this user (default: admin, all)")
    p.add_argument("--owner", default=None, help="only this user's images (username)")
    p.add_argument("--label", action="append", default=[], help="label or parent (repeatable: any of)")
    p.add_argument("--reviewed-only", action="store_true", help="only labels a person confirmed or added")
    p.add_argument(
        "--people",
        action="store_true",
        help="include the names of the people in the photos (Person: <name> labels; personal data)",
    )
    p.add_argument("--since", type=date.fromisoformat, default=None, help="uploaded on or after (YYYY-MM-DD)")
    p.add_argument(
        "--until", type=date.fromisoformat, default=None, help="uploaded on or before (YYYY-MM-DD)"
    )
    p.add_argument("--min-confidence", type=float, default=None, help="labels at or above this (0-100)")
    p.add_argument(
        "--bundle", action="store_true", help="coco/manifest: a zip of the images and the annotation file"
    )
    p.add_argument("--bom", action="store_true", help="csv: start with a UTF-8 byte order mark (Excel)")
    p.add_argument(
        "--s3-refs",
        action="store_true",
        help="manifest: source-ref under LABELKIT_MANIFEST_S3_URL (local mode)",
    )
    p.add_argument(
        "--source-ref-base",
        default="",
        metavar="URL",
        help="manifest: source-ref under this s3://bucket/prefix",
    )
    p.add_argument("--import", dest="import_file", type=Path, default=None, help="JSON Lines or manifest")
    p.add_argument("--user", default=None, help="who the imported human labels are by (required to import)")
    p.add_argument("--replace", action="store_true", help="remove the images' human labels before importing")
    return p


def _err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.bundle and args.format not in interchange.BUNDLE_FORMATS:
        parser.error("--bundle is for --format coco or manifest")
    if args.bom and args.format != interchange.ExportFormat.CSV:
        parser.error("--bom is for --format csv")
    try:
        base = _source_ref_base(args, get_settings())
    except ValueError as e:
        parser.error(str(e))
    services = build_services(get_settings())
    storage_url = services.settings.resolved_storage_url
    try:
        if args.import_file is not None:
            return _import(args, services.engine, storage_url)
        with transaction(services.engine) as s:
            viewer = system_viewer("cli")
            if args.as_user:
                user = user_q.get_user_by_username(session=s, username=args.as_user)
                if user is None:
                    _err(f"no user {args.as_user!r}")
                    return 1
                viewer = Viewer(user_id=user.id, is_admin=user.is_admin)
            options = interchange.ExportOptions(
                owner=args.owner,
                labels=tuple(args.label),
                reviewed_only=args.reviewed_only,
                since=args.since,
                until=args.until,
                min_confidence=args.min_confidence,
                people=args.people,
            )
            if args.bundle:
                entries = interchange.collect(session=s, viewer=viewer, options=options)
            else:
                result = interchange.build_export(
                    session=s,
                    viewer=viewer,
                    fmt=args.format,
                    options=options,
                    storage_url=storage_url,
                    source_ref_base=base,
                    csv_bom=args.bom,
                )
        if args.bundle:
            return _bundle(args, entries, services.store, storage_url, base)
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


def _bundle(
    args: argparse.Namespace,
    entries: list[interchange.ImageEntry],
    store: ObjectStore,
    storage_url: str,
    base: str,
) -> int:
    if args.out is None:
        _err("--bundle writes a zip: give --out FILE.zip")
        return 1
    out: Path = args.out
    _err(f"bundling {len(entries)} photos ({interchange.size_text(interchange.photo_bytes(entries))}) ...")
    # Written beside the target and renamed at the end: a bundle cut short is never left
    # under the name asked for.
    part = out.with_name(f".{out.name}.part")
    try:
        with part.open("wb") as fp:
            summary = interchange.write_bundle(
                fp, entries, fmt=args.format, store=store, storage_url=storage_url, source_ref_base=base
            )
        part.replace(out)
    except OSError as e:
        _err(f"cannot write {out}: {e}")
        return 1
    finally:
        part.unlink(missing_ok=True)
    _err(f"wrote {out} ({summary.images} images, {summary.labels} labels, {args.format} bundle)")
    for key in summary.missing:
        _err(f"not in the store, left out: {key}")
    return 0


def _source_ref_base(args: argparse.Namespace, settings: Settings) -> str:
    """Where a manifest says images are ("" = where they are stored, or relative in a bundle)."""
    if args.source_ref_base:
        return s3_base_url(args.source_ref_base)
    if args.s3_refs and not settings.uses_s3 and not settings.manifest_s3_url:
        raise ValueError("--s3-refs needs LABELKIT_MANIFEST_S3_URL=s3://bucket[/prefix]")
    return settings.manifest_source_ref_base if args.s3_refs else ""


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
        user = user_q.get_user_by_username(session=s, username=args.user)
        if user is None:
            _err(f"no user {args.user!r}")
            return 1
        viewer = Viewer(user_id=user.id, is_admin=user.is_admin)
    report = interchange.import_text(
        engine=engine, viewer=viewer, text=text, storage_url=storage_url, replace=args.replace
    )
    sys.stdout.write(report.summary() + "\n")
    for key in report.unknown:
        _err(f"unknown image: {key}")
    for line in report.errors:
        _err(line)
    return 2 if report.unknown or report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
