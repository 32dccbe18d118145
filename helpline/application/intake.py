"""Taking a callback request from a call or a text: the handler of the 'callback' action.

The flow asks the questions; this module knows the facts the flow branches on (is the
caller's number known? are counsellors on duty?), queues the request, and hands the
slow work (confirmation texts, alerts) to the workers by request id.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from helpline.callbacks.blocks import Blocks
from helpline.callbacks.queue import Added, CallbackQueue, Contact, Placement
from helpline.conversation.channels import SMS, Channel
from helpline.conversation.engine import State
from helpline.conversation.model import STORE_DOWN, STORE_FACT, Content
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import NotKept, QueueError, SealError
from helpline.infrastructure.hours import OpeningHours
from helpline.infrastructure.metrics import CALLBACK_REQUESTS, CALLBACKS_NOT_QUEUED
from helpline.infrastructure.store import Store

log = logging.getLogger(__name__)

# Longest estimate worth saying; past it, "as soon as we can" is more honest.
MAX_ESTIMATE_MINUTES = 240
# The fact that says the caller already has a call back request open, so the intake
# tells them where they stand instead of asking every question again.
QUEUED_FACT, QUEUED_OPEN = "queued", "open"
# Facts that need the store: worked out together, in one round trip at most.
_STANDING_FACTS = frozenset({STORE_FACT, QUEUED_FACT})


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of this webhook."""

    number: str  # Twilio's From, as sent
    channel: Channel
    webhook_sid: str  # CallSid or MessageSid: a retry must not queue twice

    def callable_number(self, region: str) -> str | None:
        """The number behind From that a counsellor could call back; None if none."""
        return self.channel.number(self.number, region)


class CallerFacts(Mapping[str, str]):
    """What the flow may know of the caller and the store, worked out only when asked.

    Reading the caller ID with phonenumbers costs more than the rest of a menu step, and
    asking Redis whether it is up costs a round trip: only the callback intake needs them.
    """

    def __init__(
        self,
        caller: Caller,
        *,
        spoken: bool,
        region: str,
        standing: Callable[[str | None], tuple[bool, bool]],
    ):
        self.caller = caller
        self.spoken = spoken
        self.region = region
        self._standing = standing

    @functools.cached_property
    def _number(self) -> str | None:
        # Judged where it is offered: a caller ID we could not call is never offered.
        return self.caller.callable_number(self.region)

    @functools.cached_property
    def _caller(self) -> dict[str, str]:
        number = self._number
        if number is None:
            return {}
        end = number[-3:]
        return {"caller_id": "known", "number_end": " ".join(end) if self.spoken else end}

    @functools.cached_property
    def _store(self) -> dict[str, str]:
        down, queued = self._standing(self._number)
        facts = {STORE_FACT: STORE_DOWN} if down else {}
        if queued and not down:
            facts[QUEUED_FACT] = QUEUED_OPEN
        return facts

    def __getitem__(self, key: str) -> str:
        return (self._store if key in _STANDING_FACTS else self._caller)[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self._caller, **self._store})

    def __len__(self) -> int:
        return len(self._caller) + len(self._store)


