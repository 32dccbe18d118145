"""What operators and their monitoring read: /healthz, /readyz, and `helpline doctor`.

Against the real parts: the session's redis-server, a real `helpline worker` process
(which registers itself and runs the scheduler as in production), RQ's own worker
registration, and the Twilio stand-in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.config import Settings
from helpline.application.jobs import QUEUE_NAMES, URGENT_QUEUE, Job, Jobs
from helpline.application.readiness import FAILSAFE_NOTE
from helpline.cli import EXAMPLE_NUMBER
from helpline.conversation.lint import load_flows
from helpline.counsellors.accounts import Counsellors
from helpline.infrastructure import embedded
from helpline.infrastructure.crypto import Sealer
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    HELPLINE_NUMBER,
    PROCESS_WAIT_SECONDS,
    SECRET_KEY,
    TEST_PASSWORD_METHOD,
    make_settings,
    run_helpline,
    wait_until,
)
from tests.twilio_api import TwilioApi
from workers.main import make_worker

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def helpline_worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run `helpline worker --processes 1` as an operator would; stop it with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpline", "worker", "--processes", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=PROCESS_WAIT_SECONDS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def readyz(client: FlaskClient) -> tuple[int, dict]:
    response = client.get("/readyz")
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, response.get_json()


def states(body: dict) -> dict[str, str]:
    return {part: body[part] for part in ("redis", "workers", "scheduler", "flows")}


# -- /healthz and /readyz -------------------------------------------------------------------


def test_healthz_is_ok_while_the_process_serves_even_with_nothing_else_running(client):
    response = client.get("/healthz")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "ok\n")


def test_readyz_is_200_with_every_part_ok_while_a_worker_runs(client, worker_env, redis):
    with helpline_worker(worker_env):

        def ready() -> bool:
            return client.get("/readyz").status_code == 200

        wait_until(ready, PROCESS_WAIT_SECONDS, what="/readyz to say ready with a worker running")
        status, body = readyz(client)

    assert status == 200
    assert states(body) == {"redis": "ok", "workers": "ok", "scheduler": "ok", "flows": "ok"}
    assert body["ready"] is True
    assert body["details"] == {
        "redis": "Redis answers (append-only file on)",
        "workers": "1 worker seen in the last 60 s",
        "scheduler": "a worker schedules retries and delayed jobs",
        "flows": "serving 2 flows in en, es",
    }
    assert "webhooks" not in body


def test_readyz_is_503_and_says_texts_are_not_sent_when_no_worker_runs(client):
    status, body = readyz(client)

    assert status == 503
    assert body["ready"] is False
    assert states(body) == {
        "redis": "ok",
        "workers": "down",
        "scheduler": "down",
        "flows": "ok",
    }
    assert body["details"]["workers"] == "no worker is running: texts and alerts are not being sent"
    assert body["details"]["scheduler"] == (
        "no scheduler is running: retries and delayed jobs wait "
        "(workers start one; is any worker running?)"
    )


def test_readyz_says_when_the_last_worker_was_seen_once_it_stops_beating(
    app: Flask, redis: redis_py.Redis
):
    # RQ's own registration, as a worker writes it when it starts.
    worker = make_worker(redis)
    worker.register_birth()
    readiness = app.extensions["helpline"].readiness
    readiness.clock = lambda: time.time() + 150

    status, body = readyz(app.test_client())

    assert status == 503
    assert body["workers"] == "down"
    assert body["details"]["workers"] == (
        "no worker seen in the last 60 s (the last one 3 min ago): "
        "texts and alerts are not being sent"
    )


def test_readyz_is_degraded_when_urgent_work_waits_for_the_running_workers(
    app: Flask, redis: redis_py.Redis
):
    make_worker(redis).register_birth()
    Jobs(redis).once(Job.ALERT, "alert-r1", "r1")
    assert redis.llen(f"rq:queue:{URGENT_QUEUE}") == 1
    readiness = app.extensions["helpline"].readiness
    readiness.clock = lambda: time.time() + 45

    status, body = readyz(app.test_client())

    assert status == 503
    assert body["workers"] == "degraded"
    assert body["details"]["workers"] == (
        "1 worker running, but an urgent job has waited 45 s for one"
    )


def test_readyz_says_the_flows_changed_since_they_were_loaded(tmp_path, redis_server, redis, flows):
    app = create_app(make_settings(tmp_path / "var", redis_server, flows_dir=flows))
    assert readyz(app.test_client())[1]["flows"] == "ok"
    content = flows / "content" / "en.yaml"
    content.write_text(content.read_text(encoding="utf-8") + "\n", encoding="utf-8")

    status, body = readyz(app.test_client())

    assert status == 503
    assert body["flows"] == "degraded"
    assert body["details"]["flows"] == (
        f"serving 2 flows in en, es, but the files in {flows} changed since they were loaded: "
        "run `helpline flows check`, then restart the web processes"
    )


def test_readyz_with_redis_down_is_a_quick_503_saying_callers_still_get_failsafe_answers(
    tmp_path: Path,
):
    # Nothing listens on this socket: Redis is down from the start.
    app = create_app(make_settings(tmp_path / "var", f"unix://{tmp_path}/no-redis.sock"))
    client = app.test_client()

    started = time.perf_counter()
    status, body = readyz(client)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    assert status == 503
    assert states(body) == {
        "redis": "down",
        "workers": "down",
        "scheduler": "down",
        "flows": "ok",
    }
    assert body["details"]["redis"] == "cannot reach Redis (or it failed a moment ago)"
    assert body["details"]["workers"] == "unknown while Redis is down"
    assert body["webhooks"] == FAILSAFE_NOTE
    assert "safety advice and the emergency number" in body["webhooks"]
    # Liveness is not readiness: the process still serves, so it is not restarted.
    assert client.get("/healthz").status_code == 200


# -- helpline doctor ------------------------------------------------------------------------

# What doctor says of the shipped flows, counted from them.
_SHIPPED = load_flows(Settings().flows_dir)
FLOWS_OK = (
    f"ok    flows        {len(_SHIPPED.flows)} flows, "
    f"{sum(len(flow.nodes) for flow in _SHIPPED.flows.values())} nodes, languages en, es; "
)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[redis_py.Redis]:
    """A redis-server of this test's own, whose persistence settings it may change."""
    data_dir = tmp_path / "redis"
    url, _ = embedded.ensure_running(data_dir)
    client = redis_py.Redis.from_url(url)
    yield client
    client.close()
    embedded.stop(data_dir)


