"""``python -m labelkit.demo``: load the photos that ship inside installed
packages (scikit-image, scikit-learn) through the real pipeline, so a new user,
the dashboard and the notebooks have labelled data at once.

The photos are uploaded for a user (``--user``, created with ``--password`` if
missing; the default ``demo`` account gets a random password that is printed),
exactly as the dashboard uploads them, and then labelled by an in-process
listener unless ``--no-label`` is given (then a running listener does it).
"""

from __future__ import annotations

import argparse
import importlib.util
import secrets
import sys
from pathlib import Path

from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.queries import users as user_q
from labelkit.services import build_services
from labelkit.settings import get_settings
from labelkit.uploads import UploadResult, upload_image

# (package, file inside it, name shown in the dashboard)
PHOTOS: list[tuple[str, str, str]] = [
    ("skimage", "data/chelsea.png", "chelsea the cat.png"),
    ("skimage", "data/coffee.png", "coffee.png"),
    ("skimage", "data/astronaut.png", "astronaut.png"),
    ("skimage", "data/rocket.jpg", "rocket.jpg"),
    ("skimage", "data/motorcycle_left.png", "motorcycle.png"),
    ("skimage", "data/hubble_deep_field.jpg", "hubble deep field.jpg"),
    ("skimage", "data/camera.png", "camera man.png"),
    ("skimage", "data/page.png", "book page.png"),
    ("skimage", "data/coins.png", "coins.png"),
    ("skimage", "data/retina.jpg", "retina.jpg"),
    ("sklearn", "datasets/images/china.jpg", "china.jpg"),
    ("sklearn", "datasets/images/flower.jpg", "flower.jpg"),
]


def shipped_photos() -> list[tuple[str, bytes]]:
    """(display name, bytes) of every demo photo whose package is installed."""
    out = []
    for package, rel, name in PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if path.is_file():
            out.append((name, path.read_bytes()))
    return out


def load_demo(*, username: str, password: str | None, label: bool) -> tuple[list[UploadResult], str | None]:
    """Upload the shipped photos for ``username``; returns the results and a new password if one was made."""
    settings = get_settings()
    services = build_services(settings)
    created_password = None
    with transaction(services.engine) as s:
        user = user_q.get_user_by_username(session=s, username=username)
        owner_id = user.id if user is not None else None
    if owner_id is None:
        # A real account, made the way the dashboard makes them (first one is admin).
        created_password = password or secrets.token_urlsafe(12)
        owner_id = LocalAuth(services.engine).sign_up(username, created_password).user_id
    results = [
        upload_image(services=services, owner_id=owner_id, filename=name, data=data)
        for name, data in shipped_photos()
    ]
    if label:
        from labelkit.worker import label_queued

        label_queued(services)
    return results, created_password if password is None else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labelkit.demo", description=__doc__)
    p.add_argument("--user", default="demo", help="account that owns the photos (default %(default)s)")
    p.add_argument("--password", default=None, help="password if the account is created (default: random)")
    p.add_argument("--no-label", action="store_true", help="only upload; let a running listener label them")
    args = p.parse_args(argv)
    results, new_password = load_demo(username=args.user, password=args.password, label=not args.no_label)
    for r in results:
        print(f"{r.outcome:9s} {r.name}" + (f"  ({r.reason})" if r.reason else ""))
    if not results:
        print("no demo photos found: install scikit-image and scikit-learn (requirements-dev.txt)")
        return 1
    if new_password:
        print(f"\ncreated account {args.user!r} with password {new_password!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
