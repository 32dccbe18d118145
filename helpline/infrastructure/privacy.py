"""Masking and keyed hashing of phone numbers: never log or store one in plain text."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlsplit, urlunsplit

# A phone number however it was written: 6+ digits with spaces, dots, dashes or brackets
# between them, taken whole. With a leading + (or %2B, URL-encoded) it is one wherever it
# stands; without, digits that run on into letters belong to an id (a hex request or job
# id, a CallSid, a timestamp), not to a number anyone could be called on.
_DIGITS = r"\d(?:[\s().\-]*\d){5,}(?![\s().\-]*\d)"
_PHONE = rf"(?:\+|%2[Bb]){_DIGITS}|(?<![0-9A-Za-z]){_DIGITS}(?![0-9A-Za-z])"
# A UUID (RQ's job ids): its dashes would otherwise join all-digit groups into a "number".
_UUID = r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"
_PHONE_LIKE = re.compile(f"(?P<uuid>{_UUID})|{_PHONE}")


def mask_phone(number: str | None) -> str:
    """Return a number with all but its last three digits hidden ("***123")."""
    digits = [ch for ch in number or "" if ch.isdigit()]
    if len(digits) < 6:
        return "***"
    return "***" + "".join(digits[-3:])


def mask_text(text: str) -> str:
    """Hide every phone-like number inside free text (used as a last line in logging)."""
    return _PHONE_LIKE.sub(
        lambda m: m.group(0) if m.group("uuid") else mask_phone(m.group(0)), text
    )


def hide_password(url: str) -> str:
    """Return url with any user name and password in it hidden ("https://***@host/...")."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def derive_key(secret: str, purpose: str) -> bytes:
    """Derive a separate key for each purpose from one secret."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def phone_digest(key: bytes, number: str) -> str:
    """Return a keyed hash of a number, for lookups that must not reveal it."""
    canonical = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()[:40]
