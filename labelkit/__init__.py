"""Labelkit: the shared core of the image-labelling dashboard.

Everything that two entry points (dashboard, lambda_labeler, sqs_listener,
infra_scripts, notebooks) need lives here: settings, the data layer, the
object store, the job queue, authentication and the labellers.
"""

__version__ = "0.1.0"
