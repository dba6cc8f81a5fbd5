"""CognitoAuth against moto's Cognito, with the users mirrored into SQLite and the real MariaDB.

The pool is built as the deployment builds it: e-mail auto-verified, a password
policy, an app client allowing SRP, USER_PASSWORD_AUTH, ADMIN_USER_PASSWORD_AUTH
and refresh tokens (with a client secret, so SECRET_HASH is exercised), and an
``admin`` group.

Tokens are verified by pycognito against the JWKS in ``COGNITO_JWKS`` (moto's
public key set, the one behind ``/{pool_id}/.well-known/jwks.json``), so no test
fetches anything.

moto limits that shape these tests (see DESIGN.md, "moto facts"):

* SRP sign-in does **not** check the password in moto, so wrong passwords are
  tested through ``password_flow="user_password"`` (USER_PASSWORD_AUTH), where
  moto compares the password as Cognito does. The SRP path itself is tested for
  everything else (tokens, groups, challenge), and on AWS SRP refuses wrong
  passwords with the same NotAuthorizedException, which maps to the same message.
* ``confirm_sign_up`` accepts any code, and a reset code is only checked when it
  starts with ``moto-confirmation-code:``; that prefix gives the wrong-code case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.utilities.utils import load_resource
from sqlalchemy.engine import Engine

from labelkit import aws as lk_aws
from labelkit.auth import ConfirmationRequired, NewPasswordRequired, Principal, make_authenticator
from labelkit.auth.cognito import WRONG_CREDENTIALS, CognitoAuth, PasswordFlow, translate_error
from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.queries import users as user_q
from labelkit.errors import AccountLocked, AuthError
from labelkit.settings import Settings
from tests.integration import aws_fixtures

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient

pytestmark = pytest.mark.aws

aws = aws_fixtures.aws
REGION = aws_fixtures.REGION
PASSWORD = "Correct-Horse-7"
NEW_PASSWORD = "Battery-Staple-9"


def moto_jwks() -> str:
    """moto's public JWKS (what it serves at ``/{pool_id}/.well-known/jwks.json``)."""
    return json.dumps(load_resource("cognitoidp/resources/jwks-public.json"))


@dataclass
class Pool:
    client: CognitoIdentityProviderClient
    pool_id: str
    client_id: str
    client_secret: str | None

    def auth(self, engine: Engine, flow: PasswordFlow = "srp") -> CognitoAuth:
        return CognitoAuth(
            engine,
            user_pool_id=self.pool_id,
            client_id=self.client_id,
            client_secret=self.client_secret,
            client=self.client,
            password_flow=flow,
        )

    def sub(self, username: str) -> str:
        attrs = self.client.admin_get_user(UserPoolId=self.pool_id, Username=username)["UserAttributes"]
        return next(a["Value"] for a in attrs if a["Name"] == "sub")

    def create_confirmed(self, username: str, *, admin: bool = False) -> str:
        """An account as an administrator would set it up, with a permanent password."""
        self.client.admin_create_user(
            UserPoolId=self.pool_id,
            Username=username,
            UserAttributes=[
                {"Name": "email", "Value": f"{username}@example.com"},
                {"Name": "email_verified", "Value": "true"},
            ],
            MessageAction="SUPPRESS",
        )
        self.client.admin_set_user_password(
            UserPoolId=self.pool_id, Username=username, Password=PASSWORD, Permanent=True
        )
        if admin:
            self.client.admin_add_user_to_group(UserPoolId=self.pool_id, Username=username, GroupName="admin")
        return self.sub(username)


def make_pool(*, with_secret: bool = True) -> Pool:
    """A user pool, app client and ``admin`` group in moto (call inside ``mock_aws``)."""
    client: CognitoIdentityProviderClient = lk_aws.client("cognito-idp", region=REGION)
    pool_id = client.create_user_pool(
        PoolName="labelkit",
        AutoVerifiedAttributes=["email"],
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 10,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": False,
            }
        },
    )["UserPool"]["Id"]
    app = client.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="labelkit-dashboard",
        GenerateSecret=with_secret,
        # moto puts only readable attributes into the ID token (AWS's default client reads all).
        ReadAttributes=["email", "email_verified"],
        ExplicitAuthFlows=[
            "ALLOW_USER_SRP_AUTH",
            "ALLOW_USER_PASSWORD_AUTH",
            "ALLOW_ADMIN_USER_PASSWORD_AUTH",
            "ALLOW_REFRESH_TOKEN_AUTH",
        ],
    )["UserPoolClient"]
    client.create_group(UserPoolId=pool_id, GroupName="admin")
    return Pool(
        client=client, pool_id=pool_id, client_id=app["ClientId"], client_secret=app.get("ClientSecret")
    )


