"""The tests' own waits: long enough for a busy machine, over as soon as the wait is met."""

from __future__ import annotations

import inspect
import threading
import time

import pytest

from tests.browser import TIMEOUT_MS
from tests.factories import PROCESS_WAIT_SECONDS, WAIT_SECONDS, join, wait_until
from tests.twilio_api import TwilioApi


def test_every_shared_wait_allows_tens_of_seconds() -> None:
    # A fresh clone's CI once took over 5 s to start two workers; tens of seconds it never did.
    assert WAIT_SECONDS >= 30 and PROCESS_WAIT_SECONDS >= 60
    assert inspect.signature(TwilioApi.wait_for).parameters["timeout"].default == WAIT_SECONDS
    assert inspect.signature(wait_until).parameters["timeout"].default == WAIT_SECONDS
    assert inspect.signature(join).parameters["timeout"].default == WAIT_SECONDS
    assert TIMEOUT_MS == WAIT_SECONDS * 1000  # Playwright's actions and expect()


def test_wait_until_returns_as_soon_as_the_check_holds() -> None:
    due = time.monotonic() + 0.2
    wait_until(lambda: time.monotonic() >= due)
    assert time.monotonic() - due < WAIT_SECONDS / 10


def test_wait_until_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="waiting for the retried text"):
        wait_until(lambda: False, timeout=0.1, what="the retried text")


def test_join_fails_instead_of_hanging_on_a_thread_that_never_ends() -> None:
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="stuck")
    stuck.start()
    try:
        with pytest.raises(AssertionError, match="stuck still running"):
            join([stuck], timeout=0.1)
    finally:
        release.set()
        stuck.join()
