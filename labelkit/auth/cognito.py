"""Amazon Cognito accounts (pycognito) behind the ``Authenticator`` protocol.

What the dashboard gets:

* ``sign_in``: SRP (``Cognito.authenticate``; the password never leaves the
  machine), or ``USER_PASSWORD_AUTH`` when ``password_flow="user_password"``
  (the app client must allow it). The ID and access tokens are verified
  against the pool's JWKS (signature, issuer, audience, expiry, ``token_use``)
  before anything in them is trusted. pycognito reads the JWKS from the
  ``COGNITO_JWKS`` environment variable when set, else fetches it once from
  ``https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json``;
  it is then cached here for the life of the process.
* the ``cognito:groups`` claim gives the roles: the ``admin`` group makes an
  administrator (in Cognito mode nobody becomes admin by being first);
* the Cognito user is mirrored into the ``users`` table with id = ``sub``, so
  every owner-scoped query works unchanged;
* sign-up sends an e-mailed code (``ConfirmationRequired``), then
  ``confirm_sign_up``; ``resend_code``; ``forgot_password`` /
  ``reset_password``; admin-created users must first pick a password
  (``NewPasswordRequired`` -> ``complete_new_password``);
* ``sign_out`` revokes the tokens everywhere (``GlobalSignOut``), best effort.

An app client secret is supported: ``SECRET_HASH`` is added to every call
when ``client_secret`` is set.

Errors are translated here, at the edge, into ``AuthError`` (see
``labelkit.auth``) with messages for people; botocore's ``ClientError`` /
``BotoCoreError`` and pycognito's exceptions never reach the dashboard.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pycognito import Cognito
from pycognito.aws_srp import AWSSRP
from pycognito.exceptions import (
    ForceChangePasswordException,
    MFAChallengeException,
    TokenVerificationException,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from labelkit import aws
from labelkit.auth import ConfirmationRequired, NewPasswordRequired, Principal, SignInClient
from labelkit.db.engine import transaction
from labelkit.db.queries import users as user_q
from labelkit.errors import AccountLocked, AuthError

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient

    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["CognitoAuth", "translate_error"]

PasswordFlow = Literal["srp", "user_password"]

WRONG_CREDENTIALS: Final = "Wrong username or password."
TRY_LATER: Final = "Too many attempts; wait a few minutes and try again."
UNREACHABLE: Final = "The sign-in service cannot be reached; try again in a moment."

# Cognito error code -> what people read. InvalidPasswordException and
# InvalidParameterException add Cognito's own message (it names the rule broken).
_MESSAGES: Final[dict[str, str]] = {
    "NotAuthorizedException": WRONG_CREDENTIALS,
    "UserNotFoundException": WRONG_CREDENTIALS,
    "UserNotConfirmedException": (
        "Confirm your e-mail first: enter the code we sent you (or ask for a new one)."
    ),
    "CodeMismatchException": "That code is not right; check the e-mail and try again.",
    "ExpiredCodeException": "That code has expired or was already used; ask for a new one.",
    "UsernameExistsException": "That username is not available; please choose another.",
    "AliasExistsException": "That e-mail address already belongs to another account.",
    "LimitExceededException": TRY_LATER,
    "TooManyRequestsException": TRY_LATER,
    "PasswordResetRequiredException": "Your password must be reset: use “Forgot password”.",
    "CodeDeliveryFailureException": "The code could not be sent; check the e-mail address.",
    "UserLambdaValidationException": "The account was refused by the sign-up rules.",
}


def _message_of(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")).strip()


def translate_error(error: ClientError | BotoCoreError) -> AuthError:
    """A botocore error from Cognito as an ``AuthError`` people can act on."""
    if isinstance(error, BotoCoreError):
        return AuthError(UNREACHABLE)
    code = aws.error_code(error)
    message = _message_of(error)
    if code == "NotAuthorizedException":
        lowered = message.casefold()
        if "attempts exceeded" in lowered:
            return AccountLocked("Too many failed attempts; wait a few minutes and try again.")
        if "disabled" in lowered:
            return AuthError("This account is disabled; ask an administrator.")
        if "current status is confirmed" in lowered:
            return AuthError("This account is already confirmed; sign in.")
        return AuthError(WRONG_CREDENTIALS)
    if code == "TooManyFailedAttemptsException":
        return AccountLocked("Too many failed attempts; wait a few minutes and try again.")
    if code == "InvalidPasswordException":
        detail = message.split(":", 1)[1].strip() if ":" in message else message
        return AuthError(f"That password is not accepted: {detail or 'it breaks the password policy'}.")
    if code == "InvalidParameterException":
        return AuthError(f"Cognito refused this: {message or 'a value is not valid'}.")
    if code in _MESSAGES:
        return AuthError(_MESSAGES[code])
    logger.warning("Cognito error %s: %s", code, message)
    return AuthError(f"Signing in failed ({code or 'unknown error'}); try again later.")


class _OneClient:
    """Hands pycognito our (shared, lazily built) boto3 client instead of a new one per call."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def client(self, service: str, **_: Any) -> Any:
        assert service == "cognito-idp", service
        return self._client


