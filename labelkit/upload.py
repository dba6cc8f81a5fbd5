"""``labelkit upload PATH... --user NAME``: import folders, files or an S3 prefix of photos.

Every file goes through the same checks as the dashboard's upload, one verdict a line
(accepted, skipped, refused: and why), under a progress bar (files, bytes, rate, time left)
when the output is a terminal, then a summary. Refused files are also written to a CSV. Files
the account already has (the same bytes) are skipped without being decoded again, so after a
stop the same command goes on where it left off.

The photos are queued for labelling: a running ``make run`` or ``labelkit listener`` labels
them, or ``--label`` labels them here before the command returns.

Exit status: 0 when every file was accepted or skipped, 1 when some were refused (the CSV
names them), 2 when the command cannot start (no such account, no such path), 130 when
interrupted (run it again to go on).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from labelkit.bulk_import import (
    IMAGE_SUFFIXES,
    S3_SCHEME,
    FileVerdict,
    Source,
    import_one,
    local_sources,
    refusals_csv,
    s3_sources,
)

if TYPE_CHECKING:
    from labelkit.services import Services

EPILOG = (
    "Folders give the files named as images in them ("
    + ", ".join(sorted(IMAGE_SUFFIXES))
    + ", any case; hidden files left out); a file named on its own is always tried. "
    "s3://bucket/prefix reads the objects under that prefix with the AWS credentials in the "
    "environment. Examples:\n"
    "  labelkit upload ~/Pictures/holiday --user alice --recursive\n"
    "  labelkit upload a.jpg b.png --user bob --create-user --label\n"
    "  labelkit upload s3://my-bucket/2026/ --user alice --recursive"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labelkit upload",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders, or s3://bucket/prefix")
    p.add_argument("--user", required=True, metavar="NAME", help="the account the photos go to")
    p.add_argument(
        "--create-user",
        action="store_true",
        help="make the local account if it does not exist yet, and print its generated password",
    )
    p.add_argument("--recursive", "-r", action="store_true", help="also the folders inside the folders given")
    p.add_argument(
        "--refusals",
        type=Path,
        metavar="CSV",
        help="where to write the refused files (default: upload-refusals-<date-time>.csv here, "
        "only when some are refused)",
    )
    p.add_argument("--label", action="store_true", help="label the queued photos here before returning")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show the bar"
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show the bar")
    p.add_argument(
        "--quiet", "-q", action="store_true", help="no line per file: the bar and the summary only"
    )
    return p


def _owner(services: Services, username: str, *, create: bool) -> tuple[str | None, str | None, str]:
    """(user id, a generated password if the account was made, a problem sentence)."""
    from labelkit.auth.local import LocalAuth
    from labelkit.db.engine import transaction
    from labelkit.db.queries import users as user_q
    from labelkit.errors import LabelkitError

    engine = services.engine
    with transaction(engine) as s:
        user = user_q.get_user_by_username(session=s, username=username)
        if user is not None:
            return user.id, None, ""
    if not create:
        return None, None, f"no account named {username!r} (add --create-user to make a local one)"
    if services.settings.auth_mode != "local":
        return (
            None,
            None,
            "accounts are made in Cognito in this mode: --create-user makes local accounts only",
        )
    password = secrets.token_urlsafe(12)
    try:
        user_id = LocalAuth(engine).sign_up(username, password).user_id
    except LabelkitError as exc:
        return None, None, f"could not make the account {username!r}: {exc}"
    return user_id, password, ""


def _line(v: FileVerdict) -> str:
    reason = f"  ({v.reason})" if v.reason else ""
    return f"{v.verdict:9s}{v.source.location}{reason}"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from tqdm import tqdm

    from labelkit.services import build_services
    from labelkit.settings import get_settings

    settings = get_settings()
    local = [Path(p).expanduser() for p in args.paths if not p.startswith(S3_SCHEME)]
    remote = [p for p in args.paths if p.startswith(S3_SCHEME)]
    sources, problems = local_sources(local, recursive=args.recursive)
    s3_client = None
    if remote:
        from labelkit.aws import client

        s3_client = client("s3", region=settings.aws_region)
        for url in remote:
            try:
                sources += s3_sources(s3_client, url, recursive=args.recursive)
            except Exception as exc:  # no such bucket, no credentials: say which and stop
                problems.append(f"{url}: could not be listed ({type(exc).__name__}: {exc})")
    if problems:
        for problem in problems:
            print(f"labelkit upload: {problem}", file=sys.stderr)
        return 2
    services = build_services(settings)
    owner_id, password, problem = _owner(services, args.user, create=args.create_user)
    if owner_id is None:
        print(f"labelkit upload: {problem}", file=sys.stderr)
        return 2
    if password:
        print(f"created account {args.user!r} with password {password!r} (change it after signing in)")
    if not sources:
        print(
            "nothing to upload: no image files found"
            + ("" if args.recursive else " (--recursive for subfolders)")
        )
        return 0

    total = sum(s.size for s in sources)
    counts: Counter[str] = Counter()
    verdicts: list[FileVerdict] = []
    started = time.monotonic()
    interrupted = False
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        desc="uploading",
        file=sys.stderr,
        disable=None if args.progress is None else not args.progress,
        dynamic_ncols=True,
    )
    try:
        for i, source in enumerate(sources, 1):
            verdict = import_one(services, owner_id, source, s3_client=s3_client)
            verdicts.append(verdict)
            counts[verdict.verdict] += 1
            if not args.quiet:
                bar.write(_line(verdict), file=sys.stdout)
            bar.set_postfix_str(f"{i}/{len(sources)} files", refresh=False)
            bar.update(source.size)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    print(_summary(sources, verdicts, counts, time.monotonic() - started))
    if counts["refused"]:
        target = args.refusals or Path(f"upload-refusals-{datetime.now():%Y%m%d-%H%M%S}.csv")
        target.write_bytes(refusals_csv(verdicts))
        print(f"the refused files and why: {target}")
    if interrupted:
        print("stopped: run the same command again to go on (files already uploaded are skipped)")
        return 130
    if args.label and counts["accepted"]:
        from labelkit.worker import label_queued

        print("labelling ...")
        stats = label_queued(services)
        print(f"labelled: {stats.done} done, {stats.errors} failed (the dashboard says why)")
    elif counts["accepted"]:
        print("queued for labelling: a running `make run` or `labelkit listener` labels them")
    return 1 if counts["refused"] else 0


def _summary(
    sources: Sequence[Source], verdicts: Sequence[FileVerdict], counts: Counter[str], seconds: float
) -> str:
    done = sum(v.source.size for v in verdicts)
    rate = done / seconds if seconds > 0 else 0.0
    left = len(sources) - len(verdicts)
    text = (
        f"{len(verdicts)} of {len(sources)} files ({_size(done)}) in {seconds:.1f} s, {_size(rate)}/s: "
        f"{counts['accepted']} accepted, {counts['skipped']} skipped (already uploaded), "
        f"{counts['refused']} refused"
    )
    return text + (f"; {left} not reached" if left else "")


if __name__ == "__main__":
    raise SystemExit(main())
