"""Workers end to end: real redis-server, real RQ workers, the real twilio client.

Texts go to the loopback stand-in of Twilio's REST API; its list of accepted messages is
what callers would have received.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import Retry
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from helpline.application.jobs import URGENT_QUEUE, Jobs
from helpline.application.messaging import optout_key
from helpline.callbacks.queue import REQ, Added, CallbackQueue, Contact, Outcome, Placement, Status
from helpline.conversation.channels import SMS, TEXTING, WHATSAPP, Channel
from helpline.counsellors.accounts import Counsellors
from helpline.infrastructure import embedded
from helpline.infrastructure.outbound import make_client
from helpline.infrastructure.privacy import phone_digest
from helpline.web.console.views import texts_sent
from tests.factories import (
    HELPLINE_NUMBER,
    PROCESS_WAIT_SECONDS,
    WAIT_SECONDS,
    Call,
    FakeClock,
    callback_number,
    child_pids,
    join,
    parse_voice,
    scan_for_numbers,
    text,
    twilio_post,
    wait_until,
    work,
)
from tests.twilio_api import TwilioApi
from workers import jobs
from workers.main import (
    MAINTENANCE_INTERVAL,
    HelplineQueue,
    make_worker,
    queues,
    tick_housekeeping,
)
from workers.main import queue as job_queue

ROOT = Path(__file__).resolve().parent.parent
# Retry intervals for these tests (seconds): the real ones run to minutes.
QUICK_RETRY = Retry(max=5, interval=0)
DAY = 24 * 60 * 60


@pytest.fixture
def ctx(worker_env: dict[str, str]) -> jobs.Context:
    return jobs.context()


def ask(
    ctx: jobs.Context,
    n: int,
    *,
    lang: str = "en",
    texts: bool = True,
    urgent: bool = False,
    sid: str = "",
    queue: CallbackQueue | None = None,
    notify: bool = True,
    texts_by: Channel = SMS,
) -> Placement:
    """Queue a callback for callback_number(n) as the intake does, and hand it to the workers."""
    placement = (queue or ctx.queue).enqueue(
        Contact(callback_number(n), voicemail_ok=False, texts_ok=texts, texts_by=texts_by.name),
        channel="voice" if texts_by is SMS else texts_by.name,
        lang=lang,
        urgent=urgent,
        webhook_sid=sid,
        confirm=texts,
    )
    if notify and placement.added is Added.NEW:
        ctx.jobs.after_queued(placement.request, confirm=texts)
    return placement


def texts_to(api: TwilioApi, n: int, channel: Channel = SMS) -> list[str]:
    address = channel.address(callback_number(n))
    return [m.form.get("Body", "") for m in api.messages() if m.form["To"] == address]


def confirmation(ctx: jobs.Context, lang: str, position: int, channel: Channel = SMS) -> str:
    return ctx.text("sms.confirm_queued", lang, channel, position=str(position))


@pytest.fixture(params=TEXTING, ids=lambda channel: channel.name)
def channel(request: pytest.FixtureRequest, client: FlaskClient) -> Channel:
    """The channel a caller texts on; a WhatsApp user has just written to us (so the
    24-hour window for free-form messages is open)."""
    channel: Channel = request.param
    if channel is WHATSAPP:
        for n in (1, 2):
            text(client, "hi", sender=WHATSAPP.address(callback_number(n)))
    return channel


# -- confirmations --------------------------------------------------------------------------


def test_each_queued_caller_gets_one_confirmation_with_their_place_in_their_language(
    ctx: jobs.Context, twilio_api: TwilioApi, channel: Channel
) -> None:
    ask(ctx, 1, lang="en", texts_by=channel)
    ask(ctx, 2, lang="es", texts_by=channel)
    work(ctx)
    work(ctx)  # a second pass finds nothing left to send

    assert texts_to(twilio_api, 1, channel) == [confirmation(ctx, "en", 1, channel)]
    assert texts_to(twilio_api, 2, channel) == [confirmation(ctx, "es", 2, channel)]
    assert confirmation(ctx, "es", 2) != confirmation(ctx, "en", 2)
    assert "2" in confirmation(ctx, "es", 2)
    assert {m.form["From"] for m in twilio_api.messages()} == {channel.address(HELPLINE_NUMBER)}


def test_no_confirmation_when_the_caller_declined_texts(
    ctx: jobs.Context, twilio_api: TwilioApi, channel: Channel
) -> None:
    ask(ctx, 1, texts=False, texts_by=channel)
    work(ctx)
    assert twilio_api.received() == []


def test_no_confirmation_to_a_number_that_opted_out_on_that_channel(
    ctx: jobs.Context, twilio_api: TwilioApi, channel: Channel
) -> None:
    other = WHATSAPP if channel is SMS else SMS
    who = phone_digest(ctx.queue.phone_key, callback_number(1))
    ctx.client.sadd(optout_key(channel), who)
    ctx.client.sadd(optout_key(other), phone_digest(ctx.queue.phone_key, callback_number(2)))
    ask(ctx, 1, texts_by=channel)
    ask(ctx, 2, texts_by=channel)  # opted out only on the other channel
    work(ctx)
    assert texts_to(twilio_api, 1, channel) == []
    assert texts_to(twilio_api, 2, channel) == [confirmation(ctx, "en", 2, channel)]


def test_twilio_opt_out_error_is_remembered_and_never_retried(
    ctx: jobs.Context, twilio_api: TwilioApi, channel: Channel
) -> None:
    twilio_api.fail_for(channel.address(callback_number(1)), 21610)
    placement = ask(ctx, 1, texts_by=channel)
    work(ctx)

    assert [r.status for r in twilio_api.received("message")] == [400]
    who = phone_digest(ctx.queue.phone_key, callback_number(1))
    assert ctx.client.sismember(optout_key(channel), who)
    assert not ctx.client.sismember(optout_key(WHATSAPP if channel is SMS else SMS), who)
    jobs_queue = job_queue(ctx.client)
    assert jobs_queue.scheduled_job_registry.count == 0
    assert jobs_queue.failed_job_registry.count == 0
    # Later texts to the same request are not even attempted.
    jobs_queue.enqueue(jobs.expired_text, placement.request.id)
    work(ctx)
    assert len(twilio_api.received()) == 1


def test_invalid_number_error_is_not_retried(
    ctx: jobs.Context, twilio_api: TwilioApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        ctx, "jobs", Jobs(ctx.client, retry=QUICK_RETRY)
    )  # a retry would be due at once
    twilio_api.fail_for(callback_number(1), 21211)
    ask(ctx, 1)
    work(ctx)
    work(ctx)
    assert [r.status for r in twilio_api.received()] == [400]
    assert job_queue(ctx.client).scheduled_job_registry.count == 0


def test_twilio_outages_are_retried_with_growing_gaps_then_sent_once(
    ctx: jobs.Context, twilio_api: TwilioApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctx, "jobs", Jobs(ctx.client, retry=Retry(max=2, interval=[1, 3])))
    twilio_api.fail_next(1, status=500)
    twilio_api.fail_next(1, status=503)
    ask(ctx, 1)
    work(ctx)
    assert job_queue(ctx.client).scheduled_job_registry.count == 1  # backing off, not lost

    wait_until(lambda: (work(ctx), len(twilio_api.messages()))[1] == 1, what="the retried text")
    attempts = twilio_api.received("message")
    assert [r.status for r in attempts] == [500, 503, 201]
    first_gap, second_gap = (b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False))
    # RQ schedules to the whole second: a gap of 3 seconds is over 2, and longer than 1.
    assert second_gap > 2 and second_gap > first_gap
    assert texts_to(twilio_api, 1) == [confirmation(ctx, "en", 1)]


def test_a_send_that_timed_out_but_went_through_is_not_sent_again(
    ctx: jobs.Context, twilio_api: TwilioApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctx, "jobs", Jobs(ctx.client, retry=QUICK_RETRY))
    ctx.twilio = make_client(ctx.settings, timeout=0.3)  # a shorter wait than in production
    twilio_api.delay_next(WAIT_SECONDS)  # the answer comes long after the client gave up
    placement = ask(ctx, 1)
    work(ctx)

    sent = twilio_api.messages()
    assert [m.form["To"] for m in sent] == [callback_number(1)]
    stored = ctx.client.hget(REQ + placement.request.id, "sent:confirm")
    assert stored is not None and stored.decode() == sent[0].sid
    assert len(twilio_api.received("message")) == 1  # one POST; the retry read the log


# -- urgent requests ------------------------------------------------------------------------


def test_urgent_request_alerts_on_duty_counsellors_only(
    ctx: jobs.Context, twilio_api: TwilioApi
) -> None:
    counsellors = Counsellors(ctx.client, ctx.queue.sealer)
    counsellors.add("ana", name="Ana", phone=callback_number(50), password="x" * 12)
    counsellors.add("ben", name="Ben", phone=callback_number(51), password="x" * 12)
    counsellors.set_on_duty("ana", True)

    ask(ctx, 1, urgent=True)
    ask(ctx, 2, urgent=False)
    work(ctx)

    alert = ctx.text("sms.counsellor_alert", "en")
    assert texts_to(twilio_api, 50) == [alert]
    assert texts_to(twilio_api, 51) == []
    assert len(twilio_api.messages()) == 3  # the alert and two confirmations


# -- urgent first, and keeping up ---------------------------------------------------------


def on_duty(ctx: jobs.Context, username: str, n: int) -> None:
    """Add a counsellor whose phone is callback_number(n), on duty."""
    counsellors = Counsellors(ctx.client, ctx.queue.sealer)
    counsellors.add(username, name=username.title(), phone=callback_number(n), password="x" * 12)
    counsellors.set_on_duty(username, True)


def test_an_urgent_alert_goes_before_routine_texts_queued_ahead_of_it(
    ctx: jobs.Context, twilio_api: TwilioApi
) -> None:
    on_duty(ctx, "ana", 50)
    for n in range(6):
        ask(ctx, n)  # a backlog of confirmations
    ask(ctx, 10, urgent=True)  # its alert is queued after all of them

    make_worker(ctx.client).work(burst=True)  # the real worker, in this process

    sent = [m.form["To"] for m in twilio_api.messages()]
    assert sent[0] == callback_number(50)
    assert sorted(sent[1:]) == sorted(callback_number(n) for n in [*range(6), 10])


def test_a_job_taken_from_either_queue_is_kept_in_redis_until_it_has_run(
    ctx: jobs.Context, twilio_api: TwilioApi
) -> None:
    urgent, routine = queues(ctx.client)
    assert urgent.name == URGENT_QUEUE
    routine.enqueue(jobs.housekeeping, job_id="routine-job")
    urgent.enqueue(jobs.housekeeping, job_id="urgent-job")

    taken = [
        HelplineQueue.dequeue_any([urgent, routine], None, ctx.client, serializer=JSONSerializer)
        for _ in range(3)
    ]
    assert [(t[0].id, t[1].name) for t in taken if t] == [
        ("urgent-job", urgent.name),
        ("routine-job", routine.name),
    ]
    assert taken[2] is None
    # Taken, not yet started: a worker that dies now leaves each id where maintenance looks.
    assert ctx.client.lrange(urgent.intermediate_queue_key, 0, -1) == [b"urgent-job"]
    assert ctx.client.lrange(routine.intermediate_queue_key, 0, -1) == [b"routine-job"]

    # Once a job has run, nothing of it is left there for maintenance to run again.
    ctx.client.delete(urgent.intermediate_queue_key, routine.intermediate_queue_key)
    on_duty(ctx, "ana", 50)
    ask(ctx, 1, urgent=True)
    make_worker(ctx.client).work(burst=True)
    assert len(twilio_api.messages()) == 2  # the alert and the confirmation
    assert ctx.client.llen(urgent.intermediate_queue_key) == 0
    assert ctx.client.llen(routine.intermediate_queue_key) == 0


def _pid() -> int:
    """A job that returns the id of the process it runs in."""
    return os.getpid()


def _sleep(seconds: float) -> None:
    """A job that hangs for `seconds`."""
    time.sleep(seconds)


def _count_then_sleep(key: str, seconds: float) -> None:
    """A long job: count each time it starts, then take its time."""
    jobs.context().client.incr(key)
    time.sleep(seconds)


def test_jobs_run_in_the_worker_process_not_in_a_fork_each(ctx: jobs.Context) -> None:
    job = job_queue(ctx.client).enqueue(_pid)
    make_worker(ctx.client).work(burst=True)
    job.refresh()
    assert job.return_value() == os.getpid()


def test_a_job_that_hangs_is_stopped_at_its_timeout_and_the_next_one_runs(
    ctx: jobs.Context, twilio_api: TwilioApi
) -> None:
    hung = job_queue(ctx.client).enqueue(_sleep, WAIT_SECONDS, job_timeout=1)
    ask(ctx, 1)
    started = time.monotonic()
    make_worker(ctx.client).work(burst=True)

    assert time.monotonic() - started < WAIT_SECONDS
    assert hung.get_status(refresh=True) is JobStatus.FAILED
    result = hung.latest_result()
    assert result is not None and "JobTimeoutException" in (result.exc_string or "")
    assert texts_to(twilio_api, 1) == [confirmation(ctx, "en", 1)]


def test_a_request_raised_to_urgent_alerts_on_duty_counsellors_once(
    ctx: jobs.Context, twilio_api: TwilioApi, client: FlaskClient
) -> None:
    on_duty(ctx, "c50", 50)
    call = Call(client, sender=callback_number(1))
    call.press("4", "2", "2", "1", "1", "2")  # not at risk, no break: no alert
    work(ctx)
    assert texts_to(twilio_api, 50) == []

    assert "already on our list" in call.press("*", "4").text  # asks again in the same call
    final = call.step.action
    for _ in range(2):  # things have got worse (1), and Twilio's retry of that step
        response = twilio_post(client, final, {**call.params, "Digits": "1"})
        assert "now urgent" in parse_voice(response.get_data(as_text=True)).text
    call.say("he's not breathing")
    for body in ("TALK", "URGENT"):  # and asks again, and says it is urgent, by text
        text(client, body, sender=callback_number(1))
    [request] = ctx.queue.active()
    assert request.urgent
    assert job_queue(ctx.client, URGENT_QUEUE).job_ids == [f"alert-{request.id}"]
    work(ctx)

    assert texts_to(twilio_api, 50) == [ctx.text("sms.counsellor_alert", "en")]


def test_a_crisis_phrase_that_brings_back_a_parked_request_alerts_on_duty_counsellors_once(
    ctx: jobs.Context, twilio_api: TwilioApi, client: FlaskClient
) -> None:
    on_duty(ctx, "c50", 50)
    for body in ("TALK", "2", "2", "1", "1", "2"):
        text(client, body, sender=callback_number(1))
    claimed = ctx.queue.claim_next("c50")
    assert claimed is not None
    ctx.queue.record(claimed.id, "c50", Outcome.NO_ANSWER)
    work(ctx)
    assert texts_to(twilio_api, 50) == []

    for _ in range(2):  # said twice, in two texts
        text(client, "he's blue and won't wake up", sender=callback_number(1))
    assert job_queue(ctx.client, URGENT_QUEUE).job_ids == [f"alert-{claimed.id}"]
    work(ctx)

    assert texts_to(twilio_api, 50) == [ctx.text("sms.counsellor_alert", "en")]
    assert ctx.queue.position(claimed.id) == 1


# -- duplicates -----------------------------------------------------------------------------


def test_duplicate_webhooks_from_several_threads_queue_one_request_and_send_one_text(
    ctx: jobs.Context, twilio_api: TwilioApi
) -> None:
    start = threading.Barrier(8, timeout=WAIT_SECONDS)
    placements: list[Placement] = []

    def deliver() -> None:
        start.wait()
        placements.append(ask(ctx, 1, sid="CA" + "7" * 32))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    join(threads)
    work(ctx)

    assert Counter(p.added for p in placements) == {Added.NEW: 1, Added.DUPLICATE: 7}
    assert len({p.request.id for p in placements}) == 1
    assert ctx.queue.counts()["normal"] == 1
    assert texts_to(twilio_api, 1) == [confirmation(ctx, "en", 1)]


# -- killed workers -------------------------------------------------------------------------


class Workers:
    """Worker processes (the real worker, short intervals) that a test can kill."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, *, fork: bool = False) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_process", *(["--fork"] if fork else [])],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[proc.pid] = proc
        return proc.pid

    def stop(self) -> None:
        for pid, proc in self.procs.items():
            if proc.poll() is None:
                for child in child_pids(pid):
                    _kill(child)
                os.killpg(pid, signal.SIGKILL)
            proc.wait(timeout=PROCESS_WAIT_SECONDS)


