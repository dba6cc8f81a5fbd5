"""Relabel every image with the labellers configured now: ``python -m labelkit.relabel``.

Why: a new local labeller (a new model version) only labels new uploads; images labelled
earlier keep their labels, readable as before. This command labels the others again, in
this process (no worker needed), through the same pipeline as a worker: each image's new
labels replace the model labels of earlier versions of the same labeller, human reviews
stay, and the running totals stay exact (one transaction per image). ``--enqueue`` hands
the work to the running workers instead (what the Pipeline page's button does).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from labelkit.db.engine import transaction
from labelkit.db.queries import images as image_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import system_viewer
from labelkit.queue.events import make_s3_event
from labelkit.storage import event_bucket

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    from labelkit.pipeline import RetryableError
    from labelkit.services import build_pipeline, build_services
    from labelkit.settings import get_settings
    from labelkit.uploads import relabel_outdated

    parser = argparse.ArgumentParser(prog="python -m labelkit.relabel", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="at most this many images")
    parser.add_argument("--enqueue", action="store_true", help="enqueue for the workers instead")
    parser.add_argument(
        "--missing-features",
        action="store_true",
        help="also images labelled before features were stored (no thumbnail, hash or embedding: "
        "similar photos and duplicates do not see them; faces boxed but not grouped into people), "
        "whatever their configuration",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    services = build_services(get_settings())
    pipeline = build_pipeline(services)
    version = pipeline.model_version
    if args.enqueue:
        n = relabel_outdated(
            services=services,
            viewer=system_viewer("system"),
            model_version=version,
            missing_features=args.missing_features,
        )
        print(f"enqueued {n} images for relabelling with {version}")
        return 0
    with transaction(services.engine) as s:
        if args.missing_features:
            # Some are labelled by this very configuration, which the pipeline skips as done:
            # back to pending first (what is left pending if this process dies is enqueued
            # again by the reconciler).
            marked = image_q.mark_for_relabel(
                session=s,
                viewer=system_viewer("system"),
                model_version=version,
                missing_features=True,
                limit=args.limit,
            )
            keys = [(key, size) for _, key, size in marked]
        else:
            images = worker_q.outdated_images_for_worker(session=s, model_version=version, limit=args.limit)
            keys = [(img.object_key, int(img.bytes)) for img in images]
    started = time.perf_counter()
    done = failed = 0
    store = services.store
    for key, size in keys:
        body = make_s3_event(
            bucket=event_bucket(store),
            key=store.full_key(key),
            size=size,
            region=services.settings.aws_region,
        )
        try:
            outcomes = pipeline.handle_message(body)
        except RetryableError as exc:
            failed += 1
            print(f"{key}: not relabelled: {exc}", file=sys.stderr)
            continue
        done += sum(1 for o in outcomes if o.status == "labelled")
        failed += sum(1 for o in outcomes if o.status == "failed")
    print(
        f"relabelled {done} of {len(keys)} images with {version} in {time.perf_counter() - started:.1f} s"
        + (f" ({failed} failed)" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
