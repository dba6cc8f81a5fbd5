"""Search the photos from a shell: ``python -m labelkit search "puppy -cat"`` (or ``labelkit search``).

Prints one line per match, best first: image id, score, file name and why it matched. As
an administrator over every account's photos unless ``--user`` names one account.
"""

from __future__ import annotations

import argparse
import json
import sys

from labelkit.db.engine import transaction
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer, system_viewer
from labelkit.search.service import get_searcher
from labelkit.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labelkit search", description=__doc__.splitlines()[0])
    parser.add_argument("query", help='e.g. "dog beach", "dog -cat", "dog | cat", \'"hot dog"\'')
    parser.add_argument("--user", help="search this account's photos only (username)")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="JSON Lines instead of text")
    parser.add_argument(
        "--more", action="store_true", help="similar:<id>: also the photos below the similarity cutoff"
    )
    args = parser.parse_args(argv)
    from labelkit.services import build_services

    settings = get_settings()
    engine = build_services(settings).engine  # migrated, like every command's database
    searcher = get_searcher(settings.resolved_model_dir)
    with transaction(engine) as s:
        viewer = system_viewer("cli")
        if args.user:
            user = user_q.get_user_by_username(session=s, username=args.user)
            if user is None:
                print(f"no account {args.user!r}", file=sys.stderr)
                return 2
            viewer = Viewer(user_id=user.id, is_admin=False)
        result = searcher.search(
            session=s, viewer=viewer, text=args.query, page=args.page, page_size=args.limit, more=args.more
        )
        for hit in result.page.items:
            if args.json:
                row = {
                    "id": hit.image.id,
                    "score": hit.score,
                    "name": hit.image.original_name,
                    "why": hit.why,
                }
                print(json.dumps(row, ensure_ascii=False))
            else:
                print(f"{hit.image.id}  {hit.score:5.1f}  {hit.image.original_name}  ({'; '.join(hit.why)})")
    shown = len(result.page.items)
    more = "+" if result.page.capped else ""
    print(
        f"{result.page.total}{more} match{'es' if result.page.total != 1 else ''} for {result.query}",
        file=sys.stderr,
    )
    if result.page.total > shown and shown:
        print(f"page {result.page.page} of {result.page.pages} (--page N)", file=sys.stderr)
    if not result.page.total and result.suggestions:
        print("nearest labels: " + ", ".join(result.suggestions), file=sys.stderr)
    if result.less_similar:
        print(f"{result.less_similar} less similar photos left out (--more lists them)", file=sys.stderr)
    if result.notice:
        print(result.notice, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
