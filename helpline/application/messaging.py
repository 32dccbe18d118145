"""Text conversations, by SMS and WhatsApp: opt-out, state per sender, one step per text.

Each channel keeps its own: a texter's conversation, their opt-out and (WhatsApp) the
time of their last message, which opens WhatsApp's 24-hour window for free-form
messages from us. Keys, all keyed by the hash of the sender's number (or short code):
    <channel>:conv:<who>     the conversation, JSON; expires SMS_STATE_TTL after the last text
    <channel>:optout         set of the senders who opted out on that channel
    <channel>:window:<who>   set while WhatsApp lets us send them free-form messages
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from helpline.application.actions import ActionRegistry
from helpline.application.checkin import CheckinDesk
from helpline.application.intake import CallbackDesk, Caller, open_answers, seal_answers
from helpline.application.limits import RateLimits
from helpline.callbacks.queue import OPEN_LOOKUP
from helpline.callbacks.queue import PREFIX as QUEUE_PREFIX
from helpline.conversation import twiml
from helpline.conversation.channels import SMS, Channel, texting_channel
from helpline.conversation.danger import Danger
from helpline.conversation.engine import Engine, Event, Reply, State
from helpline.conversation.texting import answer_text
from helpline.infrastructure.constants import KEY_PREFIX, SMS_STATE_TTL
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.metrics import OPT_OUTS
from helpline.infrastructure.privacy import mask_phone, phone_digest
from helpline.infrastructure.store import Store

log = logging.getLogger(__name__)

_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
# Replies kept in the conversation, newest first, so a retried webhook (same MessageSid)
# gets the same reply for as long as the conversation is kept (SMS_STATE_TTL).
REPLIES_KEPT = 3

# A text's one read: is the sender opted out, their conversation (or nil), how many
# texts they sent this minute (KEYS[3], counted here, kept ARGV[3] seconds), and whether
# they have a call back request open (in the queue under ARGV[4]), so asking again is
# answered at once. On a channel with a reply window, the same step opens it (KEYS[4])
# for ARGV[2] seconds.
_READ = (
    OPEN_LOOKUP
    + """
