"""The dashboard in AWS mode (AppTest) over moto's Cognito, S3 and SQS, on SQLite and MariaDB.

AWS mode = ``auth_mode=cognito``, ``storage_url=s3://…``, an SQS ``queue_url`` and
``s3_notifies_queue=true`` (the bucket's event notification feeds the queue, so the
dashboard must not enqueue uploads itself). Labelling is driven in-process with the
S3-event message the notification would deliver.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from labelkit import aws as lk_aws
from labelkit.queue.events import make_s3_event
from labelkit.services import Services, build_pipeline, build_services
from labelkit.settings import Settings, get_settings
from tests.aws.test_cognito_auth import NEW_PASSWORD, PASSWORD, Pool, make_pool, moto_jwks
from tests.dashboard.conftest import RED, app, texts
from tests.integration import aws_fixtures

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.aws

aws = aws_fixtures.aws
REGION = aws_fixtures.REGION
BUCKET = "labelkit-photos"


@dataclass
class AwsWorld:
    services: Services
    pool: Pool
    s3: S3Client
    sqs: SQSClient
    queue_url: str

    def queued(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def world(aws: None, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsWorld]:
    monkeypatch.setenv("COGNITO_JWKS", moto_jwks())
    pool = make_pool(with_secret=True)
    s3: S3Client = lk_aws.client("s3", region=REGION)
    s3.create_bucket(Bucket=BUCKET)
    sqs: SQSClient = lk_aws.client("sqs", region=REGION)
    queue_url = sqs.create_queue(QueueName="labelkit-jobs")["QueueUrl"]
    env = {
        "LABELKIT_DATA_DIR": str(settings.data_dir),
        "LABELKIT_DATABASE_URL": settings.database_url,
        "LABELKIT_LABELER": "fake",
        "LABELKIT_AUTH_MODE": "cognito",
        "LABELKIT_COGNITO_USER_POOL_ID": pool.pool_id,
        "LABELKIT_COGNITO_CLIENT_ID": pool.client_id,
        "LABELKIT_COGNITO_CLIENT_SECRET": pool.client_secret or "",
        "LABELKIT_STORAGE_URL": f"s3://{BUCKET}",
        "LABELKIT_QUEUE_URL": queue_url,
        "LABELKIT_S3_NOTIFIES_QUEUE": "true",
        "LABELKIT_AWS_REGION": REGION,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield AwsWorld(services=build_services(get_settings()), pool=pool, s3=s3, sqs=sqs, queue_url=queue_url)
    st.cache_resource.clear()
    st.cache_data.clear()


def _click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


def _sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="signin_username").input(username)
    at.text_input(key="signin_password").input(password)
    return _click(at, "Sign in")


def test_sign_in_with_cognito_upload_to_s3_and_see_it_in_the_gallery(world: AwsWorld) -> None:
    sub = world.pool.create_confirmed("alice")
    # GIVEN the sign-in page in Cognito mode: sign in, create account, forgot password
    at = app()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Sign in", "Create account", "Forgot password"]
    assert "first account becomes the administrator" not in texts(at)
    # WHEN alice signs in through the Cognito form
    _sign_in(at, "alice", PASSWORD)
    assert not at.exception and not at.error
    principal = at.session_state["principal"]
    assert principal.user_id == sub and principal.username == "alice" and not principal.is_admin

    # AND uploads a photo
    at.switch_page("app_pages/upload.py").run()
    at.file_uploader[0].set_value([("red.jpg", RED, "image/jpeg")]).run()
    assert not at.exception
    assert "red.jpg** — queued for labelling" in texts(at)

    # THEN the object is in the bucket under users/{sub}/, encrypted, with its type
    keys = [o["Key"] for o in world.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith(f"users/{sub}/") and keys[0].endswith(".jpg")
    head = world.s3.head_object(Bucket=BUCKET, Key=keys[0])
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "image/jpeg"
    # AND the dashboard enqueued nothing: on AWS the bucket notification does that
    assert world.queued() == 0

    # AND the gallery shows it, with a thumbnail read back from S3
    at.switch_page("app_pages/gallery.py").run()
    assert not at.exception
    assert "red.jpg" in texts(at) and "Labelling in progress" in texts(at)
    assert at.image, "the thumbnail comes from S3"

    # WHEN the worker handles the message S3 would have sent
    outcomes = build_pipeline(world.services).handle_message(
        make_s3_event(bucket=BUCKET, key=keys[0], size=len(RED))
    )
    assert [o.status for o in outcomes] == ["labelled"]
    at.run()
    assert "Labelling in progress" not in texts(at) and "Red Thing · " in texts(at)

    # AND the image page shows the photo read from S3
    image_id = outcomes[0].image_id
    assert image_id
    at.switch_page("app_pages/image.py")
    at.query_params["image"] = image_id
    at.run()
    assert not at.exception and at.image and "Red Thing" in texts(at)


def test_create_account_confirm_with_the_code_then_sign_in(world: AwsWorld) -> None:
    at = app()
    at.text_input(key="signup_username").input("bob")
    at.text_input(key="signup_email").input("bob@example.com")
    at.text_input(key="signup_password").input(PASSWORD)
    at.text_input(key="signup_repeat").input(PASSWORD)
    _click(at, "Create account")
    # THEN the confirmation form asks for the e-mailed code
    assert not at.exception
    assert "Confirm your e-mail" in texts(at) and "We sent a confirmation code" in texts(at)
    assert "principal" not in at.session_state
    at.text_input(key="confirm_code").input("123456")
    _click(at, "Confirm")
    # AND back on sign-in, the username is filled in
    assert "Your account is confirmed — sign in." in texts(at)
    assert at.text_input(key="signin_username").value == "bob"
    at.text_input(key="signin_password").input(PASSWORD)
    _click(at, "Sign in")
    assert at.session_state["principal"].user_id == world.pool.sub("bob")


def test_forgot_password_reset_and_admin_created_user_sets_a_password(world: AwsWorld) -> None:
    world.pool.create_confirmed("carol", admin=True)
    at = app()
    # Forgot password -> the reset form
    at.text_input(key="forgot_username").input("carol")
    _click(at, "Send reset code")
    assert "a code is on its way" in texts(at)
    at.text_input(key="reset_code").input("123456")
    at.text_input(key="reset_password").input(NEW_PASSWORD)
    at.text_input(key="reset_repeat").input(NEW_PASSWORD + "x")
    _click(at, "Set new password")
    assert [e.value for e in at.error] == ["The two passwords differ."]
    at.text_input(key="reset_repeat").input(NEW_PASSWORD)
    _click(at, "Set new password")
    assert "Password changed — sign in with the new one." in texts(at)

    # An account an administrator created: the new-password form, then signed in
    world.pool.client.admin_create_user(
        UserPoolId=world.pool.pool_id,
        Username="dave",
        TemporaryPassword="Temporary-Pass-1",
        UserAttributes=[{"Name": "email", "Value": "dave@example.com"}],
        MessageAction="SUPPRESS",
    )
    _sign_in(at, "dave", "Temporary-Pass-1")
    assert "Set your password" in texts(at) and "Choose a new password" in texts(at)
    at.text_input(key="newpw_current").input("Temporary-Pass-1")
    at.text_input(key="newpw_new").input(NEW_PASSWORD)
    at.text_input(key="newpw_repeat").input(NEW_PASSWORD)
    _click(at, "Set password and sign in")
    assert not at.exception
    assert at.session_state["principal"].user_id == world.pool.sub("dave")


def test_admin_group_member_gets_the_pipeline_page_and_sign_out_revokes(world: AwsWorld) -> None:
    world.pool.create_confirmed("root", admin=True)
    at = app()
    _sign_in(at, "root", PASSWORD)
    principal = at.session_state["principal"]
    assert principal.is_admin
    at = app(principal)  # a fresh run as that principal: the default page with the sidebar
    assert "Gallery" in [t.value for t in at.title]
    at.button(key="sign_out").click().run()
    assert "principal" not in at.session_state
    with pytest.raises(world.pool.client.exceptions.NotAuthorizedException):
        world.pool.client.get_user(AccessToken=principal.access_token)
