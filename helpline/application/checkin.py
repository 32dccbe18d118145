"""Check-in calls: the handler of the 'checkin' action, and what follows from a call.

The flow asks the questions (consent, minutes, place, a trusted contact); this module
knows whether a check-in can be offered now (a counsellor on duty, within hours), books
the session, and decides what each answer, missed call or OK text means: close, put off,
try again, or escalate to the counsellors. Calls and texts are the workers' (by id).
The software never calls the emergency services: a counsellor decides.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from helpline.application.intake import Caller
from helpline.callbacks.blocks import Blocks
from helpline.checkins.sessions import CheckinSessions, Claimed, Session, Status, Work
from helpline.conversation.engine import Say, State
from helpline.conversation.matching import tokens
from helpline.conversation.model import Content
from helpline.conversation.texting import opt_word
from helpline.counsellors.accounts import Counsellors
from helpline.infrastructure.errors import QueueError
from helpline.infrastructure.hours import OpeningHours
from helpline.infrastructure.metrics import CHECKINS
from helpline.infrastructure.store import Store

log = logging.getLogger(__name__)

# The fact a flow branches on to offer a check-in, and its value when one can be.
DUTY_FACT, DUTY_OPEN = "duty", "open"
# Calls in one round (the first and two retries) before the counsellors are alerted.
MAX_TRIES = 3
# Times the caller may put the call off by pressing 2.
MAX_EXTENSIONS = 3
# Due calls one job places, when many fall due at once.
CALL_BATCH = 10
# Longest text that can still be an OK ("ok thanks, all good"), in words.
OK_MAX_WORDS = 6
# Why an attempt was cut short when danger was said on the call (its timeline says so).
DANGER_SAID = "danger said"
# Outcomes a session closes with.
OK_BY_KEY, OK_BY_TEXT, CANCELLED = "ok_key", "ok_text", "cancelled"
# What a counsellor records on an escalation.
COUNSELLOR_OUTCOMES = ("reached_safe", "emergency_called", "could_not_reach")
# Twilio's AnsweredBy values that are not a person.
MACHINE = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)
# Call statuses that end a call nobody answered.
NOT_ANSWERED = frozenset({"no-answer", "busy", "failed", "canceled"})


@dataclass(frozen=True)
class Timing:
    """How long things take, in seconds, from the length of a check-in minute."""

    minute: float = 60.0

    @property
    def retry(self) -> float:  # after a missed call, the next one
        return self.minute

    @property
    def silent(self) -> float:  # a placed call nothing is heard of counts as missed
        return 2 * self.minute

    @property
    def extension(self) -> float:  # pressing 2: five more minutes
        return 5 * self.minute

    @property
    def realert(self) -> float:  # nobody acknowledged an escalation: alert again
        return 2 * self.minute


class CheckinJobs(Protocol):
    """The workers' side (helpline.application.jobs.Jobs)."""

    def checkin(self, claimed: Claimed) -> bool: ...

    def checkin_calls(self, claims: list[Claimed]) -> bool: ...

    def checkin_reminder(self, session: str, round_: int) -> bool: ...


class DutyFacts(Mapping[str, str]):
    """The caller's facts, and whether a check-in can be offered: read only when asked."""

    def __init__(self, base: Mapping[str, str], on_duty: Callable[[], bool]):
        self.base = base
        self._on_duty = on_duty

    @functools.cached_property
    def _duty(self) -> dict[str, str]:
        return {DUTY_FACT: DUTY_OPEN} if self._on_duty() else {}

    def __getitem__(self, key: str) -> str:
        return self._duty[key] if key == DUTY_FACT else self.base[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict(self.base), **self._duty})

    def __len__(self) -> int:
        return len(list(iter(self)))