def _horse(pid: int) -> int:
    """Return the work-horse of worker pid: the child that leads its own process group."""
    for child in child_pids(pid):
        try:
            if os.getpgid(child) == child:
                return child
        except ProcessLookupError:
            continue
    raise AssertionError("the worker has no work-horse")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def workers(worker_env: dict[str, str]) -> Iterator[Workers]:
    pool = Workers(worker_env)
    yield pool
    pool.stop()


def _running(ctx: jobs.Context, job_id: str) -> int:
    """Return the pid of the worker running job_id, waiting for one to start it."""
    from rq import Worker

    found: list[int] = []

    def started() -> bool:
        for worker in Worker.all(connection=ctx.client, serializer=JSONSerializer):
            if worker.get_current_job_id() == job_id and worker.pid:
                found.append(worker.pid)
                return True
        return False

    wait_until(started, PROCESS_WAIT_SECONDS, what=f"a worker to run {job_id}")
    return found[0]


@pytest.mark.parametrize("victim", ["work-horse", "whole worker"])
def test_killed_workers_lose_no_confirmation_and_send_none_twice(
    ctx: jobs.Context,
    twilio_api: TwilioApi,
    workers: Workers,
    monkeypatch: pytest.MonkeyPatch,
    victim: str,
) -> None:
    monkeypatch.setattr(ctx, "jobs", Jobs(ctx.client, retry=QUICK_RETRY))
    rounds = 3
    for n in range(rounds):  # callers ahead, so each round's caller moves up mid-send
        ask(ctx, n)
    fork = victim == "work-horse"  # a work-horse per job is the forking worker's
    workers.start(fork=fork)
    workers.start(fork=fork)
    twilio_api.wait_for(rounds, timeout=PROCESS_WAIT_SECONDS)  # the workers start first

    for n in range(rounds, 2 * rounds):
        twilio_api.delay_next(30)  # Twilio takes the text, then holds its answer
        request = ask(ctx, n).request
        twilio_api.wait_for(n + 1)
        pid = _running(ctx, f"confirm-{request.id}")
        ctx.queue.claim_next("ana")  # a counsellor takes someone ahead: the place changes
        if victim == "work-horse":
            _kill(_horse(pid))
        else:
            for child in child_pids(pid):
                _kill(child)
            os.killpg(pid, signal.SIGKILL)
            workers.start(fork=fork)
        wait_until(
            lambda rid=request.id: ctx.client.hexists(REQ + rid, "sent:confirm"),
            PROCESS_WAIT_SECONDS,  # a new worker may have to start first
            what="the killed job's retry",
        )

    for n in range(2 * rounds):
        assert len(texts_to(twilio_api, n)) == 1, f"caller {n} got {texts_to(twilio_api, n)}"
    assert len(twilio_api.messages()) == 2 * rounds


