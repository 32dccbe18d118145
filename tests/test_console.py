"""The counsellor console through Flask's test client: sessions, CSRF, roles, the queue."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.jobs import URGENT_QUEUE, job_queue
from helpline.callbacks.queue import HISTORY, CallbackQueue, Contact, Outcome, Status
from helpline.counsellors.audit import AUDIT, AuditLog
from helpline.infrastructure.crypto import Sealer, lookup_key
from helpline.web.bridge import make_token
from helpline.web.console.chart import history_charts
from helpline.web.services import helpline
from helpline.web.sessions import SESSION
from tests.console_helpers import (
    COUNSELLOR_PHONE,
    PASSWORD,
    add_counsellor,
    csrf_token,
    enqueue,
    https_client,
    login,
    post,
)
from tests.factories import (
    HELPLINE_NUMBER,
    SECRET_KEY,
    WAIT_SECONDS,
    callback_number,
    join,
    make_settings,
    scan_for_numbers,
    sms_params,
    twilio_post,
)


@pytest.fixture
def logged_in(client: FlaskClient, alex) -> FlaskClient:
    assert login(client).status_code == 302
    return client


def audit(app: Flask):
    return AuditLog(app.extensions["helpline"].store.client).recent()


def location(response) -> str:
    return response.headers["Location"]


# -- sessions --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/console/", "/console/admin", "/console/requests/0123456789ab"])
def test_console_pages_without_a_session_redirect_to_login(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert location(response).startswith("/console/login?next=")


def test_live_updates_without_a_session_answer_401_not_the_queue(client, app):
    enqueue(app)

    response = client.get("/console/queue/live")

    assert response.status_code == 401
    assert "***" not in response.get_data(as_text=True)


def test_login_starts_a_new_session_with_httponly_lax_cookie(client, alex):
    client.get("/console/login")
    before = client.get_cookie("helpline_session").value

    response = login(client)

    assert response.status_code == 302 and location(response) == "/console/"
    after = client.get_cookie("helpline_session")
    assert after.value != before
    assert after.http_only and after.same_site == "Lax" and not after.secure
    assert client.get("/console/").status_code == 200


def test_production_session_cookie_is_secure_and_host_only(tmp_path, redis_server, redis):
    app = create_app(make_settings(tmp_path / "var", redis_server, env="production"))
    add_counsellor(app, "alex")
    client = https_client(app)

    response = login(client)

    cookies = {c.split("=")[0]: c for c in response.headers.getlist("Set-Cookie")}
    cookie = cookies["__Host-helpline"]
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "SameSite=Lax" in cookie
    device = cookies["__Host-helpline-device"]  # this browser, known to the account from now
    assert "; Secure" in device and "; HttpOnly" in device and "; Path=/" in device


def test_the_cookie_seen_before_login_is_worthless_after_it(client, alex, redis):
    client.get("/console/login")
    before = client.get_cookie("helpline_session").value

    login(client)

    after = client.get_cookie("helpline_session").value
    assert redis.exists(SESSION + after) and not redis.exists(SESSION + before)
    client.set_cookie("helpline_session", before)
    assert client.get("/console/").status_code == 302


def test_cookieless_login_pages_store_nothing_in_redis(app, alex, redis):
    keys = set(redis.scan_iter())

    for _ in range(50):
        page = app.test_client().get("/console/login")
        assert page.status_code == 200 and 'name="csrf_token"' in page.get_data(as_text=True)

    assert set(redis.scan_iter()) == keys


def test_a_visitor_cookie_that_was_tampered_with_is_ignored(client, alex):
    client.get("/console/login")
    token = csrf_token(client)
    forged = client.get_cookie("helpline_session").value[:-4] + "AAAA"
    client.set_cookie("helpline_session", forged)

    response = client.post(
        "/console/login", data={"username": "alex", "password": PASSWORD, "csrf_token": token}
    )

    assert response.status_code == 400  # the token belongs to a session that no longer reads
    assert client.get("/console/").status_code == 302


def test_logging_out_leaves_no_session_in_redis_and_says_so(logged_in, redis):
    assert list(redis.scan_iter(SESSION + "*"))

    response = post(logged_in, "/console/logout")

    assert list(redis.scan_iter(SESSION + "*")) == []
    page = logged_in.get(location(response)).get_data(as_text=True)
    assert "You are logged out." in page


def test_logout_ends_the_session_on_the_server(logged_in):
    old = logged_in.get_cookie("helpline_session").value

    assert post(logged_in, "/console/logout").status_code == 302

    logged_in.set_cookie("helpline_session", old)
    assert logged_in.get("/console/").status_code == 302


@pytest.mark.parametrize("field", ["_seen", "_created"])
def test_an_idle_or_too_old_session_is_ended(logged_in, redis, field):
    sid = logged_in.get_cookie("helpline_session").value
    values = json.loads(redis.get(SESSION + sid))
    values[field] = time.time() - 13 * 60 * 60
    redis.set(SESSION + sid, json.dumps(values))

    response = logged_in.get("/console/")

    assert response.status_code == 302 and "/console/login" in location(response)


def test_live_updates_do_not_keep_an_idle_session_alive(logged_in, redis):
    sid = logged_in.get_cookie("helpline_session").value
    seen = json.loads(redis.get(SESSION + sid))["_seen"]
    time.sleep(0.01)

    logged_in.get("/console/queue/live")

    assert json.loads(redis.get(SESSION + sid))["_seen"] == seen


def test_disabling_an_account_ends_its_sessions(app, logged_in):
    add_counsellor(app, "sam", admin=True)
    admin = app.test_client()
    login(admin, "sam")

    response = post(admin, "/console/admin/counsellors/alex/disabled", {"disabled": "1"})

    assert response.status_code == 302
    assert logged_in.get("/console/").status_code == 302
    assert login(app.test_client()).status_code == 401


# -- CSRF ------------------------------------------------------------------------------


def test_login_without_a_csrf_token_is_refused(client, alex):
    response = client.post("/console/login", data={"username": "alex", "password": PASSWORD})

    assert response.status_code == 400
    assert client.get("/console/").status_code == 302


@pytest.mark.parametrize("path", ["/console/take", "/console/logout", "/console/admin/purge"])
def test_console_posts_without_a_csrf_token_are_refused(app, logged_in, path):
    request = enqueue(app)

    response = logged_in.post(path)

    assert response.status_code == 400
    with app.app_context():
        assert helpline().queue.get(request.id).status is Status.WAITING
    assert logged_in.get("/console/").status_code == 200  # still logged in


def test_a_csrf_token_from_another_session_is_refused(app, logged_in, alex):
    other = app.test_client()
    foreign = csrf_token(other)

    response = logged_in.post("/console/take", data={"csrf_token": foreign})

    assert response.status_code == 400


def test_twilio_webhooks_stay_exempt_from_csrf_and_keep_their_signature_check(client):
    params = {"From": callback_number(1), "Body": "hello", "MessageSid": "SM" + "1" * 32}
    assert client.post("/twilio/sms", data=params).status_code == 403
    assert twilio_post(client, "/twilio/sms", params).status_code == 200


def test_twilio_webhooks_neither_open_nor_extend_a_console_session(logged_in, redis):
    sid = logged_in.get_cookie("helpline_session").value
    seen = json.loads(redis.get(SESSION + sid))["_seen"]
    sessions = set(redis.scan_iter(SESSION + "*"))
    time.sleep(0.01)

    response = twilio_post(logged_in, "/twilio/sms", sms_params("SAFE"))

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert set(redis.scan_iter(SESSION + "*")) == sessions
    assert json.loads(redis.get(SESSION + sid))["_seen"] == seen
    assert logged_in.get("/console/").status_code == 200  # the console session is untouched


# -- roles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/console/admin"),
        ("post", "/console/admin/purge"),
        ("post", "/console/admin/counsellors"),
        ("post", "/console/admin/counsellors/alex/duty"),
        ("post", "/console/admin/counsellors/alex/disabled"),
    ],
)
def test_a_counsellor_cannot_reach_admin_pages(app, logged_in, method, path):
    if method == "get":
        response = logged_in.get(path)
    else:
        data = {"username": "mallory", "name": "M", "phone": "+447700900555"}
        response = post(logged_in, path, {**data, "password": PASSWORD, "on_duty": "1"})

    assert response.status_code == 403
    core = app.extensions["console"].counsellors
    assert core.get("mallory") is None
    assert core.get("alex").on_duty is False
    assert "Admin</a>" not in logged_in.get("/console/").get_data(as_text=True)


def test_an_admin_adds_a_counsellor_puts_them_on_duty_and_sees_the_audit_log(app, client):
    add_counsellor(app, "sam", admin=True)
    login(client, "sam")

    post(
        client,
        "/console/admin/counsellors",
        {"username": "kim", "name": "Kim", "phone": "+1 202 555 0150", "password": PASSWORD},
    )
    post(client, "/console/admin/counsellors/kim/duty", {"on_duty": "1"})

    kim = app.extensions["console"].counsellors.get("kim")
    assert kim is not None and kim.on_duty and not kim.admin
    assert kim.phone_masked == "***150"
    page = client.get("/console/admin").get_data(as_text=True)
    assert "counsellor_add" in page and "duty_on" in page
    assert "5550150" not in page


@pytest.mark.parametrize("action", ["duty", "disabled", "unlock"])
def test_admin_actions_on_an_unknown_counsellor_say_so_and_change_nothing(app, client, action):
    add_counsellor(app, "sam", admin=True)
    login(client, "sam")

    response = post(client, f"/console/admin/counsellors/nobody/{action}", {"on_duty": "1"})

    assert response.status_code == 302 and location(response) == "/console/admin"
    assert "No such counsellor." in client.get("/console/admin").get_data(as_text=True)
    assert [e.action for e in audit(app)] == ["login"]


def test_an_admin_runs_the_retention_purge(app, client, redis):
    add_counsellor(app, "sam", admin=True)
    login(client, "sam")
    request = enqueue(app)
    with app.app_context():
        queue = helpline().queue
        queue.claim_next("sam")
        queue.record(request.id, "sam", Outcome.REACHED)
        redis.zadd("helpline:cb:closed", {request.id: time.time() - 40 * 86400})

    response = post(client, "/console/admin/purge")

    assert response.status_code == 302
    with app.app_context():
        assert helpline().queue.get(request.id) is None
    [entry] = [e for e in audit(app) if e.action == "purge"]
    assert entry.actor == "sam" and entry.detail == "1"


# -- the queue -------------------------------------------------------------------------


def test_the_queue_lists_waiting_callers_in_queue_order_with_numbers_masked(app, logged_in):
    normal = enqueue(app, 1)
    urgent = enqueue(app, 2, urgent=True)

    page = logged_in.get("/console/").get_data(as_text=True)

    assert page.index(f'data-request="{urgent.id}"') < page.index(f'data-request="{normal.id}"')
    assert "***101" in page and "***102" in page
    assert callback_number(1)[1:] not in page and callback_number(2)[1:] not in page
    assert 'id="count-urgent">1<' in page and 'id="count-normal">1<' in page
    assert "<svg" in page


def test_live_endpoint_answers_204_until_the_queue_changes(app, logged_in):
    with app.app_context():
        version = helpline().queue.version()

    assert logged_in.get(f"/console/queue/live?v={version}").status_code == 204
    request = enqueue(app)
    changed = logged_in.get(f"/console/queue/live?v={version}")

    assert changed.status_code == 200
    assert f'data-request="{request.id}"' in changed.get_data(as_text=True)


def test_two_counsellors_pressing_take_next_together_get_different_callers(app):
    first, second = enqueue(app, 1), enqueue(app, 2)
    clients = []
    for name in ("alex", "bea"):
        add_counsellor(app, name)
        client = app.test_client()
        login(client, name)
        clients.append((client, csrf_token(client, "/console/")))
    barrier = threading.Barrier(2, timeout=WAIT_SECONDS)
    taken: dict[int, str] = {}

    def press(index: int) -> None:
        client, token = clients[index]
        barrier.wait()
        response = client.post("/console/take", data={"csrf_token": token})
        taken[index] = location(response).rsplit("/", 1)[-1]

    threads = [threading.Thread(target=press, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    join(threads)

    assert sorted(taken.values()) == sorted([first.id, second.id])


def test_take_next_claims_then_reveals_the_number_and_every_view_is_audited(app, logged_in):
    request = enqueue(app, 7)
    assert callback_number(7) not in logged_in.get("/console/").get_data(as_text=True)

    taken = post(logged_in, "/console/take")
    page = logged_in.get(location(taken)).get_data(as_text=True)
    logged_in.get(location(taken))

    assert location(taken) == f"/console/requests/{request.id}"
    assert callback_number(7) in page
    actions = [(e.actor, e.action, e.request) for e in reversed(audit(app))]
    assert actions[-3:] == [
        ("alex", "claim", request.id),
        ("alex", "reveal", request.id),
        ("alex", "reveal", request.id),
    ]


@pytest.mark.parametrize(
    ("channel", "asked_by", "texts_by", "texts"),
    [
        ("voice", "call", "sms", "text"),
        ("sms", "text", "sms", "text"),
        ("whatsapp", "WhatsApp", "whatsapp", "WhatsApp"),
    ],
)
def test_the_queue_and_the_request_page_name_the_channel(
    app, logged_in, channel, asked_by, texts_by, texts
):
    with app.app_context():
        helpline().queue.enqueue(
            Contact(callback_number(3), voicemail_ok=True, texts_ok=True, texts_by=texts_by),
            channel=channel,
            lang="en",
            urgent=False,
        )
    row = logged_in.get("/console/").get_data(as_text=True)
    assert f'<td data-label="Channel">{asked_by}</td>' in row

    page = logged_in.get(location(post(logged_in, "/console/take"))).get_data(as_text=True)
    assert f"<dt>Asked by</dt><dd>{asked_by}</dd>" in page
    assert f"<dt>Texts OK</dt><dd>yes, by {texts}</dd>" in page


def test_a_request_claimed_by_someone_else_is_not_shown(app, logged_in):
    request = enqueue(app)
    with app.app_context():
        helpline().queue.claim_next("bea")

    response = logged_in.get(f"/console/requests/{request.id}")

    assert response.status_code == 403
    assert not [e for e in audit(app) if e.action == "reveal"]


def test_take_next_with_nobody_waiting_says_so(logged_in):
    response = post(logged_in, "/console/take")

    assert location(response) == "/console/"
    assert "Nobody is waiting" in logged_in.get("/console/").get_data(as_text=True)


def test_release_puts_the_caller_back_in_their_place(app, logged_in):
    request = enqueue(app)
    post(logged_in, "/console/take")

    post(logged_in, f"/console/requests/{request.id}/release")

    with app.app_context():
        assert helpline().queue.position(request.id) == 1


def test_no_answer_schedules_a_retry_and_queues_the_missed_call_text(app, logged_in, redis):
    request = enqueue(app)
    post(logged_in, "/console/take")

    post(logged_in, f"/console/requests/{request.id}/outcome", {"outcome": "no_answer"})

    with app.app_context():
        after = helpline().queue.get(request.id)
    assert after.status is Status.WAITING and after.due_at is not None and after.attempts == 1
    job = job_queue(redis).fetch_job(f"missed-{request.id}-1")
    assert job is not None and job.func_name == "workers.jobs.missed_call_text"
    assert job.args == [request.id, 1]


def test_call_back_later_takes_a_time_in_the_helplines_zone(app, logged_in):
    request = enqueue(app)
    post(logged_in, "/console/take")

    post(
        logged_in,
        f"/console/requests/{request.id}/outcome",
        {"outcome": "call_back_later", "call_back_at": "2099-01-02T10:30"},
    )

    with app.app_context():
        after = helpline().queue.get(request.id)
    # London keeps UTC in winter.
    assert after.due_at == datetime(2099, 1, 2, 10, 30, tzinfo=UTC).timestamp()


def test_call_now_queues_an_urgent_bridge_job_with_ids_only(app, logged_in, redis):
    request = enqueue(app)
    post(logged_in, "/console/take")

    post(logged_in, f"/console/requests/{request.id}/call")

    # Urgent: a counsellor waiting for their phone does not wait behind routine texts.
    assert job_queue(redis).get_jobs() == []
    [job] = job_queue(redis, URGENT_QUEUE).get_jobs()
    assert job.func_name == "workers.bridge.call_counsellor"
    assert job.args == [request.id, "alex"]
    assert ("alex", "call", request.id) in [(e.actor, e.action, e.request) for e in audit(app)]


def test_call_status_is_shown_to_its_counsellor_only_without_a_number_or_an_audit(
    app, logged_in, redis
):
    request = enqueue(app)
    post(logged_in, "/console/take")
    post(logged_in, f"/console/requests/{request.id}/call")
    reveals = [e for e in audit(app) if e.action == "reveal"]
    sid = logged_in.get_cookie("helpline_session").value
    seen = json.loads(redis.get(SESSION + sid))["_seen"]
    time.sleep(0.01)

    response = logged_in.get(f"/console/requests/{request.id}/call-status")

    assert response.status_code == 200
    assert response.get_json() == {"status": "starting the call", "caller": ""}
    assert response.headers["Cache-Control"] == "no-store"
    assert [e for e in audit(app) if e.action == "reveal"] == reveals
    assert json.loads(redis.get(SESSION + sid))["_seen"] == seen  # polling is not activity
    add_counsellor(app, "sam")
    other = app.test_client()
    login(other, "sam")
    assert other.get(f"/console/requests/{request.id}/call-status").status_code == 403


def test_notes_are_stored_encrypted_and_shown_to_the_counsellor(app, logged_in, redis):
    request = enqueue(app)
    post(logged_in, "/console/take")

    post(logged_in, f"/console/requests/{request.id}/notes", {"note": "Prefers evenings"})

    page = logged_in.get(f"/console/requests/{request.id}").get_data(as_text=True)
    assert "Prefers evenings" in page
    stored = b"".join(redis.hgetall(f"helpline:cb:req:{request.id}").values())
    assert b"Prefers evenings" not in stored


def test_no_phone_number_in_the_audit_log_or_anywhere_in_redis(app, logged_in, redis):
    request = enqueue(app, 9)
    post(logged_in, "/console/take")
    logged_in.get(f"/console/requests/{request.id}")
    post(logged_in, f"/console/requests/{request.id}/notes", {"note": "call after six"})
    post(logged_in, f"/console/requests/{request.id}/call")
    post(logged_in, f"/console/requests/{request.id}/outcome", {"outcome": "reached"})

    assert {e.action for e in audit(app)} >= {"login", "claim", "reveal", "note", "call"}
    assert scan_for_numbers(redis, [callback_number(9), COUNSELLOR_PHONE]) == []
    assert redis.exists(AUDIT)


# -- the bridge webhook ----------------------------------------------------------------


def _bridge_token(app: Flask, rid: str, who: str = "alex", now: float | None = None) -> str:
    return make_token(app.extensions["helpline"].sealer, rid, who, now)


def test_bridge_asks_the_counsellor_to_press_1_then_dials_the_caller(app, client):
    request = enqueue(app, 4)
    with app.app_context():
        helpline().queue.claim_next("alex")
    token = _bridge_token(app, request.id)
    answered = twilio_post(client, f"/twilio/bridge/{token}/answer", {"CallSid": "CA" + "2" * 32})

    root = ET.fromstring(answered.get_data(as_text=True))
    gather = root.find("Gather")
    assert gather.find("Say").text == "Helpline call back. Press 1 to be connected to the caller."
    assert gather.attrib["numDigits"] == "1" and gather.attrib["actionOnEmptyResult"] == "true"
    assert root.find("Dial") is None  # nobody is dialled before the counsellor accepts
    accept = urllib.parse.urlsplit(gather.attrib["action"]).path

    response = twilio_post(client, accept, {"CallSid": "CA" + "2" * 32, "Digits": "1"})

    dial = ET.fromstring(response.get_data(as_text=True)).find("Dial")
    assert dial.attrib["callerId"] == HELPLINE_NUMBER
    assert dial.find("Number").text == callback_number(4)
    assert callback_number(4)[1:] not in accept


def test_a_voicemail_that_answers_the_counsellors_phone_is_never_bridged(app, logged_in, client):
    request = enqueue(app, 4)
    post(logged_in, "/console/take")
    token = _bridge_token(app, request.id)
    accept = f"/twilio/bridge/{token}/accept"

    # Nothing pressed within the time (a voicemail greeting plays on): Twilio posts no digits.
    response = twilio_post(client, accept, {"CallSid": "CA" + "3" * 32, "Digits": ""})

    root = ET.fromstring(response.get_data(as_text=True))
    assert root.find("Dial") is None and root.find("Hangup") is not None
    assert "the caller was not called" in root.find("Say").text
    status = logged_in.get(f"/console/requests/{request.id}/call-status").get_json()
    assert status["status"] == "not accepted: the caller was not called"


def test_the_callers_leg_stays_visible_after_the_counsellors_ends(app, logged_in, client):
    request = enqueue(app, 4)
    post(logged_in, "/console/take")
    token = _bridge_token(app, request.id)
    twilio_post(
        client, f"/twilio/bridge/{token}/accept", {"CallSid": "CA" + "4" * 32, "Digits": "1"}
    )
    twilio_post(client, f"/twilio/bridge/{token}/dialled", {"DialCallStatus": "no-answer"})
    twilio_post(client, f"/twilio/bridge/{token}/status", {"CallStatus": "completed"})

    status = logged_in.get(f"/console/requests/{request.id}/call-status").get_json()
    assert status == {"status": "your phone completed", "caller": "no-answer"}
    page = logged_in.get(f"/console/requests/{request.id}").get_data(as_text=True)
    assert 'The caller: <span data-leg="caller">no-answer</span>' in page
    # The number is shown as text to copy, not a link that dials from a personal phone.
    assert "tel:" not in page and f'<span id="phone">{callback_number(4)}</span>' in page


def test_bridge_answer_unsigned_is_refused(app, client):
    request = enqueue(app)
    response = client.post(f"/twilio/bridge/{_bridge_token(app, request.id)}/answer")

    assert response.status_code == 403


@pytest.mark.parametrize("case", ["expired", "released", "altered"])
def test_bridge_answer_with_a_stale_link_hangs_up_without_dialling(app, client, case):
    request = enqueue(app)
    with app.app_context():
        helpline().queue.claim_next("alex")
        if case == "released":
            helpline().queue.release(request.id, "alex")
    token = _bridge_token(app, request.id, now=time.time() - 3600 if case == "expired" else None)
    if case == "altered":
        token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

    response = twilio_post(client, f"/twilio/bridge/{token}/answer", {})

    root = ET.fromstring(response.get_data(as_text=True))
    assert response.status_code == 200
    assert root.find("Dial") is None and root.find("Hangup") is not None


def test_the_charts_plot_the_last_24_hours_of_samples_and_say_when_there_are_none(redis):
    now = 1_800_000_000.0
    queue = CallbackQueue(redis, Sealer(SECRET_KEY), lookup_key(SECRET_KEY))
    assert "no samples yet" in history_charts(queue, now)[0]
    redis.zadd(HISTORY, {f"{now - 3600:.0f}:1:2:600": now - 3600, "garbage": now})
    redis.zadd(HISTORY, {f"{now - 30 * 3600:.0f}:9:9:9999": now - 30 * 3600})

    depth, longest = history_charts(queue, now)

    assert "Waiting (max 3 people)" in depth and "<polyline" in depth
    assert "Longest wait (max 10 min)" in longest


@pytest.mark.parametrize(
    ("waiting", "longest", "depth_label", "wait_label"),
    [
        (0, 0, "Waiting (max 0 people)", "Longest wait (max 0 min)"),
        (1, 30, "Waiting (max 1 person)", "Longest wait (max under 1 min)"),
        (2, 60, "Waiting (max 2 people)", "Longest wait (max 1 min)"),
    ],
)
def test_every_chart_label_counts_people_and_minutes_in_plain_english(
    redis, waiting, longest, depth_label, wait_label
):
    now = 1_800_000_000.0
    queue = CallbackQueue(redis, Sealer(SECRET_KEY), lookup_key(SECRET_KEY))
    redis.zadd(HISTORY, {f"{now - 60:.0f}:0:{waiting}:{longest}": now - 60})

    depth, wait = history_charts(queue, now)

    assert depth_label in depth and wait_label in wait
    summary = depth_label.replace("(max ", "highest ").rstrip(")").replace("Waiting ", "Waiting: ")
    assert f'aria-label="{summary} in the last 24 hours"' in depth


def test_a_bridge_webhook_that_fails_answers_a_plain_sentence_not_an_error(app, client, redis):
    request = enqueue(app, 5)
    with app.app_context():
        helpline().queue.claim_next("alex")
    redis.hset(f"helpline:cb:req:{request.id}", "phone", "1garbled")  # cannot be opened

    response = twilio_post(client, f"/twilio/bridge/{_bridge_token(app, request.id)}/answer", {})

    root = ET.fromstring(response.get_data(as_text=True))
    assert response.status_code == 200
    assert root.find("Say").text.startswith("Sorry, this call could not be connected")
    assert root.find("Dial") is None


def test_the_home_page_leads_to_the_console(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/console/"


def test_the_console_names_languages_as_their_speakers_do(app, logged_in):
    with app.app_context():
        contact = Contact(callback_number(4), voicemail_ok=True, texts_ok=True)
        helpline().queue.enqueue(contact, channel="sms", lang="es", urgent=False)
    assert '<td data-label="Language">Español</td>' in logged_in.get("/console/").get_data(
        as_text=True
    )
    page = logged_in.get(location(post(logged_in, "/console/take"))).get_data(as_text=True)
    assert "<dt>Language</dt><dd>Español</dd>" in page


# -- returning callers and live calls ---------------------------------------------------


def test_a_returning_caller_shows_their_earlier_requests_and_notes_on_the_record(
    app, logged_in, redis
):
    first = enqueue(app, 5)
    post(logged_in, "/console/take")
    post(logged_in, f"/console/requests/{first.id}/notes", {"note": "Asked about naloxone"})
    post(logged_in, f"/console/requests/{first.id}/outcome", {"outcome": "reached"})
    again = enqueue(app, 5)
    stranger = enqueue(app, 6)

    rows = logged_in.get("/console/").get_data(as_text=True)
    assert rows.count("called before") == 1
    assert rows.index("called before") > rows.index(f'data-request="{again.id}"')
    assert rows.index("called before") < rows.index(f'data-request="{stranger.id}"')

    page = logged_in.get(location(post(logged_in, "/console/take"))).get_data(as_text=True)
    assert "This caller before" in page
    assert "Reached: we spoke" in page and "handled by alex" in page
    assert "Asked about naloxone" in page
    history = [e for e in audit(app) if e.action == "history"]
    assert [(e.actor, e.request, e.detail) for e in history] == [("alex", again.id, first.id)]
    # Found by the keyed hash: the index holds no number.
    assert scan_for_numbers(redis, [callback_number(5)]) == []


def test_a_first_time_caller_has_no_history_and_nothing_is_audited_as_one(app, logged_in):
    enqueue(app, 7)
    page = logged_in.get(location(post(logged_in, "/console/take"))).get_data(as_text=True)
    assert "This caller before" not in page
    assert not [e for e in audit(app) if e.action == "history"]


def test_the_purge_forgets_a_callers_earlier_request(app, logged_in):
    first = enqueue(app, 8)
    post(logged_in, "/console/take")
    post(logged_in, f"/console/requests/{first.id}/outcome", {"outcome": "reached"})
    again = enqueue(app, 8)
    with app.app_context():
        queue = helpline().queue
        assert [r.id for r in queue.earlier(again.id)] == [first.id]
        queue.purge(retention=-60)  # everything closed is past its time
        assert queue.earlier(again.id) == []
        assert queue.times_before([again.id]) == {again.id: 0}


def test_a_counsellor_on_a_live_call_cannot_start_another(app, logged_in, client):
    request = enqueue(app, 3)
    post(logged_in, "/console/take")
    post(logged_in, f"/console/requests/{request.id}/call")
    post(logged_in, f"/console/requests/{request.id}/outcome", {"outcome": "reached"})
    enqueue(app, 4)

    # The take-next button says why it cannot be pressed, and pressing it anyway is refused.
    queue_page = logged_in.get("/console/").get_data(as_text=True)
    assert "You are on a call through the helpline now." in queue_page
    assert "disabled" in queue_page.split("Take next")[0].rsplit("<button", 1)[1]
    refused = post(logged_in, "/console/take")
    assert location(refused) == "/console/"
    assert "You are on a call" in logged_in.get("/console/").get_data(as_text=True)
    with app.app_context():
        assert helpline().queue.counts()["claimed"] == 0

    # Twilio reports the counsellor's leg has ended: they can take the next caller.
    path = f"/twilio/bridge/{_bridge_token(app, request.id)}/status"
    assert twilio_post(client, path, {"CallStatus": "completed"}).status_code == 204
    taken = post(logged_in, "/console/take")
    assert location(taken).startswith("/console/requests/")


def test_a_second_call_now_during_a_live_call_is_refused(app, logged_in, redis):
    request = enqueue(app, 2)
    post(logged_in, "/console/take")
    post(logged_in, f"/console/requests/{request.id}/call")
    post(logged_in, f"/console/requests/{request.id}/call")
    assert len(job_queue(redis, URGENT_QUEUE).get_jobs()) == 1
    page = logged_in.get(f"/console/requests/{request.id}").get_data(as_text=True)
    assert "You are on a call through the helpline now." in page


# -- blocking a caller from call backs --------------------------------------------------


def test_an_admin_blocks_a_caller_from_their_page_and_lifts_it_from_the_admin_page(
    app, client, redis
):
    add_counsellor(app, "sam", admin=True)
    login(client, "sam")
    request = enqueue(app, 11)
    post(client, "/console/take")
    page = client.get(f"/console/requests/{request.id}").get_data(as_text=True)
    assert "Block this caller" in page

    refused = post(client, f"/console/requests/{request.id}/block", {"reason": " ", "days": "7"})
    assert "Not blocked: say why the caller is blocked." in client.get(location(refused)).get_data(
        as_text=True
    )
    post(client, f"/console/requests/{request.id}/block", {"reason": "Abusive calls", "days": "7"})
    with app.app_context():
        assert helpline().blocks.blocked(callback_number(11))
    assert "This caller is blocked from call backs" in client.get(
        f"/console/requests/{request.id}"
    ).get_data(as_text=True)

    admin = client.get("/console/admin").get_data(as_text=True)
    masked = "***" + callback_number(11)[-3:]
    assert f"Unblock {masked}" in admin and "Abusive calls" in admin
    assert callback_number(11)[-7:] not in admin
    assert scan_for_numbers(redis, [callback_number(11)]) == []
    assert not any(b"Abusive" in value for value in redis.hvals(redis.keys("helpline:blocks:*")[0]))

    with app.app_context():
        [block] = helpline().blocks.all()
    post(client, f"/console/admin/blocks/{block.who}/remove")
    with app.app_context():
        assert not helpline().blocks.blocked(callback_number(11))
    actions = [(e.actor, e.action, e.detail) for e in audit(app)]
    assert ("sam", "block", masked) in actions and ("sam", "unblock", masked) in actions


def test_a_counsellor_may_block_only_where_the_helpline_allows_it(app, logged_in, tmp_path):
    request = enqueue(app, 12)
    post(logged_in, "/console/take")
    assert "Block this caller" not in logged_in.get(f"/console/requests/{request.id}").get_data(
        as_text=True
    )
    response = post(logged_in, f"/console/requests/{request.id}/block", {"reason": "x"})
    assert response.status_code == 403

    allowed = create_app(app.config["HELPLINE_SETTINGS"].with_overrides(counsellors_may_block=True))
    client = allowed.test_client()
    login(client)
    post(client, f"/console/requests/{request.id}/block", {"reason": "Threats", "days": "30"})
    with allowed.app_context():
        assert helpline().blocks.blocked(callback_number(12))


def test_a_counsellor_goes_on_and_off_duty_and_sees_the_hours(tmp_path, redis_server, redis):
    hours = "Mon-Fri 09:00-21:00; Sat,Sun 10:00-16:00"
    app = create_app(make_settings(tmp_path / "var", redis_server, hours=hours))
    add_counsellor(app, "alex")
    client = app.test_client()
    login(client)

    page = client.get("/console/").get_data(as_text=True)
    assert "Call back hours: Mon-Fri 09:00-21:00; Sat-Sun 10:00-16:00 (Europe/London time)" in page
    assert "You are off duty." in page

    post(client, "/console/duty", {"on_duty": "1"})
    assert app.extensions["console"].counsellors.get("alex").on_duty
    assert "Go off duty" in client.get("/console/").get_data(as_text=True)
    post(client, "/console/duty", {"on_duty": "0"})
    assert not app.extensions["console"].counsellors.get("alex").on_duty
    actions = [(e.actor, e.action, e.detail) for e in audit(app)]
    assert ("alex", "duty_on", "alex") in actions and ("alex", "duty_off", "alex") in actions


# -- what a counsellor sees when something goes wrong -----------------------------------

WERKZEUG_PAGE = "<!doctype html>\n<html lang=en>\n<title>"


def _console_page(response, status: int, heading: str) -> str:  # type: ignore[no-untyped-def]
    """Assert response is the console's own error page with heading; return its text."""
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert f"<h1>{heading}</h1>" in html
    assert "console.css" in html and 'href="/console/"' in html  # styled, with a way back
    assert not html.startswith(WERKZEUG_PAGE) and "Traceback" not in html
    return html


