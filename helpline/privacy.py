"""Masking and keyed hashing of phone numbers: never log or store one in plain text."""

from __future__ import annotations

import hashlib
import hmac
import re

# Any run of 6+ digits, allowing spaces, dots, dashes or brackets between them, with an
# optional leading +: wide enough to catch a phone number however it was written.
_PHONE_LIKE = re.compile(r"\+?\d(?:[\s().\-]*\d){5,}")


def mask_phone(number: str | None) -> str:
    """Return a number with all but its last three digits hidden ("***123")."""
    digits = [ch for ch in number or "" if ch.isdigit()]
    if len(digits) < 6:
        return "***"
    return "***" + "".join(digits[-3:])


def mask_text(text: str) -> str:
    """Hide every phone-like number inside free text (used as a last line in logging)."""
    return _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), text)


def derive_key(secret: str, purpose: str) -> bytes:
    """Derive a separate key for each purpose from one secret."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def phone_digest(key: bytes, number: str) -> str:
    """Return a keyed hash of a number, for lookups that must not reveal it."""
    canonical = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()[:40]
