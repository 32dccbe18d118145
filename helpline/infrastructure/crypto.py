"""Encryption at rest for phone numbers and free text (AES-256-GCM)."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpline.infrastructure.errors import SealError
from helpline.infrastructure.privacy import derive_key

NONCE_BYTES = 12
# Marks the format so a future key or cipher change can tell old values apart.
VERSION = b"1"


class Sealer:
    """Encrypts small values so that each is bound to the record it belongs to.

    The record id is the associated data: a value copied into another record's
    field does not decrypt there.
    """

    def __init__(self, secret: str):
        self._aead = AESGCM(derive_key(secret, "encryption-at-rest"))

    def seal(self, plaintext: str, record: str) -> str:
        """Return an opaque, printable token for plaintext."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), record.encode())
        return (VERSION + base64.urlsafe_b64encode(nonce + sealed)).decode()

    def open(self, token: str | bytes, record: str) -> str:
        """Return the plaintext of a token made by seal() for the same record."""
        raw = token.encode() if isinstance(token, str) else token
        if not raw.startswith(VERSION):
            raise SealError("unknown sealed-value format")
        try:
            data = base64.urlsafe_b64decode(raw[len(VERSION) :])
            plain = self._aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], record.encode())
        except (InvalidTag, ValueError):
            raise SealError("sealed value does not open with this key") from None
        return plain.decode()


def lookup_key(secret: str) -> bytes:
    """Return the key for keyed hashes of phone numbers (lookups that reveal nothing)."""
    return derive_key(secret, "phone-lookup")
