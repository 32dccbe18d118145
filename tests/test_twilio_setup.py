"""`helpline twilio configure`: the number's webhooks set through the real Twilio client.

Each test runs the command as an operator would, with TWILIO_API_URL pointing the real
twilio client at the loopback stand-in, which holds the account's numbers.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from helpline.counsellors.audit import AuditLog
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, HELPLINE_NUMBER, SECRET_KEY, run_helpline
from tests.twilio_api import TwilioApi

PUBLIC = "https://helpline.example.org"
# What the stand-in's new number points at, as a number bought in the console does.
DEMO_VOICE = "https://demo.twilio.com/welcome/voice/"
DEMO_SMS = "https://demo.twilio.com/welcome/sms/reply"

OURS = {
    "voice_url": f"{PUBLIC}/twilio/voice",
    "voice_method": "POST",
    "voice_fallback_url": f"{PUBLIC}/twilio/voice/fallback",
    "voice_fallback_method": "POST",
    "status_callback": f"{PUBLIC}/twilio/voice/status",
    "status_callback_method": "POST",
    "sms_url": f"{PUBLIC}/twilio/sms",
    "sms_method": "POST",
    "sms_fallback_url": f"{PUBLIC}/twilio/sms/fallback",
    "sms_fallback_method": "POST",
    "voice_application_sid": "",
    "sms_application_sid": "",
}


@pytest.fixture
def env(tmp_path: Path, twilio_api: TwilioApi) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith(("HELPLINE_", "TWILIO_"))}
    values.pop("PUBLIC_URL", None)
    values.update(
        HELPLINE_DATA_DIR=str(tmp_path / "var"),
        SECRET_KEY=SECRET_KEY,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_URL=twilio_api.url,
        HELPLINE_PHONE_NUMBER=HELPLINE_NUMBER,
        PUBLIC_URL=PUBLIC,
    )
    return values


def configure(env: dict[str, str], *args: str, **changes: str) -> subprocess.CompletedProcess[str]:
    return run_helpline("twilio", "configure", *args, env={**env, **changes})


def updates(api: TwilioApi) -> list[dict[str, str]]:
    """The forms of every update the stand-in received for a number."""
    return [r.form for r in api.received("number") if r.form]


def test_configure_points_every_webhook_at_public_url_and_prints_each_change(env, twilio_api):
    sid = twilio_api.add_number(HELPLINE_NUMBER)

    done = configure(env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{HELPLINE_NUMBER} ({sid}) on Twilio account {ACCOUNT_SID}:",
        f'  changed  voice URL ("A call comes in"): {DEMO_VOICE} \u2192 {PUBLIC}/twilio/voice',
        '  changed  voice fallback ("Primary handler fails"): (none) \u2192 '
        f"{PUBLIC}/twilio/voice/fallback",
        f"  changed  call status changes: (none) \u2192 {PUBLIC}/twilio/voice/status",
        f'  changed  messaging URL ("A message comes in"): {DEMO_SMS} \u2192 {PUBLIC}/twilio/sms',
        '  changed  messaging fallback ("Primary handler fails"): (none) \u2192 '
        f"{PUBLIC}/twilio/sms/fallback",
        "5 setting(s) changed, 7 already right",
    ]
    number = twilio_api.number(sid)
    assert {field: number[field] for field in OURS} == OURS
    # One update, carrying exactly what needed changing, in Twilio's parameter names.
    assert updates(twilio_api) == [
        {
            "VoiceUrl": f"{PUBLIC}/twilio/voice",
            "VoiceFallbackUrl": f"{PUBLIC}/twilio/voice/fallback",
            "StatusCallback": f"{PUBLIC}/twilio/voice/status",
            "SmsUrl": f"{PUBLIC}/twilio/sms",
            "SmsFallbackUrl": f"{PUBLIC}/twilio/sms/fallback",
        }
    ]

    again = configure(env)

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "0 setting(s) changed, 12 already right"
    assert len(updates(twilio_api)) == 1  # nothing to change: nothing sent


def test_configure_takes_off_a_twiml_app_and_get_methods_that_would_bypass_our_urls(
    env, twilio_api
):
    sid = twilio_api.add_number(
        HELPLINE_NUMBER, voice_application_sid="AP" + "1" * 32, sms_method="GET"
    )

    done = configure(env)

    assert done.returncode == 0, done.stderr
    assert "  changed  messaging URL method: GET \u2192 POST" in done.stdout.splitlines()
    assert (
        f"  changed  voice TwiML App (overrides the URLs): AP{'1' * 32} \u2192 (none)"
        in done.stdout.splitlines()
    )
    number = twilio_api.number(sid)
    assert {field: number[field] for field in OURS} == OURS


def test_check_changes_nothing_and_fails_until_the_number_is_configured(env, twilio_api):
    sid = twilio_api.add_number(HELPLINE_NUMBER)

    before = configure(env, "--check")

    assert before.returncode == 1
    lines = before.stdout.splitlines()
    wrong = f'  wrong  voice URL ("A call comes in"): {DEMO_VOICE}, not {PUBLIC}/twilio/voice'
    assert wrong in lines
    assert "  ok     voice URL method: POST" in lines
    assert lines[-1] == (
        "5 of 12 settings are not as they should be; `helpline twilio configure` sets them"
    )
    assert updates(twilio_api) == []
    assert twilio_api.number(sid)["voice_url"] == DEMO_VOICE

    assert configure(env).returncode == 0
    after = configure(env, "--check")

    assert after.returncode == 0, after.stdout
    assert after.stdout.splitlines()[-1] == f"all 12 settings point at {PUBLIC}"


def test_number_option_configures_that_number_only_and_never_a_partial_match(env, twilio_api):
    other = "+12025550142"
    longer = twilio_api.add_number(other + "9")  # Twilio's filter matches it too
    sid = twilio_api.add_number(other)
    ours = twilio_api.add_number(HELPLINE_NUMBER)

    done = configure(env, "--number", other)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{other} ({sid}) on Twilio account {ACCOUNT_SID}:"
    assert twilio_api.number(sid)["voice_url"] == f"{PUBLIC}/twilio/voice"
    assert twilio_api.number(longer)["voice_url"] == DEMO_VOICE
    assert twilio_api.number(ours)["voice_url"] == DEMO_VOICE


def test_a_password_in_public_url_reaches_twilio_but_is_never_printed(env, twilio_api):
    sid = twilio_api.add_number(HELPLINE_NUMBER)
    password = secrets.token_hex(8)

    done = configure(env, PUBLIC_URL=f"https://twilio:{password}@helpline.example.org")

    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    assert (
        '  changed  voice URL ("A call comes in"): '
        f"{DEMO_VOICE} \u2192 https://***@helpline.example.org/twilio/voice"
    ) in done.stdout.splitlines()
    expected = f"https://twilio:{password}@helpline.example.org/twilio/voice"
    assert twilio_api.number(sid)["voice_url"] == expected


def test_plain_http_public_url_is_configured_in_development_with_a_warning(env, twilio_api):
    twilio_api.add_number(HELPLINE_NUMBER)

    done = configure(env, PUBLIC_URL="http://abc.tunnel.example")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "warning: PUBLIC_URL http://abc.tunnel.example is plain http: Twilio would send "
        "callers' numbers and messages unencrypted; use an https:// address outside development"
    )


@pytest.mark.parametrize(
    ("args", "changes", "says"),
    [
        (
            [],
            {"TWILIO_ACCOUNT_SID": ""},
            "helpline: no Twilio credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to "
            "the Account SID and Auth Token shown in the Twilio console",
        ),
        (
            [],
            {"TWILIO_AUTH_TOKEN": "not-the-right-token-at-all-0123456"},
            "helpline: Twilio refused the credentials (HTTP 401): check TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN against the Twilio console",
        ),
        (
            ["--number", "+12025550143"],
            {},
            f"helpline: +12025550143 is not a number on the Twilio account {ACCOUNT_SID}: check "
            "HELPLINE_PHONE_NUMBER (or --number) and that the credentials are this account's",
        ),
        (
            ["--number", "020 7946 0123"],
            {},
            "helpline: '020 7946 0123' is not a phone number in E.164 form: '+', country code "
            "and number, no spaces, such as +442079460123",
        ),
        (
            [],
            {"PUBLIC_URL": ""},
            "helpline: PUBLIC_URL is not set: set it to the https:// address at which Twilio "
            "reaches this service, such as https://helpline.example.org",
        ),
        (
            [],
            {"TWILIO_API_URL": "http://127.0.0.1:9"},
            "helpline: cannot reach Twilio's API at http://127.0.0.1:9 "
            "(no answer, or the network failed)",
        ),
    ],
    ids=["no credentials", "wrong token", "not our number", "not E.164", "no PUBLIC_URL", "down"],
)
def test_what_is_wrong_is_said_plainly_with_a_non_zero_exit_and_nothing_changed(
    env, twilio_api, args, changes, says
):
    sid = twilio_api.add_number(HELPLINE_NUMBER)

    for check in ([], ["--check"]):
        done = configure(env, *args, *check, **changes)

        assert done.returncode == 1
        assert done.stderr.strip() == says
        assert done.stdout == ""
    assert updates(twilio_api) == []
    assert twilio_api.number(sid)["voice_url"] == DEMO_VOICE
    assert AUTH_TOKEN not in done.stderr


def test_production_refuses_a_public_url_that_is_not_https(env, twilio_api):
    twilio_api.add_number(HELPLINE_NUMBER)

    done = configure(
        env,
        HELPLINE_ENV="production",
        SECRET_KEY=secrets.token_hex(32),
        REDIS_URL="redis://127.0.0.1:6379/0",
        PUBLIC_URL="http://helpline.example.org",
    )

    assert done.returncode == 1
    assert "PUBLIC_URL must be the https:// address Twilio and counsellors use" in done.stderr
    assert updates(twilio_api) == []


def test_a_configure_that_changes_something_is_audited_as_cli(env, twilio_api, redis_server, redis):
    twilio_api.add_number(HELPLINE_NUMBER)
    env = {**env, "REDIS_URL": redis_server}

    def audited() -> list[tuple[str, str, str]]:
        return [(e.actor, e.action, e.detail) for e in AuditLog(redis).recent()]

    assert configure(env, "--check").returncode == 1
    assert audited() == []  # a check changes nothing
    assert configure(env).returncode == 0
    assert audited() == [("cli", "twilio_configure", "5")]
    assert configure(env).returncode == 0
    assert audited() == [("cli", "twilio_configure", "5")]  # nothing to change: nothing new


def test_a_change_made_on_twilio_is_reported_even_when_it_cannot_be_audited(env, twilio_api):
    sid = twilio_api.add_number(HELPLINE_NUMBER)

    done = configure(env, REDIS_URL="redis://127.0.0.1:1/0")

    assert done.returncode == 0, done.stderr
    assert "not written to the audit log: cannot reach Redis" in done.stderr
    assert done.stdout.splitlines()[-1] == "5 setting(s) changed, 7 already right"
    assert twilio_api.number(sid)["voice_url"] == f"{PUBLIC}/twilio/voice"
