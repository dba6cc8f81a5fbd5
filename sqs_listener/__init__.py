"""Long-poll worker over any ``JobQueue`` (local SQLite queue or SQS): ``python -m sqs_listener``."""
