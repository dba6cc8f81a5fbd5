"""AWS Lambda entry point: an SQS batch in, labels in the database out.

Entry: ``lambda_labeler.handler.lambda_handler``. The SQS event source mapping
must have ``FunctionResponseTypes=["ReportBatchItemFailures"]``.

Each record is one S3 event notification (the bucket notifies the queue) and
goes through :meth:`labelkit.pipeline.Pipeline.handle_message`, the same code
the listener runs. Powertools' ``BatchProcessor`` turns the outcome of each
record into the partial batch response:

* labelled, skipped, or failed *permanently* (the pipeline marks the image
  ``failed`` with a reason and returns), and bodies that are not S3 events
  (``MalformedEvent``): success, so SQS deletes the message;
* ``RetryableError`` (database, store or labeller briefly unavailable) or any
  unexpected exception: the record's ``messageId`` goes into
  ``batchItemFailures``, so only that message comes back after its visibility
  timeout (and reaches the dead-letter queue after ``maxReceiveCount``). One
  bad image never fails its batch. When *every* record of a batch fails
  (database down, say), Powertools raises instead: the invocation errors, the
  whole batch is retried, and the failure shows in the function's metrics.

Configuration comes from ``LABELKIT_*`` environment variables (see
:mod:`labelkit.settings`): ``LABELKIT_DATABASE_URL`` (``mysql+pymysql://user@host/db``)
with ``LABELKIT_DATABASE_SECRET_ARN`` and ``LABELKIT_DATABASE_SSL_CA``,
``LABELKIT_STORAGE_URL=s3://bucket/prefix``, ``LABELKIT_QUEUE_URL``. The labeller
defaults to ``rekognition`` here (the local model would need onnxruntime and the
ONNX file in a layer or a container image). Migrations are not run: the deployment
runs them once, before the function gets traffic.

The engine, store, labellers and pipeline are built on the first record a
container sees and reused by every warm invocation after it; nothing talks to
AWS at import time.

A scheduled invocation (an EventBridge schedule: ``"source": "aws.events"``)
runs :func:`labelkit.reconcile.reconcile` instead, which settles images whose
job will never come (dead-lettered, or never enqueued); on EC2 the listener
does that itself.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from labelkit.db.engine import dispose_engines
from labelkit.errors import ConfigError
from labelkit.pipeline import Pipeline
from labelkit.queue.events import MalformedEvent
from labelkit.reconcile import reconcile
from labelkit.services import Services, build_pipeline, build_services
from labelkit.settings import Settings, get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

LAMBDA_DEFAULT_LABELER = "rekognition"

logger = Logger(service="labelkit-labeler")
processor = BatchProcessor(event_type=EventType.SQS)

_pipeline: Pipeline | None = None
_services: Services | None = None
_lock = threading.Lock()


def lambda_settings(settings: Settings) -> Settings:
    """``settings`` with the Lambda's defaults, checked for what the Lambda needs."""
    if "labeler" not in settings.model_fields_set:
        settings = settings.model_copy(update={"labeler": LAMBDA_DEFAULT_LABELER})
    if not settings.database_url:
        raise ConfigError("LABELKIT_DATABASE_URL must name the RDS/MySQL database in the Lambda")
    if not settings.uses_s3:
        raise ConfigError("LABELKIT_STORAGE_URL must be an s3://bucket/prefix URL in the Lambda")
    return settings


def route_labelkit_logs() -> None:
    """Send labelkit's own log records (the pipeline's one line per image) through this
    handler's JSON formatter, with the invocation's context keys.

    It stops them propagating to the root logger, so it is done only inside Lambda
    (never at import, where it would also silence them for test runners).
    """
    copy_config_to_registered_loggers(source_logger=logger, include={"labelkit"})


def get_pipeline() -> Pipeline:
    """The container's pipeline, built on first use (cold start) and then reused."""
    global _pipeline
    if _pipeline is None:
        with _lock:
            if _pipeline is None:
                if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # set by the Lambda runtime
                    route_labelkit_logs()
                global _services
                settings = lambda_settings(get_settings())
                _services = services = build_services(settings, migrate=False)
                _pipeline = build_pipeline(services)
                logger.info(
                    "pipeline ready",
                    labelers=settings.labeler_names,
                    model_version=_pipeline.model_version,
                )
    return _pipeline


def _reset_for_tests() -> None:
    """Forget the cached pipeline, settings and engines (a fresh 'container')."""
    global _pipeline, _services
    with _lock:
        _pipeline = _services = None
    get_settings.cache_clear()
    dispose_engines()


def record_handler(record: SQSRecord) -> None:
    """Handle one SQS record; raising marks it failed (it is retried), returning acknowledges it."""
    receive_count = int(record.attributes.approximate_receive_count)
    try:
        get_pipeline().handle_message(record.body, receive_count=receive_count)
    except MalformedEvent as e:
        # No delivery will ever parse: acknowledge rather than cycle it to the DLQ.
        logger.error("dropping a message that is not an S3 event", message_id=record.message_id, error=str(e))


def is_schedule(event: dict[str, Any]) -> bool:
    """An EventBridge scheduled event (the reconcile timer), not an SQS batch."""
    return event.get("source") == "aws.events" and "Records" not in event


@logger.inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext
) -> PartialItemFailureResponse | dict[str, int]:
    if is_schedule(event):
        get_pipeline()  # builds the container's services on a cold start
        assert _services is not None
        report = reconcile(services=_services)
        logger.info("reconciled", **asdict(report))
        return asdict(report)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
