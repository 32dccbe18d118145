"""The web app's services: the process's Components, kept in app.extensions."""

from __future__ import annotations

from flask import Flask, current_app

from helpline.application.composition import Components, connect_redis
from helpline.application.config import Settings

EXTENSION = "helpline"


def init_app(app: Flask, settings: Settings) -> Components:
    """Connect to Redis (embedded unless configured), build the services, register them."""
    services = Components(settings, connect_redis(settings, fast_fail=True))
    services.warm_web()
    app.extensions[EXTENSION] = services
    app.extensions["redis"] = services.client
    return services


def helpline() -> Components:
    """Return the running app's services."""
    services: Components = current_app.extensions[EXTENSION]
    return services
