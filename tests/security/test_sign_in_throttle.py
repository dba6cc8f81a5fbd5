"""The sign-in throttle under concurrency and attack, on SQLite and the real MariaDB.

Issue #15: 20 simultaneous sign-in calls per burst checked 60 passwords before the 5-attempt
lock held, 20 parallel argon2 verifications added 450-650 MB, and anyone could lock any
account (the admin's too) and tell from the lock message which usernames exist.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.engine import Engine

from labelkit.auth import Principal, SignInClient
from labelkit.auth.local import NOT_AVAILABLE, WRONG_CREDENTIALS, LocalAuth
from labelkit.auth.sessions import SessionStore, new_token
from labelkit.db.engine import transaction
from labelkit.db.models import SignInThrottle
from labelkit.errors import AccountLocked, AuthError
from labelkit.testing.clock import ManualDateTime as Clock

SECRET = "Tr0ub4dor&3-very-secret"
WRONG = "wrong-password-Zebra-42"
BURSTS, BURST = 3, 20


class CountingHasher(PasswordHasher):
    """Cheap argon2 whose verify takes as long as the production parameters (~50 ms), so
    parallel attempts really overlap, and which counts verifications and their overlap."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self._lock = threading.Lock()
        self.verified = 0
        self.running = 0
        self.most_at_once = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.verified += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(0.05)  # the cost of a real argon2id verification, not a wait for anything
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


def _burst(n: int, call: Callable[[int], object]) -> list[object]:
    """``call(i)`` in ``n`` threads released together; each result or the exception raised."""
    barrier = threading.Barrier(n)

    def run(i: int) -> object:
        barrier.wait(timeout=60)
        try:
            return call(i)
        except AuthError as e:
            return e

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def _failures(engine: Engine, key: str) -> int:
    with transaction(engine) as s:
        return int(s.scalar(select(SignInThrottle.failures).where(SignInThrottle.key_hash == key)) or 0)


def test_parallel_bursts_check_no_more_passwords_than_the_budget(engine: Engine) -> None:
    # GIVEN alice, and an attacker at one address firing bursts of 20 simultaneous sign-ins
    hasher, clock = CountingHasher(), Clock()
    auth = LocalAuth(engine, max_failures=5, hasher=hasher, parallel_hashes=BURST, clock=clock)
    auth.sign_up("alice", SECRET)
    hasher.verified = 0
    attacker = SignInClient(address="203.0.113.7")
    # WHEN 3 bursts of 20 wrong passwords arrive (the clock does not move: no wait ever ends)
    outcomes = []
    for _ in range(BURSTS):
        outcomes += _burst(BURST, lambda i: auth.sign_in("alice", f"{WRONG}-{i}", client=attacker))
    # THEN only the 5 free attempts had their password checked; the other 55 were refused unchecked
    assert hasher.verified == 5, hasher.verified
    assert all(isinstance(o, AuthError) for o in outcomes)
    assert sum(isinstance(o, AccountLocked) for o in outcomes) == BURSTS * BURST - 4
    # ... the counter in the database says 5, not a lost update's 2
    own = auth.throttle.attempt_for("alice", attacker, trusted=False).own
    assert _failures(engine, own) == 5
    # AND the right password from the attacker's address waits too, unchecked
    with pytest.raises(AccountLocked, match="Too many sign-in attempts"):
        auth.sign_in("alice", SECRET, client=attacker)
    assert hasher.verified == 5


def test_at_most_two_password_hashes_are_checked_at_once(engine: Engine) -> None:
    # GIVEN 20 people signing in at the same moment (different accounts and addresses: no budget is hit)
    hasher = CountingHasher()
    auth = LocalAuth(engine, hasher=hasher, parallel_hashes=2)
    names = [f"user{i:02d}" for i in range(BURST)]
    for name in names:
        auth.sign_up(name, SECRET)
    hasher.most_at_once = 0
    # WHEN they all sign in together
    outcomes = _burst(
        BURST, lambda i: auth.sign_in(names[i], SECRET, client=SignInClient(address=f"198.51.100.{i}"))
    )
    # THEN every one got in, but never more than two argon2 verifications ran at once
    # (each takes 64 MiB with the production parameters)
    assert all(isinstance(o, Principal) for o in outcomes), outcomes
    assert 1 <= hasher.most_at_once <= 2, hasher.most_at_once


def _trusted_browser(engine: Engine, principal: Principal) -> str:
    """A device cookie of a browser where ``principal`` signed in before (as /session/start does)."""
    store = SessionStore(engine)
    browser, device = new_token(), new_token()
    secret = store.begin(principal, browser_token=browser)
    assert store.complete(browser, secret, device_token=device) is not None
    return device


