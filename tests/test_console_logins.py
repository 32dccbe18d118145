"""Logging in to the console: guessing is slowed to a crawl, yet no stranger can lock a
counsellor out of their own browser; admins unlock; the account holder is told."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from helpline import create_app
from helpline.application.jobs import job_queue
from helpline.counsellors.audit import AuditLog
from helpline.counsellors.throttle import LoginThrottle, wait_after
from helpline.infrastructure.constants import (
    LOGIN_FIRST_DELAY_SECONDS,
    LOGIN_LOCK_SECONDS,
    LOGIN_MAX_ACCOUNT_FAILURES,
    LOGIN_MAX_FAILURES,
)
from helpline.infrastructure.proxies import parse_networks
from helpline.web.sessions import SESSION
from tests.console_helpers import (
    COUNSELLOR_PHONE,
    PASSWORD,
    add_counsellor,
    client_from,
    csrf_token,
    https_client,
    login,
    post,
)
from tests.factories import (
    FakeClock,
    make_settings,
    scan_for_numbers,
    worker_environment,
)
from tests.twilio_api import TwilioApi
from workers import jobs

WRONG = "wrong password!!"
DEVICE_COOKIE = "helpline_device"
HOME = "198.51.100.7"  # where the counsellor logs in from


def throttle(app: Flask) -> LoginThrottle:
    found: LoginThrottle = app.extensions["console"].throttle
    return found


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    """The login throttle's clock, for a test to move on by hand."""
    fake = FakeClock(time.time())
    throttle(app).clock = fake
    return fake


@pytest.fixture
def own_browser(app: Flask, alex) -> FlaskClient:
    """Alex's own browser: it has logged in before (and so holds a device cookie)."""
    browser = client_from(app, HOME)
    assert login(browser).status_code == 302
    post(browser, "/console/logout")
    assert browser.get_cookie(DEVICE_COOKIE) is not None
    return browser


def attack(app: Flask, username: str = "alex", tries: int = LOGIN_MAX_ACCOUNT_FAILURES) -> None:
    """Send wrong passwords for username, each from another address, as a botnet does."""
    for n in range(tries):
        assert login(client_from(app, f"203.0.113.{n + 1}"), username, WRONG).status_code == 401


# -- one client guessing -------------------------------------------------------------------


def test_eleventh_login_after_ten_wrong_passwords_is_refused_even_with_the_right_one(client, alex):
    for _ in range(10):
        assert login(client, "alex", WRONG).status_code == 401

    refused = login(client, "alex", PASSWORD)

    assert refused.status_code == 401
    assert client.get("/console/").status_code == 302


def test_nine_wrong_passwords_then_the_right_one_logs_in(client, alex):
    for _ in range(9):
        login(client, "alex", WRONG)

    assert login(client, "alex", PASSWORD).status_code == 302


def test_a_good_login_resets_the_count_of_wrong_passwords(client, alex):
    for _ in range(9):
        login(client, "alex", WRONG)
    login(client)
    post(client, "/console/logout")
    client.delete_cookie(DEVICE_COOKIE)  # an unknown client again: the address's count
    for _ in range(9):
        login(client, "alex", WRONG)

    assert login(client).status_code == 302


def test_waits_start_at_thirty_seconds_and_double_up_to_fifteen_minutes(client, alex, clock):
    assert [wait_after(n, LOGIN_MAX_FAILURES) for n in (9, 10, 11, 12, 15, 40)] == [
        0,
        LOGIN_FIRST_DELAY_SECONDS,
        2 * LOGIN_FIRST_DELAY_SECONDS,
        4 * LOGIN_FIRST_DELAY_SECONDS,
        LOGIN_LOCK_SECONDS,
        LOGIN_LOCK_SECONDS,
    ]
    for _ in range(LOGIN_MAX_FAILURES):
        login(client, "alex", WRONG)
    clock.advance(LOGIN_FIRST_DELAY_SECONDS - 1)
    assert login(client, "alex", PASSWORD).status_code == 401  # refused unchecked...
    clock.advance(1)
    assert login(client, "alex", WRONG).status_code == 401  # ...this one is checked
    clock.advance(2 * LOGIN_FIRST_DELAY_SECONDS - 1)
    assert login(client, "alex", PASSWORD).status_code == 401

    clock.advance(1)

    assert login(client, "alex", PASSWORD).status_code == 302


