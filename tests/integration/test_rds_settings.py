"""RDS-style database settings: the password from Secrets Manager (moto), the engine on MariaDB.

On AWS the database URL carries no password (``mysql+pymysql://labelkit@host/db``);
``LABELKIT_DATABASE_SECRET_ARN`` names the secret RDS manages (JSON with a
``"password"`` key) or a plain-string secret, and :func:`labelkit.db.engine.get_engine`
puts that password into the URL. MariaDB's root here has an empty password, so
the secret holds ``""`` when a real connection is made.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from labelkit import aws as lk_aws
from labelkit.aws import secret_password
from labelkit.db.engine import get_engine
from labelkit.errors import ConfigError
from labelkit.settings import Settings
from tests.integration.aws_fixtures import REGION, aws  # noqa: F401

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

pytestmark = pytest.mark.aws


@pytest.fixture
def sm(aws: None) -> SecretsManagerClient:  # noqa: F811
    client: SecretsManagerClient = lk_aws.client("secretsmanager", region=REGION)
    return client


def make_secret(sm: SecretsManagerClient, name: str, value: str) -> str:
    return sm.create_secret(Name=name, SecretString=value)["ARN"]


def test_rds_managed_json_secret_gives_its_password(sm: SecretsManagerClient) -> None:
    arn = make_secret(
        sm,
        "rds!db-1234",
        json.dumps({"username": "labelkit", "password": "p@ss:w/rd with spaces", "engine": "mysql"}),
    )
    assert secret_password(arn, region=REGION) == "p@ss:w/rd with spaces"
    assert secret_password(arn, region=REGION, client=sm) == "p@ss:w/rd with spaces"


def test_plain_string_secret_is_the_password(sm: SecretsManagerClient) -> None:
    arn = make_secret(sm, "labelkit/db-password", "just-the-password")
    assert secret_password(arn, region=REGION, client=sm) == "just-the-password"
    # A JSON value that is not an object (here a JSON string) is taken as it is.
    arn = make_secret(sm, "labelkit/db-password-quoted", '"quoted"')
    assert secret_password(arn, region=REGION, client=sm) == '"quoted"'


@pytest.mark.parametrize(
    "value", [json.dumps({"username": "labelkit"}), json.dumps({"password": 1234})], ids=["none", "not-str"]
)
def test_json_secret_without_a_string_password_is_a_config_error(
    sm: SecretsManagerClient, value: str
) -> None:
    arn = make_secret(sm, "labelkit/bad", value)
    with pytest.raises(ConfigError, match="without a string 'password' key"):
        secret_password(arn, region=REGION, client=sm)


def test_missing_secret_is_a_config_error(sm: SecretsManagerClient) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nope-AbCdEf"
    with pytest.raises(ConfigError, match="cannot read the database secret"):
        secret_password(arn, region=REGION, client=sm)


def test_binary_secret_is_a_config_error(sm: SecretsManagerClient) -> None:
    arn = sm.create_secret(Name="labelkit/binary", SecretBinary=b"\x00\x01")["ARN"]
    with pytest.raises(ConfigError, match="no string value"):
        secret_password(arn, region=REGION, client=sm)


def test_get_engine_puts_the_secret_password_into_the_url(sm: SecretsManagerClient) -> None:
    arn = make_secret(sm, "rds!db-5678", json.dumps({"username": "labelkit", "password": "from-the-secret"}))
    settings = Settings(database_url="mysql+pymysql://labelkit@db.example.internal:3306/labelkit")
    settings = settings.model_copy(update={"database_secret_arn": arn, "aws_region": REGION})
    engine = get_engine(settings)  # no connection is made here
    assert engine.url.password == "from-the-secret"
    assert engine.url.username == "labelkit"
    assert engine.url.query["charset"] == "utf8mb4"
    # Idle sessions end after 30 s on the server (LABELKIT_DATABASE_IDLE_TIMEOUT): the pool
    # pings before use and recycles connections before the server would end them.
    assert engine.pool._pre_ping is True
    assert engine.pool._recycle == 20
    assert get_engine(settings) is engine  # one engine (and pool) per URL per process


def test_an_explicit_password_wins_over_the_secret(aws: None) -> None:  # noqa: F811
    # The secret does not exist: reading it would fail, so it must not be read.
    settings = Settings(
        database_url="mysql+pymysql://labelkit@db.example.internal/labelkit",
        database_password="explicit",
        database_secret_arn=f"arn:aws:secretsmanager:{REGION}:123456789012:secret:absent",
    )
    assert get_engine(settings).url.password == "explicit"


@pytest.mark.mysql
def test_engine_with_the_secret_password_connects_to_mariadb(
    sm: SecretsManagerClient, mysql_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the MariaDB URL without a password, and root's (empty) password in a secret
    arn = make_secret(sm, "rds!db-local", json.dumps({"username": "root", "password": ""}))
    monkeypatch.setenv("LABELKIT_DATABASE_URL", mysql_server_url)
    monkeypatch.setenv("LABELKIT_DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("LABELKIT_AWS_REGION", REGION)
    # WHEN the engine is built from the environment, as the Lambda does
    from labelkit.settings import get_settings

    engine = get_engine(get_settings())
    # THEN the password came from the secret and the connection works
    assert engine.url.password == ""
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
        assert conn.execute(text("SELECT @@character_set_client")).scalar() == "utf8mb4"