@pytest.fixture(params=["secret", "no-secret"])
def pool(request: pytest.FixtureRequest, aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pool]:
    monkeypatch.setenv("COGNITO_JWKS", moto_jwks())
    yield make_pool(with_secret=request.param == "secret")


def _db_user(engine: Engine, user_id: str) -> tuple[str, str | None, str | None, bool] | None:
    with transaction(engine) as s:
        u = user_q.get_user(session=s, user_id=user_id)
        return None if u is None else (u.username, u.email, u.password_hash, u.is_admin)


# --------------------------------------------------------------------------- sign-up, confirm, sign-in


def test_sign_up_confirm_and_sign_in_mirrors_the_user_by_sub(pool: Pool, engine: Engine) -> None:
    auth = pool.auth(engine)
    # GIVEN a new account: sign-up does not sign in, it asks for the e-mailed code
    with pytest.raises(ConfirmationRequired, match="We sent a confirmation code") as created:
        auth.sign_up("alice", PASSWORD, "alice@example.com")
    assert created.value.username == "alice"
    # WHEN signing in before confirming THEN the person is told to confirm first
    with pytest.raises(ConfirmationRequired, match="Confirm your e-mail first"):
        auth.sign_in("alice", PASSWORD)
    # WHEN the code is entered
    auth.confirm_sign_up("alice", "123456")
    principal = auth.sign_in("alice", PASSWORD)
    # THEN the principal is the Cognito user (id = sub), not an admin (no group), with its token
    sub = pool.sub("alice")
    assert principal == Principal(user_id=sub, username="alice", is_admin=False)
    assert principal.access_token and principal.access_token.count(".") == 2
    # AND the user is mirrored in the database, without a password hash
    assert _db_user(engine, sub) == ("alice", "alice@example.com", None, False)


def test_sign_up_explains_policy_taken_names_and_missing_email(pool: Pool, engine: Engine) -> None:
    auth = pool.auth(engine)
    with pytest.raises(AuthError, match="^That password is not accepted: "):
        auth.sign_up("bob", "short", "bob@example.com")
    with pytest.raises(AuthError, match="e-mail address is needed"):
        auth.sign_up("bob", PASSWORD, None)
    pool.create_confirmed("carol")
    with pytest.raises(AuthError, match="^That username is not available; please choose another.$"):
        auth.sign_up("carol", PASSWORD, "carol2@example.com")


def test_admin_group_gives_the_admin_role_and_leaving_it_takes_it_away(pool: Pool, engine: Engine) -> None:
    sub = pool.create_confirmed("root", admin=True)
    auth = pool.auth(engine)
    assert auth.sign_in("root", PASSWORD).is_admin
    assert _db_user(engine, sub) == ("root", "root@example.com", None, True)
    # The claim decides at every sign-in: removed from the group, no longer admin.
    pool.client.admin_remove_user_from_group(UserPoolId=pool.pool_id, Username="root", GroupName="admin")
    principal = auth.sign_in("root", PASSWORD)
    assert not principal.is_admin and principal.user_id == sub
    assert _db_user(engine, sub) == ("root", "root@example.com", None, False)


def test_tokens_signed_by_another_key_are_refused(
    pool: Pool, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool.create_confirmed("alice")
    # GIVEN a JWKS whose key (same kid) is not the one moto signs with
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other))
    jwk.update(kid="dummy", alg="RS256", use="sig")
    monkeypatch.setenv("COGNITO_JWKS", json.dumps({"keys": [jwk]}))
    # THEN signing in fails verification, and nobody is mirrored
    with pytest.raises(AuthError, match="could not be verified"):
        pool.auth(engine).sign_in("alice", PASSWORD)
    assert _db_user(engine, pool.sub("alice")) is None
    # AND with the pool's real keys it works
    monkeypatch.setenv("COGNITO_JWKS", moto_jwks())
    assert pool.auth(engine).sign_in("alice", PASSWORD).username == "alice"


