"""Fixtures: a real redis-server, the app, a signed-request client, a Twilio REST stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient

from helpline import create_app, embedded
from helpline.config import Settings
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, make_settings
from tests.twilio_api import TwilioApi


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start one throwaway redis-server for the session; yield its URL."""
    data_dir = tmp_path_factory.mktemp("redis")
    url, _ = embedded.ensure_running(data_dir)
    yield url
    embedded.stop(data_dir)


@pytest.fixture
def redis(redis_server: str) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis.from_url(redis_server)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def settings(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> Settings:
    return make_settings(tmp_path / "var", redis_server)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def twilio_api() -> Iterator[TwilioApi]:
    """Serve a stand-in of Twilio's REST API for the test account; its .url is TWILIO_API_URL."""
    with TwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
        yield api


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-transcripts",
        action="store_true",
        help="rewrite tests/golden/ from the current flows (review the diff!)",
    )
