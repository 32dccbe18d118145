"""The counsellor callback queue: durable, ordered by urgency then wait, leased claims.

Every change that must be all-or-nothing is one Lua script, so two counsellors never
take the same caller and a crash between two writes cannot leave a request half-queued.

Keys (all under helpline:cb:):
    req:<id>      hash: one request (its fields below); written by this module only
    waiting       zset id -> score (urgent band first, then creation time): the queue
    claimed       zset id -> lease deadline
    scheduled     zset id -> time it rejoins the queue (retry, or "call back at"); a
                  caller who asks again, or says a crisis phrase, brings it back at once
    open          hash caller digest -> id: one open request per number to call; and
                  "sender:" + digest of who asked -> id: one per sender too, whichever
                  number it names (followed only while that request is open)
    caller:<who>  zset id -> time made: every request a caller made that is still kept,
                  so a counsellor sees what came before (by the keyed hash, never the number)
    seen:<sid>    id of the request a webhook (CallSid/MessageSid digest) made, for retries;
                  followed only while that request is open and for the same number
    completed     zset id -> time reached: recent pace, for wait estimates
    closed        zset id -> time closed: what the retention purge deletes
    version       counter bumped on every change, for live views
    unconfirmed   zset id -> time queued: confirmation texts not yet handled by a worker
    history       zset "<time>:<urgent>:<normal>:<longest wait s>" -> time: the last
                  24 hours of queue depth, sampled by the workers' housekeeping
    history:lock  set for HISTORY_SAMPLE_SECONDS after each sample

Fields of req:<id>:
    id, status, priority, channel, lang     as in Request (channel: voice, sms, whatsapp)
    voicemail, texts                        1 or 0: may we leave a voicemail, send texts
    texts_by                                the channel texts about it go by: sms or whatsapp
    created, attempts, score                made at; calls tried; place in `waiting`
    who                                     keyed hash of the number (infrastructure.privacy)
    sender                                  keyed hash of who asked (their From), if known
    phone                                   the number, sealed to this request
    claimed_by, claimed_at, lease_until     while a counsellor has it
    handled_by                              who last recorded an outcome on it
    due_at                                  while it waits in `scheduled`
    outcome, closed_at                      once closed
    sending:<kind>, text:<kind>             a text about it was being sent: when, what
    sent:<kind>                             how that ended: Twilio's SID, "opted-out"
                                            "failed:<code>", or "unsent:<reason>" when
                                            nothing could be sent (kinds: confirm, expired,
                                            missed:<attempt>, alert:<counsellor>,
                                            survey)
    waited                                  1 once its wait was counted (first claimed)
    bridge_call, bridge_status              the bridged call back (helpline.web.bridge)
    note:<ns>:<counsellor>                  a counsellor's note, sealed (helpline.callbacks.notes)
    survey_words                            the words of a survey answer, sealed, when an
                                            admin keeps them (helpline.callbacks.surveys)
The purge deletes the hash, and with it everything above.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import redis
from redis.client import Pipeline

from helpline.infrastructure.constants import (
    CALLBACK_LEASE_SECONDS,
    CALLBACK_MAX_ATTEMPTS,
    CALLBACK_RETRY_SECONDS,
    CALLBACK_URGENT_RETRY_SECONDS,
    HISTORY_SAMPLE_SECONDS,
    KEY_PREFIX,
    WAIT_SAMPLE,
)
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import (
    NotDurable,
    NotKept,
    NotYours,
    QueueError,
    QueueUnavailable,
)
from helpline.infrastructure.privacy import mask_phone, phone_digest
from helpline.infrastructure.records import HashRecords, SendRecord, as_text
from helpline.infrastructure.store import durable
from helpline.reports import tally

PREFIX = f"{KEY_PREFIX}:cb:"
REQ = PREFIX + "req:"
WAITING = PREFIX + "waiting"
CLAIMED = PREFIX + "claimed"
SCHEDULED = PREFIX + "scheduled"
OPEN = PREFIX + "open"
CALLER = PREFIX + "caller:"
SEEN = PREFIX + "seen:"
COMPLETED = PREFIX + "completed"
CLOSED = PREFIX + "closed"
VERSION = PREFIX + "version"
UNCONFIRMED = PREFIX + "unconfirmed"
HISTORY = PREFIX + "history"
HISTORY_LOCK = PREFIX + "history:lock"
# Seconds of queue history kept.
HISTORY_SECONDS = 24 * 60 * 60

# Scores put every urgent request ahead of every normal one; within a band, oldest first.
_BAND = 10_000_000_000
# A webhook retry with the same SID finds its request for this long, in seconds.
SEEN_TTL = 24 * 60 * 60
# Most leases, or due retries, one call moves back into the queue (bounds script time).
_BATCH = 100


class Status(StrEnum):
    WAITING = "waiting"
    CLAIMED = "claimed"
    DONE = "done"
    NO_ANSWER = "no_answer"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


OPEN_STATUSES = frozenset({Status.WAITING, Status.CLAIMED})


class Priority(StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"


class Outcome(StrEnum):
    """What a counsellor records after trying to reach a caller."""

    REACHED = "reached"
    NO_ANSWER = "no_answer"
    WRONG_NUMBER = "wrong_number"
    CALL_BACK_LATER = "call_back_later"
    CANCELLED = "cancelled"


class Added(StrEnum):
    """How enqueue() treated a request."""

    NEW = "new"  # queued now
    EXISTING = "existing"  # the caller already had an open request: this is it
    DUPLICATE = "duplicate"  # a retried webhook: the request it made the first time


@dataclass(frozen=True)
class Contact:
    """Who to call back and how they may be contacted."""

    phone: str  # E.164
    voicemail_ok: bool
    texts_ok: bool
    texts_by: str = "sms"  # the channel texts to them go by (a WhatsApp texter: whatsapp)


@dataclass(frozen=True)
class Request:
    id: str
    status: Status
    priority: Priority
    channel: str
    lang: str
    voicemail_ok: bool
    texts_ok: bool
    created_at: float
    attempts: int
    phone_masked: str
    texts_by: str = "sms"
    claimed_by: str | None = None
    handled_by: str | None = None  # who last recorded an outcome
    lease_until: float | None = None
    due_at: float | None = None  # set while a retry or "call back at" is pending
    outcome: str | None = None
    closed_at: float | None = None

    @property
    def urgent(self) -> bool:
        return self.priority is Priority.URGENT

    def to_json(self) -> dict[str, Any]:
        """Return the request as plain JSON values (times in ISO 8601, number masked)."""

        def iso(stamp: float | None) -> str | None:
            return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()

        return {
            "id": self.id,
            "status": self.status.value,
            "priority": self.priority.value,
            "channel": self.channel,
            "language": self.lang,
            "voicemail_ok": self.voicemail_ok,
            "texts_ok": self.texts_ok,
            "texts_by": self.texts_by,
            "created_at": iso(self.created_at),
            "attempts": self.attempts,
            "phone_masked": self.phone_masked,
            "claimed_by": self.claimed_by,
            "handled_by": self.handled_by,
            "lease_until": iso(self.lease_until),
            "due_at": iso(self.due_at),
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class Placement:
    """Where a caller stands after asking for a callback."""

    request: Request
    added: Added
    # 1 = next. Asking again brings a scheduled request back into the line, so None
    # means a counsellor has it now.
    position: int | None
    raised: bool = False  # this very call made it urgent: the counsellors' alert is owed


# -- Lua -----------------------------------------------------------------------------------

# Moves expired leases and due retries back into the queue. Shared by the scripts below
# so every read of the queue sees it as it should be now.
_REQUEUE = """
local function requeue(prefix, now)
  local waiting, claimed = prefix .. 'waiting', prefix .. 'claimed'
  local scheduled = prefix .. 'scheduled'
  local moved = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', claimed, '-inf', now, 'LIMIT', 0, 100)) do
    local key = prefix .. 'req:' .. id
    redis.call('HSET', key, 'status', 'waiting')
    redis.call('HDEL', key, 'claimed_by', 'lease_until')
    redis.call('ZADD', waiting, redis.call('HGET', key, 'score'), id)
    redis.call('ZREM', claimed, id)
    moved = moved + 1
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, 100)) do
    local key = prefix .. 'req:' .. id
    redis.call('HDEL', key, 'due_at')
    redis.call('ZADD', waiting, redis.call('HGET', key, 'score'), id)
    redis.call('ZREM', scheduled, id)
    moved = moved + 1
  end
  if moved > 0 then redis.call('INCR', prefix .. 'version') end
  return moved
