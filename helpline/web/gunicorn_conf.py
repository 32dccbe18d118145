"""gunicorn's hooks for the web process (`--config python:helpline.web.gunicorn_conf`).

The master prepares the web's metrics directory before it starts any worker, so every
worker writes its counts where /metrics reads them (helpline.infrastructure.multiprocess).
Imported by gunicorn's master: nothing here may import prometheus_client or the app.
"""

from __future__ import annotations

from typing import Any


def on_starting(server: Any) -> None:
    from helpline.application.config import load_settings
    from helpline.infrastructure.multiprocess import use_directory

    use_directory(load_settings().metrics_dir, "web")
