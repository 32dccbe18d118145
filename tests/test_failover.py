"""Redis with replicas and Sentinel: a master that dies or is demoted loses nobody.

Real processes throughout: redis-servers (a master and its replicas) and three
Sentinels on loopback ports, `helpline web` (gunicorn), a worker, the Twilio stand-in.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import redis as redis_py
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.composition import Components, connect_redis
from helpline.application.config import Settings
from helpline.application.jobs import QUEUE_NAMES, job_queue
from helpline.callbacks.queue import REQ, UNCONFIRMED, CallbackQueue, Contact
from helpline.infrastructure.errors import NotKept, QueueUnavailable
from tests.factories import (
    PROCESS_WAIT_SECONDS,
    WAIT_SECONDS,
    callback_number,
    join,
    make_settings,
    run_helpline,
    text,
    wait_until,
)
from tests.processes import (
    HOST,
    Heard,
    RedisWithSentinel,
    Reply,
    Texter,
    helpline_env,
    post_sms,
    report,
    texter_number,
    webs,
    workers,
)
from tests.twilio_api import TwilioApi
from workers import jobs
from workers.connection import connect as worker_connect

# These tests measure figures and start many processes: with workers in parallel
# (pytest-xdist, --dist loadgroup) they run one after another on the same worker.
pytestmark = pytest.mark.xdist_group("measured")

T = TypeVar("T")
# Callers queued before the master is killed, and after the new one takes over.
BEFORE, AFTER = 15, 15
# Conversations in flight at once.
CONCURRENT = 4
# The switch must be over well within this (Sentinel calls the master down after 1 s).
SWITCH_WITHIN = 30.0


@contextmanager
def redis_with_sentinel(root: Path, replicas: int) -> Iterator[RedisWithSentinel]:
    root.mkdir()
    servers = RedisWithSentinel(root, replicas=replicas)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisWithSentinel]:
    """A master with two replicas: after a failover, the new master still has one."""
    with redis_with_sentinel(tmp_path / "redis", replicas=2) as servers:
        yield servers


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[RedisWithSentinel]:
    """A master with one replica, which a test can take away."""
    with redis_with_sentinel(tmp_path / "redis", replicas=1) as servers:
        yield servers


def sentinel_settings(cluster: RedisWithSentinel, data_dir: Path, **changes: object) -> Settings:
    return make_settings(
        data_dir,
        None,
        redis_sentinels=tuple((HOST, port) for port in cluster.sentinels),
        redis_sentinel_master="helpline",
        **changes,
    )


def queue_on(port: int, data_dir: Path) -> CallbackQueue:
    """The callback queue as kept on one server, read directly."""
    settings = make_settings(data_dir, f"redis://{HOST}:{port}")
    return Components(settings, redis_py.Redis(HOST, port)).queue


class Callers:
    """Texters asking for call backs, a few at a time, each until told they are queued."""

    def __init__(self, port: int):
        self.port = port
        self.numbers = itertools.count()
        self.replies: list[Reply] = []
        self.queued: dict[str, Reply] = {}  # callback number -> the reply that said so
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(CONCURRENT)]

    def __enter__(self) -> Callers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(PROCESS_WAIT_SECONDS)
            assert not thread.is_alive(), "a caller is still waiting for an answer"

    def queued_since(self, moment: float) -> list[Reply]:
        with self.lock:
            return [reply for reply in self.queued.values() if reply.began >= moment]

    def _run(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                n = next(self.numbers)
            texter = Texter(texter_number(n), callback_number(n))
            while not self.stopping.is_set():
                last = self._ask(texter)
                if last.heard in (Heard.QUEUED, Heard.ALREADY):
                    with self.lock:
                        self.queued[texter.callback] = last
                    break

    def _ask(self, texter: Texter) -> Reply:
        reply = None
        for body in texter.steps():
            reply = post_sms(self.port, texter.form(body, "SM" + secrets.token_hex(16)))
            with self.lock:
                self.replies.append(reply)
            if reply.heard in (Heard.FAILSAFE, Heard.ERROR, Heard.NOT_QUEUED):
                break  # start again, as someone would
        assert reply is not None
        return reply


def test_callers_lose_nothing_when_the_redis_master_is_killed(
    cluster: RedisWithSentinel,
    tmp_path: Path,
    twilio_api: TwilioApi,
    request: pytest.FixtureRequest,
) -> None:
    env = helpline_env(tmp_path / "var", twilio_api.url, **cluster.env)
    old = cluster.master()
    with webs(1, env, tmp_path) as [port], workers(1, env, tmp_path):
        with Callers(port) as callers:
            wait_until(
                lambda: len(callers.queued) >= BEFORE,
                PROCESS_WAIT_SECONDS,
                what="callers queued before the failover",
            )
            killed = time.monotonic()
            cluster.kill(old)
            wait_until(
                lambda: len(callers.queued_since(killed)) >= AFTER,
                PROCESS_WAIT_SECONDS,
                what="callers queued on the new master",
            )
        new = cluster.failed_over(old)
        queue = queue_on(new, tmp_path / "check")
        client = queue.client

        def settled() -> bool:
            waiting = sum(job_queue(client, name).count for name in QUEUE_NAMES)
            started = sum(len(job_queue(client, name).started_job_registry) for name in QUEUE_NAMES)
            return waiting == 0 and started == 0

        wait_until(settled, PROCESS_WAIT_SECONDS, what="the worker to finish every job")

    errors = [reply.text for reply in callers.replies if reply.heard is Heard.ERROR]
    lost = [number for number in callers.queued if queue.open_request_for(number) is None]
    confirmations = Counter(message.form["To"] for message in twilio_api.messages())
    duplicates = {number: n for number, n in confirmations.items() if n > 1}
    # A confirmation whose job died with the old master is still owed: the workers'
    # housekeeping sends it once its grace is over.
    owed = {
        number
        for number in callers.queued
        if (found := queue.open_request_for(number)) and client.zscore(UNCONFIRMED, found.id)
    }
    unconfirmed = set(callers.queued) - set(confirmations) - owed
    first_after = min(reply.ended for reply in callers.queued_since(killed))
    switch = first_after - killed
    heard = Counter(reply.heard.value for reply in callers.replies)
    report(
        request,
        f"failover: {len(callers.replies)} webhooks ({dict(heard)}), {len(errors)} errors; "
        f"{len(callers.queued)} callers told they are queued, {len(lost)} lost, "
        f"{len(duplicates)} confirmed twice, {len(owed)} confirmations owed; first caller "
        f"queued on the new master {switch:.1f} s after the old one was killed",
    )
    assert errors == []
    assert lost == []
    assert duplicates == {}
    assert unconfirmed == set()
    assert switch < SWITCH_WITHIN
    assert set(confirmations) <= set(callers.queued)


def within(call: Callable[[], T], timeout: float = WAIT_SECONDS) -> T:
    """Return call()'s result; fail, not hang, if it takes longer than timeout."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    join([thread], timeout)
    if failure:
        raise failure[0]
    return outcome[0]


@pytest.mark.parametrize("process", ["worker", "web"])
def test_a_demoted_master_is_left_for_the_one_sentinel_names(
    cluster: RedisWithSentinel, tmp_path: Path, process: str
) -> None:
    settings = sentinel_settings(cluster, tmp_path / "var")
    client = (
        worker_connect(settings) if process == "worker" else connect_redis(settings, fast_fail=True)
    )
    queue = Components(settings, client).queue
    old = cluster.master()
    first = queue.enqueue(
        Contact(callback_number(1), True, True), channel="sms", lang="en", urgent=False
    )

    # The old master becomes a replica of another server, and nobody closes our
    # connection to it: its answer to the next write is READONLY.
    new = cluster.add_server()
    cluster.watch(new)
    cluster.client(old).replicaof(HOST, new)
    wait_until(lambda: cluster.client(old).info("replication")["role"] == "slave")

    contact = Contact(callback_number(2), True, True)
    if process == "web":
        # A webhook does not wait: this caller hears the fail-safe, the next one is queued.
        with pytest.raises(QueueUnavailable):
            queue.enqueue(contact, channel="sms", lang="en", urgent=False)
    # A worker's client retries until Redis answers: if it kept asking the old master,
    # it would never return.
    second = within(lambda: queue.enqueue(contact, channel="sms", lang="en", urgent=False))

    assert cluster.client(new).hget(REQ + second.request.id, "status") == b"waiting"
    assert first.request.id != second.request.id


# -- nothing is promised that a replica does not hold -------------------------------------


def replica_of(servers: RedisWithSentinel) -> int:
    [port] = [port for port in servers.servers if port != servers.master()]
    return port


def ask(client: FlaskClient, texter: Texter) -> str:
    reply = ""
    for body in texter.steps():
        reply = text(client, body, sender=texter.sender)
    return reply


def test_a_texter_is_told_they_are_queued_only_once_a_replica_holds_the_request(
    pair: RedisWithSentinel, tmp_path: Path
) -> None:
    settings = sentinel_settings(pair, tmp_path / "var", redis_min_replicas=1)
    client = create_app(settings).test_client()
    kept, unkept = (Texter(texter_number(n), callback_number(n)) for n in (1, 2))
    assert "You're on the list" in ask(client, kept)

    pair.kill(replica_of(pair))
    reply = ask(client, unkept)

    assert "you're not on the list" in reply
    queue = queue_on(pair.master(), tmp_path / "check")
    assert queue.open_request_for(kept.callback) is not None
    assert queue.open_request_for(unkept.callback) is None
    assert len(list(queue.client.scan_iter(match=REQ + "*"))) == 1
    assert queue.client.zcard(UNCONFIRMED) == 1  # the kept one's confirmation only


def test_a_text_is_not_sent_until_a_replica_holds_the_record_that_it_is_going(
    pair: RedisWithSentinel, tmp_path: Path, twilio_api: TwilioApi
) -> None:
    settings = sentinel_settings(
        pair, tmp_path / "var", redis_min_replicas=1, twilio_api_url=twilio_api.url
    )
    ctx = jobs.Context(settings, worker_connect(settings))
    placement = ctx.queue.enqueue(
        Contact(callback_number(1), True, True), channel="sms", lang="en", urgent=False
    )

    pair.kill(replica_of(pair))
    # After a failover a retry would not know it had been sent, and would send it again.
    with pytest.raises(NotKept):
        jobs.send_once(
            ctx, placement.request.id, "confirm", callback_number(1), "On the list.", "who"
        )
    assert twilio_api.messages() == []


def test_the_command_line_finds_the_new_master_through_sentinel(
    pair: RedisWithSentinel, tmp_path: Path
) -> None:
    settings = sentinel_settings(pair, tmp_path / "var", redis_min_replicas=1)
    queue = Components(settings, connect_redis(settings)).queue
    placement = queue.enqueue(
        Contact(callback_number(7), True, True), channel="voice", lang="en", urgent=True
    )
    old = pair.master()
    pair.kill(old)
    pair.failed_over(old)

    env = helpline_env(tmp_path / "var", "http://127.0.0.1:1", **pair.env)
    done = run_helpline("queue", "list", "--json", env=env)

    assert done.returncode == 0, done.stderr
    [listed] = json.loads(done.stdout)
    assert listed["id"] == placement.request.id and listed["priority"] == "urgent"
