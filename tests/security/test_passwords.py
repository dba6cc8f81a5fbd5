"""New passwords must not be easy to guess (issue #15: "12345678", "password" and eight spaces
plus "x" were accepted). zxcvbn's lists ship inside the package: nothing is fetched."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from labelkit.auth.local import LocalAuth
from labelkit.auth.passwords import check_new_password
from labelkit.errors import AuthError
from tests.security.test_sign_in_throttle import CountingHasher


@pytest.mark.parametrize(
    "password",
    [
        "12345678",
        "password",
        "        x",
        "qwertyuiop",
        "iloveyou",
        "Password1",
        "11111111",
        "abc12345",
        "alice2024",  # the username with a year
        "letmein!",
    ],
)
def test_common_and_guessable_passwords_are_refused(engine: Engine, password: str) -> None:
    auth = LocalAuth(engine, hasher=CountingHasher())
    with pytest.raises(AuthError, match="^That password is too easy to guess. "):
        auth.sign_up("alice", password)


@pytest.mark.parametrize(
    "password",
    ["correct horse battery", "Tr0ub4dor&3-very-secret", "olga password 1", "vivid-lantern-orbit-93"],
)
def test_strong_passwords_are_accepted(password: str) -> None:
    check_new_password(password, username="alice")


def test_the_refusal_says_why_in_words_people_can_act_on() -> None:
    with pytest.raises(AuthError) as e:
        check_new_password("password", username="alice")
    assert str(e.value) == (
        "That password is too easy to guess. This is a top-10 common password. "
        "Add another word or two. Uncommon words are better."
    )


def test_very_long_passwords_are_checked_quickly_and_judged_on_their_start() -> None:
    # zxcvbn refuses more than 72 characters; the check looks at the first 72.
    check_new_password("vivid-lantern-orbit-93 " * 5, username="alice")
    with pytest.raises(AuthError, match="too easy to guess"):
        check_new_password("a" * 100, username="alice")
