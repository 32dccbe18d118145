"""The operator's commands: accounts, the queue listing, the purge, the simulator's caller."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis as redis_py

from helpline.callbacks.queue import CLOSED, CallbackQueue, Contact, Outcome, Status
from helpline.cli import EXAMPLE_NUMBER, main
from helpline.counsellors.accounts import Counsellors
from helpline.counsellors.audit import AuditLog
from helpline.counsellors.throttle import LoginThrottle
from helpline.infrastructure.constants import LOGIN_MAX_ACCOUNT_FAILURES
from helpline.infrastructure.crypto import Sealer, lookup_key
from helpline.infrastructure.phones import to_e164
from tests.factories import (
    AUTH_TOKEN,
    SECRET_KEY,
    callback_number,
    run_helpline,
    scan_for_numbers,
)


@pytest.fixture
def env(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith(("HELPLINE_", "TWILIO_"))}
    values.update(
        HELPLINE_DATA_DIR=str(tmp_path / "var"),
        REDIS_URL=redis_server,
        SECRET_KEY=SECRET_KEY,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
    )
    return values


def helpline(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_helpline(*args, env=env, stdin=stdin)


def queue(redis: redis_py.Redis) -> CallbackQueue:
    return CallbackQueue(redis, Sealer(SECRET_KEY), lookup_key(SECRET_KEY))


def test_counsellor_add_reads_the_password_from_stdin_and_stores_no_plain_phone(env, redis) -> None:
    phone = callback_number(55)
    done = helpline(
        env, "counsellor", "add", "sam", "--name", "Sam Lee", "--phone", phone, "--admin",
        stdin="a long enough password\n",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "added admin sam (Sam Lee, ***155)" in done.stdout
    accounts = Counsellors(redis, Sealer(SECRET_KEY))
    assert accounts.authenticate("sam", "a long enough password") is not None
    assert accounts.authenticate("sam", "a long enough passwore") is None
    assert scan_for_numbers(redis, [phone]) == []
    assert b"a long enough password" not in b"".join(
        v for v in redis.hvals("helpline:counsellor:sam")
    )
    # The real cost, whatever cheaper hash the console tests use.
    assert redis.hget("helpline:counsellor:sam", "password").startswith(b"scrypt:32768:8:1$")


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["--phone", "12"], "a long enough password\n", "not a valid phone number"),
        (["--phone", "+12025550155"], "short\n", "at least 12 characters"),
    ],
)
def test_counsellor_add_explains_what_to_fix(env, args, stdin, says) -> None:
    done = helpline(env, "counsellor", "add", "sam", "--name", "Sam", *args, stdin=stdin)
    assert done.returncode == 1
    assert says in done.stderr


def test_the_number_counsellor_add_suggests_is_one_it_accepts(env) -> None:
    refused = helpline(env, "counsellor", "add", "sam", "--name", "Sam", "--phone", "12")
    assert refused.returncode == 1
    [example] = re.findall(r"e\.g\. (\+\d+)", refused.stderr)

    done = helpline(
        env, "counsellor", "add", "sam", "--name", "Sam", "--phone", example,
        stdin="a long enough password\n",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", [["counsellor", "add"], ["simulate", "sms"]])
def test_every_number_in_the_help_is_a_valid_one(command, capsys) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    numbers = re.findall(r"\+\d{6,}", capsys.readouterr().out)

    assert numbers and all(to_e164(n, "ZZ") == n for n in numbers)


@pytest.mark.parametrize("channel", [[], ["--whatsapp"]], ids=["sms", "whatsapp"])
def test_a_simulated_texter_on_the_default_number_gets_on_the_list(
    env, redis, monkeypatch, channel
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in set(os.environ) - set(env):
        monkeypatch.delenv(name)

    replies = []
    for text in ("TALK", "2", "2", "1", "1", "1"):  # not at risk; no break; this number; ok
        # Not capsys: the app's log handler keeps the sys.stderr it first finds.
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["simulate", "sms", *channel, text]) == 0
        replies.append(out.getvalue())

    assert "You're on the list" in replies[-1], replies
    [request] = queue(redis).active()
    assert queue(redis).phone(request.id) == EXAMPLE_NUMBER
    assert request.channel == ("whatsapp" if channel else "sms")


@pytest.mark.parametrize(
    ("args", "played"),
    [
        (
            ["--say", "recovery", "--digits", "1,0"],
            ["you say: recovery", "you press: 1", "you press: 0"],
        ),
        (
            ["--digits", "2", "--say", "menu", "--digits", "1"],
            ["you press: 2", "you say: menu", "you press: 1"],
        ),
    ],
)
def test_a_simulated_call_plays_keys_and_speech_in_the_order_given(
    env, redis, monkeypatch, args, played
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["simulate", "call", *args]) == 0
    lines = [line.strip() for line in out.getvalue().splitlines()]
    assert [line for line in lines if line.startswith("you ")] == played


def test_adding_the_same_username_twice_is_refused(env) -> None:
    args = ["counsellor", "add", "sam", "--name", "Sam", "--phone", "+12025550155"]
    assert helpline(env, *args, stdin="a long enough password\n").returncode == 0
    again = helpline(env, *args, stdin="a long enough password\n")
    assert again.returncode == 1 and "already a counsellor called 'sam'" in again.stderr


def test_queue_list_json_shows_waiting_and_claimed_with_masked_numbers(env, redis) -> None:
    q = queue(redis)
    q.enqueue(Contact(callback_number(1), True, False), channel="voice", lang="en", urgent=False)
    time.sleep(0.01)
    q.enqueue(Contact(callback_number(2), False, True), channel="sms", lang="es", urgent=True)
    q.claim_next("sam")

    done = helpline(env, "queue", "list", "--json")

    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["status"], r["priority"], r["channel"]) for r in rows] == [
        ("claimed", "urgent", "sms"),
        ("waiting", "normal", "voice"),
    ]
    assert [r["phone_masked"] for r in rows] == ["***102", "***101"]
    assert all(r["created_at"].endswith("+00:00") and r["id"] for r in rows)
    assert callback_number(1)[-7:] not in done.stdout


def scheduled_claimed_and_waiting(q: CallbackQueue, due: float) -> tuple[str, str, str]:
    """Three requests: one to be called back at due, one claimed by sam, one in line."""
    ids = []
    for n in (1, 2, 3):
        placed = q.enqueue(
            Contact(callback_number(n), True, True), channel="voice", lang="en", urgent=False
        )
        ids.append(placed.request.id)
        time.sleep(0.01)
    first = q.claim_next("sam")
    assert first is not None and first.id == ids[0]
    q.record(first.id, "sam", Outcome.CALL_BACK_LATER, call_back_at=due)
    assert q.claim_next("sam") is not None
    return ids[0], ids[1], ids[2]


def test_queue_list_has_a_header_and_shows_a_retry_as_scheduled_in_local_time(env, redis) -> None:
    due = time.time() + 3 * 3600
    later, claimed, waiting = scheduled_claimed_and_waiting(queue(redis), due)
    env["HELPLINE_TIMEZONE"] = "America/New_York"

    done = helpline(env, "queue", "list")

    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == [
        "ID", "STATUS", "PRIORITY", "CHANNEL", "LANG", "ASKED", "DUE", "NUMBER", "WITH"
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines}
    assert rows[claimed].split()[1] == "claimed" and rows[claimed].endswith("sam")
    assert rows[waiting].split()[1] == "waiting"
    assert rows[later].split()[1] == "scheduled"
    local_due = datetime.fromtimestamp(due, ZoneInfo("America/New_York"))
    assert local_due.strftime("%Y-%m-%d %H:%M E") in rows[later]  # EST or EDT: the zone's
    assert callback_number(1)[-7:] not in done.stdout


def test_queue_list_json_says_which_requests_are_scheduled(env, redis) -> None:
    due = time.time() + 3600
    later, claimed, waiting = scheduled_claimed_and_waiting(queue(redis), due)

    rows = json.loads(helpline(env, "queue", "list", "--json").stdout)

    shown = {r["id"]: (r["status"], r["scheduled"], r["due_at"] is not None) for r in rows}
    assert shown == {
        claimed: ("claimed", False, False),
        waiting: ("waiting", False, False),
        later: (Status.WAITING.value, True, True),
    }


def test_counsellor_list_has_a_header_row(env, redis) -> None:
    assert "no counsellors yet" in helpline(env, "counsellor", "list").stdout
    accounts = Counsellors(redis, Sealer(SECRET_KEY))
    accounts.add("sam", name="Sam Lee", phone=EXAMPLE_NUMBER, password="a long enough password")
    accounts.set_on_duty("sam", True)

    done = helpline(env, "counsellor", "list")

    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["USERNAME", "NAME", "ROLE", "PHONE", "STATE"]
    assert row.split() == ["sam", "Sam", "Lee", "counsellor", "***123", "on", "duty"]
    # Each value starts under its heading.
    column = {m.group(): m.start() for m in re.finditer(r"\S+", header)}
    assert row.index("Sam Lee") == column["NAME"] and row.index("***") == column["PHONE"]


def audited(redis: redis_py.Redis) -> list[tuple[str, str, str]]:
    """The audit log, oldest first: (actor, action, detail)."""
    return [(e.actor, e.action, e.detail) for e in reversed(AuditLog(redis).recent())]


def test_every_command_that_changes_something_is_audited_as_cli(env, redis) -> None:
    number = callback_number(62)
    masked = "***" + number[-3:]
    commands: list[tuple[list[str], tuple[str, str, str]]] = [
        (
            ["counsellor", "add", "sam", "--name", "Sam", "--phone", EXAMPLE_NUMBER],
            ("cli", "counsellor_add", "sam"),
        ),
        (["counsellor", "duty", "sam", "on"], ("cli", "duty_on", "sam")),
        (["counsellor", "duty", "sam", "off"], ("cli", "duty_off", "sam")),
        (["counsellor", "unlock", "sam"], ("cli", "login_unlock", "sam")),
        (["block", "add", number, "--reason", "Prank calls"], ("cli", "block", masked)),
        (["block", "remove", number], ("cli", "unblock", masked)),
        (["purge"], ("cli", "purge", "0")),
    ]
    for args, entry in commands:
        done = helpline(env, *args, stdin="a long enough password\n")
        assert done.returncode == 0, done.stderr
        assert audited(redis)[-1] == entry, args


@pytest.mark.parametrize(
    "args",
    [
        ["counsellor", "list"],
        ["queue", "list"],
        ["queue", "list", "--json"],
        ["block", "list"],
        ["outbox"],
    ],
)
def test_commands_that_only_look_write_nothing_to_the_audit_log(env, redis, args) -> None:
    assert helpline(env, *args).returncode == 0
    assert audited(redis) == []


def test_a_refused_change_is_not_audited(env, redis) -> None:
    assert helpline(env, "counsellor", "duty", "nobody", "on").returncode == 1
    assert audited(redis) == []


def test_purge_deletes_closed_requests_past_retention_only(env, redis) -> None:
    q = queue(redis)
    q.enqueue(Contact(callback_number(1), True, True), channel="voice", lang="en", urgent=False)
    old = q.claim_next("sam")
    assert old is not None
    q.record(old.id, "sam", Outcome.REACHED)
    redis.zadd(CLOSED, {old.id: time.time() - 31 * 24 * 3600})  # closed a month ago
    q.enqueue(Contact(callback_number(2), True, True), channel="voice", lang="en", urgent=False)

    done = helpline(env, "purge")

    assert done.returncode == 0, done.stderr
    assert "purged 1 closed request(s) older than 30 days" in done.stdout
    assert q.get(old.id) is None
    assert len(q.active()) == 1


def test_commands_say_what_to_fix_when_redis_is_unreachable(env) -> None:
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    done = helpline(env, "queue", "list")
    assert done.returncode == 1
    assert "cannot reach Redis" in done.stderr and "REDIS_URL" in done.stderr


@pytest.mark.parametrize("value", ["0", "many"])
def test_web_says_what_to_fix_in_a_bad_web_concurrency(env, value) -> None:
    env["WEB_CONCURRENCY"] = value
    done = helpline(env, "web", "--port", "1")
    assert done.returncode == 1
    assert f"WEB_CONCURRENCY must be a whole number above 0, not {value!r}" in done.stderr


def test_counsellor_unlock_lets_a_slowed_account_log_in_again(env, redis) -> None:
    Counsellors(redis, Sealer(SECRET_KEY)).add(
        "sam", name="Sam", phone=EXAMPLE_NUMBER, password="a long enough password"
    )
    throttle = LoginThrottle(redis)
    for n in range(LOGIN_MAX_ACCOUNT_FAILURES):
        throttle.failed("sam", f"203.0.113.{n + 1}")
    assert throttle.wait("sam", "198.51.100.7") > 0

    done = helpline(env, "counsellor", "unlock", "sam")

    assert done.returncode == 0, done.stderr
    assert throttle.wait("sam", "198.51.100.7") == 0
    [entry] = AuditLog(redis).recent(action="login_unlock")
    assert (entry.actor, entry.detail) == ("cli", "sam")


def test_counsellor_unlock_of_an_unknown_account_says_so(env) -> None:
    done = helpline(env, "counsellor", "unlock", "nobody")
    assert done.returncode == 1 and "no counsellor called 'nobody'" in done.stderr


def test_purge_also_trims_the_audit_log_past_retention(env, redis) -> None:
    old_ms = int((time.time() - 40 * 24 * 3600) * 1000)
    redis.xadd("helpline:audit", {"actor": "sam", "action": "reveal"}, id=f"{old_ms}-0")
    redis.xadd("helpline:audit", {"actor": "sam", "action": "reveal"})

    assert helpline(env, "purge").returncode == 0
    assert audited(redis) == [("sam", "reveal", ""), ("cli", "purge", "0")]


def test_operators_block_list_and_unblock_callers_from_the_command_line(env) -> None:
    number = callback_number(61)
    added = helpline(env, "block", "add", number, "--reason", "Prank calls", "--days", "3")
    assert added.returncode == 0, added.stderr
    masked = "***" + number[-3:]
    assert f"{masked} may not queue call backs until" in added.stdout
    assert number not in added.stdout

    listed = helpline(env, "block", "list")
    assert masked in listed.stdout and "Prank calls" in listed.stdout and "by cli" in listed.stdout
    assert number[-7:] not in listed.stdout

    assert helpline(env, "block", "remove", number).returncode == 0
    again = helpline(env, "block", "remove", number)
    assert again.returncode == 1 and f"{masked} is not blocked" in again.stderr
    assert "no one is blocked" in helpline(env, "block", "list").stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["add", "07700 900123", "--reason", "x"], "is not a number in E.164 form"),
        (["add", "+12025550161", "--reason", "x", "--days", "0"], "from 1 to 366 days"),
        (["add", "+12025550161", "--reason", "  "], "say why the caller is blocked"),
    ],
)
def test_block_add_says_what_to_fix(env, args, says) -> None:
    result = helpline(env, "block", *args)
    assert result.returncode == 1 and says in result.stderr
