"""The local outbox: development without a Twilio account keeps texts and calls instead."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import redis as redis_py

from helpline import create_app
from helpline.application.config import load_settings
from helpline.callbacks.queue import Contact
from helpline.cli import main
from helpline.infrastructure.errors import ConfigError
from tests.console_helpers import COUNSELLOR_PHONE, add_counsellor, login
from tests.factories import (
    HELPLINE_NUMBER,
    callback_number,
    make_settings,
    worker_environment,
)
from tests.test_config import PRODUCTION
from tests.twilio_api import TwilioApi
from workers import jobs
from workers.main import queues


def test_development_without_an_account_keeps_what_it_would_send() -> None:
    assert load_settings({}).outbox == "local"
    assert load_settings({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}).outbox == "twilio"
    assert load_settings({"HELPLINE_OUTBOX": "twilio"}).outbox == "twilio"
    assert (
        load_settings({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "HELPLINE_OUTBOX": "local"}).outbox
        == "local"
    )
    with pytest.raises(ConfigError, match="must be 'local' or 'twilio'"):
        load_settings({"HELPLINE_OUTBOX": "pigeon"})


def test_production_never_keeps_texts_in_a_local_outbox() -> None:
    with pytest.raises(ConfigError, match="production sends through Twilio"):
        load_settings({**PRODUCTION, "HELPLINE_OUTBOX": "local"})


@pytest.fixture
def local(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_server: str,
    redis: redis_py.Redis,
    twilio_api: TwilioApi,
):  # type: ignore[no-untyped-def]
    """This process's jobs and commands, in development with the local outbox."""
    with worker_environment(
        monkeypatch,
        data_dir=tmp_path / "var",
        redis_url=redis_server,
        twilio_api_url=twilio_api.url,
        HELPLINE_OUTBOX="local",
    ) as env:
        yield env


def run_jobs(ctx: jobs.Context) -> None:
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    SimpleWorker(queues(ctx.client), connection=ctx.client, serializer=JSONSerializer).work(
        burst=True
    )


def cli(*args: str) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(list(args)) == 0
    return out.getvalue()


def test_a_confirmation_is_kept_in_the_outbox_and_listed_masked(
    local, twilio_api: TwilioApi
) -> None:
    ctx = jobs.context()
    contact = Contact(callback_number(3), voicemail_ok=False, texts_ok=True)
    placement = ctx.queue.enqueue(contact, channel="voice", lang="en", urgent=False, confirm=True)
    ctx.jobs.after_queued(placement.request, confirm=True)
    run_jobs(ctx)

    assert twilio_api.received() == []  # nothing reached Twilio, and nothing failed
    [kept] = ctx.local_outbox.entries()
    assert (kept.kind, kept.to, kept.from_) == ("message", callback_number(3), HELPLINE_NUMBER)
    assert ctx.queue.send_record(placement.request.id, "confirm").result == kept.sid
    assert callback_number(3).encode() not in b"".join(ctx.client.lrange("helpline:outbox", 0, -1))

    listed = cli("outbox")
    assert "text  to ***" + callback_number(3)[-3:] in listed and kept.body in listed
    assert callback_number(3) not in listed
    revealed = cli("outbox", "--reveal")
    assert callback_number(3) in revealed
    [entry] = [e for e in ctx.audit.recent() if e.action == "outbox_reveal"]
    assert entry.actor == "cli"


def test_a_bridged_call_in_the_outbox_is_played_with_simulate_bridge(local) -> None:
    ctx = jobs.context()
    settings = ctx.settings
    app = create_app(make_settings(Path(local["HELPLINE_DATA_DIR"]), settings.redis_url))
    add_counsellor(app, "alex")
    contact = Contact(callback_number(4), voicemail_ok=False, texts_ok=False)
    request = ctx.queue.enqueue(contact, channel="voice", lang="en", urgent=False).request
    ctx.queue.claim_next("alex")
    ctx.jobs.call_counsellor(request.id, "alex")
    run_jobs(ctx)
    [call] = ctx.local_outbox.entries()
    assert (call.kind, call.to) == ("call", COUNSELLOR_PHONE)

    played = cli("simulate", "bridge", "--digits", "1")

    assert "The helpline calls you on ***" + COUNSELLOR_PHONE[-3:] in played
    assert "Press 1 to be connected to the caller." in played
    assert "(the helpline dials ***" + callback_number(4)[-3:] + " and connects you)" in played
    assert callback_number(4) not in played


def test_the_admin_outbox_page_lists_what_was_kept_masked(local) -> None:
    ctx = jobs.context()
    ctx.local_outbox.messages.create(
        to=callback_number(5), from_=HELPLINE_NUMBER, body="You're number 1."
    )
    app = create_app(
        make_settings(Path(local["HELPLINE_DATA_DIR"]), ctx.settings.redis_url, outbox="local")
    )
    add_counsellor(app, "sam", admin=True)
    client = app.test_client()
    login(client, "sam")
    page = client.get("/console/admin/outbox").get_data(as_text=True)
    assert "***" + callback_number(5)[-3:] in page and "You&#39;re number 1." in page
    assert callback_number(5) not in page
    assert "Texts and calls are kept here instead of being sent" in page
