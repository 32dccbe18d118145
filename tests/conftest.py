"""Fixtures: real Redis, the app, a signed client, a Twilio REST stand-in, and a real browser."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from helpline import create_app
from helpline.application.config import Settings
from helpline.counsellors.accounts import Counsellor
from helpline.infrastructure import embedded
from tests.browser import TIMEOUT_MS, launch_chromium, new_context, save_screenshot, serve
from tests.console_helpers import add_counsellor
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, make_settings, worker_environment
from tests.processes import FIGURES
from tests.twilio_api import TwilioApi

# Whether a test's own body failed, for a screenshot of the page it left behind.
CALL_FAILED = pytest.StashKey[bool]()


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
def alex(app: Flask) -> Counsellor:
    """A counsellor account (not an admin) with the helpers' password."""
    return add_counsellor(app, "alex")


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A copy of the shipped flows and content, for a test to break."""
    target = tmp_path / "flows"
    shutil.copytree(Settings().flows_dir, target)
    return target


@pytest.fixture
def twilio_api() -> Iterator[TwilioApi]:
    """Serve a stand-in of Twilio's REST API for the test account; its .url is TWILIO_API_URL."""
    with TwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
        yield api


@pytest.fixture
def worker_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_server: str,
    redis: redis_py.Redis,
    twilio_api: TwilioApi,
) -> Iterator[dict[str, str]]:
    """Point this process's jobs, and any worker process, at the test Redis and stand-in."""
    with worker_environment(
        monkeypatch,
        data_dir=tmp_path / "var",
        redis_url=redis_server,
        twilio_api_url=twilio_api.url,
    ) as env:
        yield env


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """Serve this test's app over real HTTP on 127.0.0.1; yield its base URL."""
    with serve(app) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Launch Debian's Chromium once for the session, headless."""
    expect.set_options(timeout=TIMEOUT_MS)  # expect()'s own default is 5 s
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Browser, live_server: str) -> Iterator[Page]:
    """Open a page in a fresh browser context whose relative URLs go to the live server."""
    context = new_context(browser, base_url=live_server)
    opened = context.new_page()
    yield opened
    if request.node.stash.get(CALL_FAILED, False):
        save_screenshot(opened, f"FAILED-{request.node.name}")
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


class Figures:
    """Writes the figures a test measured (tests.processes.report) once it has run."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if report.when == "call" and terminal is not None:
            for name, value in report.user_properties:
                if name == FIGURES:
                    terminal.write_line(str(value))


def pytest_configure(config: pytest.Config) -> None:
    # With xdist, the controller shows the workers' reports: a worker's output is not seen.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Figures(config), "helpline-figures")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-transcripts",
        action="store_true",
        help="rewrite tests/golden/ from the current flows (review the diff!)",
    )
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        help="rewrite the console screenshots in docs/ (shown in the README)",
    )