def test_wrong_password_is_rejected_through_user_password_auth(pool: Pool, engine: Engine) -> None:
    """moto's SRP flow accepts any password, so the wrong-password path is checked with
    USER_PASSWORD_AUTH (``password_flow="user_password"``), where moto compares passwords.
    Both flows get Cognito's NotAuthorizedException for a wrong password on AWS, and both
    go through the same translation."""
    pool.create_confirmed("alice")
    auth = pool.auth(engine, flow="user_password")
    with pytest.raises(AuthError, match=f"^{WRONG_CREDENTIALS}$"):
        auth.sign_in("alice", "Not-The-Password-1")
    with pytest.raises(AuthError, match=f"^{WRONG_CREDENTIALS}$"):  # unknown user: same message
        auth.sign_in("nobody", PASSWORD)
    with pytest.raises(AuthError, match=f"^{WRONG_CREDENTIALS}$"):
        auth.sign_in("alice", "")
    assert auth.sign_in("alice", PASSWORD).username == "alice"
    # The admin flow of the same pool refuses it too (what an operator's script would use).
    params = {"USERNAME": "alice", "PASSWORD": "Not-The-Password-1", **auth._secret_hash("alice")}
    with pytest.raises(ClientError) as refused:
        pool.client.admin_initiate_auth(
            UserPoolId=pool.pool_id,
            ClientId=pool.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters=params,
        )
    assert str(translate_error(refused.value)) == WRONG_CREDENTIALS


# --------------------------------------------------------------------------- passwords


def test_forgot_password_then_reset_with_the_code(pool: Pool, engine: Engine) -> None:
    pool.create_confirmed("alice")
    auth = pool.auth(engine, flow="user_password")
    assert auth.forgot_password("alice") == ""
    assert auth.forgot_password("nobody") == ""  # no hint about which accounts exist
    # A wrong code (moto checks codes with its prefix) is explained, and changes nothing.
    with pytest.raises(AuthError, match="expired or was already used"):
        auth.reset_password("alice", "moto-confirmation-code:000000", NEW_PASSWORD)
    auth.reset_password("alice", "123456", NEW_PASSWORD)
    with pytest.raises(AuthError, match=WRONG_CREDENTIALS):
        auth.sign_in("alice", PASSWORD)
    assert auth.sign_in("alice", NEW_PASSWORD).username == "alice"


@pytest.mark.parametrize("flow", ["srp", "user_password"])
def test_admin_created_user_must_choose_a_new_password(
    pool: Pool, engine: Engine, flow: PasswordFlow
) -> None:
    # GIVEN an account an administrator created with a temporary password
    pool.client.admin_create_user(
        UserPoolId=pool.pool_id,
        Username="dave",
        TemporaryPassword="Temporary-Pass-1",
        UserAttributes=[{"Name": "email", "Value": "dave@example.com"}],
        MessageAction="SUPPRESS",
    )
    auth = pool.auth(engine, flow=flow)
    # WHEN dave signs in THEN he is asked for a new password (not signed in)
    with pytest.raises(NewPasswordRequired) as challenge:
        auth.sign_in("dave", "Temporary-Pass-1")
    assert challenge.value.username == "dave"
    with pytest.raises(AuthError, match="not accepted"):
        auth.complete_new_password("dave", "Temporary-Pass-1", "weak")
    # AND choosing one signs him in and mirrors him
    principal = auth.complete_new_password("dave", "Temporary-Pass-1", NEW_PASSWORD)
    assert principal.user_id == pool.sub("dave") and not principal.is_admin
    assert _db_user(engine, principal.user_id) == ("dave", "dave@example.com", None, False)
    assert auth.sign_in("dave", NEW_PASSWORD) == principal


# --------------------------------------------------------------------------- sign-out, wiring, errors


def test_sign_out_revokes_the_tokens_everywhere(pool: Pool, engine: Engine) -> None:
    pool.create_confirmed("alice")
    auth = pool.auth(engine)
    principal = auth.sign_in("alice", PASSWORD)
    assert pool.client.get_user(AccessToken=principal.access_token or "")["Username"] == "alice"
    auth.sign_out(principal)
    with pytest.raises(ClientError, match="NotAuthorizedException"):
        pool.client.get_user(AccessToken=principal.access_token or "")
    # Best effort: a second sign-out (token already revoked) and a token-less principal pass quietly.
    auth.sign_out(principal)
    auth.sign_out(Principal(user_id="x", username="x"))


def test_resend_code_sends_the_secret_hash_and_explains_throttling(pool: Pool, engine: Engine) -> None:
    """moto has no ResendConfirmationCode, so botocore's Stubber plays Cognito here."""
    client: CognitoIdentityProviderClient = lk_aws.client("cognito-idp", region=REGION)
    auth = CognitoAuth(
        engine,
        user_pool_id=pool.pool_id,
        client_id=pool.client_id,
        client_secret=pool.client_secret,
        client=client,
    )
    expected: dict[str, Any] = {"ClientId": pool.client_id, "Username": "alice"}
    if pool.client_secret:
        expected["SecretHash"] = auth._secret_hash("alice")["SECRET_HASH"]
    with Stubber(client) as stub:
        stub.add_response("resend_confirmation_code", {}, expected)
        stub.add_client_error("resend_confirmation_code", "LimitExceededException", "Attempt limit exceeded")
        assert auth.resend_code(" alice ") == ""
        with pytest.raises(AuthError, match="Too many attempts"):
            auth.resend_code("alice")
        stub.assert_no_pending_responses()


def test_a_local_account_with_the_same_name_is_not_taken_over(pool: Pool, engine: Engine) -> None:
    with transaction(engine) as s:
        user_q.create_user(session=s, username="alice", password_hash="argon2-hash")
    pool.create_confirmed("alice")
    with pytest.raises(AuthError, match="already used by another Labelkit account"):
        pool.auth(engine).sign_in("alice", PASSWORD)


def test_make_authenticator_follows_auth_mode(aws: None, engine: Engine, db_url: str) -> None:
    local = make_authenticator(Settings(database_url=db_url), engine=engine)
    assert isinstance(local, LocalAuth)
    cognito = make_authenticator(
        Settings(
            database_url=db_url,
            auth_mode="cognito",
            cognito_user_pool_id="eu-west-1_AbCdEf",
            cognito_client_id="client",
            cognito_client_secret="s3cret",
        ),
        engine=engine,
    )
    assert isinstance(cognito, CognitoAuth)
    assert cognito.region == "eu-west-1" and cognito._secret == "s3cret" and cognito.password_flow == "srp"
    assert "s3cret" not in repr(cognito)


def _client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "InitiateAuth")


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (
            _client_error("NotAuthorizedException", "Incorrect username or password."),
            AuthError,
            WRONG_CREDENTIALS,
        ),
        (_client_error("UserNotFoundException"), AuthError, WRONG_CREDENTIALS),
        (
            _client_error("NotAuthorizedException", "User cannot be confirmed. Current status is CONFIRMED"),
            AuthError,
            "already confirmed",
        ),
        (
            _client_error("NotAuthorizedException", "Password attempts exceeded"),
            AccountLocked,
            "Too many failed",
        ),
        (_client_error("NotAuthorizedException", "User is disabled."), AuthError, "disabled"),
        (_client_error("UserNotConfirmedException"), AuthError, "Confirm your e-mail first"),
        (_client_error("CodeMismatchException"), AuthError, "That code is not right"),
        (_client_error("ExpiredCodeException"), AuthError, "expired"),
        (_client_error("UsernameExistsException"), AuthError, "That username is not available"),
        (
            _client_error(
                "InvalidPasswordException", "Password did not conform with policy: Password must have symbols"
            ),
            AuthError,
            "That password is not accepted: Password must have symbols.",
        ),
        (_client_error("LimitExceededException"), AuthError, "Too many attempts"),
        (_client_error("TooManyRequestsException"), AuthError, "Too many attempts"),
        (_client_error("TooManyFailedAttemptsException"), AccountLocked, "Too many failed"),
        (_client_error("PasswordResetRequiredException"), AuthError, "Forgot password"),
        (_client_error("InternalErrorException"), AuthError, "InternalErrorException"),
        (EndpointConnectionError(endpoint_url="https://cognito-idp"), AuthError, "cannot be reached"),
    ],
)
def test_errors_are_translated_for_people(error: Exception, kind: type[AuthError], message: str) -> None:
    translated = translate_error(error)  # type: ignore[arg-type]
    assert type(translated) is kind
    assert message in str(translated)
