"""The web app's services: the process's Components, kept in app.extensions."""

from __future__ import annotations

from flask import Flask, current_app

from helpline.application.composition import Components
from helpline.application.config import Settings
from helpline.infrastructure import embedded
from helpline.infrastructure.store import connect

EXTENSION = "helpline"


def init_app(app: Flask, settings: Settings) -> Components:
    """Connect to Redis (embedded unless REDIS_URL), build the services, register them."""
    redis_url = embedded.resolve_redis_url(settings.redis_url, settings.data_dir)
    services = Components(settings, connect(redis_url))
    services.warm_web()
    app.extensions[EXTENSION] = services
    app.extensions["redis"] = services.client
    return services


def helpline() -> Components:
    """Return the running app's services."""
    services: Components = current_app.extensions[EXTENSION]
    return services
