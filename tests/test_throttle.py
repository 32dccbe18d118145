"""LoginThrottle on its own: who waits how long after which wrong passwords (real Redis)."""

from __future__ import annotations

import pytest
import redis as redis_py

from helpline.counsellors.throttle import LoginThrottle, wait_after
from helpline.infrastructure.constants import (
    LOGIN_FIRST_DELAY_SECONDS,
    LOGIN_LOCK_SECONDS,
    LOGIN_MAX_ACCOUNT_FAILURES,
    LOGIN_MAX_ADDRESS_FAILURES,
    LOGIN_MAX_FAILURES,
    LOGIN_WINDOW_SECONDS,
)
from tests.factories import FakeClock

HOME = "198.51.100.7"
STRANGER = "203.0.113.9"
DEVICE = "device-nonce-1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def throttle(redis: redis_py.Redis, clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(redis, clock)


def fail(throttle: LoginThrottle, times: int, username: str = "alex", **where: str) -> None:
    address = where.get("address", STRANGER)
    for _ in range(times):
        throttle.failed(username, address, where.get("device"))


def test_the_free_tries_cost_nothing_then_the_wait_doubles_up_to_the_lock():
    free = LOGIN_MAX_FAILURES
    assert [wait_after(n, free) for n in range(free)] == [0.0] * free
    waits = [wait_after(free + n, free) for n in range(40)]
    assert waits[0] == LOGIN_FIRST_DELAY_SECONDS
    assert waits[1] == 2 * LOGIN_FIRST_DELAY_SECONDS
    assert max(waits) == waits[-1] == LOGIN_LOCK_SECONDS
    assert waits == sorted(waits)


def test_a_client_waits_after_its_free_tries_and_may_try_again_once_the_wait_is_over(
    throttle, clock
):
    fail(throttle, LOGIN_MAX_FAILURES - 1)
    assert throttle.wait("alex", STRANGER) == 0.0

    fail(throttle, 1)
    assert throttle.wait("alex", STRANGER) == LOGIN_FIRST_DELAY_SECONDS

    clock.advance(LOGIN_FIRST_DELAY_SECONDS)
    assert throttle.wait("alex", STRANGER) == 0.0


def test_a_strangers_wrong_passwords_never_slow_the_counsellors_own_device(throttle):
    fail(throttle, LOGIN_MAX_ACCOUNT_FAILURES * 3)  # the account is slowed for strangers
    assert throttle.wait("alex", STRANGER) > 0
    assert throttle.wait("alex", HOME) > 0  # an unknown browser at home waits too
    assert throttle.wait("alex", HOME, DEVICE) == 0.0  # their own browser does not


def test_a_known_device_has_no_more_free_tries_than_anyone(throttle):
    fail(throttle, LOGIN_MAX_FAILURES, device=DEVICE)
    assert throttle.wait("alex", HOME, DEVICE) == LOGIN_FIRST_DELAY_SECONDS
    assert throttle.wait("alex", STRANGER) == 0.0  # and its count is its own


def test_the_account_wide_limit_is_reported_once_and_only_for_unknown_clients(throttle):
    reports = [throttle.failed("alex", f"192.0.2.{n}") for n in range(LOGIN_MAX_ACCOUNT_FAILURES)]
    assert reports == [False] * (LOGIN_MAX_ACCOUNT_FAILURES - 1) + [True]
    assert throttle.failed("alex", "192.0.2.200") is False  # told once, not at every try
    assert throttle.slowed_until("alex") is not None
    assert throttle.failed("sam", HOME, DEVICE) is False


def test_one_address_guessing_across_many_accounts_is_slowed_for_all_of_them(throttle):
    for n in range(LOGIN_MAX_ADDRESS_FAILURES):
        throttle.failed(f"user{n}", STRANGER)
    assert throttle.wait("someone-new", STRANGER) > 0
    assert throttle.wait("someone-new", HOME) == 0.0


def test_a_good_login_clears_its_own_count_but_not_the_account_wide_one(throttle):
    fail(throttle, LOGIN_MAX_FAILURES, address=HOME)
    for n in range(LOGIN_MAX_ACCOUNT_FAILURES):
        throttle.failed("alex", f"192.0.2.{n}")
    throttle.succeeded("alex", HOME)
    assert throttle.slowed_until("alex") is not None
    assert throttle.wait("alex", HOME) > 0  # the account-wide wait still applies here


def test_unlock_forgets_every_count_for_the_account_and_nothing_else(throttle):
    fail(throttle, LOGIN_MAX_ACCOUNT_FAILURES, address=HOME)
    fail(throttle, LOGIN_MAX_FAILURES, device=DEVICE)
    fail(throttle, LOGIN_MAX_FAILURES, "sam")

    throttle.unlock("alex")

    assert throttle.wait("alex", HOME) == 0.0
    assert throttle.wait("alex", HOME, DEVICE) == 0.0
    assert throttle.slowed_until("alex") is None
    assert throttle.wait("sam", STRANGER) > 0


def test_counts_lapse_after_the_window_and_usernames_are_matched_as_typed_loosely(
    throttle, clock, redis
):
    fail(throttle, LOGIN_MAX_FAILURES, " Alex ")
    assert throttle.wait("alex", STRANGER) > 0  # the same account, however it was typed
    assert all(0 < redis.ttl(key) <= LOGIN_WINDOW_SECONDS for key in redis.keys("*login*"))
    assert not any(b"alex" in key or STRANGER.encode() in key for key in redis.keys("*"))