def test_an_unknown_console_address_is_a_friendly_page_not_found(client, logged_in):
    response = logged_in.get("/console/requests/no-such-request/nowhere")

    html = _console_page(response, 404, "Page not found")
    assert "The link may be old" in html


def test_a_counsellor_opening_the_admin_page_is_told_it_is_for_admins(logged_in):
    _console_page(logged_in.get("/console/admin"), 403, "Not available to you")


def test_a_form_the_console_cannot_read_is_refused_on_a_console_page(client):
    response = client.post("/console/login", data={"note": "x" * 2_000_000})

    html = _console_page(response, 413, "That did not go through")
    assert "could not use what the browser sent" in html
    _console_page(client.delete("/console/"), 405, "That did not go through")


def test_a_console_failure_is_a_plain_apology_without_any_detail(logged_in, monkeypatch):
    def broken(*_args: object) -> None:
        raise ValueError("secret detail +447700900123")

    monkeypatch.setattr("helpline.web.console.views.history_charts", broken)

    html = _console_page(logged_in.get("/console/"), 500, "Something went wrong")
    assert "secret detail" not in html and "ValueError" not in html


def test_redis_going_away_mid_shift_says_so_plainly_and_webhooks_keep_their_failsafe(
    app, logged_in, tmp_path
):
    assert logged_in.get("/console/").status_code == 200
    pool = app.extensions["redis"].connection_pool
    pool.disconnect()
    pool.connection_kwargs["path"] = str(tmp_path / "gone.sock")  # Redis is gone
    pool.reset()

    html = _console_page(logged_in.get("/console/"), 503, "The console cannot reach its data")
    assert "reload this page" in html
    texted = twilio_post(app.test_client(), "/twilio/sms", sms_params("HELP"))
    assert texted.status_code == 200 and "<Message>" in texted.get_data(as_text=True)
    assert "console" not in texted.get_data(as_text=True)


def test_outside_the_console_errors_keep_their_plain_answers(client):
    assert client.get("/no-such-page").get_data(as_text=True).startswith(WERKZEUG_PAGE)
    hook = client.post("/twilio/no-such-hook")
    assert hook.status_code == 404 and "console.css" not in hook.get_data(as_text=True)