local count = redis.call('INCR', KEYS[3])
if count == 1 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
if KEYS[4] then redis.call('SET', KEYS[4], '1', 'EX', ARGV[2]) end
local queued = open_of(ARGV[4], ARGV[1]) and 1 or 0
return {redis.call('SISMEMBER', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2]), count, queued}
"""
)


def optout_key(channel: Channel) -> str:
    """The set of keyed hashes of the senders who opted out of texts on this channel."""
    return f"{KEY_PREFIX}:{channel.name}:optout"


def window_key(channel: Channel, who: str) -> str:
    """Set while the channel lets us send this person free-form messages."""
    return f"{KEY_PREFIX}:{channel.name}:window:{who}"


def _state_key(channel: Channel, who: str) -> str:
    return f"{KEY_PREFIX}:{channel.name}:conv:{who}"


# Counsellors' own opt-out from our texts (login notices, alerts) is kept with SMS's.
OPT_OUT_KEY = optout_key(SMS)


@dataclass(frozen=True)
class Incoming:
    sender: str  # Twilio's From: "+44...", or "whatsapp:+44..."
    body: str
    message_sid: str

    @property
    def channel(self) -> Channel:
        return texting_channel(self.sender)


class TextConversations:
    """Answers one incoming text with TwiML, keeping state per sender and channel."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        phone_key: bytes,
        gsm: dict[str, bool],
        desk: CallbackDesk,
        actions: ActionRegistry,
        sealer: Sealer,
        limits: RateLimits,
        failsafe: Mapping[str, str],
        checkins: CheckinDesk | None = None,
    ):
        self.engine = engine
        self.store = store
        self.phone_key = phone_key
        self.gsm = gsm
        self.desk = desk
        self.actions = actions
        self.sealer = sealer
        self.limits = limits
        self.failsafe = failsafe  # language -> the stateless safety answer, as TwiML
        self.checkins = checkins
        self._read_script = store.client.register_script(_READ)

    def answer(self, text: Incoming) -> str:
        """Return the TwiML reply to one text: one Redis read, one write."""
        channel = text.channel
        sender = channel.local_part(text.sender)
        who = phone_digest(self.phone_key, sender) if sender else ""
        sid = text.message_sid if _MESSAGE_SID.match(text.message_sid) else ""
        read, opted_out, stored, replies, count, queued = self._read(channel, who)
        # Replies live in the sender's own conversation: never replayed to another number.
        cached = next((answer for kept, answer in replies if sid and kept == sid), None)
        if cached is not None:
            return cached  # Twilio retried this very message: say the same again

        state = self._restore(stored, who)
        caller = Caller(number=text.sender, channel=channel, webhook_sid=sid)
        danger = self.engine.danger(text.body)
        if self.limits.too_many_texts(channel, count):
            return self._over_limit(state, opted_out, text.body, caller, danger)
        # OK (or a cancel word) closes an open check-in, whatever the conversation is at.
        closed = self.checkins.texted(sender, text.body) if self.checkins else None
        if closed:
            gsm = channel.gsm(self.gsm[closed[0].lang])
            return twiml.sms(closed, gsm, channel.max_chars)
        if danger is not None:
            self.desk.escalate(caller)
        # Without a sender, or with the store down, nothing said now is remembered.
        facts: Mapping[str, str] = self.desk.facts(caller, spoken=False, kept=read, queued=queued)
        if self.checkins:
            facts = self.checkins.facts(facts)
        step = answer_text(
            self.engine, state, opted_out, Reply(text=text.body), context=facts, danger=danger
        )
        if step.opted_out != opted_out:
            if step.opted_out:
                self._opt_out(channel, who)
                return twiml.empty_messaging()
            self._opt_in(channel, who)
        if not step.events:
            return twiml.empty_messaging()  # opted out: no reply, and nothing to keep
        assert step.state is not None
        new_state, events = self.actions.settle(
            self.engine, caller, (step.state, step.events), facts
        )
        log.debug(
            "sms answered",
            extra={
                "node": new_state.node,
                "lang": new_state.lang,
                "channel": channel.name,
                "from": mask_phone(sender),
            },
        )
        return self._reply(channel, who, sid, new_state, events, replies)

    def _over_limit(
        self,
        state: State | None,
        opted_out: bool,
        body: str,
        caller: Caller,
        danger: Danger | None,
    ) -> str:
        """Answer a sender over the limit: the safety essentials, or (a crisis phrase) the
        crisis reply; nothing kept, nothing queued, nothing sent but this answer."""
        lang = state.lang if state is not None else self.engine.content.default_language
        if danger is None:
            return self.failsafe.get(lang) or self.failsafe[self.engine.content.default_language]
        facts = self.desk.facts(caller, spoken=False, kept=False)
        step = answer_text(
            self.engine, None, opted_out, Reply(text=body), context=facts, danger=danger
        )
        gsm = caller.channel.gsm(self.gsm[lang])
        return twiml.sms(step.events, gsm, caller.channel.max_chars)

    # -- Redis, each call fail-soft ------------------------------------------------------

    def _read(
        self, channel: Channel, who: str
    ) -> tuple[bool, bool, dict[str, Any] | None, list[tuple[str, str]], int, bool]:
        """Return (read, opted out, the stored conversation, its recent replies as
        (sid, TwiML), texts this minute, a call back request open); read is False when
        there was nothing to read it with (then nothing is counted either)."""
        counter, counted_for = self.limits.text_counter(channel, who)
        keys = [optout_key(channel), _state_key(channel, who), counter]
        if channel.window_seconds:
            keys.append(window_key(channel, who))
        args = [who, int(channel.window_seconds or 0), counted_for, QUEUE_PREFIX]

        def read(client):
            opted, raw, count, queued = self._read_script(keys=keys, args=args, client=client)
            return (True, bool(opted), *_decode(raw), int(count), bool(queued))

        if not who:
            return False, False, None, [], 0, False
        return self.store.attempt("sms read", read, (False, False, None, [], 0, False))

    def _restore(self, stored: dict[str, Any] | None, who: str) -> State | None:
        if not stored:
            return None
        answers = stored.get("answers")
        sealed = answers if isinstance(answers, str) else ""
        return self.engine.restore(dict(stored, answers=open_answers(self.sealer, sealed, who)))

    def _reply(
        self,
        channel: Channel,
        who: str,
        sid: str,
        state: State,
        events: list[Event],
        replies: list[tuple[str, str]],
    ) -> str:
        answer = twiml.sms(events, channel.gsm(self.gsm[state.lang]), channel.max_chars)
        if not who:
            return answer
        stored = state.to_dict()
        # Answers can hold a callback number: never stored in plain text.
        stored["answers"] = seal_answers(self.sealer, state.answers, who) if state.answers else ""
        # One key, one SET: the state and, newest first, the replies a retry may ask for.
        kept = [(sid, answer), *replies] if sid else replies
        stored["replies"] = kept[:REPLIES_KEPT]
        value = json.dumps(stored, separators=(",", ":"))
        self.store.attempt(
            "sms write",
            lambda client: client.set(_state_key(channel, who), value, ex=SMS_STATE_TTL),
            None,
        )
        return answer

    def _opt_out(self, channel: Channel, who: str) -> None:
        def write(client):
            pipe = client.pipeline(transaction=True)
            pipe.sadd(optout_key(channel), who)
            pipe.delete(_state_key(channel, who))
            pipe.execute()

        if who:
            self.store.attempt("sms opt-out", write, None)
            OPT_OUTS.labels(channel.name, "out").inc()
            log.info("opt-out recorded", extra={"channel": channel.name})

    def _opt_in(self, channel: Channel, who: str) -> None:
        key = optout_key(channel)
        self.store.attempt("sms opt-in", lambda client: client.srem(key, who), None)
        OPT_OUTS.labels(channel.name, "in").inc()
        log.info("opt-in recorded", extra={"channel": channel.name})


def _decode(raw: bytes | None) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """Split a stored conversation into its values and its replies; (None, []) if unreadable."""
    try:
        stored = json.loads(raw) if raw else None
    except ValueError:
        return None, []
    if not isinstance(stored, dict):
        return None, []
    replies = stored.get("replies")
    pairs = replies if isinstance(replies, list) else []
    return stored, [
        (sid, answer)
        for sid, answer in (p for p in pairs if isinstance(p, list) and len(p) == 2)
        if isinstance(sid, str) and isinstance(answer, str)
    ]
