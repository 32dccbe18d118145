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
from helpline.application.surveys import SurveyDesk
from helpline.callbacks.queue import OPEN_LOOKUP
from helpline.callbacks.queue import PREFIX as QUEUE_PREFIX
from helpline.callbacks.surveys import open_key as survey_key
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
from helpline.reports import tally

log = logging.getLogger(__name__)

_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
# Replies kept in the conversation, newest first, so a retried webhook (same MessageSid)
# gets the same reply for as long as the conversation is kept (SMS_STATE_TTL).
REPLIES_KEPT = 3

# A text's one read: is the sender opted out, their conversation (or nil), how many
# texts they sent this minute (KEYS[3], counted here, kept ARGV[3] seconds), whether a
# follow-up survey waits for their answer (KEYS[4]), and whether they have a call back
# request open (in the queue under ARGV[4]), so asking again is answered at once. On a
# channel with a reply window, the same step opens it (KEYS[5]) for ARGV[2] seconds.
_READ = (
    OPEN_LOOKUP
    + """
local count = redis.call('INCR', KEYS[3])
if count == 1 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
if KEYS[5] then redis.call('SET', KEYS[5], '1', 'EX', ARGV[2]) end
local queued = open_of(ARGV[4], ARGV[1]) and 1 or 0
return {redis.call('SISMEMBER', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2]), count,
        redis.call('EXISTS', KEYS[4]), queued}
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
class Read:
    """What a text's one round trip read; done is False when nothing could be read."""

    done: bool
    opted_out: bool
    stored: dict[str, Any] | None
    replies: list[tuple[str, str]]  # (MessageSid, TwiML), newest first
    count: int  # texts from this sender this minute
    survey_waiting: bool
    queued: bool  # a call back request of theirs is open


UNREAD = Read(False, False, None, [], 0, False, False)


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
        reports: tally.Pending,
        checkins: CheckinDesk | None = None,
        surveys: SurveyDesk | None = None,
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
        self.reports = reports
        self.checkins = checkins
        self.surveys = surveys
        self._read_script = store.client.register_script(_READ)

    def answer(self, text: Incoming) -> str:
        """Return the TwiML reply to one text: one Redis read, one write."""
        channel = text.channel
        sender = channel.local_part(text.sender)
        who = phone_digest(self.phone_key, sender) if sender else ""
        sid = text.message_sid if _MESSAGE_SID.match(text.message_sid) else ""
        read = self._read(channel, who)
        opted_out, stored, replies, count = read.opted_out, read.stored, read.replies, read.count
        # Replies live in the sender's own conversation: never replayed to another number.
        cached = next((answer for kept, answer in replies if sid and kept == sid), None)
        if cached is not None:
            return cached  # Twilio retried this very message: say the same again

        state = self._restore(stored, who)
        caller = Caller(number=text.sender, channel=channel, webhook_sid=sid)
        danger = self.engine.danger(text.body)
        if self.limits.too_many_texts(channel, count):
            if danger is not None:
                self.reports.add(tally.crisis(channel.name))
            return self._over_limit(state, opted_out, text.body, caller, danger)
        # OK (or a cancel word) closes an open check-in, whatever the conversation is at;
        # but not "OK he's not breathing": danger comes first, and the check-in stays open.
        closed = self.checkins.texted(sender, text.body) if self.checkins and not danger else None
        if not closed and self.surveys and read.survey_waiting and not opted_out:
            # A score of 1 to 5 answers a survey waiting for this number. Danger still
            # comes first: the score is counted, and the reply is the crisis reply.
            thanks = self.surveys.texted(who, text.body)
            closed = thanks if danger is None else None
        if closed:
            gsm = channel.gsm(self.gsm[closed[0].lang])
            answer = twiml.sms(closed, gsm, channel.max_chars)
            # Kept with the conversation, so a retry of this text is not read afresh (the
            # check-in or survey it closed is gone by then).
            self._keep_reply(channel, who, sid, stored, replies, answer)
            return answer
        if danger is not None:
            self.desk.escalate(caller)
        # Without a sender, or with the store down, nothing said now is remembered.
        facts: Mapping[str, str] = self.desk.facts(
            caller, spoken=False, kept=read.done, queued=read.queued
        )
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
        # Counted with the conversation's own write: a new contact, a crisis reply, a topic.
        counts = [tally.contacts(channel.name)] if state is None else []
        if danger is not None:
            counts.append(tally.crisis(channel.name))
        chosen = self.engine.topic(state.node if state else None, new_state.node)
        if chosen:
            counts.append(tally.topic(chosen))
        return self._reply(channel, who, sid, new_state, events, replies, counts)

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

    def _read(self, channel: Channel, who: str) -> Read:
        """Return what a text's one round trip reads (nothing, and nothing counted, when
        there is no sender to read it for, or the store is down)."""
        counter, counted_for = self.limits.text_counter(channel, who)
        keys = [optout_key(channel), _state_key(channel, who), counter, survey_key(who)]
        if channel.window_seconds:
            keys.append(window_key(channel, who))
        args = [who, int(channel.window_seconds or 0), counted_for, QUEUE_PREFIX]

        def read(client):
            opted, raw, count, survey, queued = self._read_script(
                keys=keys, args=args, client=client
            )
            stored, replies = _decode(raw)
            return Read(True, bool(opted), stored, replies, int(count), bool(survey), bool(queued))

        if not who:
            return UNREAD
        return self.store.attempt("sms read", read, UNREAD)

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
        counts: list[str],
    ) -> str:
        answer = twiml.sms(events, channel.gsm(self.gsm[state.lang]), channel.max_chars)
        if not who:
            return answer
        stored = state.to_dict()
        # Answers can hold a callback number: never stored in plain text.
        stored["answers"] = seal_answers(self.sealer, state.answers, who) if state.answers else ""
        # One key, one SET: the state and, newest first, the replies a retry may ask for.
        value = _with_reply(stored, sid, answer, replies)
        reports = self.reports

        def write(client: Any) -> None:
            if not counts and not reports:
                client.set(_state_key(channel, who), value, ex=SMS_STATE_TTL)
                return
            # The report counts go in the same round trip, not a transaction of their own.
            pipe = client.pipeline(transaction=False)
            pipe.set(_state_key(channel, who), value, ex=SMS_STATE_TTL)
            if counts:
                reports.count(pipe, counts)
            reports.drain(pipe)
            pipe.execute()

        self.store.attempt("sms write", write, None)
        return answer

    def _keep_reply(
        self,
        channel: Channel,
        who: str,
        sid: str,
        stored: dict[str, Any] | None,
        replies: list[tuple[str, str]],
        answer: str,
    ) -> None:
        """Keep a reply made outside the conversation (the conversation as it was)."""
        if not who or not sid:
            return
        value = _with_reply(dict(stored or {}), sid, answer, replies)
        key = _state_key(channel, who)
        self.store.attempt(
            "sms reply", lambda client: client.set(key, value, ex=SMS_STATE_TTL), None
        )

    def _opt_out(self, channel: Channel, who: str) -> None:
        def write(client):
            pipe = client.pipeline(transaction=True)
            pipe.sadd(optout_key(channel), who)
            pipe.delete(_state_key(channel, who))
            self.reports.count(pipe, [tally.opt_out(channel.name)])
            self.reports.drain(pipe)
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


def _with_reply(
    stored: dict[str, Any], sid: str, answer: str, replies: list[tuple[str, str]]
) -> str:
    """The stored conversation as JSON, with this reply first among those kept for retries."""
    kept = [(sid, answer), *replies] if sid else replies
    stored["replies"] = kept[:REPLIES_KEPT]
    return json.dumps(stored, separators=(",", ":"))


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
