"""The app served over HTTP, seen through Debian's Chromium: what a first visit shows."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

pytestmark = pytest.mark.browser


def test_healthz_page_shows_ok_in_chromium(page: Page, live_server: str) -> None:
    response = page.goto("/healthz")

    assert response is not None
    assert response.url == f"{live_server}/healthz"
    assert response.status == 200
    assert page.locator("body").inner_text().strip() == "ok"


def test_the_login_page_is_styled_and_usable_under_its_own_strict_policy(page: Page) -> None:
    """The Content-Security-Policy lets the console's own stylesheet and script run."""
    refused: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if message.type == "error":
            refused.append(message.text)

    page.on("console", note)
    response = page.goto("/console/login")

    assert response is not None and response.status == 200
    assert "default-src" in (response.headers.get("content-security-policy") or "")
    expect(page.get_by_label("Username")).to_be_editable()
    expect(page.get_by_label("Password")).to_have_attribute("type", "password")
    # console.css applied: its font stack, not Chromium's default serif.
    font = page.evaluate("getComputedStyle(document.documentElement).fontFamily")
    assert "system-ui" in font
    assert refused == []
