"""The AWS Lambda labeller: ``lambda_labeler.handler.lambda_handler`` over SQS batches."""
