"""The baseline for bench/webhooks.py: a bare Flask app answering every webhook with fixed TwiML."""

from __future__ import annotations

from flask import Flask, Response

FIXED_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say language="en-GB">Thank you for calling.</Say><Hangup /></Response>'
)


def create_app() -> Flask:
    """Build a Flask app whose only job is to return FIXED_TWIML to any POST."""
    app = Flask(__name__)

    @app.post("/twilio/<path:_rest>")
    def fixed(_rest: str) -> Response:
        return Response(FIXED_TWIML, status=200, mimetype="text/xml")

    return app
