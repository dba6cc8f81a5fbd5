"""``labelkit people --user NAME [--json] [--recluster]``: a person's people (faces grouped).

``--json`` prints one JSON object per person, a contract other tools read::

    {"person_id": "...", "name": "Alice" | null,
     "faces": [{"image_id": "...", "original_name": "...",
                "box": {"left": 0.1, "top": 0.2, "width": 0.1, "height": 0.15}}]}

``--name PERSON_ID NAME`` names a person (their photos get the label ``Person: NAME``);
``--merge KEEP OTHER`` makes two people one. See :mod:`labelkit.people`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

EPILOG = (
    "exit status: 0 done, 2 no such account or person\n\n"
    "examples:\n"
    "  labelkit people --user alice\n"
    "  labelkit people --user alice --json\n"
    "  labelkit people --user alice --recluster\n"
    "  labelkit people --user alice --name 3f2c... Grandma"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labelkit people",
        description="List the people (faces grouped into persons) in one account's photos.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--user", metavar="NAME", required=True, help="the account")
    p.add_argument("--json", action="store_true", help="one JSON object per person instead of text")
    p.add_argument(
        "--recluster", action="store_true", help="group the account's faces again first (fixes drift)"
    )
    p.add_argument("--name", nargs=2, metavar=("PERSON_ID", "NAME"), help="name a person first")
    p.add_argument("--merge", nargs=2, metavar=("KEEP_ID", "OTHER_ID"), help="merge two people first")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from labelkit import people
    from labelkit.db.engine import transaction
    from labelkit.db.queries import people as people_q
    from labelkit.db.queries import users as user_q
    from labelkit.errors import NotFound
    from labelkit.services import build_services
    from labelkit.settings import get_settings

    services = build_services(get_settings())
    with transaction(services.engine) as s:
        user = user_q.get_user_by_username(session=s, username=args.user)
        if user is None:
            print(f"labelkit people: no account named {args.user!r}", file=sys.stderr)
            return 2
        owner = user.id
    try:
        with transaction(services.engine) as s:
            if args.recluster:
                done = people.recluster(s, owner_id=owner)
                if not args.json:
                    print(f"re-clustered: {done['faces_moved']} faces moved, {done['people']} people")
            if args.merge:
                people.merge(s, owner_id=owner, keep_id=args.merge[0], other_id=args.merge[1])
            if args.name:
                people.name_person(s, owner_id=owner, person_id=args.name[0], name=args.name[1])
    except (NotFound, ValueError) as e:
        print(f"labelkit people: {e}", file=sys.stderr)
        return 2
    with transaction(services.engine) as s:
        records = people_q.listing(session=s, owner_id=owner)
        hidden = {p.id for p in people_q.people_of(session=s, owner_id=owner) if p.hidden}
    for record in records:
        if args.json:
            print(json.dumps(record, ensure_ascii=False))
        else:
            photos = len({f["image_id"] for f in record["faces"]})
            name = record["name"] or "(unnamed)"
            flag = "  [hidden]" if record["person_id"] in hidden else ""
            print(f"{record['person_id']}  {name}: {len(record['faces'])} faces on {photos} photos{flag}")
    if not records and not args.json:
        print(f"no people yet in {args.user!r}'s photos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
