from __future__ import annotations

import ipaddress
import json
import os
import random
import stat
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpline.application.config import load_settings, secret_weakness
from helpline.infrastructure.errors import ConfigError
from helpline.infrastructure.logs import MaskingJsonFormatter
from helpline.infrastructure.privacy import mask_phone, mask_text
from tests.factories import run_helpline

PRODUCTION = {
    "HELPLINE_ENV": "production",
    "TWILIO_ACCOUNT_SID": "AC" + "3f9c1e07" * 4,
    "TWILIO_AUTH_TOKEN": "9b1d4c7e2a6f8053d1e94b7c0a2f6e38",
    "SECRET_KEY": "e3b9c2f4a17d05698b4e1c3a7f20d96b5c8e14f2a9d37b06c1e58f4a2d9b730e",
    "HELPLINE_PHONE_NUMBER": "+442079460999",
    "PUBLIC_URL": "https://helpline.example.org/",
    "REDIS_URL": "redis://redis.internal:6379/0",
}


def test_production_refuses_to_start_without_secrets_and_names_each_missing_one():
    with pytest.raises(ConfigError) as caught:
        load_settings({"HELPLINE_ENV": "production", "TWILIO_ACCOUNT_SID": "AC" + "1" * 32})
    message = str(caught.value)
    for name in [
        "TWILIO_AUTH_TOKEN",
        "SECRET_KEY",
        "HELPLINE_PHONE_NUMBER",
        "PUBLIC_URL",
        "REDIS_URL",
    ]:
        assert name in message
    assert "TWILIO_ACCOUNT_SID (" not in message


def test_production_with_everything_set_loads_and_strips_the_public_url_slash():
    settings = load_settings(PRODUCTION)
    assert settings.production and settings.public_url == "https://helpline.example.org"


def test_production_rejects_a_short_secret_key():
    with pytest.raises(
        ConfigError, match="SECRET_KEY is only 5 characters long; it needs at least 32"
    ):
        load_settings(dict(PRODUCTION, SECRET_KEY="short"))


SECRET_FIXES = {
    "SECRET_KEY": "secrets.token_hex(32)",
    "HELPLINE_ENCRYPTION_KEY": "secrets.token_hex(32)",
    "TWILIO_AUTH_TOKEN": "copy the Auth Token from the Twilio console",
}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SECRET_KEY", " " * 32, "SECRET_KEY uses only 1 distinct character"),
        ("SECRET_KEY", "a" * 32, "SECRET_KEY uses only 1 distinct character"),
        ("SECRET_KEY", "Password1" * 4, "SECRET_KEY repeats a short pattern"),
        ("SECRET_KEY", "a" * 24 + "bcdefghi", "SECRET_KEY is too predictable"),
        ("TWILIO_AUTH_TOKEN", " ", "TWILIO_AUTH_TOKEN is only 1 character long"),
        ("HELPLINE_ENCRYPTION_KEY", "k", "HELPLINE_ENCRYPTION_KEY is only 1 character long"),
        ("PUBLIC_URL", "http://helpline.example.org", "PUBLIC_URL must be the https:// address"),
        ("PUBLIC_URL", "nonsense", "PUBLIC_URL must be the https:// address"),
        ("HELPLINE_PHONE_NUMBER", "abc", "HELPLINE_PHONE_NUMBER must be a valid number in E.164"),
        ("HELPLINE_PHONE_NUMBER", "02079460999", "HELPLINE_PHONE_NUMBER must be a valid number"),
        ("TWILIO_ACCOUNT_SID", "AC123", "TWILIO_ACCOUNT_SID must be 'AC' and 32 hex digits"),
    ],
)
def test_production_refuses_weak_settings_and_says_what_to_fix(name, value, says):
    with pytest.raises(ConfigError) as caught:
        load_settings(dict(PRODUCTION, **{name: value}))

    message = str(caught.value)
    assert says in message
    assert SECRET_FIXES.get(name, "") in message  # how to get a good one
    if name in SECRET_FIXES:
        assert repr(value) not in message  # a secret, even a bad one, is never printed


