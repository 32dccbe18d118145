"""/metrics: what an operator's Prometheus reads, from one process and from many."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from helpline import create_app
from helpline.callbacks.queue import Contact
from helpline.infrastructure.logs import MaskingJsonFormatter
from helpline.web.services import helpline
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CALLER,
    HELPLINE_NUMBER,
    PROCESS_WAIT_SECONDS,
    SECRET_KEY,
    USABLE_CALLER,
    callback_number,
    make_settings,
    sign,
    sms_params,
    text,
    twilio_post,
    wait_until,
)
from tests.processes import HOST, free_port, serving
from tests.twilio_api import TwilioApi

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-" + "t0k3n" * 8  # a test value, never a real secret

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(exposition: str) -> Samples:
    """Every sample in a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_app(tmp_path: Path, redis_server: str, redis) -> Flask:  # type: ignore[no-untyped-def]
    return create_app(make_settings(tmp_path / "var", redis_server, metrics_token=TOKEN))


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


# -- one process ------------------------------------------------------------------------


def test_metrics_do_not_exist_without_a_token(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_metrics_need_the_bearer_token(metrics_app: Flask, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = metrics_app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "helpline_" not in response.get_data(as_text=True)


def test_webhooks_opt_outs_and_call_backs_are_counted(metrics_app: Flask) -> None:
    client = metrics_app.test_client()
    before = scrape(client)
    text(client, "SAFE")
    text(client, "STOP", sender="whatsapp:" + CALLER)
    for body in ("TALK", "1", "2", "1", "1", "1"):  # at risk: urgent
        text(client, body, sender=USABLE_CALLER)
    # A request without a signature is refused and counted.
    assert client.post("/twilio/sms", data=sms_params("SAFE")).status_code == 403
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    sms = {"route": "/twilio/sms"}
    assert grew("helpline_webhook_requests_total", **sms, status="200") == 8
    assert grew("helpline_webhook_requests_total", **sms, status="403") == 1
    assert grew("helpline_webhook_seconds_count", **sms) == 9
    assert grew("helpline_rejected_signatures_total", **sms) == 1
    assert grew("helpline_opt_outs_total", channel="whatsapp", change="out") == 1
    assert grew("helpline_opt_outs_total", channel="sms", change="out") == 0
    assert grew("helpline_callback_requests_total", channel="sms", priority="urgent") == 1
    assert value(after, "helpline_queue_waiting", band="urgent") == 1
    assert value(after, "helpline_queue_waiting", band="normal") == 0


def test_a_failing_webhook_counts_a_failsafe_answer(metrics_app: Flask) -> None:
    client = metrics_app.test_client()
    before = scrape(client)
    response = twilio_post(client, "/twilio/voice/fallback", {"ErrorCode": "11200"})
    assert "call 9 9 9" in response.get_data(as_text=True)
    after = scrape(client)
    route = {"route": "/twilio/voice/fallback"}
    assert value(after, "helpline_failsafe_answers_total", **route) == (
        value(before, "helpline_failsafe_answers_total", **route) + 1
    )


def test_queue_gauges_show_depth_and_the_longest_wait_by_band(metrics_app: Flask) -> None:
    with metrics_app.app_context():
        queue = helpline().queue
        for n, urgent in ((1, False), (2, False), (3, True)):
            contact = Contact(callback_number(n), voicemail_ok=True, texts_ok=True)
            queue.enqueue(contact, channel="voice", lang="en", urgent=urgent)
        queue.claim_next("alex")  # the urgent one
    scraped = scrape(metrics_app.test_client())
    assert value(scraped, "helpline_redis_up") == 1
    assert value(scraped, "helpline_queue_waiting", band="normal") == 2
    assert value(scraped, "helpline_queue_waiting", band="urgent") == 0
    assert value(scraped, "helpline_queue_held", state="claimed") == 1
    assert value(scraped, "helpline_queue_oldest_wait_seconds", band="normal") >= 0
    assert value(scraped, "helpline_queue_oldest_wait_seconds", band="urgent") == 0


def test_a_scrape_holds_no_number_no_message_and_no_id(metrics_app: Flask) -> None:
    client = metrics_app.test_client()
    for body in ("TALK", "2", "2", "no", "+1 202 555 0188", "1", "1"):
        text(client, body, sender=USABLE_CALLER)
    exposition = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True
    )
    with metrics_app.app_context():
        [request] = helpline().queue.active()
    for secret in ("2025550107", "2025550188", "555 0188", "TALK", request.id):
        assert secret not in exposition


def test_metrics_still_answer_with_redis_down(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/nobody-here.sock"
    app = create_app(make_settings(tmp_path / "var", dead, metrics_token=TOKEN))
    scraped = scrape(app.test_client())
    assert value(scraped, "helpline_redis_up") == 0
    assert ("helpline_queue_waiting", (("band", "urgent"),)) not in scraped


# -- many processes: gunicorn's workers and the job workers -------------------------------


@pytest.fixture
def deployment(
    tmp_path: Path, redis_server: str, redis, twilio_api: TwilioApi
) -> Iterator[tuple[str, Path]]:  # type: ignore[no-untyped-def]
    """`helpline web` (gunicorn, 2 workers) and `helpline worker` (2 processes), as a
    machine runs them; yields the web's base URL and the data dir."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PUBLIC_URL", "PORT", "WEB_CONCURRENCY", "HELPLINE_ENV")
        and not k.startswith("PROMETHEUS")
    }
    env.update(
        HELPLINE_DATA_DIR=str(tmp_path / "var"),
        REDIS_URL=redis_server,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_URL=twilio_api.url,
        SECRET_KEY=SECRET_KEY,
        HELPLINE_PHONE_NUMBER=HELPLINE_NUMBER,
        HELPLINE_METRICS_TOKEN=TOKEN,
    )
    helpline_command = [sys.executable, "-m", "helpline"]
    web = [*helpline_command, "web", "--host", HOST, "--port", str(port), "--workers", "2"]
    worker = [*helpline_command, "worker", "--processes", "2"]
    base = f"http://{HOST}:{port}"
    with serving({"helpline web": web, "helpline worker": worker}, env, port, tmp_path):
        yield base, tmp_path / "var"


def _post_text(base: str, body: str, sender: str) -> None:
    params = sms_params(body, sender)
    request = urllib.request.Request(
        f"{base}/twilio/sms",
        data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": sign(f"{base}/twilio/sms", params)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _scrape_over_http(base: str) -> Samples:
    request = urllib.request.Request(
        f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return samples(response.read().decode())


def test_every_process_is_counted_whichever_web_worker_answers_the_scrape(
    deployment: tuple[str, Path], twilio_api: TwilioApi
) -> None:
    base, data_dir = deployment
    texters = [callback_number(100 + n) for n in range(30)]
    threads = [
        threading.Thread(target=_post_text, args=(base, "SAFE", sender)) for sender in texters
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROCESS_WAIT_SECONDS)
    # Someone else's number is asked for, so a confirmation goes out through a job worker.
    for body in ("TALK", "2", "2", "no", "+1 202 555 0188", "1", "1"):
        _post_text(base, body, USABLE_CALLER)
    twilio_api.wait_for(1, kind="message", timeout=PROCESS_WAIT_SECONDS)

    def confirmation_counted() -> bool:
        scraped = _scrape_over_http(base)
        sent = {"kind": "confirm", "channel": "sms", "result": "sent", "reason": ""}
        return value(scraped, "helpline_texts_total", **sent) == 1

    wait_until(confirmation_counted, PROCESS_WAIT_SECONDS, what="the confirmation counted")
    # Several scrapes, each answered by either web worker, all see every webhook.
    for _ in range(6):
        scraped = _scrape_over_http(base)
        sms = {"route": "/twilio/sms", "status": "200"}
        assert value(scraped, "helpline_webhook_requests_total", **sms) == 37
        finished = {"job": "confirm_request", "outcome": "finished"}
        assert value(scraped, "helpline_jobs_total", **finished) == 1
    assert list((data_dir / "metrics" / "web").glob("*.db"))
    assert list((data_dir / "metrics" / "workers").glob("*.db"))


def test_each_webhook_logs_its_route_and_duration_at_debug(
    metrics_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text(metrics_app.test_client(), "RECOVERY")
    (record,) = [r for r in caplog.records if r.getMessage() == "webhook answered"]
    line = json.loads(MaskingJsonFormatter().format(record))
    assert line["route"] == "/twilio/sms" and line["status"] == 200
    assert 0 < line["duration_ms"] < 30_000
    assert CALLER[-7:] not in json.dumps(line) and "RECOVERY" not in json.dumps(line)
