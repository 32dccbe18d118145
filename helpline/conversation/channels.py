"""The ways people reach the helpline, and what each one allows.

A channel knows its addresses (Twilio writes a WhatsApp sender as "whatsapp:+44..."),
the number behind one that a counsellor could call back, which flow it speaks (calls
the voice flow; SMS and WhatsApp the text flow) and its length rules. Opt-outs,
conversations and call back requests are kept per channel by its name: a STOP on
WhatsApp says nothing about texts to the same number, nor the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

from helpline.conversation.model import Medium
from helpline.infrastructure.phones import callable_number

# WhatsApp's longest message body through Twilio, in characters.
WHATSAPP_MAX_CHARS = 1600
# WhatsApp allows free-form messages only this long after the person's last message;
# later, only an approved template.
WHATSAPP_WINDOW_SECONDS = 24 * 60 * 60


@dataclass(frozen=True)
class Channel:
    name: str  # as recorded on conversations, opt-outs and requests
    medium: Medium  # the flow it speaks
    prefix: str = ""  # what Twilio puts before the number in From and To
    # SMS folds a GSM-7 language's text to GSM-7 spellings so it costs fewer segments;
    # WhatsApp has no segments and sends text as written.
    folds_to_gsm: bool = True
    max_chars: int | None = None  # one message's limit, where it is counted in characters
    window_seconds: float | None = None  # free-form replies only this long after theirs

    @property
    def texting(self) -> bool:
        return self.medium is Medium.SMS

    def carries(self, address: str) -> bool:
        """Whether Twilio's From or To names an address on this channel."""
        if self.prefix:
            return address[: len(self.prefix)].lower() == self.prefix
        return ":" not in address

    def local_part(self, address: str) -> str:
        """The address without the channel's prefix: a number, a short code or a name."""
        return address[len(self.prefix) :] if self.prefix and self.carries(address) else address

    def number(self, address: str, region: str) -> str | None:
        """The E.164 number behind an address that we could call back; None if none."""
        if not self.carries(address):
            return None
        return callable_number(self.local_part(address), region)

    def address(self, number: str) -> str:
        """The address to send to on this channel for an E.164 number."""
        return self.prefix + number

    def gsm(self, language_gsm: bool) -> bool:
        """Whether a text in a language marked GSM-7 is folded to GSM-7 on this channel."""
        return self.folds_to_gsm and language_gsm


VOICE = Channel("voice", Medium.VOICE)
SMS = Channel("sms", Medium.SMS)
WHATSAPP = Channel(
    "whatsapp",
    Medium.SMS,
    prefix="whatsapp:",
    folds_to_gsm=False,
    max_chars=WHATSAPP_MAX_CHARS,
    window_seconds=WHATSAPP_WINDOW_SECONDS,
)
CHANNELS = {channel.name: channel for channel in (VOICE, SMS, WHATSAPP)}
TEXTING = (SMS, WHATSAPP)


def texting_channel(address: str) -> Channel:
    """The channel a text came in on, from Twilio's From (SMS unless it says otherwise)."""
    return WHATSAPP if WHATSAPP.carries(address) else SMS


def channel_named(name: str) -> Channel:
    """The channel a stored record names; SMS for anything unknown (it was a text)."""
    return CHANNELS.get(name, SMS)
