"""The SMS conversation: opt-out, per-number state in Redis, one engine step per text."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from helpline import twiml
from helpline.constants import KEY_PREFIX, SMS_STATE_TTL
from helpline.crypto import Sealer
from helpline.flows.engine import Engine, Event, Reply, State
from helpline.flows.matching import tokens
from helpline.intake import CallbackDesk, Caller, open_answers, seal_answers
from helpline.privacy import mask_phone, phone_digest
from helpline.store import Store

log = logging.getLogger(__name__)

# Carrier-standard opt-out and opt-in words; matched only as the whole message.
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP", "ALTA"})

OPT_OUT_KEY = f"{KEY_PREFIX}:sms:optout"  # set of keyed hashes of opted-out numbers
_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
# A retried webhook (same MessageSid) gets the same reply for this long, in seconds.
REPLY_CACHE_TTL = 60 * 60


def _state_key(who: str) -> str:
    return f"{KEY_PREFIX}:sms:conv:{who}"


def _reply_key(who: str, message_sid: str) -> str:
    # Keyed by sender too: a reply is only ever replayed to the number it was for.
    return f"{KEY_PREFIX}:sms:reply:{who}:{message_sid}"


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
        sealer: Sealer,
    ):
        self.engine = engine
        self.store = store
        self.phone_key = phone_key
        self.gsm = gsm
        self.desk = desk
        self.sealer = sealer

    def answer(self, text: Incoming) -> str:
        who = phone_digest(self.phone_key, text.sender) if text.sender else ""
        sid = text.message_sid if _MESSAGE_SID.match(text.message_sid) else ""
        opted_out, raw_state, cached = self._read(who, sid)
        if cached is not None:
            return cached  # Twilio retried this very message: say the same again, once

        words = tokens(text.body)
        if len(words) == 1 and words[0] in OPT_OUT_WORDS:
            self._opt_out(who)
            return twiml.empty_messaging()

        state = self._restore(raw_state, who)
        caller = Caller(number=text.sender, channel="sms", webhook_sid=sid)
        crisis = self.engine.is_crisis(text.body)
        if crisis:
            self.desk.escalate(caller)
        if opted_out:
            if len(words) == 1 and words[0] in OPT_IN_WORDS:
                self._opt_in(who)
                lang = state.lang if state else None
                new_state, events = self.engine.enter("resubscribed", self.engine.language(lang))
                return self._reply(who, sid, new_state, events)
            if not crisis:
                return twiml.empty_messaging()
            # Someone in danger gets the emergency advice even after opting out.

        fresh = state is None
        if state is None:
            state = State(
                flow=self.engine.flow.id,
                node=self.engine.flow.start,
                lang=self.engine.content.default_language,
            )
        facts = self.desk.facts(caller, spoken=False)
        reply = Reply(text=text.body)
        step = self.engine.resume(state, reply, fresh=fresh, context=facts, crisis=crisis)
        new_state, events = self.desk.settle(self.engine, caller, step, facts)
        log.debug(
            "sms answered",
            extra={"node": new_state.node, "lang": new_state.lang, "from": mask_phone(text.sender)},
        )
        return self._reply(who, sid, new_state, events)

    # -- Redis, each call fail-soft ------------------------------------------------------

    def _read(self, who: str, sid: str) -> tuple[bool, bytes | None, str | None]:
        def read(client):
            pipe = client.pipeline(transaction=False)
            pipe.sismember(OPT_OUT_KEY, who)
            pipe.get(_state_key(who))
            pipe.get(_reply_key(who, sid)) if sid else pipe.echo("")
            opted, raw, cached = pipe.execute()
            return bool(opted), raw, (cached.decode() if cached else None)

        if not who:
            return False, None, None
        return self.store.attempt("sms read", read, (False, None, None))

    def _restore(self, raw: bytes | None, who: str) -> State | None:
        if not raw:
            return None
        try:
            stored = json.loads(raw)
            stored["answers"] = open_answers(self.sealer, stored.get("answers") or "", who)
            return self.engine.restore(stored)
        except (ValueError, TypeError, AttributeError):
            return None

    def _reply(self, who: str, sid: str, state: State, events: list[Event]) -> str:
        answer = twiml.sms(events, self.gsm[state.lang])

        def write(client):
            pipe = client.pipeline(transaction=False)
            stored = state.to_dict()
            # Answers can hold a callback number: never stored in plain text.
            answers = state.answers
            stored["answers"] = seal_answers(self.sealer, answers, who) if answers else ""
            pipe.set(_state_key(who), json.dumps(stored), ex=SMS_STATE_TTL)
            if sid:
                pipe.set(_reply_key(who, sid), answer, ex=REPLY_CACHE_TTL)
            pipe.execute()

        if who:
            self.store.attempt("sms write", write, None)
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
