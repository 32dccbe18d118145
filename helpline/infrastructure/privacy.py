"""Masking and keyed hashing of phone numbers: never log or store one in plain text."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlsplit, urlunsplit

# A phone number however it was written: 6+ digits with spaces, dots, dashes or brackets
# between them, taken whole. With a leading + (or %2B, URL-encoded) it is one wherever it
# stands; without, digits that run on into letters, or that follow a word and a dash
# ("confirm-123456789012"), belong to an id (a hex request or job id, a CallSid), not to
# a number anyone could be called on.
_DIGITS = r"\d(?:[\s().\-]*\d){5,}(?![\s().\-]*\d)"
_PHONE = rf"(?:\+|%2[Bb]){_DIGITS}|(?<![0-9A-Za-z])(?<![0-9A-Za-z]-){_DIGITS}(?![0-9A-Za-z])"
# Digit runs that are never a number anyone could be called on, kept as written:
# a UUID (RQ's job ids), whose dashes would otherwise join all-digit groups into a
# "number"; a date with its time; a clock time or duration ("0:00:01.234567"); an IP
# address with its port; an amount with a unit of time ("12.5 s", "1234567 ms").
_UUID = r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"
_CLOCK = r"(?<!\d)\d{1,2}:[0-5]\d(?::[0-5]\d)?(?:[.,]\d+)?(?!\d)"
_DATE = rf"(?<!\d)(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?:[T ]{_CLOCK})?(?!\d)"
_ADDRESS = r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\d.])"
_UNITS = "ns|us|µs|ms|s|sec|secs|second|seconds|min|mins|minutes"
_AMOUNT = rf"(?<![\d.])\d{{1,7}}(?:\.\d+)?\s?(?:{_UNITS})(?![0-9A-Za-z])"
_KEEP = f"{_UUID}|{_DATE}|{_CLOCK}|{_ADDRESS}|{_AMOUNT}"
_PHONE_LIKE = re.compile(f"(?P<keep>{_KEEP})|{_PHONE}")


def mask_phone(number: str | None) -> str:
    """Return a number with all but its last three digits hidden ("***123")."""
    digits = [ch for ch in number or "" if ch.isdigit()]
    if len(digits) < 6:
        return "***"
    return "***" + "".join(digits[-3:])


def mask_text(text: str) -> str:
    """Hide every phone-like number inside free text (used as a last line in logging)."""
    return _PHONE_LIKE.sub(
        lambda m: m.group(0) if m.group("keep") else mask_phone(m.group(0)), text
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