def test_a_job_running_past_the_heartbeat_deadline_is_not_retried_while_it_runs(
    ctx: jobs.Context, workers: Workers
) -> None:
    # The worker's deadline without a heartbeat is 2 seconds (tests.worker_process).
    job = job_queue(ctx.client).enqueue(_count_then_sleep, "test:starts", 4, retry=QUICK_RETRY)
    workers.start()
    wait_until(lambda: ctx.client.get("test:starts") == b"1", PROCESS_WAIT_SECONDS)
    other = make_worker(ctx.client)  # another worker's maintenance, as often as it can

    def done() -> bool:
        other.clean_registries()
        queue = job_queue(ctx.client)
        idle = queue.count == 0 and queue.started_job_registry.count == 0
        return idle and job.get_status(refresh=True) is JobStatus.FINISHED

    wait_until(done, WAIT_SECONDS, what="the long job to finish")
    assert ctx.client.get("test:starts") == b"1"


def helpline_worker(env: dict[str, str], **extra: str) -> subprocess.Popen[bytes]:
    """Start `helpline worker` as an operator would, with this checkout's code."""
    return subprocess.Popen(
        [sys.executable, "-m", "helpline", "worker"],
        cwd=ROOT,
        env={**env, **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Ask a process to stop (SIGTERM) and return its exit status; kill it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=PROCESS_WAIT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_helpline_worker_runs_the_processes_asked_for_and_replaces_one_that_dies(
    ctx: jobs.Context, twilio_api: TwilioApi, worker_env: dict[str, str]
) -> None:
    proc = helpline_worker(worker_env, HELPLINE_WORKER_PROCESSES="3")
    try:
        wait_until(lambda: len(child_pids(proc.pid)) == 3, PROCESS_WAIT_SECONDS, what="3 workers")
        victim = child_pids(proc.pid)[0]
        _kill(victim)
        wait_until(
            lambda: len(child_pids(proc.pid)) == 3 and victim not in child_pids(proc.pid),
            PROCESS_WAIT_SECONDS,
            what="a worker in place of the dead one",
        )
        for n in range(6):
            ask(ctx, n)
        twilio_api.wait_for(6, timeout=PROCESS_WAIT_SECONDS)
        assert proc.poll() is None
    finally:
        status = _stop(proc)
    assert status == 0
    assert sorted(m.form["To"] for m in twilio_api.messages()) == [
        callback_number(n) for n in range(6)
    ]


@pytest.fixture
def own_redis(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A redis-server for this test alone, to stop and start: (its data dir, worker env)."""
    data_dir = Path(tempfile.mkdtemp(prefix="hl-", dir="/tmp"))
    url, _ = embedded.ensure_running(data_dir)
    monkeypatch.setenv("REDIS_URL", url)
    jobs.context.cache_clear()
    try:
        yield data_dir, {**worker_env, "REDIS_URL": url}
    finally:
        jobs.context.cache_clear()
        embedded.stop(data_dir)


# Seconds Redis stays away: longer than redis-py's own retries of a command (about 5).
REDIS_OUTAGE_SECONDS = 8


def _kill_redis(data_dir: Path) -> None:
    """Kill the redis-server outright, as a crash or an OOM kill would."""
    pid = embedded.server_pid(data_dir)
    assert pid is not None
    _kill(pid)
    wait_until(lambda: not embedded.is_running(data_dir), what="redis-server to die")


@pytest.mark.parametrize("when", ["mid-job", "idle"])
def test_the_worker_carries_on_when_redis_goes_away_and_comes_back(
    own_redis: tuple[Path, dict[str, str]], twilio_api: TwilioApi, when: str
) -> None:
    data_dir, env = own_redis
    ctx = jobs.context()
    proc = helpline_worker(env, HELPLINE_WORKER_PROCESSES="1")
    try:
        ask(ctx, 0)
        twilio_api.wait_for(1, timeout=PROCESS_WAIT_SECONDS)  # the worker is up and working
        held = None
        if when == "mid-job":
            twilio_api.delay_next(2)  # Twilio takes the text and holds its answer...
            held = ask(ctx, 1).request
            twilio_api.wait_for(2)  # ...while Redis dies under the job
        _kill_redis(data_dir)
        time.sleep(REDIS_OUTAGE_SECONDS)
        embedded.ensure_running(data_dir)

        ask(ctx, 2)
        wait_until(
            lambda: len(texts_to(twilio_api, 2)) == 1,
            PROCESS_WAIT_SECONDS,
            what="work queued after the outage",
        )
        assert proc.poll() is None, "the worker exited"
        if held is not None:
            wait_until(lambda rid=held.id: ctx.client.hexists(REQ + rid, "sent:confirm"))
            assert len(texts_to(twilio_api, 1)) == 1
    finally:
        _stop(proc)


def test_sigterm_lets_the_worker_finish_its_job_then_exit(
    ctx: jobs.Context, twilio_api: TwilioApi, worker_env: dict[str, str]
) -> None:
    proc = helpline_worker(worker_env)
    try:
        twilio_api.delay_next(1.5)
        request = ask(ctx, 1).request
        twilio_api.wait_for(1, timeout=PROCESS_WAIT_SECONDS)  # the worker starts first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=PROCESS_WAIT_SECONDS) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stored = ctx.client.hget(REQ + request.id, "sent:confirm")
    assert stored is not None and stored.decode() == twilio_api.messages()[0].sid
    assert len(twilio_api.messages()) == 1


def test_a_maintenance_lock_left_by_a_dead_worker_lapses_before_the_next_pass(
    ctx: jobs.Context,
) -> None:
    worker = make_worker(ctx.client)
    assert len(worker.queues) == 2
    for queue in worker.queues:
        # What a worker killed in the middle of a maintenance pass leaves behind:
        assert queue.acquire_maintenance_lock()

        # Another worker cannot clean meanwhile, but only until the next pass is due
        # (RQ's own lock would hold it up for 15 minutes).
        assert not queue.acquire_maintenance_lock()
        assert 0 < ctx.client.ttl(queue.registry_cleaning_key) < MAINTENANCE_INTERVAL
        # A pass that finishes lets go of the lock at once.
        ctx.client.delete(queue.registry_cleaning_key)
    worker.clean_registries()
    for queue in worker.queues:
        assert not ctx.client.exists(queue.registry_cleaning_key)


# -- housekeeping ---------------------------------------------------------------------------


def _queue_at(ctx: jobs.Context, seconds_ago: float) -> CallbackQueue:
    """Return the queue as it was `seconds_ago`: requests made through it are that old."""
    clock = FakeClock(time.time() - seconds_ago)
    return CallbackQueue(ctx.client, ctx.queue.sealer, ctx.queue.phone_key, clock=clock)


def test_housekeeping_closes_stale_requests_with_a_last_text(
    ctx: jobs.Context, twilio_api: TwilioApi, channel: Channel
) -> None:
    long_ago = _queue_at(ctx, 73 * 3600)
    old = ask(ctx, 1, lang="es", queue=long_ago, notify=False, texts_by=channel).request
    fresh = ask(ctx, 2, texts_by=channel).request

    assert tick_housekeeping(ctx.jobs, 30)
    assert not tick_housekeeping(ctx.jobs, 30)  # one per interval, whichever worker
    work(ctx)

    assert ctx.queue.get(old.id).status is Status.EXPIRED  # type: ignore[union-attr]
    assert ctx.queue.get(fresh.id).status is Status.WAITING  # type: ignore[union-attr]
    # The old caller hears it has closed (in Spanish), not a stale "you are in the queue".
    assert texts_to(twilio_api, 1, channel) == [ctx.text("sms.expired", "es", channel)]
    # Its confirmation went out first, while the old request was still ahead of it.
    assert texts_to(twilio_api, 2, channel) == [confirmation(ctx, "en", 2, channel)]


# -- WhatsApp's 24-hour window -----------------------------------------------------------

TEMPLATE_SID = "HX" + "ab" * 16


def test_outside_the_whatsapp_window_nothing_is_sent_and_the_request_says_why(
    ctx: jobs.Context, twilio_api: TwilioApi, app: Flask
) -> None:
    # Their last WhatsApp message was over 24 hours ago: no window is open.
    placement = ask(ctx, 1, texts_by=WHATSAPP)
    work(ctx)

    assert twilio_api.received() == []
    with app.test_request_context():
        assert texts_sent(placement.request.id) == [
            (
                "Confirmation",
                "not sent: over 24 hours since their last WhatsApp message, and no approved "
                "template is set up",
            )
        ]
    assert ctx.queue.get(placement.request.id).status is Status.WAITING  # type: ignore[union-attr]


def test_outside_the_whatsapp_window_the_approved_template_carries_the_message(
    ctx: jobs.Context, twilio_api: TwilioApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        ctx, "settings", ctx.settings.with_overrides(whatsapp_template_sid=TEMPLATE_SID)
    )
    ask(ctx, 1, lang="es", texts_by=WHATSAPP)
    work(ctx)
    work(ctx)

    [sent] = twilio_api.messages()
    assert sent.form["To"] == WHATSAPP.address(callback_number(1))
    assert sent.form["From"] == WHATSAPP.address(HELPLINE_NUMBER)
    assert sent.form["ContentSid"] == TEMPLATE_SID and "Body" not in sent.form
    variables = json.loads(sent.form["ContentVariables"])
    assert variables == {"1": confirmation(ctx, "es", 1, WHATSAPP)}
    assert "número" in variables["1"]  # WhatsApp keeps the accents SMS would fold


def test_whatsapp_sender_can_be_configured(
    ctx: jobs.Context, twilio_api: TwilioApi, monkeypatch: pytest.MonkeyPatch, client: FlaskClient
) -> None:
    sender = "whatsapp:+14155238886"
    monkeypatch.setattr(ctx, "settings", ctx.settings.with_overrides(whatsapp_from=sender))
    text(client, "hi", sender=WHATSAPP.address(callback_number(1)))
    ask(ctx, 1, texts_by=WHATSAPP)
    work(ctx)
    [sent] = twilio_api.messages()
    assert (sent.form["From"], sent.form["Body"]) == (sender, confirmation(ctx, "en", 1, WHATSAPP))


def test_housekeeping_sends_confirmations_whose_job_was_lost_once(
    ctx: jobs.Context, twilio_api: TwilioApi
) -> None:
    # Enqueueing this one's job failed:
    lost = ask(ctx, 1, queue=_queue_at(ctx, 121), notify=False).request
    # This one's job is still waiting its turn (a backlog), and must not be doubled:
    slow = ask(ctx, 2, queue=_queue_at(ctx, 120)).request

    for _ in range(2):
        job_queue(ctx.client).enqueue(jobs.housekeeping)
        work(ctx)

    assert texts_to(twilio_api, 1) == [confirmation(ctx, "en", 1)]
    assert texts_to(twilio_api, 2) == [confirmation(ctx, "en", 2)]
    assert {lost.id, slow.id}.isdisjoint(
        m.decode() for m in ctx.client.zrange("helpline:cb:unconfirmed", 0, -1)
    )


def test_purge_leaves_nothing_of_the_caller(ctx: jobs.Context, twilio_api: TwilioApi) -> None:
    long_ago = _queue_at(ctx, 40 * DAY)
    request = ask(ctx, 1, queue=long_ago).request
    work(ctx)
    assert long_ago.claim_next("ana") is not None
    long_ago.record(request.id, "ana", Outcome.REACHED)
    kept = ask(ctx, 2).request

    job_queue(ctx.client).enqueue(jobs.housekeeping)
    work(ctx)

    assert ctx.queue.get(request.id) is None
    assert scan_for_numbers(ctx.client, [callback_number(1)]) == []
    leftovers = [
        key.decode()
        for key in ctx.client.scan_iter(match="helpline:*")
        if request.id.encode() in key or request.id.encode() in str(_dump(ctx, key)).encode()
    ]
    assert leftovers == []
    assert ctx.queue.get(kept.id) is not None


def _dump(ctx: jobs.Context, key: bytes) -> object:
    kind = ctx.client.type(key).decode()
    if kind == "hash":
        return ctx.client.hgetall(key)
    if kind == "zset":
        return ctx.client.zrange(key, 0, -1)
    if kind == "set":
        return ctx.client.smembers(key)
    if kind == "string":
        return ctx.client.get(key)
    return None


# -- Redis restarts and privacy -------------------------------------------------------------


def test_waiting_requests_and_their_order_survive_a_redis_restart(
    own_redis: tuple[Path, dict[str, str]], twilio_api: TwilioApi
) -> None:
    data_dir, _ = own_redis
    ctx = jobs.context()
    for n in range(6):
        ask(ctx, n, urgent=n % 3 == 2)
    before = [(r.id, r.priority, r.phone_masked) for r in ctx.queue.active()]

    embedded.stop(data_dir)
    assert not embedded.is_running(data_dir)
    embedded.ensure_running(data_dir)
    ctx.client.connection_pool.disconnect()

    after = [(r.id, r.priority, r.phone_masked) for r in ctx.queue.active()]
    assert after == before
    assert [ctx.queue.phone(rid) for rid, _, _ in after][0] == callback_number(2)
    work(ctx)  # the confirmation jobs queued before the restart still run
    assert sorted(m.form["To"] for m in twilio_api.messages()) == sorted(
        callback_number(n) for n in range(6)
    )


def test_no_phone_number_is_stored_in_plain_text_anywhere_in_redis(
    ctx: jobs.Context, twilio_api: TwilioApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctx, "jobs", Jobs(ctx.client, retry=Retry(max=3, interval=[60])))
    counsellors = Counsellors(ctx.client, ctx.queue.sealer)
    counsellors.add("ana", name="Ana", phone=callback_number(50), password="x" * 12)
    counsellors.set_on_duty("ana", True)
    twilio_api.fail_for(callback_number(3), 21610)
    twilio_api.fail_for(callback_number(4), 21211)

    ask(ctx, 1, urgent=True, sid="CA" + "1" * 32)
    ask(ctx, 2, lang="es")
    ask(ctx, 3)
    ask(ctx, 4)
    ask(ctx, 5, queue=_queue_at(ctx, 73 * 3600), notify=False)
    twilio_api.fail_next(1, status=500)  # one job waits to retry, with its error stored
    ask(ctx, 6)
    job_queue(ctx.client).enqueue(jobs.housekeeping)
    work(ctx)

    assert sum(q.scheduled_job_registry.count for q in queues(ctx.client)) >= 1
    assert len(twilio_api.messages()) >= 4
    numbers = [callback_number(n) for n in (1, 2, 3, 4, 5, 6, 50)]
    assert scan_for_numbers(ctx.client, numbers) == []
    assert any(key.startswith(b"rq:job:") for key in ctx.client.scan_iter())


# -- the bridged call back ----------------------------------------------------------------


USABLE_COUNSELLOR = "+12025550123"


def test_the_bridge_job_rings_the_counsellor_and_a_refused_call_frees_them(
    ctx: jobs.Context, twilio_api: TwilioApi
) -> None:
    ctx.counsellors.add("alex", name="Alex", phone=USABLE_COUNSELLOR, password="x" * 12)
    first = ask(ctx, 1, texts=False).request
    ctx.queue.claim_next("alex")
    assert ctx.live_calls.start("alex", first.id)
    ctx.jobs.call_counsellor(first.id, "alex")
    work(ctx)
    [call] = twilio_api.calls()
    assert call.form["To"] == USABLE_COUNSELLOR and call.form["From"] == HELPLINE_NUMBER
    assert ctx.live_calls.current("alex") == first.id  # ringing: still on it

    ctx.live_calls.changed("alex", first.id, "completed")
    twilio_api.fail_next(status=400, code=21211)
    assert ctx.live_calls.start("alex", first.id)
    ctx.jobs.call_counsellor(first.id, "alex")
    work(ctx)
    assert len(twilio_api.calls()) == 1
    assert ctx.live_calls.current("alex") is None  # the call never started: free again