def test_one_address_trying_many_accounts_is_refused_after_thirty_wrong_passwords(app, alex):
    sprayer = client_from(app, "203.0.113.5")
    for n in range(30):  # one try per account: no account reaches its own limit
        assert login(sprayer, f"user{n}", "Summer2026!").status_code == 401

    assert login(sprayer, "alex", PASSWORD).status_code == 401
    assert login(client_from(app, HOME), "alex", PASSWORD).status_code == 302


def test_twenty_nine_wrong_passwords_from_one_address_still_let_a_good_login_in(app, alex):
    office = client_from(app, "203.0.113.5")
    for n in range(29):
        login(office, f"user{n}", WRONG)

    assert login(office, "alex", PASSWORD).status_code == 302


def test_login_limits_keep_no_address_or_username_in_redis(app, alex, redis):
    login(client_from(app, "203.0.113.5"), "someone.else", WRONG)

    keys = b" ".join(redis.keys("helpline:login:*"))
    assert len(redis.keys("helpline:login:*")) == 3  # this address, the account, the pair
    assert b"203.0.113" not in keys and b"someone" not in keys


def test_login_failures_read_the_same_for_unknown_users_wrong_passwords_and_locks(client, alex):
    def message(response) -> str:
        text = response.get_data(as_text=True)
        start = text.index('id="login-error"')
        return text[start : text.index("</p>", start)]

    unknown = message(login(client, "nobody", PASSWORD))
    wrong = message(login(client, "alex", WRONG))
    for _ in range(10):
        login(client, "alex", WRONG)
    locked = message(login(client, "alex", PASSWORD))

    assert unknown == wrong == locked


# -- many clients guessing: the lock is no weapon -------------------------------------------


def test_a_strangers_wrong_passwords_do_not_lock_a_counsellor_out_of_their_own_browser(
    app, own_browser
):
    attack(app, tries=LOGIN_MAX_ACCOUNT_FAILURES + 10)
    neighbour = client_from(app, HOME)  # a stranger behind the counsellor's own address
    for _ in range(30):
        login(neighbour, "alex", WRONG)

    assert login(own_browser).status_code == 302
    assert own_browser.get("/console/").status_code == 200


def test_after_wrong_passwords_from_many_addresses_unknown_clients_must_wait(app, alex, clock):
    attack(app)  # no address reaches its own limit, but the account does
    newcomer = client_from(app, HOME)

    assert login(newcomer).status_code == 401  # brute force stays impossible

    clock.advance(LOGIN_FIRST_DELAY_SECONDS)
    assert login(newcomer).status_code == 302


def test_a_known_device_gets_no_more_guesses_than_anyone(app, own_browser, clock):
    for _ in range(LOGIN_MAX_FAILURES):
        login(own_browser, "alex", WRONG)

    assert login(own_browser).status_code == 401

    clock.advance(LOGIN_FIRST_DELAY_SECONDS)
    assert login(own_browser).status_code == 302


def test_a_device_cookie_counts_only_for_its_own_account_and_only_unaltered(app, own_browser):
    add_counsellor(app, "sam")
    attack(app, "sam")
    assert login(own_browser, "sam", PASSWORD).status_code == 401

    cookie = own_browser.get_cookie(DEVICE_COOKIE)
    own_browser.set_cookie(DEVICE_COOKIE, cookie.value[:-4] + "AAAA")
    attack(app, "alex")
    assert login(own_browser).status_code == 401


def test_an_admin_sees_and_unlocks_an_account_slowed_by_wrong_passwords(app, alex):
    add_counsellor(app, "sam", admin=True)
    admin = client_from(app, "192.0.2.10")
    login(admin, "sam")
    attack(app)

    row = _row(admin.get("/console/admin").get_data(as_text=True), "alex")
    assert "slowed by wrong passwords until" in row
    assert post(admin, "/console/admin/counsellors/alex/unlock").status_code == 302

    assert "normal" in _row(admin.get("/console/admin").get_data(as_text=True), "alex")
    assert login(client_from(app, HOME)).status_code == 302
    entries = AuditLog(app.extensions["helpline"].store.client).recent()
    assert ("alex", "login_slowed", "") in [(e.actor, e.action, e.detail) for e in entries]
    assert ("sam", "login_unlock", "alex") in [(e.actor, e.action, e.detail) for e in entries]


def _row(page: str, username: str) -> str:
    start = page.index(f'<tr data-username="{username}">')
    return page[start : page.index("</tr>", start)]


# -- telling the account holder --------------------------------------------------------------


