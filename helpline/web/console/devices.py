"""Known devices: a signed cookie saying this browser has logged in to an account before.

A good login leaves one (a fresh random nonce each time, bound to the account); with it
the counsellor's later logins answer only to that device's own count of wrong passwords,
not to the lock strangers bring on the account (helpline.counsellors.throttle). It is signed
with SECRET_KEY, not secret: it holds a digest of the username and the nonce, nothing
that identifies the counsellor to someone reading it.
"""

from __future__ import annotations

import secrets

from flask import Request
from itsdangerous import BadData
from werkzeug.wrappers import Response

from helpline.counsellors.throttle import account_digest
from helpline.infrastructure.constants import LOGIN_DEVICE_SECONDS
from helpline.web.sessions import signing_serializer

# Longest device cookie read; ours are about 130 characters.
_MAX_COOKIE = 512


class KnownDevices:
    """Reads and issues device cookies."""

    def __init__(self, secret: str, *, production: bool):
        self.signer = signing_serializer(secret, "helpline-device")
        self.secure = production
        # __Host-: only ever set by this host, over https, for the whole site.
        self.cookie_name = "__Host-helpline-device" if production else "helpline_device"

    def nonce(self, request: Request, username: str) -> str | None:
        """Return the device's nonce if the request carries a valid cookie for username."""
        raw = request.cookies.get(self.cookie_name, "")
        if not raw or len(raw) > _MAX_COOKIE:
            return None
        try:
            values = self.signer.loads(raw, max_age=LOGIN_DEVICE_SECONDS)
        except BadData:
            return None
        if not isinstance(values, dict) or values.get("u") != account_digest(username):
            return None
        found = values.get("n")
        return found if isinstance(found, str) and found else None

    def remember(self, response: Response, username: str) -> None:
        """Make this browser a known device of username (after a good login)."""
        value = self.signer.dumps({"u": account_digest(username), "n": secrets.token_urlsafe(16)})
        response.set_cookie(
            self.cookie_name,
            value,
            max_age=LOGIN_DEVICE_SECONDS,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Strict",
        )
