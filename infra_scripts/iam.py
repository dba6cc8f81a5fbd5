"""IAM policy documents for the stack, as plain dicts (pure functions, no AWS calls).

Least privilege: every statement names its resources (the bucket's prefixes,
the stack's queues, its user pool, its secret, the function's own log group).
The only ``"*"`` resource is ``rekognition:DetectLabels``, which has no
resource-level permissions.
"""

from __future__ import annotations

from typing import Any

Policy = dict[str, Any]

VERSION = "2012-10-17"
LAMBDA_VPC_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"

# What the dashboard does with Cognito as an administrator (users page, sign-up, groups).
COGNITO_ADMIN_ACTIONS = [
    "cognito-idp:AdminAddUserToGroup",
    "cognito-idp:AdminCreateUser",
    "cognito-idp:AdminDeleteUser",
    "cognito-idp:AdminDisableUser",
    "cognito-idp:AdminEnableUser",
    "cognito-idp:AdminGetUser",
    "cognito-idp:AdminInitiateAuth",
    "cognito-idp:AdminListGroupsForUser",
    "cognito-idp:AdminRemoveUserFromGroup",
    "cognito-idp:AdminResetUserPassword",
    "cognito-idp:AdminSetUserPassword",
    "cognito-idp:AdminUserGlobalSignOut",
    "cognito-idp:ListUsers",
    "cognito-idp:ListUsersInGroup",
]


def trust_policy(service: str) -> Policy:
    """Who may assume the role: ``lambda.amazonaws.com`` or ``ec2.amazonaws.com``."""
    return {
        "Version": VERSION,
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def _bucket_objects(bucket: str, *prefixes: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}/{p}*" for p in prefixes]


def lambda_policy(
    *,
    bucket: str,
    queue_arn: str,
    region: str,
    account: str,
    function_name: str,
    secret_arn: str = "",
) -> Policy:
    """The labelling Lambda: read uploads, consume the queue, call Rekognition, write logs."""
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function_name}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadUploads",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": _bucket_objects(bucket, "users/"),
        },
        {
            "Sid": "ConsumeJobs",
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            ],
            "Resource": [queue_arn],
        },
        {
            "Sid": "DetectLabels",
            "Effect": "Allow",
            "Action": ["rekognition:DetectLabels"],
            "Resource": "*",  # DetectLabels has no resource-level permissions
        },
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_group, f"{log_group}:*"],
        },
    ]
    if secret_arn:
        statements.append(
            {
                "Sid": "DatabaseSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [secret_arn],
            }
        )
    return {"Version": VERSION, "Statement": statements}


def ec2_policy(
    *,
    bucket: str,
    queue_arn: str,
    dlq_arn: str,
    user_pool_arn: str,
    secret_arn: str = "",
    listener: bool = False,
) -> Policy:
    """The EC2 host (dashboard, optionally the listener).

    The dashboard stores and deletes uploads, thumbnails and exports, reads the
    source tarball under ``deploy/``, shows queue depths, retries dead letters
    (send to the queue, delete from the DLQ) and manages Cognito users. With
    ``listener=True`` it also consumes the queue and calls Rekognition.
    """
    main_queue_actions = [
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
    ]
    if listener:
        main_queue_actions.append("sqs:DeleteMessage")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Images",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": _bucket_objects(bucket, "users/", "thumbs/", "exports/"),
        },
        {
            "Sid": "ReadDeployment",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": _bucket_objects(bucket, "deploy/"),
        },
        {
            # Without ListBucket a missing key answers 403 instead of 404.
            "Sid": "ListImages",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": ["users/*", "thumbs/*", "exports/*"]}},
        },
        {
            "Sid": "Queue",
            "Effect": "Allow",
            "Action": main_queue_actions,
            "Resource": [queue_arn],
        },
        {
            "Sid": "DeadLetters",
            "Effect": "Allow",
            "Action": [
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
            ],
            "Resource": [dlq_arn],
        },
        {
            "Sid": "Users",
            "Effect": "Allow",
            "Action": list(COGNITO_ADMIN_ACTIONS),
            "Resource": [user_pool_arn],
        },
    ]
    if secret_arn:
        statements.append(
            {
                "Sid": "DatabaseSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": [secret_arn],
            }
        )
    if listener:
        statements.append(
            {
                "Sid": "DetectLabels",
                "Effect": "Allow",
                "Action": ["rekognition:DetectLabels"],
                "Resource": "*",
            }
        )
    return {"Version": VERSION, "Statement": statements}


def queue_policy(*, queue_arn: str, bucket: str, account: str) -> Policy:
    """Lets the stack's bucket (and only it, in this account) send event notifications."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "BucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }
