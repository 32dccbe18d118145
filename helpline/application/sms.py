"""The SMS conversation: opt-out, per-number state in Redis, one engine step per text."""

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
from helpline.conversation import twiml
from helpline.conversation.engine import Engine, Event, Reply, State
from helpline.conversation.texting import answer_text
from helpline.infrastructure.constants import KEY_PREFIX, SMS_STATE_TTL
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.privacy import mask_phone, phone_digest
from helpline.infrastructure.store import Store

log = logging.getLogger(__name__)

OPT_OUT_KEY = f"{KEY_PREFIX}:sms:optout"  # set of keyed hashes of opted-out numbers
_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
# Replies kept in the conversation, newest first, so a retried webhook (same MessageSid)
# gets the same reply for as long as the conversation is kept (SMS_STATE_TTL).
REPLIES_KEPT = 3

# A text's one read: is the sender opted out, and their conversation (or nil).
_READ = """
return {redis.call('SISMEMBER', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2])}
"""


def _state_key(who: str) -> str:
    return f"{KEY_PREFIX}:sms:conv:{who}"


@dataclass(frozen=True)
class Incoming:
    sender: str
    body: str
    message_sid: str


class SmsConversations:
    """Answers one incoming text with TwiML, keeping state per number (by keyed hash)."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        phone_key: bytes,
        gsm: dict[str, bool],
        desk: CallbackDesk,
        actions: ActionRegistry,
        sealer: Sealer,
        checkins: CheckinDesk | None = None,
    ):
        self.engine = engine
        self.store = store
        self.phone_key = phone_key
        self.gsm = gsm
        self.desk = desk
        self.actions = actions
        self.sealer = sealer
        self.checkins = checkins
        self._read_script = store.client.register_script(_READ)

    def answer(self, text: Incoming) -> str:
        """Return the TwiML reply to one text: one Redis read, one write."""
        who = phone_digest(self.phone_key, text.sender) if text.sender else ""
        sid = text.message_sid if _MESSAGE_SID.match(text.message_sid) else ""
        read, opted_out, stored, replies = self._read(who)
        # Replies live in the sender's own conversation: never replayed to another number.
        cached = next((answer for kept, answer in replies if sid and kept == sid), None)
        if cached is not None:
            return cached  # Twilio retried this very message: say the same again

        # OK (or a cancel word) closes an open check-in, whatever the conversation is at.
        closed = self.checkins.texted(text.sender, text.body) if self.checkins else None
        if closed:
            return twiml.sms(closed, self.gsm[closed[0].lang])

        state = self._restore(stored, who)
        caller = Caller(number=text.sender, channel="sms", webhook_sid=sid)
        danger = self.engine.danger(text.body)
        if danger is not None:
            self.desk.escalate(caller)
        # Without a sender, or with the store down, nothing said now is remembered.
        facts: Mapping[str, str] = self.desk.facts(caller, spoken=False, kept=read)
        if self.checkins:
            facts = self.checkins.facts(facts)
        step = answer_text(
            self.engine, state, opted_out, Reply(text=text.body), context=facts, danger=danger
        )
        if step.opted_out != opted_out:
            if step.opted_out:
                self._opt_out(who)
                return twiml.empty_messaging()
            self._opt_in(who)
        if not step.events:
            return twiml.empty_messaging()  # opted out: no reply, and nothing to keep
        assert step.state is not None
        new_state, events = self.actions.settle(
            self.engine, caller, (step.state, step.events), facts
        )
        log.debug(
            "sms answered",
            extra={"node": new_state.node, "lang": new_state.lang, "from": mask_phone(text.sender)},
        )
        return self._reply(who, sid, new_state, events, replies)

    # -- Redis, each call fail-soft ------------------------------------------------------

    def _read(self, who: str) -> tuple[bool, bool, dict[str, Any] | None, list[tuple[str, str]]]:
        """Return (read, opted out, the stored conversation, its recent replies as
        (sid, TwiML)); read is False when there was nothing to read it with."""

        def read(client):
            opted, raw = self._read_script(
                keys=[OPT_OUT_KEY, _state_key(who)], args=[who], client=client
            )
            return (True, bool(opted), *_decode(raw))

        if not who:
            return False, False, None, []
        return self.store.attempt("sms read", read, (False, False, None, []))

    def _restore(self, stored: dict[str, Any] | None, who: str) -> State | None:
        if not stored:
            return None
        answers = stored.get("answers")
        sealed = answers if isinstance(answers, str) else ""
        return self.engine.restore(dict(stored, answers=open_answers(self.sealer, sealed, who)))

    def _reply(
        self,
        who: str,
        sid: str,
        state: State,
        events: list[Event],
        replies: list[tuple[str, str]],
    ) -> str:
        answer = twiml.sms(events, self.gsm[state.lang])
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
            "sms write", lambda client: client.set(_state_key(who), value, ex=SMS_STATE_TTL), None
        )
        return answer

    def _opt_out(self, who: str) -> None:
        def write(client):
            pipe = client.pipeline(transaction=True)
            pipe.sadd(OPT_OUT_KEY, who)
            pipe.delete(_state_key(who))
            pipe.execute()

        if who:
            self.store.attempt("sms opt-out", write, None)
            log.info("sms opt-out recorded")

    def _opt_in(self, who: str) -> None:
        self.store.attempt("sms opt-in", lambda client: client.srem(OPT_OUT_KEY, who), None)
        log.info("sms opt-in recorded")


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