end
"""

# Finds the open request of a caller by their digest: one made to call their number, else
# one they asked for, whichever number it names; nil if neither is open. Other modules'
# scripts include it (OPEN_LOOKUP) to learn it in a round trip they already make.
_OPEN = """
local function is_open(prefix, id)
  local status = redis.call('HGET', prefix .. 'req:' .. id, 'status')
  return status == 'waiting' or status == 'claimed'
end

local function open_of(prefix, who)
  for _, field in ipairs({who, 'sender:' .. who}) do
    local id = redis.call('HGET', prefix .. 'open', field)
    if id and is_open(prefix, id) then return id end
  end
  return nil
end
"""
OPEN_LOOKUP = _OPEN

# The caller has come back to an open request (asked again, or said a crisis phrase).
# Shared by the scripts below, so what the caller is then told is read after the change.
_REVIVE = (
    _OPEN
    + """

-- A request parked in 'scheduled' (a retry, or "call back at") rejoins the line now, in
-- its band and age order; urgent makes it urgent, which puts it in the front band.
-- Returns 1 only to the call that turns it from normal to urgent: the priority is the
-- flag that makes the counsellors' alert go out once, however often the webhook comes.
local function revive(prefix, id, now, urgent, band)
  local key = prefix .. 'req:' .. id
  local score = tonumber(redis.call('HGET', key, 'score'))
  local raised = 0
  if urgent and redis.call('HGET', key, 'priority') ~= 'urgent' then
    score = score - band
    redis.call('HSET', key, 'priority', 'urgent', 'score', score)
    raised = 1
  end
  local parked = redis.call('ZREM', prefix .. 'scheduled', id) == 1
  if parked then redis.call('HDEL', key, 'due_at') end
  if parked or (raised == 1 and redis.call('ZSCORE', prefix .. 'waiting', id)) then
    redis.call('ZADD', prefix .. 'waiting', score, id)
  end
  if parked or raised == 1 then redis.call('INCR', prefix .. 'version') end
  return raised