@pytest.fixture
def doctor_env(tmp_path: Path, own_redis: redis_py.Redis, twilio_api: TwilioApi) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith(("HELPLINE_", "TWILIO_"))}
    values.pop("PUBLIC_URL", None)
    values.update(
        HELPLINE_DATA_DIR=str(tmp_path / "var"),
        REDIS_URL=embedded.url_for(tmp_path / "redis"),
        SECRET_KEY=SECRET_KEY,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_URL=twilio_api.url,
        HELPLINE_PHONE_NUMBER=HELPLINE_NUMBER,
        PUBLIC_URL="https://helpline.example.org",
    )
    return values


def doctor(env: dict[str, str], **changes: str) -> tuple[int, list[str]]:
    done = run_helpline("doctor", env={**env, **changes})
    return done.returncode, done.stdout.splitlines()


def line(lines: list[str], check: str) -> str:
    (found,) = [text for text in lines if text[6:].split("  ")[0] == check]
    return found


def test_doctor_passes_a_working_deployment_and_a_warning_does_not_fail_it(
    doctor_env, own_redis, twilio_api
):
    own_redis.config_set("appendfsync", "no")
    Counsellors(own_redis, Sealer(SECRET_KEY), password_method=TEST_PASSWORD_METHOD).add(
        "sam", name="Sam", phone="+12025550155", password="a long enough password", admin=True
    )
    public = "https://helpline.example.org"
    twilio_api.add_number(
        HELPLINE_NUMBER,
        voice_url=f"{public}/twilio/voice",
        voice_fallback_url=f"{public}/twilio/voice/fallback",
        status_callback=f"{public}/twilio/voice/status",
        sms_url=f"{public}/twilio/sms",
        sms_fallback_url=f"{public}/twilio/sms/fallback",
    )
    with helpline_worker(doctor_env):
        wait_until(
            lambda: all(own_redis.exists(f"rq:scheduler-lock:{q}") for q in QUEUE_NAMES),
            PROCESS_WAIT_SECONDS,
            what="the worker to start and run the scheduler",
        )
        status, lines = doctor(doctor_env)

    assert status == 0, "\n".join(lines)
    assert line(lines, "settings").startswith("ok    settings     development, region GB, flows ")
    assert line(lines, "redis").startswith("ok    redis        Redis ")
    assert line(lines, "persistence") == (
        "WARN  persistence  append-only file on, but appendfsync is no: the operating system "
        "decides when writes reach the disk, so a crash can lose confirmed call back requests; "
        "set appendfsync always"
    )
    assert line(lines, "twilio") == (
        f"ok    twilio       the credentials work: account {ACCOUNT_SID} (Helpline) is active"
    )
    assert line(lines, "number") == (
        f"ok    number       {HELPLINE_NUMBER}'s webhooks and callbacks point at {public}"
    )
    assert line(lines, "flows").startswith(FLOWS_OK)
    assert line(lines, "hours") == (
        "ok    hours        call backs at any hour; time zone Europe/London (the region's)"
    )
    assert line(lines, "admins") == "ok    admins       1 admin, 1 account"
    assert line(lines, "workers") == "ok    workers      1 worker seen in the last 60 s"
    assert line(lines, "scheduler") == (
        "ok    scheduler    a worker schedules retries and delayed jobs"
    )
    assert lines[-1] == "12 checks: 0 failed, 1 warning; nothing failed"
    # The account's auth token comes back in Twilio's answer: it is never shown.
    assert AUTH_TOKEN not in "\n".join(lines)


