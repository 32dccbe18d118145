"""Phone numbers: parse what callers key in or send, to E.164, with phonenumbers."""

from __future__ import annotations

import phonenumbers

# What Twilio puts in From when caller ID is withheld, as text and as the
# pseudo-numbers some carriers send ("ANONYMOUS", "RESTRICTED" keyed on a phone pad).
WITHHELD = frozenset(
    {
        "",
        "anonymous",
        "restricted",
        "unknown",
        "unavailable",
        "private",
        "+266696687",
        "+7378742833",
        "+2562533",
        "+86282452253",
        "+8656696",
    }
)


def callable_number(caller_id: str, region: str = "ZZ") -> str | None:
    """Return Twilio's From as an E.164 number we could call back; None if withheld or
    not a valid number (for region's national format, or in international form)."""
    if caller_id.strip().lower() in WITHHELD:
        return None
    return to_e164(caller_id, region)


def to_e164(text: str, region: str) -> str | None:
    """Return text as a valid E.164 number, reading national formats for region; else None.

    Keyed-in numbers arrive as bare digits ("07700900123"); "00" or a leading "+" mark
    an international one.
    """
    cleaned = text.strip()
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    if not cleaned or len(cleaned) > 32:
        return None
    try:
        parsed = phonenumbers.parse(cleaned, None if region == "ZZ" else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