end
"""
)

# KEYS: new request key, today's report counts.  ARGV: prefix, now, caller digest, id,
# score, urgent, seen key (or ''), seen ttl, band, confirmation ('pending' or 'none'),
# then the request's fields. Returns {how, id, rank in the line (-1: not waiting), 1 if
# raised to urgent now}.
_ENQUEUE = (
    _REQUEUE
    + _REVIVE
    + tally.lua("KEYS[2]")
    + """
local prefix, now, who, id, score, urgent = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local seen_key, seen_ttl, band = ARGV[7], ARGV[8], tonumber(ARGV[9])
local sender = ARGV[11]
requeue(prefix, now)

-- The request this ask is about: the one an earlier delivery of this webhook (or an
-- earlier ask in this call) made, else the caller's open one. A closed request is never
-- found again, nor one for another number: asking then makes a new request.
local found, how = nil, nil
if seen_key ~= '' then
  local seen = redis.call('GET', seen_key)
  if seen and is_open(prefix, seen)
      and redis.call('HGET', prefix .. 'req:' .. seen, 'who') == who then
    found, how = seen, 'duplicate'
  end
end
if not found then
  local existing = redis.call('HGET', prefix .. 'open', who)
  if existing and is_open(prefix, existing) then found, how = existing, 'existing' end
end
-- One open request per sender too: someone asking again for another number is told
-- where their first request stands, and nobody else is texted.
if not found and sender ~= '' then
  local mine = redis.call('HGET', prefix .. 'open', 'sender:' .. sender)
  if mine and is_open(prefix, mine) then found, how = mine, 'existing' end
end

local raised = 0
if found then
  raised = revive(prefix, found, now, urgent == '1', band)
else
  found, how = id, 'new'
  local fields = {}
  for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', prefix .. 'waiting', score, id)
  redis.call('HSET', prefix .. 'open', who, id)
  if sender ~= '' then redis.call('HSET', prefix .. 'open', 'sender:' .. sender, id) end
  redis.call('ZADD', prefix .. 'caller:' .. who, now, id)
  if ARGV[10] == 'pending' then redis.call('ZADD', prefix .. 'unconfirmed', now, id) end
  redis.call('INCR', prefix .. 'version')
  tally(CALLBACK_REQUESTED)
end
if (how == 'new' and urgent == '1') or raised == 1 then tally(CALLBACK_URGENT) end
if seen_key ~= '' then redis.call('SET', seen_key, found, 'EX', seen_ttl) end
return {how, found, redis.call('ZRANK', prefix .. 'waiting', found) or -1, raised}
"""
)

# KEYS: today's report counts. ARGV: prefix, now, caller digest, band, urgent. Puts the
# caller's open request (see open_of) back in the line now, urgent if asked; returns {id,
# rank, 1 if raised to urgent now}, or false.
_REVISIT = (
    _REQUEUE
    + _REVIVE
    + tally.lua()
    + """
local prefix, now, who, band = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
requeue(prefix, now)
local id = open_of(prefix, who)
if not id then return false end
local raised = revive(prefix, id, now, ARGV[5] == '1', band)
if raised == 1 then tally(CALLBACK_URGENT) end
return {id, redis.call('ZRANK', prefix .. 'waiting', id) or -1, raised}
"""
)

# KEYS: today's report counts. ARGV: prefix, now, lease seconds, counsellor, local hour
# of week. Returns the claimed id or false. A request's first claim ends its wait: counted.
_CLAIM_NEXT = (
    _REQUEUE
    + tally.lua()
    + """
local prefix, now, lease, who = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
requeue(prefix, now)
local popped = redis.call('ZPOPMIN', prefix .. 'waiting')
if #popped == 0 then return false end
local id = popped[1]
local key = prefix .. 'req:' .. id
redis.call('HSET', key, 'status', 'claimed', 'claimed_by', who, 'lease_until', now + lease,
  'claimed_at', now)
if redis.call('HSETNX', key, 'waited', 1) == 1 then
  tally_wait(now - tonumber(redis.call('HGET', key, 'created')), ARGV[5])
end
redis.call('ZADD', prefix .. 'claimed', now + lease, id)
redis.call('INCR', prefix .. 'version')
return id
"""
)

# KEYS: today's report counts. ARGV: prefix, now, id, counsellor, action, the report
# measure it counts ('' for none), then action arguments.
#   extend  seconds             -> keep the lease for longer
#   release                     -> back into the queue, in its old place
#   later   due                 -> out of the queue until due (retry / call back at)
#   close   status outcome      -> done / cancelled / no_answer
_SETTLE = (
    _REQUEUE
    + tally.lua()
    + """