def test_doctor_fails_on_what_callers_would_notice_one_line_each(doctor_env, own_redis, twilio_api):
    own_redis.config_set("appendonly", "no")
    twilio_api.add_number(HELPLINE_NUMBER)

    status, lines = doctor(
        doctor_env,
        TWILIO_AUTH_TOKEN="not-the-right-token-at-all-0123456",
        HELPLINE_HOURS="Mon-Fri 09:00-17:00",
        HELPLINE_TIMEZONE="America/Chicago",
    )

    assert status == 1
    assert line(lines, "persistence") == (
        "FAIL  persistence  the append-only file is off: call back requests taken since the last "
        "snapshot are lost if Redis stops; set appendonly yes (with appendfsync always)"
    )
    assert line(lines, "twilio") == (
        "FAIL  twilio       Twilio refused the credentials (HTTP 401): check TWILIO_ACCOUNT_SID "
        "and TWILIO_AUTH_TOKEN against the Twilio console"
    )
    assert line(lines, "hours").startswith(
        "ok    hours        Mon-Fri 09:00-17:00 in America/Chicago: "
    )
    assert line(lines, "admins") == (
        "FAIL  admins       no admin account: create one with `helpline counsellor add USERNAME "
        "--name NAME --phone E164 --admin`"
    )
    assert line(lines, "workers") == (
        "FAIL  workers      no worker is running: texts and alerts are not being sent"
    )
    assert line(lines, "scheduler").startswith("FAIL  scheduler    no scheduler is running: ")
    assert line(lines, "flows").startswith(FLOWS_OK)
    assert lines[-1] == "11 checks: 5 failed, 0 warnings; fix the FAIL lines"


def test_doctor_in_production_names_weak_secrets_plain_http_and_unreachable_redis(
    doctor_env, tmp_path, twilio_api
):
    twilio_api.account_status = "suspended"

    status, lines = doctor(
        doctor_env,
        HELPLINE_ENV="production",
        SECRET_KEY="too-short",
        HELPLINE_PHONE_NUMBER=EXAMPLE_NUMBER,
        PUBLIC_URL="http://helpline.example.org",
        REDIS_URL=f"unix://{tmp_path}/no-redis.sock",
    )

    assert status == 1
    assert line(lines, "settings").startswith("ok    settings     production, region GB")
    assert line(lines, "secrets") == (
        "FAIL  secrets      SECRET_KEY is only 9 characters long; it needs at least 32; generate "
        'one with: python3 -c "import secrets; print(secrets.token_hex(32))"'
    )
    assert line(lines, "public URL") == (
        "FAIL  public URL   PUBLIC_URL must be the https:// address Twilio and counsellors use, "
        "such as https://helpline.example.org, not 'http://helpline.example.org'"
    )
    assert line(lines, "redis") == (
        f"FAIL  redis        cannot reach Redis at unix://{tmp_path}/no-redis.sock "
        "(ConnectionError)"
    )
    assert line(lines, "twilio") == (
        f"FAIL  twilio       the account {ACCOUNT_SID} (Helpline) is suspended: "
        "Twilio sends nothing"
    )
    for check in ("persistence", "admins", "workers", "scheduler"):
        assert line(lines, check) == f"FAIL  {check:<12} cannot check: Redis is unreachable"


def test_doctor_stops_at_settings_it_cannot_read(doctor_env):
    status, lines = doctor(doctor_env, HELPLINE_HOURS="weekdays 9 to 5")

    assert status == 1
    assert lines == [
        "FAIL  settings     HELPLINE_HOURS rule 'weekdays 9 to 5' should look like "
        "'Mon-Fri 09:00-21:00' (nothing else can be checked until this is fixed)",
        "1 check: 1 failed, 0 warnings; fix the FAIL lines",
    ]