class CheckinDesk:
    """Books check-ins (the 'checkin' action) and follows each one to its end."""

    def __init__(
        self,
        sessions: CheckinSessions,
        store: Store,
        counsellors: Counsellors,
        hours: OpeningHours,
        content: Content,
        variables: Callable[[str], Mapping[str, str]],
        jobs: CheckinJobs,
        clock: Callable[[], float],
        *,
        region: str = "GB",
        zone: str = "Europe/London",
        timing: Timing = Timing(),
        blocks: Blocks | None = None,
    ):
        self.blocks = blocks
        self.sessions = sessions
        self.store = store
        self.counsellors = counsellors
        self.hours = hours
        self.content = content
        self.variables = variables
        self.jobs = jobs
        self.clock = clock
        self.region = region
        self.zone = ZoneInfo(zone)
        self.timing = timing
        self._ok = content.all_phrase_tokens("checkin_ok") + content.all_phrase_tokens(
            "checkin_cancel"
        )
        self._said_ok = content.all_phrase_tokens("checkin_said_ok")
        self._more_time = content.all_phrase_tokens("checkin_more_time")

    # -- offering and booking --------------------------------------------------------------

    def facts(self, base: Mapping[str, str]) -> DutyFacts:
        """Add to the caller's facts whether a check-in can be offered now."""
        return DutyFacts(base, self.on_duty)

    def _blocked(self, phone: str) -> bool:
        blocks = self.blocks
        if blocks is None:
            return False
        return bool(self.store.attempt("block check", lambda _: blocks.blocked(phone), False))

    def on_duty(self) -> bool:
        """True if a counsellor is on duty, within hours, to be alerted."""
        if not self.hours.is_open(datetime.now(self.zone)):
            return False
        on_duty = self.store.attempt(
            "duty check", lambda _: bool(self.counsellors.on_duty()), False
        )
        return bool(on_duty)

    def book(self, state: State, caller: Caller) -> tuple[str, dict[str, str]]:
        """Open (or move) the caller's check-in; return the flow outcome and its facts."""
        answers = state.answers
        phone = caller.callable_number(self.region)
        if phone is None or not self.store.available or "minutes" not in answers:
            log.error("check-in not booked", extra={"reason": "no number or store"})
            return "failed", {}
        if not self.on_duty():
            return "unavailable", {}
        if self._blocked(phone):
            # Blocked from call backs and check-ins: told, as when none can be offered,
            # with the emergency number and the don't-use-alone advice.
            log.info("check-in refused: the caller is blocked")
            return "unavailable", {}
        minutes = int(answers["minutes"])
        due = self.clock() + minutes * self.timing.minute
        try:
            result, sid = self.sessions.book(
                phone,
                minutes=minutes,
                due=due,
                lang=state.lang,
                channel=caller.channel.name,
                place=answers.get("where", ""),
                contact=answers.get("contact", ""),
            )
        except QueueError as exc:
            self.store.trip()
            log.error("check-in not booked", extra={"reason": type(exc).__name__})
            return "failed", {}
        CHECKINS.labels(result).inc()  # started, or updated
        log.info("check-in booked", extra={"session": sid, "result": result, "minutes": minutes})
        at = datetime.fromtimestamp(due, self.zone)
        return result, {"time": f"{at.hour}:{at.minute:02d}"}

    def add_place(self, state: State, caller: Caller) -> tuple[str, dict[str, str]]:
        """Keep the place sent for the caller's open check-in (booked by phone)."""
        where = state.answers.get("where", "")
        if not where or not self.store.available:
            return "failed", {}
        try:
            session = self.sessions.open_for(caller.number)
            if session is None:
                return "none", {}
            self.sessions.set_place(session.id, where)
        except QueueError as exc:
            self.store.trip()
            log.error("check-in place not kept", extra={"reason": type(exc).__name__})
            return "failed", {}
        log.info("check-in place added", extra={"session": session.id})
        return "saved", {}

    # -- texts -----------------------------------------------------------------------------

    def texted(self, sender: str, body: str) -> list[Say] | None:
        """Close the sender's open check-in if the text says OK or cancels it.

        Returns the reply to send instead of the conversation's, or None to carry on
        (an opt-out word closes the check-in too, and then carries on to opt out).
        """
        words = tokens(body)
        stop = opt_word(words) == "out"
        if not stop and not (len(words) <= OK_MAX_WORDS and _starts(words, self._ok)):
            return None  # most texts: no Redis read at all
        if not sender or not self.store.available:
            return None
        try:
            session = self.sessions.open_for(sender)
            if session is None:
                return None
            closed = self.sessions.close(session.id, CANCELLED if stop else OK_BY_TEXT)
        except QueueError as exc:
            self.store.trip()
            log.error("check-in not closed by text", extra={"error": type(exc).__name__})
            return None
        CHECKINS.labels("cancelled" if stop else "ok").inc()
        log.info("check-in closed by text", extra={"session": session.id, "closed": closed})
        if stop:
            return None
        return [self.say("sms.checkin_closed", session.lang)]

    def say(self, key: str, lang: str, **values: str) -> Say:
        text = self.content.text(key, lang, {**self.variables(lang), **values})
        return Say(key=key, text=text, lang=lang)

    # -- the call --------------------------------------------------------------------------

    def session(self, sid: str) -> Session | None:
        return self.sessions.get(sid)

    def may_put_off(self, session: Session) -> bool:
        """Whether the next call can still be put off ("press 2 for 5 more minutes")."""
        return session.extensions < MAX_EXTENSIONS

    def answered(self, sid: str, attempt: int, answered_by: str) -> bool:
        """The call was picked up: True if by a person (ask them), else count it missed."""
        if answered_by in MACHINE:
            self.missed(sid, attempt, "machine")
            return False
        self.sessions.log(sid, "answered", str(attempt))
        return True

    def reply(self, sid: str, attempt: int, digits: str, speech: str) -> str:
        """Act on what the caller keyed or said; return 'ok', 'more', 'spent' or 'missed'."""
        words = tokens(speech)
        if digits == "1" or (not digits and _starts(words, self._said_ok)):
            self.sessions.close(sid, OK_BY_KEY, attempt)
            CHECKINS.labels("ok").inc()
            log.info("check-in answered OK", extra={"session": sid})
            return "ok"
        if digits == "2" or (not digits and _starts(words, self._more_time)):
            result = self.sessions.extend(
                sid, attempt, seconds=self.timing.extension, most=MAX_EXTENSIONS
            )
            if result == "extended":
                CHECKINS.labels("extended").inc()
                return "more"
            if result == "spent":  # no more time to give: a missed call, and a retry soon
                self.missed(sid, attempt, "no time left")
                return "spent"
        self.missed(sid, attempt, "no key")
        return "missed"

    def call_status(self, sid: str, attempt: int, status: str) -> None:
        """A status callback: a call that ended unanswered is a missed attempt."""
        if status in NOT_ANSWERED:
            self.missed(sid, attempt, status)
        elif status == "completed":
            self.missed(sid, attempt, "hung up")  # counted once: a key closed it before

    def danger_said(self, sid: str, attempt: int) -> str:
        """Danger was said on the check-in call ("I'm OK but he's not breathing"): it is
        not an OK, and the counsellors are alerted now, not after the retries."""
        return self.missed(sid, attempt, DANGER_SAID, escalate_now=True)

    def missed(self, sid: str, attempt: int, why: str, *, escalate_now: bool = False) -> str:
        """Count an attempt as missed: try again (texting them too), or escalate."""
        result = self.sessions.missed(
            sid,
            attempt,
            retry_after=self.timing.retry,
            max_tries=0 if escalate_now else MAX_TRIES,
            realert_seconds=self.timing.realert,
            why=why,
        )
        if result == "retry":
            session = self.sessions.get(sid)
            if session is not None:
                self.jobs.checkin_reminder(sid, session.extensions)
        elif result == "escalated":
            CHECKINS.labels("escalated").inc()
            log.warning("check-in escalated", extra={"session": sid})
            self.jobs.checkin(Claimed(Work.ESCALATE, sid, 0))
        return result

    # -- counsellors -----------------------------------------------------------------------

    def acknowledge(self, sid: str, counsellor: str) -> bool:
        return self.sessions.acknowledge(sid, counsellor)

    def record(self, sid: str, counsellor: str, outcome: str) -> bool:
        if outcome not in COUNSELLOR_OUTCOMES:
            raise QueueError("not an outcome of a check-in")
        self.sessions.acknowledge(sid, counsellor)
        return self.sessions.close(sid, outcome)

    def bridge_phone(self, sid: str, counsellor: str) -> str | None:
        """The caller's number, for the counsellor handling their escalation; else None."""
        session = self.sessions.get(sid)
        if session is None or session.status is not Status.ESCALATED:
            return None
        return self.sessions.phone(sid) if session.acknowledged_by == counsellor else None

    def escalations(self) -> list[Session]:
        return [s for s in self.sessions.escalations() if s.status is Status.ESCALATED]

    # -- the workers' tick -----------------------------------------------------------------

    def tick(self, lost_after: float = 30.0) -> list[Claimed]:
        """Hand to the workers every call, escalation and re-alert due now, exactly once;
        hand on again what was claimed earlier and whose job was lost."""
        claimed = self.sessions.claim_due(max_tries=MAX_TRIES, realert_seconds=self.timing.realert)
        calls = [c for c in claimed if c.work is Work.CALL]
        # Calls in small batches: a job's own cost then counts once for several calls.
        for start in range(0, len(calls), CALL_BATCH):
            self.jobs.checkin_calls(calls[start : start + CALL_BATCH])
        lost = self.sessions.stale_pending(self.clock() - lost_after)
        for item in [*(c for c in claimed if c.work is not Work.CALL), *lost]:
            self.jobs.checkin(item)
        return claimed


def _starts(words: tuple[str, ...], phrases: tuple[tuple[str, ...], ...]) -> bool:
    """True if the words begin with one of the phrases."""
    return any(phrase and words[: len(phrase)] == phrase for phrase in phrases)
