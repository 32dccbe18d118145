"""Helpline: an SMS and phone triage service for people who use opioids.

The code is in layers, each using only those below it:

    web/, cli/          Twilio's webhooks, the counsellor console; the command line
    application/        settings, the composition root, call back intake, texting, jobs
    conversation/       the flows, callbacks/ the queue, counsellors/ accounts (the domain)
    infrastructure/     Redis, encryption, logs, Twilio's REST API, constants

`workers/` sits beside web/: it runs the jobs application/jobs.py queues.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """`helpline:create_app()` (gunicorn, the Procfile) without loading the web layer for
    every process that imports a part of helpline."""
    if name == "create_app":
        from helpline.web.app import create_app

        return create_app
    raise AttributeError(f"module 'helpline' has no attribute {name!r}")
