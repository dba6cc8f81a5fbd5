"""``python -m sqs_listener``: label images as their messages arrive.

Long-polls the configured queue (the local SQLite queue by default, or SQS
when ``LABELKIT_QUEUE_URL`` is an SQS URL) with N concurrent workers. SIGTERM
or Ctrl-C stops it cleanly: work in hand is finished, nothing new is taken.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from functools import partial
from types import FrameType

from labelkit.learning import learn_changed
from labelkit.logs import configure_logging
from labelkit.people import recluster_changed
from labelkit.reconcile import reconcile
from labelkit.services import build_pipeline, build_services
from labelkit.settings import get_settings
from labelkit.worker import Listener

logger = logging.getLogger("sqs_listener")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = get_settings()
    p = argparse.ArgumentParser(
        prog="python -m sqs_listener",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog="Every setting can also come from LABELKIT_* environment variables or .env "
        "(e.g. LABELKIT_QUEUE_URL, LABELKIT_DATABASE_URL, LABELKIT_STORAGE_URL, LABELKIT_LABELER).",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=settings.listener_workers,
        help="concurrent workers (default %(default)s, from LABELKIT_LISTENER_WORKERS)",
    )
    p.add_argument(
        "--wait-seconds",
        type=int,
        default=settings.listener_wait_seconds,
        help="long-poll wait per receive, 0-20 (default %(default)s)",
    )
    p.add_argument(
        "--drain",
        action="store_true",
        help="exit once the queue has no message to give (for batch runs and demos)",
    )
    p.add_argument("--no-migrate", action="store_true", help="do not run database migrations at start")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default %(default)s)")
    p.add_argument("--plain-logs", action="store_true", help="human-readable logs instead of JSON lines")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if not 0 <= args.wait_seconds <= 20:
        p.error("--wait-seconds must be between 0 and 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, json_lines=not args.plain_logs)
    settings = get_settings()
    services = build_services(settings, migrate=not args.no_migrate)
    listener = Listener(
        queue=services.queue,
        pipeline=build_pipeline(services),
        workers=args.workers,
        wait_seconds=args.wait_seconds,
        visibility_timeout=settings.queue_visibility_timeout,
        housekeeping=partial(reconcile, services=services),
        housekeeping_every=settings.reconcile_every_seconds,
        # Train what people taught once their labels have stayed unchanged for a moment.
        learning=partial(learn_changed, services.engine),
        people=partial(recluster_changed, services.engine),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            # A second Ctrl-C means "now". A SIGTERM after Ctrl-C is the launcher
            # (make run) passing the same request on: keep finishing cleanly.
            if signum == signal.SIGINT:
                logger.warning("second Ctrl-C: exiting now; unfinished messages will be redelivered")
                raise SystemExit(1)
            return
        logger.info("stopping: finishing work in hand (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.info(
        "listening on %s with %d workers",
        "SQS" if settings.uses_sqs else "the local queue",
        args.workers,
    )
    stats = listener.run(stop, drain=args.drain)
    logger.info("stopped: received %d, done %d, retried %d", stats.received, stats.done, stats.retried)
    return 0


if __name__ == "__main__":
    sys.exit(main())
