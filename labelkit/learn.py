"""``labelkit learn [--user NAME] [--evaluate]``: learn from people's own labels now.

Every label a person added or confirmed on at least three of their photos becomes a taught
label, suggested on their other photos (source ``learned``); see :mod:`labelkit.learning`.
The worker does the same on its own a little after labels change; this runs it on demand.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

EPILOG = (
    "Each taught label is printed as one line, e.g.\n"
    "  alice  Beach: taught from 6 photos (1 rejected); precision 0.83, recall 0.71 in\n"
    "         cross-validation; suggested on 14 photos at 62% or more\n"
    "A label suggests nothing while it is taught from fewer than 3 photos or its\n"
    "cross-validated precision is under 0.6; the line says so.\n\n"
    "exit status: 0 done, 2 no such account\n\n"
    "examples:\n"
    "  labelkit learn                     # every account\n"
    "  labelkit learn --user alice\n"
    "  labelkit learn --user alice --evaluate --json"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labelkit learn",
        description="Train each person's taught labels from the labels they added, confirmed and "
        "rejected, and suggest them on their other photos.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--user", metavar="NAME", help="only this account (default: every account)")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="cross-validate and print each taught label's precision and recall; change nothing",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per taught label instead of text")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from labelkit import learning
    from labelkit.db.engine import transaction
    from labelkit.db.queries import learning as learning_q
    from labelkit.db.queries import users as user_q
    from labelkit.services import build_services
    from labelkit.settings import get_settings

    services = build_services(get_settings())
    with transaction(services.engine) as s:
        if args.user is not None:
            user = user_q.get_user_by_username(session=s, username=args.user)
            if user is None:
                print(f"labelkit learn: no account named {args.user!r}", file=sys.stderr)
                return 2
            owners = [(user.id, user.username)]
        else:
            ids = learning_q.owners_with_own_labels(session=s)
            names = user_q.usernames(session=s, user_ids=ids)
            owners = [(o, names.get(o, o)) for o in ids]
    total = 0
    for owner_id, username in owners:
        for q in learning.learn(services.engine, owner_id, write=not args.evaluate):
            total += 1
            if args.json:
                record = {
                    "user": username,
                    "label": q.name,
                    "status": q.status,
                    "photos": q.positives,
                    "rejected": q.negatives,
                    "folds": q.folds,
                    "precision": q.precision,
                    "recall": q.recall,
                    "threshold": round(q.threshold, 2),
                    "suggested": None if args.evaluate else q.suggested,
                    "reason": q.reason,
                    "seconds": round(q.seconds, 4),
                }
                print(json.dumps(record, ensure_ascii=False))
            else:
                text = learning.describe(q)
                if args.evaluate:
                    text = text.split("; suggested on")[0]
                print(f"{username}  {text}")
    if not total and not args.json:
        who = f"{args.user!r}" if args.user else "anyone"
        print(f"nothing taught yet: no label that {who} added or confirmed on 3 or more photos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
