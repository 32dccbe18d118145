"""Helpers for browser tests: Debian's Chromium, the app over real HTTP, screenshots."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, Playwright
from werkzeug.serving import make_server

from tests.factories import PROCESS_WAIT_SECONDS, WAIT_SECONDS

# Debian's package installs it here (`make test` does that); Playwright's own
# browser download is never used.
DEBIAN_CHROMIUM = "/usr/bin/chromium"
# Screenshots go here; git ignores it.
OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"
# The README's screenshots, rewritten by `pytest --update-screenshots`.
DOCS_DIR = OUTPUT_DIR.parent / "docs"
# Chromium runs as root, in a container, with no GPU and no network but loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",  # the sandbox refuses to start as root
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm can be tiny in containers
    "--disable-background-networking",  # no calls home: only loopback is reachable
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
]
# How often the server thread checks for shutdown; keeps teardown quick.
POLL_INTERVAL = 0.05
# Longest Playwright waits for an action or an expect(): a page on loopback is quick, but
# not always on a busy machine, and a passing expect() returns as soon as it holds.
TIMEOUT_MS = int(WAIT_SECONDS * 1000)


def chromium_path() -> str:
    """Return the path of Debian's Chromium, or fail saying how to install it."""
    path = shutil.which("chromium") or DEBIAN_CHROMIUM
    if not Path(path).is_file():
        raise RuntimeError(
            f"Chromium not found at {DEBIAN_CHROMIUM}: run `make test` (it installs "
            "Debian's chromium) or `apt-get install chromium`"
        )
    return path


def launch_chromium(playwright: Playwright) -> Browser:
    """Launch Debian's Chromium headless with flags that suit a container."""
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        args=CHROMIUM_ARGS,
        timeout=PROCESS_WAIT_SECONDS * 1000,
    )


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    """Open a browser context whose actions wait up to TIMEOUT_MS."""
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    return context


@contextmanager
def serve(app: Flask, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the app over HTTP on a free port in a background thread; yield its base URL."""
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(WAIT_SECONDS)
        server.server_close()


def save_screenshot(page: Page, name: str, directory: Path = OUTPUT_DIR) -> Path:
    """Save a full-page screenshot as <directory>/<name>.png (test-output/ unless told)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    path = directory / f"{safe}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    return path
