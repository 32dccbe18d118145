"""More than one machine's worth of processes on one Redis: two webs, three workers.

Real processes throughout: `helpline web` (gunicorn) twice on different ports, three
worker processes, the session's redis-server and the Twilio stand-in.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as redis_py

from helpline.callbacks.queue import OPEN, REQ, UNCONFIRMED
from tests.factories import PROCESS_WAIT_SECONDS, callback_number, wait_until
from tests.processes import (
    Heard,
    Texter,
    helpline_env,
    post_sms,
    report,
    texter_number,
    webs,
    workers,
)
from tests.twilio_api import TwilioApi

# These tests measure figures and start many processes: with workers in parallel
# (pytest-xdist, --dist loadgroup) they run one after another on the same worker.
pytestmark = pytest.mark.xdist_group("measured")

CALLERS = 300
# Every RETRIED-th caller's last text is delivered twice at once, once to each web, as
# Twilio does when the first delivery seems slow: the same MessageSid both times.
RETRIED = 4
# Conversations in flight at once.
CONCURRENT = 24


def converse(texter: Texter, port: int, other: int, retried: bool) -> None:
    """Walk one texter through asking for a call back, each text a real webhook."""
    *steps, last = texter.steps()
    for body in steps:
        texter.replies.append(post_sms(port, texter.form(body, "SM" + secrets.token_hex(16))))
    form = texter.form(last, "SM" + secrets.token_hex(16))
    if not retried:
        texter.replies.append(post_sms(port, form))
        return
    with ThreadPoolExecutor(2) as both:
        texter.replies.extend(both.map(post_sms, [port, other], [form, form]))


def test_two_webs_and_three_workers_queue_each_of_300_callers_once_and_confirm_once(
    tmp_path: Path,
    redis_server: str,
    redis: redis_py.Redis,
    twilio_api: TwilioApi,
    request: pytest.FixtureRequest,
) -> None:
    env = helpline_env(tmp_path / "var", twilio_api.url, REDIS_URL=redis_server)
    texters = [Texter(texter_number(n), callback_number(n)) for n in range(CALLERS)]
    with webs(2, env, tmp_path) as ports, workers(3, env, tmp_path):
        began = time.monotonic()
        with ThreadPoolExecutor(CONCURRENT) as pool:
            done = [
                pool.submit(converse, texter, ports[n % 2], ports[1 - n % 2], n % RETRIED == 0)
                for n, texter in enumerate(texters)
            ]
            for future in done:
                future.result()
        talking = time.monotonic() - began

        def confirmed() -> bool:
            return len(twilio_api.messages()) >= CALLERS and redis.zcard(UNCONFIRMED) == 0

        wait_until(confirmed, PROCESS_WAIT_SECONDS, what="a confirmation text to every caller")
        confirming = time.monotonic() - began

    replies = [reply for texter in texters for reply in texter.replies]
    assert [r.text for r in replies if r.heard in (Heard.ERROR, Heard.FAILSAFE)] == []
    for texter in texters:
        asked = len(texter.steps()) - 1
        finals = {reply.heard for reply in texter.replies[asked:]}
        assert Heard.QUEUED in finals and finals <= {Heard.QUEUED, Heard.ALREADY}, texter

    requests = list(redis.scan_iter(match=REQ + "*", count=1000))
    assert len(requests) == CALLERS
    assert redis.hlen(OPEN) == CALLERS
    per_number = Counter(message.form["To"] for message in twilio_api.messages())
    assert per_number == Counter({texter.callback: 1 for texter in texters})
    webhooks = len(replies)
    report(
        request,
        f"scale-out: {CALLERS} callers, {webhooks} webhooks over 2 webs in {talking:.1f} s "
        f"({webhooks / talking:.0f}/s); every confirmation sent {confirming:.1f} s after the "
        f"first text",
    )
