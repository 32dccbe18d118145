"""Console sessions kept in Redis, keyed by a random id in an HttpOnly cookie.

The cookie carries nothing but the id, so logging out or disabling an account ends
the session for good (the server forgets it), and a login always starts a new one
(regenerate()), so an id seen before login is worthless after it.

Before login there is nothing worth a server-side record: a visitor's few values (the
login form's CSRF token, a flashed message) travel in the same cookie, signed with
SECRET_KEY, and Redis stores nothing until someone logs in. A page of login forms
fetched by a script costs Redis nothing.

Keys:
    helpline:session:<id>          JSON of the session's values; expires when it would
    helpline:sessions:<username>   set of that counsellor's session ids, for revoking
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import redis
from flask import Flask, Request, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.datastructures import CallbackDict

from helpline.infrastructure.constants import (
    KEY_PREFIX,
    SESSION_ABSOLUTE_SECONDS,
    SESSION_IDLE_SECONDS,
)

SESSION = f"{KEY_PREFIX}:session:"
USER_SESSIONS = f"{KEY_PREFIX}:sessions:"
# Session values the interface keeps for itself.
CREATED = "_created"
SEEN = "_seen"
USER = "user"
# Longest id read from a cookie; ours are 43 characters.
_MAX_ID = 64
# Longest signed visitor cookie read (a CSRF token and a flashed message or two).
_MAX_SIGNED = 2048
# Twilio never sends our cookie back: its webhooks get no session at all.
SESSIONLESS_PREFIX = "/twilio/"


class RedisSession(CallbackDict[str, Any], SessionMixin):
    """A session whose values live in Redis; `sid` is the cookie's value."""

    def __init__(self, initial: dict[str, Any] | None = None, sid: str = "", new: bool = True):
        def changed(_: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial or {}, changed)
        self.sid = sid or secrets.token_urlsafe(32)
        self.new = new
        self.modified = False
        self.passive = False  # a request that does not count as activity (live updates)
        self.previous: str | None = None  # an id to forget when this one is saved
        self.owner: str | None = None  # who it belonged to when read from Redis

    def regenerate(self) -> None:
        """Start afresh under a new id (at login), forgetting the old id and every value."""
        self.previous = None if self.new else self.sid  # a visitor's was never stored
        self.sid = secrets.token_urlsafe(32)
        self.clear()
        now = time.time()
        self[CREATED] = now
        self[SEEN] = now


class RedisSessionInterface(SessionInterface):
    """Flask's session interface over Redis, with idle and absolute timeouts."""

    def __init__(
        self,
        client: redis.Redis,
        secret: str,
        *,
        idle: float = SESSION_IDLE_SECONDS,
        absolute: float = SESSION_ABSOLUTE_SECONDS,
    ):
        self.client = client
        self.idle = idle
        self.absolute = absolute
        self.visitors = signing_serializer(secret, "helpline-visitor")

    def open_session(self, app: Flask, request: Request) -> RedisSession | None:
        if request.path.startswith(SESSIONLESS_PREFIX):
            # None: Flask's null session, which is never saved and refuses writes.
            return None
        sid = request.cookies.get(self.get_cookie_name(app), "")
        if "." in sid:  # a signed visitor cookie; our ids never hold a dot
            return self._visitor(sid)
        if not sid or len(sid) > _MAX_ID:
            return RedisSession()
        raw = self.client.get(SESSION + sid)
        if raw is None:
            return RedisSession()
        values = json.loads(raw)
        now = time.time()
        created = float(values.get(CREATED, 0))
        seen = float(values.get(SEEN, 0))
        if now - created > self.absolute or now - seen > self.idle:
            self.forget(sid, values.get(USER))
            return RedisSession()
        found = RedisSession(values, sid=sid, new=False)
        found.owner = values.get(USER)
        return found

    def _visitor(self, signed: str) -> RedisSession:
        """Read a visitor's values from their signed cookie (anything else: start afresh)."""
        if len(signed) > _MAX_SIGNED:
            return RedisSession()
        try:
            values = self.visitors.loads(signed, max_age=int(self.absolute))
        except BadData:
            return RedisSession()
        if not isinstance(values, dict) or USER in values:
            return RedisSession()
        return RedisSession(values)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, RedisSession):
            return  # never opened (Redis was unavailable): nothing to keep
        if session.previous:
            self.forget(session.previous, None)
            session.previous = None
        if not session.new and USER not in session:
            # Logged out, or emptied: the server forgets it; anything left is a visitor's.
            self.forget(session.sid, session.owner)
            session.new, session.modified = True, True
        if USER not in session:
            self._save_visitor(app, session, response)
            return
        now = time.time()
        session.setdefault(CREATED, now)
        if not session.passive:
            session[SEEN] = now
        elif SEEN not in session:
            session[SEEN] = now
        ends = min(float(session[SEEN]) + self.idle, float(session[CREATED]) + self.absolute)
        ttl = max(int(ends - now) + 1, 1)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(SESSION + session.sid, json.dumps(dict(session)), ex=ttl)
        user = session.get(USER)
        if user:
            pipe.sadd(USER_SESSIONS + user, session.sid)
            pipe.expire(USER_SESSIONS + user, int(self.absolute) + 60)
        pipe.execute()
        self._set_cookie(app, response, session.sid)

    def _save_visitor(self, app: Flask, session: RedisSession, response: Response) -> None:
        """Keep a visitor's values in their cookie, signed; nothing is written to Redis."""
        if not session.modified:
            return
        if session:
            self._set_cookie(app, response, self.visitors.dumps(dict(session)))
        else:
            response.delete_cookie(self.get_cookie_name(app), path=self.get_cookie_path(app))
            response.vary.add("Cookie")

    def _set_cookie(self, app: Flask, response: Response, value: str) -> None:
        response.set_cookie(
            self.get_cookie_name(app),
            value,
            path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app),
            httponly=True,
            samesite=self.get_cookie_samesite(app) or "Lax",
        )
        response.vary.add("Cookie")

    def forget(self, sid: str, user: str | None) -> None:
        """End one session."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(SESSION + sid)
        if user:
            pipe.srem(USER_SESSIONS + user, sid)
        pipe.execute()

    def revoke_user(self, username: str) -> int:
        """End every session of one counsellor (logged out everywhere, or disabled)."""
        ids = [raw.decode() for raw in self.client.smembers(USER_SESSIONS + username)]  # type: ignore[union-attr]
        pipe = self.client.pipeline(transaction=True)
        for sid in ids:
            pipe.delete(SESSION + sid)
        pipe.delete(USER_SESSIONS + username)
        pipe.execute()
        return len(ids)


def signing_serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    """Return a serializer that signs (not encrypts) values with secret, for one purpose."""
    return URLSafeTimedSerializer(
        secret,
        salt=purpose,
        serializer=TaggedJSONSerializer(),
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )
