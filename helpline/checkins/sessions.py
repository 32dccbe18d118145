"""Check-in sessions: "call me in 10 minutes, and send help if I don't answer".

This module is the only one that reads or writes a session's records. Every change that
must be all-or-nothing is one Lua script, so a call attempt is claimed once however many
workers poll, and an answer, a missed call and an OK text can race without harm.

Keys (all under helpline:ci:):
    s:<id>        hash: one session (its fields below)
    log:<id>      list "<time>|<event>|<detail>": the session's timeline, for the console
    open          hash caller digest -> id: one open session per caller
    due           zset id -> when its next call is due (or, after a call was placed, when
                  it counts as missed if nothing was heard of it)
    pending       zset "<job>:<id>:<n>" -> when it was handed to the workers: work claimed
                  from `due` or `realert` whose job has not finished; queued again if lost
    escalated     zset id -> when it was escalated: open escalations, newest last
    realert       zset id -> when the counsellors are alerted again if nobody acknowledged
    closed        zset id -> when it closed: what the retention purge deletes

Fields of s:<id>:
    id, status, lang, channel, created   status: open, escalated or closed
    who, masked                          keyed hash of the number (infrastructure.privacy);
                                         its last three digits, for the console
    phone, place, contact                the number, the place in the caller's words and a
                                         trusted contact's number, each sealed to this id
    minutes, due_at                      as asked; when the current round's call is due
    attempt                              the last call attempt claimed (1, 2, ...)
    tries                                calls claimed in this round (an extension starts one)
    extensions                           rounds added by pressing 2
    missed:<n>                           attempt n was not answered with a key
    calling:<n>, call:<n>                attempt n was being placed: when; its Call SID
    escalated_at, acknowledged_by, acknowledged_at, realerted_at
    outcome, closed_at                   once closed (ok_key, ok_text, cancelled, or a
                                         counsellor's outcome)
    sending:<kind>, text:<kind>, sent:<kind>   a text about it (kinds: remind:<round>,
                                         alert:<counsellor>, realert:<counsellor>, contact)
The purge deletes the hash and the timeline, and with them everything above.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import redis

from helpline.infrastructure.constants import KEY_PREFIX
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import NotDurable, NotKept, QueueError, QueueUnavailable
from helpline.infrastructure.privacy import mask_phone, phone_digest
from helpline.infrastructure.records import HashRecords, SendRecord, as_text
from helpline.reports import tally

PREFIX = f"{KEY_PREFIX}:ci:"
SESSION = PREFIX + "s:"
LOG = PREFIX + "log:"
OPEN = PREFIX + "open"
DUE = PREFIX + "due"
PENDING = PREFIX + "pending"
ESCALATED = PREFIX + "escalated"
REALERT = PREFIX + "realert"
CLOSED = PREFIX + "closed"
# Most sessions one poll claims (bounds the script's time; the next poll takes the rest).
_BATCH = 200


class Status(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    CLOSED = "closed"


class Work(StrEnum):
    """What a claim hands to the workers."""

    CALL = "call"  # place call attempt n
    ESCALATE = "escalate"  # alert the counsellors (and the trusted contact)
    REALERT = "realert"  # nobody acknowledged: alert again, admins too


@dataclass(frozen=True)
class Claimed:
    work: Work
    session: str
    attempt: int  # the call attempt (CALL), else 0

    @property
    def member(self) -> str:
        return f"{self.work.value}:{self.session}:{self.attempt}"


@dataclass(frozen=True)
class Session:
    id: str
    status: Status
    lang: str
    channel: str
    created_at: float
    minutes: int
    due_at: float | None
    attempt: int
    tries: int
    extensions: int
    phone_masked: str
    has_place: bool
    has_contact: bool
    escalated_at: float | None = None
    acknowledged_by: str | None = None
    outcome: str | None = None
    closed_at: float | None = None


@dataclass(frozen=True)
class Event:
    at: float
    what: str
    detail: str


# -- Lua -----------------------------------------------------------------------------------

# Every script takes today's report counts as KEYS[1] (tally.lua): escalations, closes
# (by outcome), bookings and extensions are counted as they happen.
_COMMON = (
    tally.lua()
    + """
local function log(prefix, id, now, what, detail)
  redis.call('RPUSH', prefix .. 'log:' .. id, now .. '|' .. what .. '|' .. (detail or ''))
end
local function escalate(prefix, id, now, realert_at)
  local key = prefix .. 's:' .. id
  redis.call('HSET', key, 'status', 'escalated', 'escalated_at', now)
  redis.call('ZREM', prefix .. 'due', id)
  redis.call('ZADD', prefix .. 'escalated', now, id)
  redis.call('ZADD', prefix .. 'realert', realert_at, id)
  redis.call('ZADD', prefix .. 'pending', now, 'escalate:' .. id .. ':0')
  log(prefix, id, now, 'escalated', '')
  tally(CHECKIN_ESCALATED)
end
local function close(prefix, id, now, outcome)
  local key = prefix .. 's:' .. id
  redis.call('HSET', key, 'status', 'closed', 'outcome', outcome, 'closed_at', now)
  for _, name in ipairs({'due', 'escalated', 'realert'}) do
    redis.call('ZREM', prefix .. name, id)
  end
  local who = redis.call('HGET', key, 'who')
  if who and redis.call('HGET', prefix .. 'open', who) == id then
    redis.call('HDEL', prefix .. 'open', who)
  end
  redis.call('ZADD', prefix .. 'closed', now, id)
  log(prefix, id, now, 'closed', outcome)
  tally(CHECKIN_OUTCOME .. outcome)
end
"""
)

# KEYS: -.  ARGV: prefix, now, caller digest, id to use, id expected open ('' for none),
# due, then field, value pairs (sealed phone, place, contact; lang, channel, minutes).
# Returns {'retry'} if the caller's open session changed since it was read, else
# {'started' or 'updated', id}.
_BOOK = (
    _COMMON
    + """
local prefix, now, who, id, expected, due = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local current = redis.call('HGET', prefix .. 'open', who)
if (current or '') ~= expected then return {'retry'} end
local key = prefix .. 's:' .. id
local result = 'updated'
if not current then
  result = 'started'
  tally(CHECKIN_STARTED)
  redis.call('HSET', prefix .. 'open', who, id)
  redis.call('HSET', key, 'id', id, 'created', now, 'who', who, 'attempt', 0, 'extensions', 0)
end
redis.call('HDEL', key, 'place', 'contact', 'escalated_at', 'acknowledged_by',
  'acknowledged_at', 'realerted_at')
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', key, 'status', 'open', 'due_at', due, 'tries', 0, unpack(fields))
redis.call('ZREM', prefix .. 'escalated', id)
redis.call('ZREM', prefix .. 'realert', id)
redis.call('ZADD', prefix .. 'due', due, id)
log(prefix, id, now, result, redis.call('HGET', key, 'minutes'))
return {result, id}
"""
)

# ARGV: prefix, now, batch, most tries in a round, seconds to a re-alert.
# Claims what is due: each due session's next call attempt, or its escalation once its
# round has no tries left; each unacknowledged escalation's re-alert. Each is recorded in
# `pending` until its job finishes. Returns a flat list: work, id, attempt, ...
_CLAIM = (
    _COMMON
    + """
local prefix, now, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_tries, realert = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
local due = redis.call('ZRANGEBYSCORE', prefix .. 'due', '-inf', now, 'LIMIT', 0, batch)
for _, id in ipairs(due) do
  redis.call('ZREM', prefix .. 'due', id)
  local key = prefix .. 's:' .. id
  if redis.call('HGET', key, 'status') == 'open' then
    local last = tonumber(redis.call('HGET', key, 'attempt'))
    if last > 0 and redis.call('HGET', key, 'tries') ~= '0'
        and not redis.call('HGET', key, 'missed:' .. last) then
      -- Nothing was heard of the last call (no key, no status): it counts as missed.
      redis.call('HSET', key, 'missed:' .. last, 1)
      log(prefix, id, now, 'missed', last)
    end
    if tonumber(redis.call('HGET', key, 'tries')) >= max_tries then
      escalate(prefix, id, now, now + realert)
      out[#out + 1] = 'escalate'; out[#out + 1] = id; out[#out + 1] = 0
    else
      redis.call('HINCRBY', key, 'tries', 1)
      local n = redis.call('HINCRBY', key, 'attempt', 1)
      redis.call('ZADD', prefix .. 'pending', now, 'call:' .. id .. ':' .. n)
      log(prefix, id, now, 'calling', n)
      out[#out + 1] = 'call'; out[#out + 1] = id; out[#out + 1] = n
    end
  end
end
local realerts = redis.call('ZRANGEBYSCORE', prefix .. 'realert', '-inf', now, 'LIMIT', 0, batch)
for _, id in ipairs(realerts) do
  redis.call('ZREM', prefix .. 'realert', id)
  local key = prefix .. 's:' .. id
  local status = redis.call('HGET', key, 'status')
  if status == 'escalated' and not redis.call('HGET', key, 'acknowledged_by') then
    redis.call('HSET', key, 'realerted_at', now)
    redis.call('ZADD', prefix .. 'pending', now, 'realert:' .. id .. ':0')
    log(prefix, id, now, 'realert', '')
    out[#out + 1] = 'realert'; out[#out + 1] = id; out[#out + 1] = 0
  end
end
return out
"""
)

# ARGV: prefix, now, id, attempt, when the attempt counts as missed if nothing is heard.
# The call of attempt n was placed: wait for it (only while it is still the current one).
_PLACED = """
local prefix, now, id, n, silent_at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = prefix .. 's:' .. id
if redis.call('HGET', key, 'status') ~= 'open' or redis.call('HGET', key, 'attempt') ~= n then
  return 0
end
if not redis.call('HGET', key, 'missed:' .. n) then
  redis.call('ZADD', prefix .. 'due', silent_at, id)
end
return 1
"""

# ARGV: prefix, now, id, attempt, retry at, most tries, seconds to a re-alert, why.
# Attempt n was not answered with a key. Returns 'stale' (not the current attempt),
# 'seen' (already counted), 'retry' (the next try is due at retry) or 'escalated'.
_MISSED = (
    _COMMON
    + """
local prefix, now, id, n, retry_at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max_tries, realert, why = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local key = prefix .. 's:' .. id
if redis.call('HGET', key, 'status') ~= 'open' or redis.call('HGET', key, 'attempt') ~= n then
  return 'stale'
end
if redis.call('HSETNX', key, 'missed:' .. n, 1) == 0 then return 'seen' end
log(prefix, id, now, 'missed', n .. ' ' .. why)
if tonumber(redis.call('HGET', key, 'tries')) >= max_tries then
  escalate(prefix, id, now, now + realert)
  return 'escalated'
end
redis.call('ZADD', prefix .. 'due', retry_at, id)
return 'retry'
"""
)

# ARGV: prefix, now, id, attempt, due, most extensions.
# Returns 'extended', 'spent' (no extensions left) or 'stale'.
_EXTEND = (
    _COMMON
    + """
local prefix, now, id, n, due, most = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local key = prefix .. 's:' .. id
if redis.call('HGET', key, 'status') ~= 'open' or redis.call('HGET', key, 'attempt') ~= n then
  return 'stale'
end
if tonumber(redis.call('HGET', key, 'extensions')) >= most then return 'spent' end
redis.call('HINCRBY', key, 'extensions', 1)
redis.call('HSET', key, 'tries', 0, 'due_at', due, 'missed:' .. n, 'extended')
redis.call('ZADD', prefix .. 'due', due, id)
log(prefix, id, now, 'extended', n)
tally(CHECKIN_EXTENDED)
return 'extended'
"""
)

# ARGV: prefix, now, id, outcome, attempt ('' for any). Returns 1 if this closed it.
_CLOSE = (
    _COMMON
    + """
local prefix, now, id, outcome, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = prefix .. 's:' .. id
local status = redis.call('HGET', key, 'status')
if not status or status == 'closed' then return 0 end
if n ~= '' and redis.call('HGET', key, 'attempt') ~= n then return 0 end
close(prefix, id, now, outcome)
return 1
"""
)

# ARGV: prefix, now, id, counsellor. Returns 1 if this acknowledged the escalation.
_ACKNOWLEDGE = (
    _COMMON
    + """
local prefix, now, id, counsellor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. 's:' .. id
local status = redis.call('HGET', key, 'status')
if status ~= 'escalated' or redis.call('HGET', key, 'acknowledged_by') then return 0 end
redis.call('HSET', key, 'acknowledged_by', counsellor, 'acknowledged_at', now)
redis.call('ZREM', prefix .. 'realert', id)
log(prefix, id, now, 'acknowledged', counsellor)
return 1
"""
)


def _guard(call: Callable[[], Any]) -> Any:
    """Run a Redis call; a connection problem becomes QueueUnavailable (no input in it)."""
    try:
        return call()
    except NotDurable as exc:
        raise NotKept(str(exc)) from None
    except redis.ResponseError as exc:
        raise QueueError(f"redis refused a check-in operation: {type(exc).__name__}") from None
    except (redis.RedisError, OSError) as exc:
        raise QueueUnavailable(f"check-ins are unreachable: {type(exc).__name__}") from None


class CheckinSessions:
    """The sessions' operations; every change is one atomic step in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        sealer: Sealer,
        phone_key: bytes,
        clock: Callable[[], float] = time.time,
        *,
        min_replicas: int = 0,
        zone: ZoneInfo = tally.UTC,
    ):
        self.client = client
        self.sealer = sealer
        self.phone_key = phone_key
        self.clock = clock
        self.zone = zone  # the days the report counts are filed under
        self._book = client.register_script(_BOOK)
        self._claim = client.register_script(_CLAIM)
        self._placed = client.register_script(_PLACED)
        self._missed = client.register_script(_MISSED)
        self._extend = client.register_script(_EXTEND)
        self._close = client.register_script(_CLOSE)
        self._acknowledge = client.register_script(_ACKNOWLEDGE)
        # A text's "about to send" marker waits for these replicas, as a request's does.
        self._records = HashRecords(client, SESSION, _guard, min_replicas)

    def _call(self, script: Any, args: list[Any]) -> Any:
        """Run one of the scripts, with today's report counts as its KEYS[1]."""
        keys = [tally.today_key(self.zone, self.clock())]
        return _guard(lambda: script(keys=keys, args=args))

    # -- callers ---------------------------------------------------------------------------

    def book(
        self,
        phone: str,
        *,
        minutes: int,
        due: float,
        lang: str,
        channel: str,
        place: str = "",
        contact: str = "",
    ) -> tuple[str, str]:
        """Open a session for this caller, or move their open one; return (result, id)."""
        who = phone_digest(self.phone_key, phone)
        for _ in range(3):
            expected = _guard(lambda: self.client.hget(OPEN, who))
            sid = as_text(expected) if expected else secrets.token_hex(8)
            fields: list[str] = [
                "phone",
                self.sealer.seal(phone, sid),
                "lang",
                lang,
                "channel",
                channel,
                "minutes",
                str(minutes),
                "masked",
                mask_phone(phone),
            ]
            if place:
                fields += ["place", self.sealer.seal(place, sid)]
            if contact:
                fields += ["contact", self.sealer.seal(contact, sid)]
            args: list[Any] = [PREFIX, self.clock(), who, sid, as_text(expected or b""), due]
            args += fields
            result = self._call(self._book, args)
            if as_text(result[0]) != "retry":
                return as_text(result[0]), as_text(result[1])
        raise QueueError("the caller's session kept changing")

    def set_place(self, sid: str, place: str) -> bool:
        """Keep the place for a session, sealed (sent after it was booked)."""
        changed = self.annotate(sid, place=self.sealer.seal(place, sid))
        if changed:
            self.log(sid, "place", "added")
        return changed

    def open_for(self, phone: str) -> Session | None:
        """Return the caller's open (or escalated) session, if any."""
        sid = _guard(lambda: self.client.hget(OPEN, phone_digest(self.phone_key, phone)))
        return self.get(as_text(sid)) if sid else None

    # -- the workers -----------------------------------------------------------------------

    def claim_due(self, *, max_tries: int, realert_seconds: float) -> list[Claimed]:
        """Claim every call attempt, escalation and re-alert due now (each exactly once)."""
        args: list[Any] = [PREFIX, self.clock(), _BATCH, max_tries, realert_seconds]
        flat = self._call(self._claim, args)
        return [
            Claimed(Work(as_text(flat[i])), as_text(flat[i + 1]), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    def stale_pending(self, older_than: float) -> list[Claimed]:
        """Return claimed work handed to the workers before older_than and not finished."""
        raw = _guard(lambda: self.client.zrangebyscore(PENDING, "-inf", older_than))
        found = []
        for member in raw:
            work, sid, attempt = as_text(member).split(":")
            found.append(Claimed(Work(work), sid, int(attempt)))
        return found

    def finished(self, claimed: Claimed) -> None:
        """Record that the job for this claim has done its work."""
        _guard(lambda: self.client.zrem(PENDING, claimed.member))

    def calling(self, sid: str, attempt: int) -> tuple[str | None, float | None]:
        """Return (Call SID, when placing began) recorded for this attempt."""
        raw = _guard(
            lambda: self.client.hmget(SESSION + sid, [f"call:{attempt}", f"calling:{attempt}"])
        )
        result, started = raw
        return (None if result is None else as_text(result)), (
            None if started is None else float(started)
        )

    def placing(self, sid: str, attempt: int) -> None:
        """Record that this attempt's call is about to be placed."""
        self.annotate(sid, **{f"calling:{attempt}": self.clock()})

    def placed(self, sid: str, attempt: int, call_sid: str, silent_after: float) -> bool:
        """Record the Call SID; the attempt counts as missed if nothing is heard by then."""
        self.annotate(sid, **{f"call:{attempt}": call_sid})
        self.log(sid, "placed", str(attempt))
        now = self.clock()
        args: list[Any] = [PREFIX, now, sid, attempt, now + silent_after]
        return bool(self._call(self._placed, args))

    def missed(
        self,
        sid: str,
        attempt: int,
        *,
        retry_after: float,
        max_tries: int,
        realert_seconds: float,
        why: str,
    ) -> str:
        """Count attempt n as not answered; return 'retry', 'escalated', 'seen' or 'stale'."""
        now = self.clock()
        args: list[Any] = [
            PREFIX,
            now,
            sid,
            attempt,
            now + retry_after,
            max_tries,
            realert_seconds,
            why,
        ]
        return as_text(self._call(self._missed, args))

    def extend(self, sid: str, attempt: int, *, seconds: float, most: int) -> str:
        """Put the next call off by seconds; return 'extended', 'spent' or 'stale'."""
        now = self.clock()
        args: list[Any] = [PREFIX, now, sid, attempt, now + seconds, most]
        return as_text(self._call(self._extend, args))

    def close(self, sid: str, outcome: str, attempt: int | None = None) -> bool:
        """Close the session (only while attempt is the current one, if given)."""
        args: list[Any] = [PREFIX, self.clock(), sid, outcome, "" if attempt is None else attempt]
        return bool(self._call(self._close, args))

    def acknowledge(self, sid: str, counsellor: str) -> bool:
        """A counsellor has the escalation: stop the re-alerts. True if this did it."""
        args: list[Any] = [PREFIX, self.clock(), sid, counsellor]
        return bool(self._call(self._acknowledge, args))

    # -- what is sealed in a session -------------------------------------------------------

    def phone(self, sid: str) -> str:
        return self._open_field(sid, "phone") or ""

    def place(self, sid: str) -> str:
        return self._open_field(sid, "place") or ""

    def contact(self, sid: str) -> str:
        return self._open_field(sid, "contact") or ""

    def recipient(self, sid: str) -> str | None:
        """Return the keyed hash of the caller's number (what opt-outs are kept by)."""
        raw = _guard(lambda: self.client.hget(SESSION + sid, "who"))
        return None if raw is None else as_text(raw)

    def _open_field(self, sid: str, name: str) -> str | None:
        sealed = _guard(lambda: self.client.hget(SESSION + sid, name))
        return None if sealed is None else self.sealer.open(sealed, sid)

    # -- texts about a session (as workers.jobs.send_once keeps them) ----------------------

    def send_record(self, sid: str, kind: str) -> SendRecord:
        return self._records.send_record(sid, kind)

    def sending(self, sid: str, kind: str, text: str, at: float) -> bool:
        return self._records.sending(sid, kind, text, at)

    def settle_send(self, sid: str, kind: str, result: str) -> bool:
        return self._records.settle_send(sid, kind, result)

    def annotate(self, rid: str, **fields: str | float) -> bool:
        """Set fields on a session if it still exists (a bridged call's status)."""
        return self._records.set(rid, **fields)

    def annotation(self, sid: str, name: str) -> str | None:
        raw = _guard(lambda: self.client.hget(SESSION + sid, name))
        return None if raw is None else as_text(raw)

    # -- reading ---------------------------------------------------------------------------

    def get(self, sid: str) -> Session | None:
        raw = _guard(lambda: self.client.hgetall(SESSION + sid))
        return _decode(raw) if raw else None

    def escalations(self) -> list[Session]:
        """Return open escalations, the newest first."""
        ids = _guard(lambda: self.client.zrevrange(ESCALATED, 0, -1))
        found = [self.get(as_text(sid)) for sid in ids]
        return [s for s in found if s is not None]

    def timeline(self, sid: str) -> list[Event]:
        raw = _guard(lambda: self.client.lrange(LOG + sid, 0, -1))
        events = []
        for entry in raw:
            at, what, detail = as_text(entry).split("|", 2)
            events.append(Event(float(at), what, detail))
        return events

    def log(self, sid: str, what: str, detail: str = "") -> None:
        _guard(lambda: self.client.rpush(LOG + sid, f"{self.clock()}|{what}|{detail}"))

    # -- retention -------------------------------------------------------------------------

    def purge(self, retention: float) -> int:
        """Delete sessions closed more than retention seconds ago; return how many."""
        ids = _guard(lambda: self.client.zrangebyscore(CLOSED, "-inf", self.clock() - retention))
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=True)
        for raw in ids:
            sid = as_text(raw)
            pipe.delete(SESSION + sid, LOG + sid)
            pipe.zrem(CLOSED, sid)
        _guard(pipe.execute)
        return len(ids)


def _decode(raw: dict[Any, Any]) -> Session:
    values = {as_text(k): v for k, v in raw.items()}

    def text(name: str) -> str | None:
        value = values.get(name)
        return None if value is None else as_text(value)

    def number(name: str) -> float | None:
        value = text(name)
        return float(value) if value else None

    return Session(
        id=text("id") or "",
        status=Status(text("status") or "open"),
        lang=text("lang") or "en",
        channel=text("channel") or "sms",
        created_at=number("created") or 0.0,
        minutes=int(text("minutes") or 0),
        due_at=number("due_at"),
        attempt=int(text("attempt") or 0),
        tries=int(text("tries") or 0),
        extensions=int(text("extensions") or 0),
        phone_masked=text("masked") or "***",
        has_place="place" in values,
        has_contact="contact" in values,
        escalated_at=number("escalated_at"),
        acknowledged_by=text("acknowledged_by"),
        outcome=text("outcome"),
        closed_at=number("closed_at"),
    )
