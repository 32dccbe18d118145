"""GSM-7 / UCS-2 encoding and SMS segment arithmetic."""

from __future__ import annotations

import unicodedata

# GSM 03.38 basic character set (one septet each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs two septets (escape + character).
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

# Characters outside GSM-7 that have a faithful GSM-7 spelling, applied before sending
# (the same idea as Twilio's "smart encoding"), so Spanish accents do not force UCS-2.
_FOLD = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u2022": "-",
    "\u00b7": "-",
}

SINGLE_GSM, MULTI_GSM = 160, 153
SINGLE_UCS2, MULTI_UCS2 = 70, 67


def fold_to_gsm(text: str) -> str:
    """Replace characters GSM-7 lacks with their closest GSM-7 spelling, where one exists."""
    out = []
    for ch in text:
        if ch in GSM7_BASIC or ch in GSM7_EXTENDED:
            out.append(ch)
        elif ch in _FOLD:
            out.append(_FOLD[ch])
        else:
            # á -> a, í -> i, ó -> o, ú -> u; leaves ñ, é, ü (GSM-7 has them) untouched above.
            base = unicodedata.normalize("NFD", ch)[0]
            out.append(base if base in GSM7_BASIC else ch)
    return "".join(out)


def as_sent(text: str, gsm: bool) -> str:
    """Return the text as it goes out: folded to GSM-7 spellings in a GSM-7 language."""
    return fold_to_gsm(text) if gsm else text


def non_gsm_characters(text: str) -> list[str]:
    """Return the characters that would force the whole message into UCS-2."""
    return sorted({ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENDED})


def is_gsm7(text: str) -> bool:
    return not non_gsm_characters(text)


def segments(text: str) -> int:
    """Return how many SMS segments the text takes as sent (GSM-7 if it can, else UCS-2)."""
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, multi = SINGLE_GSM, MULTI_GSM
    else:
        # UCS-2 counts UTF-16 code units: characters outside the BMP take two.
        units = len(text.encode("utf-16-le")) // 2
        single, multi = SINGLE_UCS2, MULTI_UCS2
    if units <= single:
        return 1
    return -(-units // multi)
