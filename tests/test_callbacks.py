"""The callback queue against a real redis-server: order, claims, leases, retention."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import redis as redis_py

from helpline.callbacks.queue import Added, CallbackQueue, Contact, Outcome, Status
from helpline.infrastructure.constants import (
    CALLBACK_LEASE_SECONDS,
    CALLBACK_RETRY_SECONDS,
    CALLBACK_URGENT_RETRY_SECONDS,
)
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import NotYours, QueueError, QueueUnavailable
from helpline.infrastructure.privacy import derive_key
from helpline.infrastructure.store import connect
from tests.factories import (
    SECRET_KEY,
    WAIT_SECONDS,
    FakeClock,
    callback_number,
    join,
    scan_for_numbers,
)

START = 1_790_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def queue(redis: redis_py.Redis, clock: FakeClock) -> CallbackQueue:
    return CallbackQueue(
        redis, Sealer(SECRET_KEY), derive_key(SECRET_KEY, "phone-lookup"), clock=clock
    )


def add(queue: CallbackQueue, n: int, *, urgent: bool = False, sid: str = "", **contact):  # type: ignore[no-untyped-def]
    return queue.enqueue(
        Contact(callback_number(n), contact.get("voicemail", True), contact.get("texts", True)),
        channel="voice",
        lang="en",
        urgent=urgent,
        webhook_sid=sid,
    )


def test_queue_orders_urgent_first_then_longest_waiting(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    first = add(queue, 1)
    clock.advance(60)
    second = add(queue, 2)
    clock.advance(60)
    urgent = add(queue, 3, urgent=True)

    assert [first.position, second.position, urgent.position] == [1, 2, 1]
    assert queue.position(first.request.id) == 2
    assert [r.id for r in queue.active()] == [
        urgent.request.id,
        first.request.id,
        second.request.id,
    ]
    assert queue.counts() == {"urgent": 1, "normal": 2, "claimed": 0, "scheduled": 0}


def test_asking_again_gives_the_same_request_and_place(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    add(queue, 1)
    clock.advance(1)
    mine = add(queue, 2)
    again = add(queue, 2)

    assert again.added is Added.EXISTING
    assert again.request.id == mine.request.id
    assert again.position == 2
    assert len(queue.active()) == 2


def test_urgent_second_request_raises_the_open_one(queue: CallbackQueue) -> None:
    add(queue, 1)
    mine = add(queue, 2)
    raised = add(queue, 2, urgent=True)

    assert raised.request.id == mine.request.id
    assert raised.request.urgent
    assert raised.position == 1


def test_crisis_escalation_moves_the_open_request_to_the_front(queue: CallbackQueue) -> None:
    add(queue, 1)
    mine = add(queue, 2)
    escalated = queue.escalate(callback_number(2))

    assert escalated is not None and escalated.request.urgent and escalated.raised
    assert escalated.position == 1 == queue.position(mine.request.id)
    assert queue.escalate(callback_number(99)) is None


def test_retried_webhook_finds_its_first_request(queue: CallbackQueue) -> None:
    sid = "CA" + "a" * 32
    first = add(queue, 1, sid=sid)
    retry = add(queue, 1, sid=sid)

    assert retry.added is Added.DUPLICATE
    assert retry.request.id == first.request.id
    assert len(queue.active()) == 1


DAY = 24 * 60 * 60


def park(queue: CallbackQueue, clock: FakeClock, rid: str, outcome: Outcome) -> None:
    """Have a counsellor take rid and put it off: a missed call, or "call back later"."""
    claimed = queue.claim_next("sam")
    assert claimed is not None and claimed.id == rid
    later = clock() + 2 * DAY if outcome is Outcome.CALL_BACK_LATER else None
    queue.record(rid, "sam", outcome, call_back_at=later)
    assert queue.counts()["scheduled"] == 1


@pytest.mark.parametrize("outcome", [Outcome.NO_ANSWER, Outcome.CALL_BACK_LATER])
def test_an_at_risk_answer_brings_a_parked_request_to_the_front_now(
    queue: CallbackQueue, clock: FakeClock, outcome: Outcome
) -> None:
    mine = add(queue, 1)
    park(queue, clock, mine.request.id, outcome)
    clock.advance(60)
    add(queue, 2)
    add(queue, 3, urgent=True)

    again = add(queue, 1, urgent=True)

    assert again.added is Added.EXISTING and again.request.id == mine.request.id
    assert again.request.urgent and again.request.status is Status.WAITING
    assert again.request.due_at is None
    assert again.position == 1 == queue.position(mine.request.id)
    assert queue.counts() == {"urgent": 2, "normal": 1, "claimed": 0, "scheduled": 0}
    assert queue.claim_next("alex").id == mine.request.id  # type: ignore[union-attr]


@pytest.mark.parametrize("urgent", [False, True], ids=["normal", "urgent"])
def test_a_crisis_phrase_brings_a_parked_request_to_the_front_now(
    queue: CallbackQueue, clock: FakeClock, urgent: bool
) -> None:
    mine = add(queue, 1, urgent=urgent)
    park(queue, clock, mine.request.id, Outcome.NO_ANSWER)
    clock.advance(60)
    add(queue, 2)

    queue.escalate(callback_number(1))

    request = queue.get(mine.request.id)
    assert request is not None and request.urgent and request.due_at is None
    assert queue.position(mine.request.id) == 1
    assert queue.counts()["scheduled"] == 0


def test_asking_again_brings_a_parked_request_back_into_the_line_in_its_old_place(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    mine = add(queue, 1)
    clock.advance(60)
    add(queue, 2)
    park(queue, clock, mine.request.id, Outcome.CALL_BACK_LATER)
    clock.advance(60)
    add(queue, 3)

    again = add(queue, 1)

    assert again.request.id == mine.request.id and not again.request.urgent
    assert again.request.due_at is None
    assert again.position == 1 == queue.position(mine.request.id)
    assert queue.counts() == {"urgent": 0, "normal": 3, "claimed": 0, "scheduled": 0}


def test_a_webhook_sid_never_finds_a_closed_request(queue: CallbackQueue) -> None:
    sid = "CA" + "b" * 32
    first = add(queue, 1, sid=sid)
    queue.claim_next("sam")
    queue.record(first.request.id, "sam", Outcome.WRONG_NUMBER)

    again = add(queue, 1, sid=sid)
    retry = add(queue, 1, sid=sid)

    assert again.added is Added.NEW and again.request.id != first.request.id
    assert again.request.status is Status.WAITING and again.position == 1
    assert retry.added is Added.DUPLICATE and retry.request.id == again.request.id
    assert [r.id for r in queue.active()] == [again.request.id]


def test_a_webhook_sid_finds_only_a_request_for_the_same_number(queue: CallbackQueue) -> None:
    sid = "CA" + "c" * 32
    first = add(queue, 1, sid=sid)

    other = add(queue, 2, sid=sid)  # the same call, another number keyed in

    assert other.added is Added.NEW and other.request.id != first.request.id
    assert queue.phone(other.request.id) == callback_number(2)
    assert len(queue.active()) == 2


def test_an_at_risk_answer_later_in_the_same_call_raises_the_request_once(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    sid = "CA" + "d" * 32
    add(queue, 2)
    clock.advance(60)
    mine = add(queue, 1, sid=sid)

    raised = add(queue, 1, sid=sid, urgent=True)
    retried = add(queue, 1, sid=sid, urgent=True)
    escalated = queue.escalate(callback_number(1))

    assert raised.request.id == mine.request.id
    assert raised.request.urgent and raised.position == 1
    assert [raised.raised, retried.raised] == [True, False]
    assert escalated is not None and not escalated.raised and escalated.position == 1
    assert not mine.raised


def test_claim_next_takes_the_front_and_reveals_the_number_only_on_request(
    queue: CallbackQueue,
) -> None:
    add(queue, 1)
    urgent = add(queue, 2, urgent=True)

    claimed = queue.claim_next("sam")

    assert claimed is not None and claimed.id == urgent.request.id
    assert claimed.status is Status.CLAIMED and claimed.claimed_by == "sam"
    assert claimed.phone_masked == "***" + callback_number(2)[-3:]
    assert queue.phone(claimed.id) == callback_number(2)
    assert queue.position(claimed.id) is None


def test_claim_next_on_an_empty_queue_is_none(queue: CallbackQueue) -> None:
    assert queue.claim_next("sam") is None


def test_twenty_concurrent_claims_never_share_a_request(
    queue: CallbackQueue, redis_server: str
) -> None:
    for n in range(15):
        add(queue, n)
    results: list[str | None] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20, timeout=WAIT_SECONDS)

    def take(name: str) -> None:
        client = redis_py.Redis.from_url(redis_server)
        own = CallbackQueue(client, queue.sealer, queue.phone_key, clock=queue.clock)
        barrier.wait()
        request = own.claim_next(name)
        with lock:
            results.append(request.id if request else None)
        client.close()

    threads = [threading.Thread(target=take, args=(f"c{n}",)) for n in range(20)]
    for thread in threads:
        thread.start()
    join(threads)

    taken = [rid for rid in results if rid]
    assert len(taken) == 15
    assert Counter(taken).most_common(1)[0][1] == 1
    assert results.count(None) == 5


def test_an_expired_lease_returns_the_request_to_its_place(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    first = add(queue, 1)
    clock.advance(1)
    add(queue, 2)
    queue.claim_next("sam")

    clock.advance(CALLBACK_LEASE_SECONDS + 1)

    assert queue.position(first.request.id) is None  # nothing moves until someone looks
    active = queue.active()
    assert active[0].id == first.request.id and active[0].status is Status.WAITING
    assert queue.position(first.request.id) == 1
    with pytest.raises(NotYours):
        queue.record(first.request.id, "sam", Outcome.REACHED)
    assert queue.claim_next("alex").id == first.request.id  # type: ignore[union-attr]


def test_extending_a_lease_keeps_the_claim(queue: CallbackQueue, clock: FakeClock) -> None:
    add(queue, 1)
    claimed = queue.claim_next("sam")
    assert claimed is not None
    clock.advance(CALLBACK_LEASE_SECONDS - 10)
    queue.extend(claimed.id, "sam")
    clock.advance(60)

    assert queue.claim_next("alex") is None
    assert queue.record(claimed.id, "sam", Outcome.REACHED) is Status.DONE


def test_only_the_claimant_can_settle_a_request(queue: CallbackQueue) -> None:
    add(queue, 1)
    claimed = queue.claim_next("sam")
    assert claimed is not None
    with pytest.raises(NotYours):
        queue.record(claimed.id, "alex", Outcome.REACHED)
    with pytest.raises(NotYours):
        queue.release(claimed.id, "alex")


def test_reached_closes_the_request_and_frees_the_caller_to_ask_again(
    queue: CallbackQueue,
) -> None:
    first = add(queue, 1)
    queue.claim_next("sam")
    assert queue.record(first.request.id, "sam", Outcome.REACHED) is Status.DONE

    assert queue.get(first.request.id).status is Status.DONE  # type: ignore[union-attr]
    assert queue.active() == []
    again = add(queue, 1)
    assert again.added is Added.NEW and again.request.id != first.request.id


def test_release_puts_the_request_back_in_its_old_place(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    first = add(queue, 1)
    clock.advance(1)
    add(queue, 2)
    queue.claim_next("sam")
    queue.release(first.request.id, "sam")
    assert queue.position(first.request.id) == 1


def test_no_answer_retries_later_then_closes(queue: CallbackQueue, clock: FakeClock) -> None:
    first = add(queue, 1)
    for attempt in (1, 2):
        claimed = queue.claim_next("sam")
        assert claimed is not None and claimed.id == first.request.id
        assert queue.record(claimed.id, "sam", Outcome.NO_ANSWER) is Status.WAITING
        request = queue.get(first.request.id)
        assert request is not None and request.attempts == attempt
        assert request.due_at == clock() + CALLBACK_RETRY_SECONDS
        assert queue.claim_next("sam") is None  # not before the retry is due
        clock.advance(CALLBACK_RETRY_SECONDS)

    claimed = queue.claim_next("sam")
    assert claimed is not None
    assert queue.record(claimed.id, "sam", Outcome.NO_ANSWER) is Status.NO_ANSWER
    assert queue.active() == []


def test_an_urgent_no_answer_is_due_in_minutes_and_a_normal_one_in_half_an_hour(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    normal = add(queue, 1)
    urgent = add(queue, 2, urgent=True)
    for _ in range(2):
        claimed = queue.claim_next("sam")
        assert claimed is not None
        assert queue.record(claimed.id, "sam", Outcome.NO_ANSWER) is Status.WAITING
    missed = clock()

    assert {r.id: r.due_at for r in queue.active()} == {
        urgent.request.id: missed + CALLBACK_URGENT_RETRY_SECONDS,
        normal.request.id: missed + CALLBACK_RETRY_SECONDS,
    }
    clock.advance(CALLBACK_URGENT_RETRY_SECONDS - 1)
    assert queue.claim_next("sam") is None
    clock.advance(1)
    retried = queue.claim_next("sam")
    assert retried is not None and retried.id == urgent.request.id
    queue.record(retried.id, "sam", Outcome.REACHED)
    assert queue.claim_next("sam") is None  # the normal one is not due yet
    clock.advance(CALLBACK_RETRY_SECONDS - CALLBACK_URGENT_RETRY_SECONDS)
    assert queue.claim_next("sam").id == normal.request.id  # type: ignore[union-attr]


def test_an_urgent_retry_rejoins_at_the_front_in_its_age_order(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    older_normal = add(queue, 1)
    clock.advance(60)
    urgent = add(queue, 2, urgent=True)
    claimed = queue.claim_next("sam")
    assert claimed is not None and claimed.id == urgent.request.id
    queue.record(claimed.id, "sam", Outcome.NO_ANSWER)
    clock.advance(60)
    newer_normal = add(queue, 3)
    newer_urgent = add(queue, 4, urgent=True)

    clock.advance(CALLBACK_URGENT_RETRY_SECONDS)

    assert [r.id for r in queue.active()] == [
        urgent.request.id,
        newer_urgent.request.id,
        older_normal.request.id,
        newer_normal.request.id,
    ]
    assert queue.position(urgent.request.id) == 1
    assert queue.counts() == {"urgent": 2, "normal": 2, "claimed": 0, "scheduled": 0}
    assert queue.claim_next("alex").id == urgent.request.id  # type: ignore[union-attr]


def test_call_back_later_needs_a_future_time(queue: CallbackQueue, clock: FakeClock) -> None:
    first = add(queue, 1)
    queue.claim_next("sam")
    with pytest.raises(QueueError):
        queue.record(first.request.id, "sam", Outcome.CALL_BACK_LATER, call_back_at=clock() - 1)
    queue.record(first.request.id, "sam", Outcome.CALL_BACK_LATER, call_back_at=clock() + 3600)
    assert queue.counts()["scheduled"] == 1
    clock.advance(3600)
    assert queue.claim_next("alex").id == first.request.id  # type: ignore[union-attr]


def test_estimated_wait_comes_from_recent_pace(queue: CallbackQueue, clock: FakeClock) -> None:
    waiting = add(queue, 99)
    assert queue.estimated_wait(waiting.position) is None  # no history: "as soon as we can"
    for n in range(3):
        add(queue, n, urgent=True)
        claimed = queue.claim_next("sam")
        assert claimed is not None
        clock.advance(600)
        queue.record(claimed.id, "sam", Outcome.REACHED)

    assert queue.estimated_wait(1) == 600
    assert queue.estimated_wait(3) == 1800


def test_expiry_closes_old_requests_and_purge_leaves_nothing_of_the_caller(
    queue: CallbackQueue, clock: FakeClock, redis: redis_py.Redis
) -> None:
    old = add(queue, 1)
    old_urgent = add(queue, 2, urgent=True)
    clock.advance(3 * 24 * 3600)
    fresh = add(queue, 3)

    expired = queue.expire(max_age=2 * 24 * 3600)

    assert sorted(expired) == sorted([old.request.id, old_urgent.request.id])
    assert queue.get(old.request.id).status is Status.EXPIRED  # type: ignore[union-attr]
    assert [r.id for r in queue.active()] == [fresh.request.id]

    assert queue.purge(retention=7 * 24 * 3600) == 0
    clock.advance(7 * 24 * 3600 + 1)
    assert queue.purge(retention=7 * 24 * 3600) == 2
    assert queue.get(old.request.id) is None
    assert not any(old.request.id.encode() in key for key in redis.keys("*"))


def test_no_phone_number_is_stored_in_plain_text(
    queue: CallbackQueue, redis: redis_py.Redis
) -> None:
    for n in range(5):
        add(queue, n, urgent=n % 2 == 0)
    queue.claim_next("sam")

    assert scan_for_numbers(redis, [callback_number(n) for n in range(5)]) == []


def test_an_unreachable_redis_is_reported_without_the_number() -> None:
    client = connect("redis://127.0.0.1:1")
    queue = CallbackQueue(client, Sealer(SECRET_KEY), derive_key(SECRET_KEY, "phone-lookup"))
    with pytest.raises(QueueUnavailable) as caught:
        add(queue, 1)
    assert callback_number(1)[-6:] not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_oldest_waiting_is_the_earliest_in_the_line_across_both_bands(
    queue: CallbackQueue, clock: FakeClock
) -> None:
    assert queue.oldest_waiting() is None
    add(queue, 1)
    clock.advance(60)
    add(queue, 2, urgent=True)
    assert queue.oldest_waiting() == START

    queue.claim_next("sam")  # the urgent one, made later
    assert queue.oldest_waiting() == START
    queue.claim_next("sam")
    assert queue.oldest_waiting() is None
