"""The equal-work baseline for the bench: a minimal correct webhook app doing the same work.

What the helpline must do per webhook, and nothing else: check Twilio's signature with
twilio's own RequestValidator, and for a text make the same Redis calls the SMS webhook
makes (helpline/application/messaging.py): one Lua read of the sender's opt-out and
conversation (which also counts the sender's texts this minute, for the rate limit, and
sees whether a follow-up survey waits for their answer and whether they have a call back
request open), then one SET with an expiry of the conversation and the replies kept for
a retried message;
a text that starts a conversation or chooses a topic (SAFE) counts it in the day's report
hash in the same round trip (the SET, HINCRBY and EXPIRE pipelined, helpline/reports).
A call's first webhook reads the caller ID and, if it is a number we could call back,
counts the caller's calls this hour and the day's calls for the reports (one pipelined
INCR, EXPIRE, HINCRBY and EXPIRE, helpline/application/limits.py); its later steps touch
no Redis, so for them the equal work is the signature check. Every answer is fixed TwiML.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import redis
from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator

from helpline.callbacks.queue import OPEN_LOOKUP
from helpline.infrastructure.phones import callable_number
from helpline.infrastructure.store import connect

VOICE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say language="en-GB">Thank you for calling.</Say><Hangup /></Response>'
)
SMS_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    "<Message>Thank you for your message.</Message></Response>"
)
PREFIX = "bench:equal"
REPORTS = f"{PREFIX}:reports"
REPORTS_KEPT = 400 * 24 * 60 * 60
STATE_TTL = 60 * 60
REPLIES_KEPT = 3
# The helpline's read, word for word (the reply window key is WhatsApp's only).
READ = (
    OPEN_LOOKUP
    + """
local count = redis.call('INCR', KEYS[3])
if count == 1 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
if KEYS[5] then redis.call('SET', KEYS[5], '1', 'EX', ARGV[2]) end
local queued = open_of(ARGV[4], ARGV[1]) and 1 or 0
return {redis.call('SISMEMBER', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2]), count,
        redis.call('EXISTS', KEYS[4]), queued}
"""
)


def create_app() -> Flask:
    """Build the app: signed POSTs only; texts read and write their conversation in Redis."""
    app = Flask(__name__)
    validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
    phone_key = os.environ["SECRET_KEY"].encode()
    client: redis.Redis = connect(os.environ["REDIS_URL"])
    read = client.register_script(READ)

    def check_signature() -> None:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(request.url, request.form.to_dict(), signature):
            abort(403)

    @app.post("/twilio/sms")
    def sms() -> Response:
        check_signature()
        who = hmac.new(phone_key, request.form.get("From", "").encode(), hashlib.sha256)
        key = f"{PREFIX}:conv:{who.hexdigest()}"
        rate = f"{PREFIX}:rate:{who.hexdigest()}"
        _opted, raw, _count, _survey, _queued = read(
            keys=[f"{PREFIX}:optout", key, rate, f"{PREFIX}:survey:{who.hexdigest()}"],
            args=[who.hexdigest(), 0, 120, f"{PREFIX}:"],
        )
        stored = json.loads(raw) if raw else {"node": "start", "lang": "en", "replies": []}
        replies = [[request.form.get("MessageSid", ""), SMS_TWIML], *stored["replies"]]
        stored["replies"] = replies[:REPLIES_KEPT]
        value = json.dumps(stored, separators=(",", ":"))
        counts = ["contacts:sms"] if raw is None else []
        if request.form.get("Body", "").strip().upper() == "SAFE":
            counts.append("topic:safety")
        if not counts:
            client.set(key, value, ex=STATE_TTL)
        else:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, value, ex=STATE_TTL)
            for measure in counts:
                pipe.hincrby(REPORTS, measure, 1)
            pipe.expire(REPORTS, REPORTS_KEPT)
            pipe.execute()
        return Response(SMS_TWIML, status=200, mimetype="text/xml")

    @app.post("/twilio/voice")
    def voice_incoming() -> Response:
        check_signature()
        # As the helpline does: a caller ID we could call back is one person, counted.
        number = callable_number(request.form.get("From", ""), "GB")
        if number is not None:
            who = hmac.new(phone_key, number.encode(), hashlib.sha256)
            key = f"{PREFIX}:calls:{who.hexdigest()}"
            pipe = client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 7200)
            pipe.hincrby(REPORTS, "contacts:voice", 1)
            pipe.expire(REPORTS, REPORTS_KEPT)
            pipe.execute()
        return Response(VOICE_TWIML, status=200, mimetype="text/xml")

    @app.post("/twilio/<path:_rest>")
    def voice(_rest: str) -> Response:
        check_signature()
        return Response(VOICE_TWIML, status=200, mimetype="text/xml")

    return app