def test_the_account_holder_is_texted_once_and_no_job_or_key_holds_their_number(
    app: Flask,
    alex,
    redis: redis_py.Redis,
    twilio_api: TwilioApi,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_server: str,
):
    attack(app, tries=LOGIN_MAX_ACCOUNT_FAILURES + 5)
    throttle(app).unlock("alex")
    attack(app)  # a second wave the same day: no second text
    attack(app, "nobody")  # no account, nobody to tell

    queued = job_queue(redis).jobs
    assert [job.args for job in queued] == [["alex"]]
    assert scan_for_numbers(redis, [COUNSELLOR_PHONE]) == []
    with worker_environment(
        monkeypatch,
        data_dir=tmp_path / "worker",
        redis_url=redis_server,
        twilio_api_url=twilio_api.url,
    ):
        SimpleWorker([job_queue(redis)], connection=redis, serializer=JSONSerializer).work(
            burst=True
        )
        expected = jobs.context().text("sms.login_attempts", "en")

    [text] = twilio_api.messages()
    assert text.form["To"] == COUNSELLOR_PHONE and text.form["Body"] == expected


# -- where a login comes from ------------------------------------------------------------


def test_rotating_x_forwarded_for_does_not_escape_the_per_address_limit(app, alex):
    sprayer = client_from(app, "203.0.113.5")  # gunicorn reached directly: no proxy
    for n in range(30):
        sprayer.environ_base["HTTP_X_FORWARDED_FOR"] = f"192.0.2.{n + 1}"
        login(sprayer, f"user{n}", WRONG)

    sprayer.environ_base["HTTP_X_FORWARDED_FOR"] = "192.0.2.200"
    assert login(sprayer, "alex", PASSWORD).status_code == 401
    assert login(client_from(app, HOME), "alex", PASSWORD).status_code == 302


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(tmp_path, redis_server, redis):
    settings = make_settings(
        tmp_path / "var", redis_server, trusted_proxies=parse_networks("10.0.0.0/8")
    )
    app = create_app(settings)
    add_counsellor(app, "alex")
    proxy = client_from(app, "10.0.0.2")
    for n in range(30):  # the proxy appends the address it saw; anything left of it is claimed
        proxy.environ_base["HTTP_X_FORWARDED_FOR"] = f"192.0.2.{n + 1}, 203.0.113.5"
        login(proxy, f"user{n}", WRONG)

    proxy.environ_base["HTTP_X_FORWARDED_FOR"] = f"{HOME}, 203.0.113.5"
    assert login(proxy, "alex", PASSWORD).status_code == 401
    proxy.environ_base["HTTP_X_FORWARDED_FOR"] = HOME
    assert login(proxy, "alex", PASSWORD).status_code == 302


# -- https only, in production -------------------------------------------------------------


@pytest.fixture
def production(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> Flask:
    settings = make_settings(
        tmp_path / "var",
        redis_server,
        env="production",
        public_url="https://helpline.example.org",
        trusted_proxies=parse_networks("10.0.0.2"),
    )
    app = create_app(settings)
    add_counsellor(app, "alex")
    return app


def test_production_refuses_a_console_login_over_plain_http(production, redis):
    browser = https_client(production)
    form = {"username": "alex", "password": PASSWORD, "csrf_token": csrf_token(browser)}
    browser.scheme = "http"

    refused = browser.post("/console/login", data=form)

    assert refused.status_code == 403 and "https" in refused.get_data(as_text=True)
    assert list(redis.scan_iter(SESSION + "*")) == []
    assert list(redis.scan_iter("helpline:login:*")) == []  # the password was not even tried
    browser.scheme = "https"
    assert browser.post("/console/login", data=form).status_code == 302


def test_production_sends_console_pages_asked_for_over_http_to_https(production):
    response = production.test_client().get("/console/login?next=/console/")

    assert response.status_code == 308
    assert (
        response.headers["Location"] == "https://helpline.example.org/console/login?next=/console/"
    )


@pytest.mark.parametrize(
    ("peer", "status"), [("10.0.0.2", 302), ("203.0.113.9", 403)], ids=["trusted", "untrusted"]
)
def test_forwarded_https_counts_only_from_a_trusted_proxy(production, peer, status):
    browser = https_client(production, peer)
    form = {"username": "alex", "password": PASSWORD, "csrf_token": csrf_token(browser)}
    browser.scheme = "http"
    browser.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"

    response = browser.post("/console/login", data=form)

    assert response.status_code == status
    if status == 403:  # said plainly, not redirected to https over and over
        assert "HELPLINE_TRUSTED_PROXIES" in response.get_data(as_text=True)
        assert "HELPLINE_TRUSTED_PROXIES" in browser.get("/console/login").get_data(as_text=True)
