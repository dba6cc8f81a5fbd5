"""What a new local password must be: 8-128 characters, not only spaces, not the username, and
not guessable: zxcvbn (the Python port of Dropbox's estimator, pinned in requirements.txt; its
dictionaries of common passwords, names and words ship inside the package, so nothing is fetched)
must score it at least ``min_strength`` (0-4; 3 means about 10^8 guesses or more).

"12345678", "password" and eight spaces followed by "x" score 0-1 and are refused with
zxcvbn's own hint ("This is a top-10 common password.").
"""

from __future__ import annotations

from typing import Final

from zxcvbn import zxcvbn

from labelkit.errors import AuthError

MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 128
# zxcvbn refuses longer input (its matching is quadratic); the first 72 characters decide.
_ZXCVBN_MAX: Final = 72


def check_new_password(password: str, *, username: str = "", min_strength: int = 3) -> None:
    """Raise ``AuthError`` (with a reason people can act on) if ``password`` is not acceptable."""
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"Passwords need at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"Passwords can have at most {MAX_PASSWORD} characters.")
    if not password.strip():
        raise AuthError("A password cannot be only spaces.")
    name = username.strip()
    if name and password.casefold() == name.casefold():
        raise AuthError("The password must not be the username.")
    if min_strength <= 0:
        return
    result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=[name] if name else [])
    if int(result["score"]) < min_strength:
        feedback = result.get("feedback") or {}
        advice = [str(feedback.get("warning") or "").strip()]
        advice += [str(x).strip() for x in (feedback.get("suggestions") or [])[:1]]
        said = " ".join(a if a.endswith(".") else a + "." for a in advice if a)
        said = said or "Try a few unrelated words together."
        raise AuthError(f"That password is too easy to guess. {said}")