class CognitoAuth:
    """:class:`labelkit.auth.Authenticator` and :class:`labelkit.auth.AccountRecovery` over Cognito."""

    def __init__(
        self,
        engine: Engine,
        *,
        user_pool_id: str,
        client_id: str,
        client_secret: str | None = None,
        region: str | None = None,
        client: CognitoIdentityProviderClient | None = None,
        password_flow: PasswordFlow = "srp",
        admin_group: str = "admin",
    ) -> None:
        if not user_pool_id or not client_id:
            from labelkit.errors import ConfigError

            raise ConfigError(
                "Cognito mode needs LABELKIT_COGNITO_USER_POOL_ID and LABELKIT_COGNITO_CLIENT_ID"
            )
        self._engine = engine
        self.user_pool_id = user_pool_id
        self.client_id = client_id
        self._secret = client_secret or None
        # A pool lives in the region its id starts with ("eu-west-1_AbC..."), whatever aws_region says.
        self.region = region or (user_pool_id.split("_", 1)[0] if "_" in user_pool_id else "us-east-1")
        self.password_flow: PasswordFlow = password_flow
        self.admin_group = admin_group
        self._client = client
        self._lock = threading.Lock()
        self._jwks: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, engine: Engine) -> CognitoAuth:
        secret = settings.cognito_client_secret
        flow = getattr(settings, "cognito_password_flow", "srp")
        return cls(
            engine,
            user_pool_id=settings.cognito_user_pool_id,
            client_id=settings.cognito_client_id,
            client_secret=secret.get_secret_value() if secret is not None else None,
            region=settings.cognito_user_pool_id.split("_", 1)[0]
            if "_" in settings.cognito_user_pool_id
            else settings.aws_region,
            password_flow="user_password" if flow == "user_password" else "srp",
        )

    def __repr__(self) -> str:
        return (
            f"CognitoAuth(pool={self.user_pool_id!r}, client={self.client_id!r}, flow={self.password_flow!r})"
        )

    @property
    def client(self) -> CognitoIdentityProviderClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = aws.client("cognito-idp", region=self.region)
        return self._client

    def _cognito(self, username: str | None = None) -> Cognito:
        cog = Cognito(
            self.user_pool_id,
            self.client_id,
            user_pool_region=self.region,
            username=username,
            client_secret=self._secret,
            session=_OneClient(self.client),
        )
        if self._jwks is not None:
            cog.pool_jwk = self._jwks
        return cog

    def _secret_hash(self, username: str) -> dict[str, str]:
        if self._secret is None:
            return {}
        return {"SECRET_HASH": AWSSRP.get_secret_hash(username, self.client_id, self._secret)}

    # --- the Authenticator protocol -------------------------------------------

    def sign_in(self, username: str, password: str, *, client: SignInClient | None = None) -> Principal:
        # ``client`` is not used: Cognito throttles and locks out on its side.
        name = username.strip()
        if not name or not password:
            raise AuthError(WRONG_CREDENTIALS)
        cog = self._cognito(name)
        try:
            if self.password_flow == "user_password":
                self._password_auth(cog, name, password)
            else:
                cog.authenticate(password=password)
        except ForceChangePasswordException as e:
            raise NewPasswordRequired(
                "Choose a new password to finish setting up your account.", username=name
            ) from e
        except MFAChallengeException as e:
            raise AuthError("This account uses multi-factor sign-in, which Labelkit does not support.") from e
        except TokenVerificationException as e:
            logger.warning("Cognito tokens for %s failed verification: %s", name, e)
            raise AuthError("The sign-in could not be verified; try again.") from e
        except ClientError as e:
            if aws.error_code(e) == "UserNotConfirmedException":
                raise ConfirmationRequired(_MESSAGES["UserNotConfirmedException"], username=name) from e
            raise translate_error(e) from e
        except BotoCoreError as e:
            raise translate_error(e) from e
        return self._principal(cog)

    def sign_up(
        self, username: str, password: str, email: str | None = None, *, client: SignInClient | None = None
    ) -> Principal:
        name = username.strip()
        clean_email = (email or "").strip()
        if not name:
            raise AuthError("Choose a username.")
        if not clean_email or "@" not in clean_email or len(clean_email) > 254:
            raise AuthError("An e-mail address is needed: the confirmation code is sent there.")
        cog = self._cognito(name)
        cog.set_base_attributes(email=clean_email)
        try:
            response = cog.register(name, password)
        except (ClientError, BotoCoreError) as e:
            raise translate_error(e) from e
        if response.get("UserConfirmed"):
            # A pre-sign-up trigger may confirm at once: then just sign in.
            return self.sign_in(name, password)
        destination = str(response.get("CodeDeliveryDetails", {}).get("Destination", ""))
        logger.info("Cognito account created, waiting for confirmation: %s", name)
        raise ConfirmationRequired(
            f"We sent a confirmation code to {destination or 'your e-mail address'}. "
            "Enter it to finish creating your account.",
            username=name,
            destination=destination,
        )

    def sign_out(self, principal: Principal) -> None:
        if not principal.access_token:
            return
        cog = self._cognito(principal.username)
        cog.access_token = principal.access_token
        try:
            cog.logout()  # GlobalSignOut: revokes the refresh token on every device
        except (ClientError, BotoCoreError) as e:
            # The dashboard forgets the session anyway; the tokens then expire on their own.
            logger.warning("Cognito global sign-out for %s failed: %s", principal.username, e)
        else:
            logger.info("signed out: %s", principal.username)

    # --- AccountRecovery ---------------------------------------------------------

    def confirm_sign_up(self, username: str, code: str) -> None:
        name = username.strip()
        try:
            self._cognito(name).confirm_sign_up(code.strip(), username=name)
        except (ClientError, BotoCoreError) as e:
            raise translate_error(e) from e

    def resend_code(self, username: str) -> str:
        name = username.strip()
        try:
            self._cognito(name).resend_confirmation_code(name)
        except (ClientError, BotoCoreError) as e:
            raise translate_error(e) from e
        return ""

    def forgot_password(self, username: str) -> str:
        name = username.strip()
        try:
            self._cognito(name).initiate_forgot_password()
        except ClientError as e:
            if aws.error_code(e) == "UserNotFoundException":
                # Same answer as for a real account: the form must not reveal who has one.
                logger.info("password reset asked for an unknown user")
                return ""
            raise translate_error(e) from e
        except BotoCoreError as e:
            raise translate_error(e) from e
        return ""

    def reset_password(self, username: str, code: str, new_password: str) -> None:
        name = username.strip()
        try:
            self._cognito(name).confirm_forgot_password(code.strip(), new_password)
        except (ClientError, BotoCoreError) as e:
            raise translate_error(e) from e

    def complete_new_password(self, username: str, password: str, new_password: str) -> Principal:
        name = username.strip()
        cog = self._cognito(name)
        try:
            if self.password_flow == "user_password":
                self._password_auth(cog, name, password, new_password=new_password)
            else:
                cog.new_password_challenge(password, new_password)
        except TokenVerificationException as e:
            logger.warning("Cognito tokens for %s failed verification: %s", name, e)
            raise AuthError("The sign-in could not be verified; try again.") from e
        except (ClientError, BotoCoreError) as e:
            raise translate_error(e) from e
        return self._principal(cog)

    # --- internals ---------------------------------------------------------------

    def _password_auth(self, cog: Cognito, username: str, password: str, *, new_password: str = "") -> None:
        """USER_PASSWORD_AUTH (the password goes to Cognito over TLS instead of SRP).

        With ``new_password`` the NEW_PASSWORD_REQUIRED challenge is answered;
        without it that challenge raises ``ForceChangePasswordException`` (as SRP does).
        """
        resp: dict[str, Any] = dict(
            self.client.initiate_auth(
                ClientId=self.client_id,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password, **self._secret_hash(username)},
            )
        )
        challenge = resp.get("ChallengeName")
        if challenge == "NEW_PASSWORD_REQUIRED":
            if not new_password:
                raise ForceChangePasswordException("Change password before authenticating")
            resp = dict(
                self.client.respond_to_auth_challenge(
                    ClientId=self.client_id,
                    ChallengeName="NEW_PASSWORD_REQUIRED",
                    Session=resp["Session"],
                    ChallengeResponses={
                        "USERNAME": username,
                        "NEW_PASSWORD": new_password,
                        **self._secret_hash(username),
                    },
                )
            )
            challenge = resp.get("ChallengeName")
        if challenge:
            raise MFAChallengeException(f"unsupported challenge {challenge}", resp)
        result = resp["AuthenticationResult"]
        cog.verify_token(result["AccessToken"], "access_token", "access")
        cog.verify_token(result["IdToken"], "id_token", "id")
        cog.refresh_token = result.get("RefreshToken")

    def _principal(self, cog: Cognito) -> Principal:
        """The verified ID token's claims as a Principal; the user mirrored into the database."""
        self._jwks = cog.pool_jwk  # verified once: later sign-ins need no JWKS fetch
        claims: dict[str, Any] = cog.id_claims or {}
        sub = str(claims.get("sub") or "")
        if not sub:
            raise AuthError("The sign-in could not be verified; try again.")
        email = str(claims["email"]) if claims.get("email") else None
        username = str(claims.get("cognito:username") or cog.username or sub)
        if username == sub and email:
            username = email  # pools that sign in by e-mail name users by their sub
        groups = claims.get("cognito:groups") or []
        is_admin = self.admin_group in groups
        try:
            with transaction(self._engine) as s:
                user = user_q.upsert_external_user(
                    session=s, user_id=sub, username=username, email=email, is_admin=is_admin
                )
                principal = Principal(
                    user_id=user.id,
                    username=user.username,
                    is_admin=user.is_admin,
                    access_token=cog.access_token,
                )
        except IntegrityError as e:
            # Another row (e.g. a local account from before Cognito) holds this username.
            raise AuthError(
                f"The username {username!r} is already used by another Labelkit account; "
                "ask an administrator."
            ) from e
        logger.info("signed in through Cognito: %s (admin=%s)", principal.username, principal.is_admin)
        return principal