def test_production_names_every_weak_setting_at_once():
    weak = dict(PRODUCTION, SECRET_KEY="a" * 32, PUBLIC_URL="nonsense", TWILIO_AUTH_TOKEN=" ")
    with pytest.raises(ConfigError) as caught:
        load_settings(weak)
    assert all(name in str(caught.value) for name in ("SECRET_KEY", "PUBLIC_URL", "TWILIO_AUTH"))


def test_production_never_refuses_a_real_twilio_token_or_a_generated_secret():
    draw = random.Random(10)
    tokens = [f"{draw.getrandbits(128):032x}" for _ in range(20_000)]
    keys = [f"{draw.getrandbits(256):064x}" for _ in range(2_000)]
    assert [t for t in tokens + keys if secret_weakness(t)] == []


def test_a_command_refused_for_weak_production_settings_exits_1_saying_why(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELPLINE_", "TWILIO_"))}
    env.update(PRODUCTION, SECRET_KEY=" " * 32, HELPLINE_DATA_DIR=str(tmp_path))

    done = run_helpline("queue", "list", env=env)

    assert done.returncode == 1
    assert done.stderr.startswith("helpline: production refuses weak settings: SECRET_KEY")
    assert "Traceback" not in done.stderr


def test_trusted_proxies_are_read_as_addresses_and_networks(tmp_path):
    settings = load_settings(
        {
            "HELPLINE_TRUSTED_PROXIES": " 10.0.0.0/8, 127.0.0.1,::1",
            "HELPLINE_DATA_DIR": str(tmp_path),
        }
    )
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert load_settings({"HELPLINE_DATA_DIR": str(tmp_path)}).trusted_proxies == ()


def test_sentinel_settings_name_the_sentinels_the_master_and_its_passwords(tmp_path):
    settings = load_settings(
        {
            "HELPLINE_DATA_DIR": str(tmp_path),
            "REDIS_SENTINELS": "s1.internal:26379, 10.0.0.2:26380,[fd00::3]:26379",
            "REDIS_SENTINEL_MASTER": "helpline",
            "REDIS_PASSWORD": "master-secret",
            "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        }
    )
    assert settings.sentinel is not None and not settings.embedded_redis
    assert settings.sentinel.sentinels == (
        ("s1.internal", 26379),
        ("10.0.0.2", 26380),
        ("fd00::3", 26379),
    )
    assert settings.sentinel.master == "helpline"
    assert settings.sentinel.password == "master-secret"
    assert settings.sentinel.sentinel_password == "sentinel-secret"


@pytest.mark.parametrize(
    ("env", "replicas"),
    [
        ({}, 0),
        ({"REDIS_URL": "redis://r:6379"}, 0),
        ({"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "helpline"}, 1),
        (
            {
                "REDIS_SENTINELS": "s1:26379",
                "REDIS_SENTINEL_MASTER": "helpline",
                "HELPLINE_REDIS_MIN_REPLICAS": "0",
            },
            0,
        ),
        ({"REDIS_URL": "redis://r:6379", "HELPLINE_REDIS_MIN_REPLICAS": "2"}, 2),
    ],
)
def test_a_replica_must_hold_a_request_by_default_only_where_sentinel_is_used(
    tmp_path, env, replicas
):
    settings = load_settings(dict(env, HELPLINE_DATA_DIR=str(tmp_path)))
    assert settings.redis_min_replicas == replicas


def test_production_runs_on_sentinel_without_a_redis_url():
    env = {k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"}
    with pytest.raises(ConfigError, match="REDIS_URL or REDIS_SENTINELS"):
        load_settings(env)
    env.update(REDIS_SENTINELS="s1:26379,s2:26379,s3:26379", REDIS_SENTINEL_MASTER="helpline")
    assert load_settings(env).sentinel is not None


def test_development_generates_secrets_once_into_the_data_dir(tmp_path):
    first = load_settings({"HELPLINE_DATA_DIR": str(tmp_path)})
    second = load_settings({"HELPLINE_DATA_DIR": str(tmp_path)})
    assert first.twilio_auth_token and first.twilio_auth_token == second.twilio_auth_token
    assert first.secret_key == second.secret_key
    path = tmp_path / "dev-secrets.json"
    assert json.loads(path.read_text())["secret_key"] == first.secret_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be a number"),
        ({"HELPLINE_REGION": "XX"}, "HELPLINE_REGION 'XX'"),
        ({"HELPLINE_ENV": "staging"}, "HELPLINE_ENV must be"),
        ({"HELPLINE_LOG_LEVEL": "chatty"}, "HELPLINE_LOG_LEVEL must be one of DEBUG, INFO"),
        ({"HELPLINE_TRUSTED_PROXIES": "10.0.0.0/8,proxy"}, "HELPLINE_TRUSTED_PROXIES: 'proxy'"),
        ({"REDIS_SENTINELS": "s1:26379"}, "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "helpline"}, "REDIS_SENTINEL_MASTER needs REDIS_SENTINELS"),
        (
            {"REDIS_SENTINELS": "s1:26379,s2", "REDIS_SENTINEL_MASTER": "helpline"},
            "REDIS_SENTINELS must be host:port pairs separated by commas, not 's2'",
        ),
        (
            {
                "REDIS_SENTINELS": "s1:26379",
                "REDIS_SENTINEL_MASTER": "helpline",
                "REDIS_URL": "redis://r:6379",
            },
            "set REDIS_URL or REDIS_SENTINELS, not both",
        ),
        ({"HELPLINE_REDIS_MIN_REPLICAS": "one"}, "HELPLINE_REDIS_MIN_REPLICAS must be a whole"),
        (
            {"HELPLINE_SURVEY_DELAY_MINUTES": "1h"},
            r"HELPLINE_SURVEY_DELAY_MINUTES must be a whole number of minutes \(0 sends no",
        ),
        ({"HELPLINE_SURVEY_DELAY_MINUTES": "-5"}, "HELPLINE_SURVEY_DELAY_MINUTES must be a whole"),
        ({"HELPLINE_SURVEY_DELAY_MINUTES": "20000"}, "at most 10080 \\(a week\\), not 20000"),
        ({"HELPLINE_SURVEY_KEEP_WORDS": "maybe"}, "HELPLINE_SURVEY_KEEP_WORDS must be 1 \\(yes\\)"),
    ],
)
def test_bad_values_are_explained(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(dict(env, HELPLINE_DATA_DIR=str(tmp_path)))


@pytest.mark.parametrize(
    ("env", "delay", "keep"),
    [
        ({}, 60, False),
        ({"HELPLINE_SURVEY_DELAY_MINUTES": "0", "HELPLINE_SURVEY_KEEP_WORDS": "0"}, 0, False),
        ({"HELPLINE_SURVEY_DELAY_MINUTES": " 90 ", "HELPLINE_SURVEY_KEEP_WORDS": "1"}, 90, True),
    ],
)
def test_surveys_go_an_hour_after_the_call_and_drop_the_words_by_default(
    tmp_path, env, delay, keep
):
    settings = load_settings(dict(env, HELPLINE_DATA_DIR=str(tmp_path)))
    assert (settings.survey_delay_minutes, settings.survey_keep_words) == (delay, keep)


def test_us_region_says_911_and_988(tmp_path):
    settings = load_settings({"HELPLINE_REGION": "us", "HELPLINE_DATA_DIR": str(tmp_path)})
    assert settings.region.variables("en")["emergency"] == "911"
    assert "988" in settings.region.variables("en")["crisis_line"]


def test_numbers_are_masked_to_the_last_three_digits():
    assert mask_phone("+447700900123") == "***123"
    assert mask_text("call me on +44 7700 900123 or 07700-900-456") == "call me on ***123 or ***456"


@pytest.mark.parametrize(
    "written",
    [
        "+447700900123",
        "+44 7700 900123",
        "+44 (0)7700 900-123",
        "07700 900123",
        "07700-900-123",
        "0044 7700 900123",
        "+1 (202) 555-0123",
        "202.555.0123",
        "whatsapp:+12025550123",
        "From=%2B12025550123&To=x",
        "+12025550123abc",
        "tel:+12025550123.",
    ],
)
def test_log_masking_hides_a_phone_number_however_it_is_written(written):
    masked = mask_text(f"reached {written} today")
    assert masked.count("***123") == 1
    assert "7700" not in masked and "555" not in masked


@pytest.mark.parametrize(
    "identifier",
    [
        "6c2d6a7e-3c1b-4c9f-8d5e-123456789012",  # an RQ job id (a UUID), all-digit groups
        "12345678-1234-4234-9234-123456789012",
        "a1234567890b",  # a callback request id (12 hex digits)
        "confirm-0123456789ab",  # the id of a confirmation job
        "missed-0123456789ab-2",
        "CA1234567890abcdef1234567890abcdef",  # a CallSid
        "SM0123456789abcdef0123456789abcdef",  # a MessageSid
        "2026-11-22T10:30:00",
        "confirm-123456789012",  # a confirmation job whose request id has no letter
        "missed-123456789012-2",
    ],
)
def test_log_masking_leaves_job_request_and_twilio_ids_alone(identifier):
    assert mask_text(f"job {identifier} done") == f"job {identifier} done"


@pytest.mark.parametrize(
    "line",
    [
        "Job OK (6c2d6a7e-3c1b-4c9f-8d5e-123456789012)",
        "helpline: Successfully completed job in 0:00:00.123494s",
        "Job took 0:00:01.234567",
        "answered in 12.5 s",
        "answered in 0.123456 s",
        "slow step: 1234567 ms",
        "at 2026-12-01 09:18:24,123",
        "at 2026-12-01T09:18:24.123456+00:00",
        "listening on 127.0.0.1:8000",
        "redis at 10.0.12.7:6379",
        "Listening at: http://0.0.0.0:8000 (123)",
    ],
)
def test_log_masking_leaves_durations_times_and_addresses_readable(line):
    assert mask_text(line) == line


@pytest.mark.parametrize(
    "line",
    [
        "took 0:00:01.234567 for +447700900123",
        "at 2026-12-01 09:18:24 from 07700 900123",
        "127.0.0.1:8000 GET /console/search?q=07700-900-123",
        "POST http://127.0.0.1:8000/twilio/sms?From=%2B447700900123",
        "5 s after 07700900123",
    ],
)
def test_log_masking_still_hides_a_number_beside_a_duration_or_address(line):
    masked = mask_text(line)
    assert "***123" in masked and "7700" not in masked and "900" not in masked


@given(st.uuids(), st.binary(min_size=6, max_size=6), st.binary(min_size=16, max_size=16))
def test_log_masking_never_changes_an_id_of_the_shapes_we_make(job, request_id, sid):
    ids = [str(job), f"CA{sid.hex()}", f"SM{sid.hex()}", str(uuid.UUID(bytes=sid))]
    if not request_id.hex().isdigit():  # all digits, it could be a number: it is masked
        ids.append(request_id.hex())
    for identifier in ids:
        assert mask_text(identifier) == identifier


def test_log_lines_are_json_and_never_carry_a_number():
    import logging

    record = logging.makeLogRecord(
        {
            "msg": "from %s",
            "args": ("+447700900123",),
            "levelname": "INFO",
            "name": "x",
            "caller": "07700 900123",
        }
    )
    line = json.loads(MaskingJsonFormatter().format(record))
    assert line["msg"] == "from ***123" and line["caller"] == "***123"
    assert "7700900123" not in json.dumps(line)


def test_log_lines_show_a_request_id_whole_even_without_a_letter():
    import logging

    def logged(**fields: object) -> dict[str, object]:
        record = logging.makeLogRecord({"msg": "bridging", "levelname": "INFO", **fields})
        return json.loads(MaskingJsonFormatter().format(record))

    assert logged(request="123456789012")["request"] == "123456789012"
    # Only an id's shape is let through the request field; a number there is still hidden.
    assert logged(request="+447700900123")["request"] == "***123"
    assert logged(counsellor="123456789012")["counsellor"] == "***012"