local prefix, now, id, who, action = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local key = prefix .. 'req:' .. id
if redis.call('HGET', key, 'status') ~= 'claimed'
    or redis.call('HGET', key, 'claimed_by') ~= who then
  return redis.error_reply('NOTYOURS')
end
if action == 'extend' then
  local until_ = now + tonumber(ARGV[7])
  redis.call('HSET', key, 'lease_until', until_)
  redis.call('ZADD', prefix .. 'claimed', until_, id)
  return 'extended'
end
redis.call('ZREM', prefix .. 'claimed', id)
redis.call('HDEL', key, 'claimed_by', 'lease_until', 'claimed_at')
redis.call('INCR', prefix .. 'version')
tally(ARGV[6])
if action ~= 'release' then redis.call('HSET', key, 'handled_by', who) end
if action == 'release' then
  redis.call('HSET', key, 'status', 'waiting')
  redis.call('ZADD', prefix .. 'waiting', redis.call('HGET', key, 'score'), id)
  return 'waiting'
end
if action == 'later' then
  redis.call('HSET', key, 'status', 'waiting', 'due_at', ARGV[7])
  redis.call('HINCRBY', key, 'attempts', tonumber(ARGV[8]))
  redis.call('ZADD', prefix .. 'scheduled', ARGV[7], id)
  return 'scheduled'
end
local status, outcome = ARGV[7], ARGV[8]
redis.call('HSET', key, 'status', status, 'outcome', outcome, 'closed_at', now)
redis.call('HINCRBY', key, 'attempts', tonumber(ARGV[9]))
redis.call('HDEL', prefix .. 'open', redis.call('HGET', key, 'who'))
redis.call('ZADD', prefix .. 'closed', now, id)
if status == 'done' then redis.call('ZADD', prefix .. 'completed', now, id) end
return status
"""
)

# KEYS: today's report counts. ARGV: prefix, now, oldest creation time kept open, max
# ids, band. Closes waiting requests created before the cut-off as expired; returns their
# ids. Within each band the score is the creation time, so the old ones are a range, not
# a scan.
_EXPIRE = (
    _REQUEUE
    + tally.lua()
    + """
