"""The app served over HTTP, seen through Debian's Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser import save_screenshot

pytestmark = pytest.mark.browser


def test_healthz_page_shows_ok_in_chromium(page: Page, live_server: str) -> None:
    response = page.goto("/healthz")

    assert response is not None
    assert response.url == f"{live_server}/healthz"
    assert response.status == 200
    assert page.locator("body").inner_text().strip() == "ok"
    shot = save_screenshot(page, "healthz")
    assert shot.read_bytes().startswith(b"\x89PNG")