def test_strangers_cannot_lock_the_admin_out(engine: Engine) -> None:
    # GIVEN the admin, who signed in before on her own browser
    clock = Clock()
    auth = LocalAuth(engine, hasher=CountingHasher(), clock=clock)
    admin = auth.sign_up("admin", SECRET)
    device = _trusted_browser(engine, admin)
    # WHEN strangers at 10 addresses try 10 wrong passwords each (spending every budget they reach)
    for n in range(10):
        stranger = SignInClient(address=f"192.0.2.{n}")
        for _ in range(10):
            with pytest.raises(AuthError):
                auth.sign_in("admin", WRONG, client=stranger)
    # THEN a new stranger meets the account's backoff before any password is checked ...
    with pytest.raises(AccountLocked):
        auth.sign_in("admin", SECRET, client=SignInClient(address="192.0.2.200"))
    # ... but the admin's own browser signs in at once, from any address
    assert auth.sign_in("admin", SECRET, client=SignInClient(address="192.0.2.99", device=device)) == admin
    # AND it has a budget of its own: her typos spend hers, not the strangers'
    for _ in range(4):
        with pytest.raises(AuthError, match=WRONG_CREDENTIALS):
            auth.sign_in("admin", WRONG, client=SignInClient(address="192.0.2.99", device=device))
    assert auth.sign_in("admin", SECRET, client=SignInClient(address="192.0.2.99", device=device)) == admin


def test_one_stranger_cannot_lock_the_owner_out_even_on_a_new_browser(engine: Engine) -> None:
    # GIVEN alice; a stranger at one address hammers her account
    clock = Clock()
    auth = LocalAuth(engine, hasher=CountingHasher(), clock=clock)
    alice = auth.sign_up("alice", SECRET)
    stranger = SignInClient(address="192.0.2.1")
    for _ in range(12):
        with pytest.raises(AuthError):
            auth.sign_in("alice", WRONG, client=stranger)
    # THEN the stranger waits, but alice at her own address (no device cookie yet) gets in
    with pytest.raises(AccountLocked):
        auth.sign_in("alice", SECRET, client=stranger)
    assert auth.sign_in("alice", SECRET, client=SignInClient(address="198.51.100.20")) == alice


def test_waits_are_a_doubling_backoff_that_ends(engine: Engine) -> None:
    clock = Clock()
    auth = LocalAuth(engine, hasher=CountingHasher(), clock=clock)
    alice = auth.sign_up("alice", SECRET)
    me = SignInClient(address="198.51.100.5")
    waits = []
    for _ in range(4):
        with pytest.raises(AuthError, match=WRONG_CREDENTIALS):
            auth.sign_in("alice", WRONG, client=me)
    for _ in range(4):
        with pytest.raises(AccountLocked) as e:
            auth.sign_in("alice", WRONG, client=me)
        waits.append(str(e.value))
        clock.now += timedelta(minutes=20)  # past any wait
    assert waits == [
        "Too many sign-in attempts; try again in 30 seconds.",
        "Too many sign-in attempts; try again in 60 seconds.",
        "Too many sign-in attempts; try again in 2 minutes.",
        "Too many sign-in attempts; try again in 4 minutes.",
    ]
    assert auth.sign_in("alice", SECRET, client=me) == alice


def test_throttle_messages_do_not_tell_which_usernames_exist(engine: Engine) -> None:
    # GIVEN alice exists and "nobody" does not
    clock = Clock()
    auth = LocalAuth(engine, hasher=CountingHasher(), clock=clock)
    auth.sign_up("alice", SECRET)
    # WHEN the same client tries 8 wrong passwords on each
    seen: dict[str, list[str]] = {}
    for name in ("alice", "nobody"):
        me = SignInClient(address=f"198.51.100.{len(seen) + 40}")
        seen[name] = []
        for _ in range(8):
            with pytest.raises(AuthError) as e:
                auth.sign_in(name, WRONG, client=me)
            seen[name].append(f"{type(e.value).__name__}: {e.value}")
    # THEN both get exactly the same answers, the backoff included
    assert seen["alice"] == seen["nobody"]
    assert any("Too many sign-in attempts" in m for m in seen["alice"])


def test_sign_up_does_not_say_taken_and_probing_names_is_throttled(engine: Engine) -> None:
    # GIVEN alice exists
    auth = LocalAuth(engine, hasher=CountingHasher(), clock=Clock())
    auth.sign_up("alice", SECRET)
    prober = SignInClient(address="203.0.113.50")
    # THEN an existing name is "not available", a wording that does not say "taken"
    with pytest.raises(AuthError) as e:
        auth.sign_up("alice", SECRET, client=prober)
    assert str(e.value) == NOT_AVAILABLE and "taken" not in str(e.value)
    # AND probing names spends the client's budget like wrong passwords do (50 by default)
    outcomes = []
    for _ in range(60):
        try:
            auth.sign_up("alice", SECRET, client=prober)
        except AuthError as err:
            outcomes.append(type(err))
    assert outcomes.count(AuthError) == 49 and outcomes.count(AccountLocked) == 11
    # ... and the same client's sign-in attempts wait too (the budget is the client's)
    with pytest.raises(AccountLocked):
        auth.sign_in("alice", SECRET, client=prober)