local prefix, now, cutoff, limit, band = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5])
requeue(prefix, now)
local expired = {}
local function close(zset, id)
  local key = prefix .. 'req:' .. id
  redis.call('ZREM', prefix .. zset, id)
  redis.call('HSET', key, 'status', 'expired', 'outcome', 'expired', 'closed_at', now)
  redis.call('HDEL', key, 'due_at')
  redis.call('HDEL', prefix .. 'open', redis.call('HGET', key, 'who'))
  redis.call('ZADD', prefix .. 'closed', now, id)
  expired[#expired + 1] = id
end
for _, range in ipairs({{0, cutoff}, {band, band + cutoff}}) do
  local ids = redis.call('ZRANGEBYSCORE', prefix .. 'waiting', range[1], '(' .. range[2],
    'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    if #expired < limit then close('waiting', id) end
  end
end
for _, id in ipairs(redis.call('ZRANGE', prefix .. 'scheduled', 0, -1)) do
  local created = tonumber(redis.call('HGET', prefix .. 'req:' .. id, 'created'))
  if created < cutoff and #expired < limit then close('scheduled', id) end
end
if #expired > 0 then redis.call('INCR', prefix .. 'version') end
tally(CALLBACK_EXPIRED, #expired)
return expired
"""
)

# Takes back a request this very ask made, when too few replicas took it to promise it is
# kept: the caller is told it is not on the list, and so it is not.
# KEYS: request key.  ARGV: prefix, id, seen key (or '').
# KEYS: a hash; ARGV: field, value. Deletes the field only if it still holds the value.
_FORGET = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

_WITHDRAW = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local prefix, id, seen_key = ARGV[1], ARGV[2], ARGV[3]
local who = redis.call('HGET', KEYS[1], 'who')
if redis.call('HGET', prefix .. 'open', who) == id then
  redis.call('HDEL', prefix .. 'open', who)
end
redis.call('ZREM', prefix .. 'caller:' .. who, id)
local sender = redis.call('HGET', KEYS[1], 'sender')
if sender and sender ~= '' and redis.call('HGET', prefix .. 'open', 'sender:' .. sender) == id then
  redis.call('HDEL', prefix .. 'open', 'sender:' .. sender)
end
if seen_key ~= '' and redis.call('GET', seen_key) == id then
  redis.call('DEL', seen_key)
end
for _, zset in ipairs({'waiting', 'claimed', 'scheduled', 'unconfirmed'}) do
  redis.call('ZREM', prefix .. zset, id)
end
redis.call('DEL', KEYS[1])
redis.call('INCR', prefix .. 'version')
return 1
"""

# ARGV: prefix, now.  Just the housekeeping, for readers.
_REFRESH = _REQUEUE + "\nreturn requeue(ARGV[1], ARGV[2])\n"


def _guard(call: Callable[[], Any]) -> Any:
    """Run a Redis call; a connection problem becomes QueueUnavailable (no input in it)."""
    try:
        return call()
    except NotDurable as exc:
        raise NotKept(str(exc)) from None
    except redis.ResponseError as exc:
        if "NOTYOURS" in str(exc):
            raise NotYours("that request is not claimed by you any more") from None
        raise QueueError(f"redis refused a queue operation: {type(exc).__name__}") from None
    except (redis.RedisError, OSError) as exc:
        raise QueueUnavailable(f"the queue is unreachable: {type(exc).__name__}") from None


class CallbackQueue:
    """The queue's operations; every one is a single atomic step in Redis."""

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
        self.zone = zone  # the days (and hours) the report counts are filed under
        # Replicas that must hold a new request before enqueue() returns it.
        self.min_replicas = min_replicas
        self._withdraw = client.register_script(_WITHDRAW)
        self._forget = client.register_script(_FORGET)
        self._enqueue = client.register_script(_ENQUEUE)
        self._revisit = client.register_script(_REVISIT)
        self._has_open = client.register_script(
            _OPEN + "return open_of(ARGV[1], ARGV[2]) and 1 or 0\n"
        )
        self._claim_next = client.register_script(_CLAIM_NEXT)
        self._settle = client.register_script(_SETTLE)
        self._expire = client.register_script(_EXPIRE)
        self._refresh = client.register_script(_REFRESH)
        self._records = HashRecords(client, REQ, _guard, min_replicas)

    # -- callers ---------------------------------------------------------------------------

    def enqueue(
        self,
        contact: Contact,
        *,
        channel: str,
        lang: str,
        urgent: bool,
        webhook_sid: str = "",
        confirm: bool = False,
        sender: str = "",
    ) -> Placement:
        """Queue a callback, or return the caller's open one: back in the line, urgent if asked.

        webhook_sid (CallSid or MessageSid) makes a retried webhook find the request its
        first delivery made instead of adding another, while that request is open.
        confirm=True marks that the caller is to be sent a confirmation text (the
        workers' job). sender (their From, if known) keeps one open request per sender,
        whichever number each names: asking again returns the one they have.

        With min_replicas, raises NotKept unless that many replicas took the change in
        time; a request made by this call is then taken back (a failover could lose it,
        and the caller is told it is not on the list).
        """
        now = self.clock()
        rid = secrets.token_hex(6)
        band = 0 if urgent else 1
        score = band * _BAND + now
        who = phone_digest(self.phone_key, contact.phone)
        seen = SEEN + phone_digest(self.phone_key, webhook_sid) if webhook_sid else ""
        asker = phone_digest(self.phone_key, sender) if sender else ""
        fields: dict[str, str | float | int] = {
            "id": rid,
            "status": Status.WAITING.value,
            "priority": (Priority.URGENT if urgent else Priority.NORMAL).value,
            "channel": channel,
            "lang": lang,
            "voicemail": int(contact.voicemail_ok),
            "texts": int(contact.texts_ok),
            "texts_by": contact.texts_by,
            "created": now,
            "attempts": 0,
            "score": score,
            "who": who,
            "sender": asker,
            "phone": self.sealer.seal(contact.phone, rid),
        }
        flat = [str(part) for pair in fields.items() for part in pair]
        confirmation = "pending" if confirm else "none"
        args: list[Any] = [
            *(PREFIX, now, who, rid, score, int(urgent), seen, SEEN_TTL, _BAND, confirmation),
            asker,
            *flat,
        ]

        keys = [REQ + rid, tally.today_key(self.zone, now)]

        def write(pipe: Pipeline) -> object:
            return self._enqueue(keys=keys, args=args, client=pipe)

        try:
            ((how, found, rank, raised),) = _guard(
                lambda: durable(self.client, write, self.min_replicas)
            )
        except NotKept:
            _guard(lambda: self._withdraw(keys=[REQ + rid], args=[PREFIX, rid, seen]))
            raise
        return self._placement(found, Added(how.decode()), rank, raised)

    def _placement(self, rid: bytes, added: Added, rank: int, raised: int) -> Placement:
        """Return a Placement from what a script reported: the request is read afresh."""
        request = self.get(rid.decode())
        if request is None:  # purged between the script and this read: vanishingly rare
            raise QueueError("the request disappeared while being queued")
        position = int(rank) + 1 if int(rank) >= 0 else None
        return Placement(request=request, added=added, position=position, raised=bool(raised))

    def open_request_for(self, phone: str) -> Request | None:
        """Return the caller's open request, if they have one."""
        who = phone_digest(self.phone_key, phone)
        rid = _guard(lambda: self.client.hget(OPEN, who))
        request = self.get(rid.decode()) if rid else None
        return request if request and request.status in OPEN_STATUSES else None

    def open_request_from(self, sender: str) -> Request | None:
        """Return the open request this sender asked for, whichever number it names."""
        asker = phone_digest(self.phone_key, sender)
        rid = _guard(lambda: self.client.hget(OPEN, "sender:" + asker))
        request = self.get(rid.decode()) if rid else None
        return request if request and request.status in OPEN_STATUSES else None

    def position(self, rid: str) -> int | None:
        """Return 1 for the next caller to be called, or None if not in the waiting line."""
        rank = _guard(lambda: self.client.zrank(WAITING, rid))
        return None if rank is None else int(rank) + 1

    def has_open(self, phone: str) -> bool:
        """Whether the caller has a request open: one to call this number, or one they asked for."""
        who = phone_digest(self.phone_key, phone)
        return bool(_guard(lambda: self._has_open(args=[PREFIX, who])))

    def escalate(self, phone: str) -> Placement | None:
        """Make the caller's open request urgent and in the line now; None if they have none."""
        return self.revisit(phone, urgent=True)

    def revisit(self, phone: str, *, urgent: bool = False) -> Placement | None:
        """Bring the caller's open request (for their number, or one they asked for) back
        into the line now, urgent if asked; None if they have none open."""
        who = phone_digest(self.phone_key, phone)
        now = self.clock()
        keys = [tally.today_key(self.zone, now)]
        args: list[str | float | int] = [PREFIX, now, who, _BAND, int(urgent)]
        found = _guard(lambda: self._revisit(keys=keys, args=args))
        if not found:
            return None
        rid, rank, raised = found
        return self._placement(rid, Added.EXISTING, rank, raised)

    # -- counsellors -----------------------------------------------------------------------

    def claim_next(self, counsellor: str, lease: float = CALLBACK_LEASE_SECONDS) -> Request | None:
        """Atomically take the most urgent, longest-waiting request; None if none wait."""
        now = self.clock()
        keys = [tally.today_key(self.zone, now)]
        args: list[Any] = [PREFIX, now, lease, counsellor, tally.hour_of_week(self.zone, now)]
        rid = _guard(lambda: self._claim_next(keys=keys, args=args))
        return self.get(rid.decode()) if rid else None

    def phone(self, rid: str) -> str:
        """Return the request's number in full: only for the moment a counsellor needs it."""
        sealed = _guard(lambda: self.client.hget(REQ + rid, "phone"))
        if sealed is None:
            raise QueueError("no such request")
        return self.sealer.open(sealed, rid)

    def extend(self, rid: str, counsellor: str, seconds: float = CALLBACK_LEASE_SECONDS) -> None:
        """Keep a claim for longer (a counsellor still on the call)."""
        self._run_settle(rid, counsellor, "extend", seconds)

    def release(self, rid: str, counsellor: str) -> None:
        """Give a claimed request back to the queue, in the place it had."""
        self._run_settle(rid, counsellor, "release", measure=tally.CALLBACK_RELEASED)

    def record(
        self, rid: str, counsellor: str, outcome: Outcome, *, call_back_at: float | None = None
    ) -> Status:
        """Record what happened on a claimed request; returns its status afterwards."""
        request = self.get(rid)
        if request is None:
            raise QueueError("no such request")
        if outcome is Outcome.REACHED:
            return Status(
                self._run_settle(
                    rid, counsellor, "close", "done", outcome, 1, measure=tally.CALLBACK_REACHED
                )
            )
        if outcome in (Outcome.WRONG_NUMBER, Outcome.CANCELLED):
            return Status(self._run_settle(rid, counsellor, "close", "cancelled", outcome, 0))
        if outcome is Outcome.CALL_BACK_LATER:
            if call_back_at is None or call_back_at <= self.clock():
                raise QueueError("choose a time in the future to call back")
            self._run_settle(rid, counsellor, "later", call_back_at, 0)
            return Status.WAITING
        # No answer: try again later (soon, if urgent), up to the limit. The request keeps
        # its score, so it rejoins in its band and age order: an urgent one at the front.
        if request.attempts + 1 >= CALLBACK_MAX_ATTEMPTS:
            return Status(
                self._run_settle(
                    rid,
                    counsellor,
                    "close",
                    "no_answer",
                    outcome,
                    1,
                    measure=tally.CALLBACK_NO_ANSWER,
                )
            )
        wait = CALLBACK_URGENT_RETRY_SECONDS if request.urgent else CALLBACK_RETRY_SECONDS
        self._run_settle(rid, counsellor, "later", self.clock() + wait, 1)
        return Status.WAITING

    def _run_settle(
        self, rid: str, counsellor: str, action: str, *extra: object, measure: str = ""
    ) -> str:
        """Run the settle script; measure: the report count it adds if it succeeds."""
        now = self.clock()
        keys = [tally.today_key(self.zone, now)]
        args: list[Any] = [PREFIX, now, rid, counsellor, action, measure, *extra]
        result = _guard(lambda: self._settle(keys=keys, args=args))
        return result.decode() if isinstance(result, bytes) else str(result)

    # -- what else is kept on a request ----------------------------------------------------

    def annotate(self, rid: str, **fields: str | float) -> bool:
        """Set fields on a request if it still exists; return whether it did."""
        return self._records.set(rid, **fields)

    def annotate_on(self, pipe: Pipeline, rid: str, **fields: str) -> None:
        """Queue annotate()'s write on a pipeline the caller sends (it sets nothing on a
        request purged meanwhile)."""
        self._records.set_on(pipe, rid, **fields)

    def annotation(self, rid: str, name: str) -> str | None:
        """Return one field of a request as text, or None if it is not set."""
        raw = _guard(lambda: self.client.hget(REQ + rid, name))
        return None if raw is None else as_text(raw)

    def annotations(self, rid: str, prefix: str) -> dict[str, bytes]:
        """Return the fields of a request whose names start with prefix, as stored."""
        raw = _guard(lambda: self.client.hgetall(REQ + rid))
        return {
            name: value for key, value in raw.items() if (name := as_text(key)).startswith(prefix)
        }

    def recipient(self, rid: str) -> str | None:
        """Return the keyed hash of the request's number (what opt-outs are kept by)."""
        return self.annotation(rid, "who")

    def send_record(self, rid: str, kind: str) -> SendRecord:
        """Return how far the text of this kind about the request got."""
        return self._records.send_record(rid, kind)

    def send_results(self, rid: str) -> dict[str, str]:
        """Return how each settled text about the request ended, by kind."""
        return {
            name.removeprefix("sent:"): as_text(value)
            for name, value in self.annotations(rid, "sent:").items()
        }

    def sending(self, rid: str, kind: str, text: str, at: float) -> bool:
        """Record that a text of this kind is about to go (so a retry can look for it).

        Raises NotKept if too few replicas took the record: after a failover, a retry
        would not know to look, and could send the text twice.
        """
        return self._records.sending(rid, kind, text, at)

    def settle_send(self, rid: str, kind: str, result: str) -> bool:
        """Record how a text ended: Twilio's SID, "opted-out" or "failed:<code>"."""
        return self._records.settle_send(rid, kind, result)

    # -- reading ---------------------------------------------------------------------------

    def get(self, rid: str) -> Request | None:
        """Return one request (number masked), or None if there is no such request."""
        raw = _guard(lambda: self.client.hgetall(REQ + rid))
        return self._decode(raw) if raw else None

    def earlier(self, rid: str) -> list[Request]:
        """Return the same caller's other requests still kept, newest first."""
        who = self.recipient(rid)
        if who is None:
            return []
        ids = _guard(lambda: self.client.zrevrange(CALLER + who, 0, -1))
        return self._many(other for raw in ids if (other := raw.decode()) != rid)

    def times_before(self, rids: Iterable[str]) -> dict[str, int]:
        """Return, for each request, how many other requests its caller made (still kept)."""
        wanted = list(rids)
        reading = self.client.pipeline(transaction=False)
        for rid in wanted:
            reading.hget(REQ + rid, "who")
        callers = _guard(reading.execute)
        counting = self.client.pipeline(transaction=False)
        for who in callers:
            counting.zcard(CALLER + as_text(who or b""))
        counts = _guard(counting.execute)
        return {rid: max(0, int(n) - 1) for rid, n in zip(wanted, counts, strict=True)}

    def refresh(self) -> None:
        """Return expired leases and due retries to the line (every write does this too)."""
        _guard(lambda: self._refresh(args=[PREFIX, self.clock()]))

    def active(self) -> list[Request]:
        """Return open requests: claimed ones, then the waiting line in order, then scheduled."""
        self.refresh()
        pipe = self.client.pipeline(transaction=True)
        pipe.zrange(CLAIMED, 0, -1)
        pipe.zrange(WAITING, 0, -1)
        pipe.zrange(SCHEDULED, 0, -1)
        claimed, waiting, scheduled = _guard(pipe.execute)
        return self._many(id_.decode() for id_ in [*claimed, *waiting, *scheduled])

    def _many(self, ids: Iterable[str]) -> list[Request]:
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(REQ + rid)
        return [self._decode(raw) for raw in _guard(pipe.execute) if raw]

    def counts(self) -> dict[str, int]:
        """Return how many wait, by priority, and how many are claimed or scheduled."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcount(WAITING, "-inf", f"({_BAND}")
        pipe.zcard(WAITING)
        pipe.zcard(CLAIMED)
        pipe.zcard(SCHEDULED)
        urgent, waiting, claimed, scheduled = _guard(pipe.execute)
        return {
            "urgent": urgent,
            "normal": waiting - urgent,
            "claimed": claimed,
            "scheduled": scheduled,
        }

    def oldest_waiting(self) -> float | None:
        """Return when the longest-waiting request in the line was made; None if none wait."""
        return min((made for made in self.oldest_by_band().values() if made), default=None)

    def oldest_by_band(self) -> dict[str, float | None]:
        """Return when the longest-waiting urgent and normal requests were made (None: none).

        Within each band the score is the creation time, so this reads two members,
        not the whole queue.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.zrangebyscore(WAITING, "-inf", f"({_BAND}", start=0, num=1, withscores=True)
        pipe.zrangebyscore(WAITING, _BAND, "+inf", start=0, num=1, withscores=True)
        urgent, normal = _guard(pipe.execute)
        return {
            Priority.URGENT.value: urgent[0][1] if urgent else None,
            Priority.NORMAL.value: normal[0][1] - _BAND if normal else None,
        }

    def sample_history(self, now: float) -> bool:
        """Record queue depth and the longest wait, at most once per sampling interval.

        Returns whether a sample was taken (another worker may have taken this one).
        """
        if not _guard(lambda: self.client.set(HISTORY_LOCK, 1, nx=True, ex=HISTORY_SAMPLE_SECONDS)):
            return False
        self.refresh()  # expired leases and due retries count as waiting again
        counts = self.counts()
        oldest = self.oldest_waiting()
        longest = 0.0 if oldest is None else now - oldest
        sample = f"{now:.0f}:{counts['urgent']}:{counts['normal']}:{longest:.0f}"
        pipe = self.client.pipeline()
        pipe.zadd(HISTORY, {sample: now})
        pipe.zremrangebyscore(HISTORY, "-inf", now - HISTORY_SECONDS)
        _guard(pipe.execute)
        return True

    def history(self, since: float) -> list[bytes]:
        """Return the raw samples taken since a time, oldest first."""
        raw: list[bytes] = _guard(lambda: self.client.zrangebyscore(HISTORY, since, "+inf"))
        return raw

    def version(self) -> int:
        """Return a number that changes whenever the queue does."""
        return int(_guard(lambda: self.client.get(VERSION)) or 0)

    def estimated_wait(self, position: int | None) -> float | None:
        """Return seconds until a caller at position is likely reached, from recent pace.

        None when there is too little recent history to say (callers then hear "as soon
        as we can").
        """
        if not position:
            return None
        since = self.clock() - 24 * 60 * 60
        recent = _guard(
            lambda: self.client.zrevrangebyscore(
                COMPLETED, "+inf", since, start=0, num=WAIT_SAMPLE, withscores=True
            )
        )
        if len(recent) < 2:
            return None
        newest, oldest = recent[0][1], recent[-1][1]
        pace = (newest - oldest) / (len(recent) - 1)  # seconds between completed callbacks
        return max(pace, 60.0) * position

    # -- housekeeping ----------------------------------------------------------------------

    def expire(self, max_age: float, limit: int = _BATCH) -> list[str]:
        """Close requests that have waited longer than max_age; return their ids."""
        now = self.clock()
        keys = [tally.today_key(self.zone, now)]
        args: list[Any] = [PREFIX, now, now - max_age, limit, _BAND]
        ids = _guard(lambda: self._expire(keys=keys, args=args))
        return [id_.decode() for id_ in ids]

    def purge(self, retention: float) -> int:
        """Delete every closed request older than retention; return how many went."""
        cutoff = self.clock() - retention
        ids = _guard(lambda: self.client.zrangebyscore(CLOSED, "-inf", cutoff))
        if not ids:
            return 0
        reading = self.client.pipeline(transaction=False)
        for raw in ids:
            reading.hmget(REQ + raw.decode(), ["who", "sender"])
        callers = _guard(reading.execute)
        pipe = self.client.pipeline(transaction=True)
        for raw, (who, sender) in zip(ids, callers, strict=True):
            rid = raw.decode()
            if who:
                pipe.zrem(CALLER + as_text(who), rid)
            if sender:
                self._forget(keys=[OPEN], args=["sender:" + as_text(sender), rid], client=pipe)
            pipe.delete(REQ + rid)
            pipe.zrem(CLOSED, rid)
            pipe.zrem(COMPLETED, rid)
            pipe.zrem(UNCONFIRMED, rid)
        _guard(pipe.execute)
        return len(ids)

    def _decode(self, raw: dict[Any, Any]) -> Request:
        values = {key.decode(): value.decode() for key, value in raw.items()}

        def number(name: str) -> float | None:
            return float(values[name]) if values.get(name) else None

        rid = values["id"]
        return Request(
            id=rid,
            status=Status(values["status"]),
            priority=Priority(values["priority"]),
            channel=values["channel"],
            lang=values["lang"],
            voicemail_ok=values.get("voicemail") == "1",
            texts_ok=values.get("texts") == "1",
            created_at=float(values["created"]),
            attempts=int(values.get("attempts", 0)),
            phone_masked=mask_phone(self.sealer.open(values["phone"], rid)),
            texts_by=values.get("texts_by", "sms"),
            claimed_by=values.get("claimed_by") or None,
            handled_by=values.get("handled_by") or None,
            lease_until=number("lease_until"),
            due_at=number("due_at"),
            outcome=values.get("outcome") or None,
            closed_at=number("closed_at"),
        )