class CallbackDesk:
    """Handles the 'callback' action (request_callback) and supplies the caller's facts."""

    def __init__(
        self,
        queue: CallbackQueue,
        store: Store,
        hours: OpeningHours,
        content: Content,
        notify: Callable[[Placement, bool], None],
        clock: Callable[[], float],
        blocks: Blocks,
        region: str = "GB",
    ):
        self.region = region
        self.blocks = blocks
        self.queue = queue
        self.store = store
        self.hours = hours
        self.content = content
        self.notify = notify
        self.clock = clock

    def facts(
        self, caller: Caller, *, spoken: bool, kept: bool | None = None, queued: bool = False
    ) -> CallerFacts:
        """Return what the flow may branch on or say before any action.

        kept says whether the conversation will be remembered (a text's state was read),
        and queued whether that same read found the caller's request open; None: ask
        Redis, if and when the flow needs to know.
        """

        def standing(number: str | None) -> tuple[bool, bool]:
            """(store down, a request open), at most one round trip."""
            if kept is not None:
                return not kept, queued
            if number is None:
                ping = self.store.attempt("store check", lambda client: bool(client.ping()), False)
                return not (self.store.available and ping), False
            if not self.store.available:
                return True, False
            try:
                return False, self.queue.has_open(number)
            except QueueError as exc:
                self.store.trip()
                log.error("store check failed", extra={"error": type(exc).__name__})
                return True, False

        return CallerFacts(caller, spoken=spoken, region=self.region, standing=standing)

    def request_callback(self, state: State, caller: Caller) -> tuple[str, dict[str, str]]:
        """Queue the caller; return the flow outcome and the facts to tell them."""
        answers = state.answers
        wanted = answers.get("phone", "")
        own = wanted == "caller"
        phone = caller.callable_number(self.region) if own else wanted
        if not phone or not self.store.available:
            reason = "no number" if not phone else "redis"
            CALLBACKS_NOT_QUEUED.labels(reason).inc()
            log.error("callback not queued", extra={"reason": reason})
            return "failed", {}
        sender = caller.callable_number(self.region)
        if self._blocked(phone, sender):
            CALLBACKS_NOT_QUEUED.labels("blocked").inc()
            log.info("callback refused: the caller is blocked")
            return "blocked", {}
        # Texts go where the texter wrote from (WhatsApp stays WhatsApp); to a number
        # given by voice or typed in, by SMS.
        texts_by = caller.channel if caller.channel.texting and own else SMS
        contact = Contact(
            phone=phone,
            voicemail_ok=answers.get("voicemail") == "yes",
            texts_ok=answers.get("texts") == "yes",
            texts_by=texts_by.name,
        )
        # The reply to a text already tells the texter where they stand.
        told_in_reply = caller.channel.texting and own
        confirm = contact.texts_ok and not told_in_reply
        try:
            placement = self.queue.enqueue(
                contact,
                channel=caller.channel.name,
                lang=state.lang,
                urgent=answers.get("urgent") == "yes",
                webhook_sid=caller.webhook_sid,
                confirm=confirm,
                # Withheld caller IDs are not one person: no sender to hold to one request.
                sender=sender or "",
            )
        except NotKept:
            # Redis answers, but its replicas lag or are away: no reason to stop serving.
            log.error("callback not queued", extra={"reason": "replicas"})
            return "failed", {}
        except QueueError as exc:
            self.store.trip()
            CALLBACKS_NOT_QUEUED.labels("redis").inc()
            log.error("callback not queued", extra={"reason": type(exc).__name__})
            return "failed", {}
        log.info(
            "callback queued",
            extra={
                "request": placement.request.id,
                "added": placement.added.value,
                "priority": placement.request.priority.value,
                "raised": placement.raised,
                "channel": caller.channel.name,
            },
        )
        if placement.added is Added.NEW:
            CALLBACK_REQUESTS.labels(caller.channel.name, placement.request.priority.value).inc()
            self._notify(placement, confirm)
        elif placement.raised:
            self._notify(placement, False)  # confirmed when it was made: only the alert
        return ("queued" if placement.added is Added.NEW else "already"), self.where(
            placement, state.lang
        )

    def _blocked(self, phone: str, sender: str | None) -> bool:
        """Whether the number to call, or the one asking, is blocked from call backs."""
        try:
            return any(self.blocks.blocked(number) for number in {phone, sender} if number)
        except redis.RedisError:
            return False  # the request itself will say whether the store is up

    def escalate(self, caller: Caller) -> None:
        """Make a crisis caller's open request urgent, in the line now; alert on the raise."""
        try:
            self._revisit(caller, urgent=True)
        except QueueError:
            return  # logged; the crisis reply goes out all the same

    def ask_again(self, state: State, caller: Caller) -> tuple[str, dict[str, str]]:
        """Bring a returning requester's open request back into the line and tell them
        where it stands ("already"); "none" if it closed meanwhile; "failed"."""
        return self._revisited(caller, state.lang, urgent=False, outcome="already")

    def make_urgent(self, state: State, caller: Caller) -> tuple[str, dict[str, str]]:
        """Raise the caller's open request to urgent and tell them where it stands now
        ("raised"); "none" if they have none open; "failed"."""
        return self._revisited(caller, state.lang, urgent=True, outcome="raised")

    def _revisited(
        self, caller: Caller, lang: str, *, urgent: bool, outcome: str
    ) -> tuple[str, dict[str, str]]:
        try:
            placement = self._revisit(caller, urgent=urgent)
        except QueueError:
            return "failed", {}
        return ("none", {}) if placement is None else (outcome, self.where(placement, lang))

    def _revisit(self, caller: Caller, *, urgent: bool) -> Placement | None:
        """Bring the caller's open request back into the line now, urgent if asked, and
        alert the counsellors if this made it urgent; None if they have none open."""
        number = caller.callable_number(self.region)
        if number is None:
            return None
        if not self.store.available:
            raise QueueError("the store is down")
        try:
            placement = self.queue.revisit(number, urgent=urgent)
        except QueueError as exc:
            log.error("could not revisit a callback", extra={"error": type(exc).__name__})
            raise
        if placement is not None and placement.raised:
            log.warning("callback raised to urgent", extra={"request": placement.request.id})
            self._notify(placement, False)
        return placement

    def where(self, placement: Placement, lang: str) -> dict[str, str]:
        """Return the facts that tell a caller their place, the wait, and the hours."""
        facts: dict[str, str] = {}
        if placement.position:
            facts.update(place="known", position=str(placement.position))
        now = datetime.fromtimestamp(self.clock(), UTC)
        opening = self.hours.next_opening(now)
        if opening is not None:
            day = self.content.text(f"day.{opening.day}", lang, {})
            time_text = f"{opening.at.hour}:{opening.at.minute:02d}"
            facts.update(
                hours="closed",
                resume=self.content.text("hours.resume", lang, {"day": day, "time": time_text}),
            )
            return facts
        try:
            seconds = self.queue.estimated_wait(placement.position)
        except QueueError:
            seconds = None
        if seconds is not None and seconds <= MAX_ESTIMATE_MINUTES * 60:
            minutes = max(5, 5 * round(seconds / 300))
            facts.update(wait="known", minutes=str(minutes))
        return facts

    def _notify(self, placement: Placement, confirm: bool) -> None:
        # The request is safe in Redis already; if the jobs cannot be queued now, the
        # workers' housekeeping finds requests whose confirmation is still pending.
        try:
            self.notify(placement, confirm)
        except Exception as exc:  # noqa: BLE001 - the caller is queued; never fail them here
            log.error(
                "could not hand a callback to the workers",
                extra={"request": placement.request.id, "error": type(exc).__name__},
            )


def seal_answers(sealer: Sealer, answers: Mapping[str, str], record: str) -> str:
    """Return answers as one opaque token bound to record (a CallSid, or a texter's hash)."""
    return sealer.seal(json.dumps(dict(answers), separators=(",", ":")), record)


def open_answers(sealer: Sealer, token: str, record: str) -> dict[str, str]:
    """Return the answers in a token from seal_answers; {} if it does not open."""
    if not token:
        return {}
    try:
        value = json.loads(sealer.open(token, record))
    except (SealError, ValueError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
