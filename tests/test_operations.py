"""What operators and their monitoring read: /healthz, /readyz, and `helpline doctor`.

Against the real parts: the session's redis-server, a real `helpline worker` process
(which registers itself and runs the scheduler as in production), RQ's own worker
registration, and the Twilio stand-in.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.jobs import URGENT_QUEUE, Job, Jobs
from helpline.application.readiness import FAILSAFE_NOTE
from tests.factories import (
    PROCESS_WAIT_SECONDS,
    make_settings,
    wait_until,
)
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
