"""Work handed to the workers: the jobs there are, the queue each goes on, how it is retried.

The web process and the command line queue work through this module and nothing else.
A job is named by the import path of its function in the `workers` package, so queueing
one loads neither its code nor the Twilio client, and `helpline` never imports
`workers` (tests/test_layers.py checks both, and that every name here resolves).

Jobs take request ids, usernames and plain values, never phone numbers: a job's
arguments are stored in Redis and shown by RQ's tools.
"""

from __future__ import annotations

import json
from enum import StrEnum

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from helpline.callbacks.queue import Request
from helpline.checkins.sessions import Claimed, Work

# Counsellor alerts (and, later, check-in calls): every worker serves this queue first.
URGENT_QUEUE = "urgent"
# Everything else. The name of the single queue before urgent work had its own, so jobs
# queued by an older release are still served.
ROUTINE_QUEUE = "helpline"
# The order in which every worker looks for work.
QUEUE_NAMES = (URGENT_QUEUE, ROUTINE_QUEUE)
# Seconds any one job may run: a text is a REST call or two with a 10-second timeout.
JOB_TIMEOUT = 120
# Seconds a finished job's result is kept (a Message SID; nobody reads it later).
RESULT_TTL = 60
# Seconds a failed job stays in RQ's failed registry for an operator to look at.
FAILURE_TTL = 7 * 24 * 60 * 60
# Twilio 5xx, 429 and network errors: try again with growing gaps (seconds).
RETRY = Retry(max=6, interval=[10, 30, 60, 120, 300, 600])


class Job(StrEnum):
    """Every job, by the import path of the worker function that runs it."""

    CONFIRM = "workers.jobs.confirm_request"
    ALERT = "workers.jobs.alert_counsellors"
    MISSED_CALL = "workers.jobs.missed_call_text"
    EXPIRED = "workers.jobs.expired_text"
    SURVEY = "workers.jobs.survey_text"
    HOUSEKEEPING = "workers.jobs.housekeeping"
    # Not retried: a second attempt could ring the counsellor twice (the console shows
    # a failure and the counsellor presses "Call now" again).
    CALL_COUNSELLOR = "workers.bridge.call_counsellor"
    LOGIN_NOTICE = "workers.notices.login_attempts_notice"
    # Check-in calls and what follows when one is missed (workers.checkins).
    CHECKIN_CALL = "workers.checkins.place_checkin_call"
    CHECKIN_CALLS = "workers.checkins.place_checkin_calls"
    CHECKIN_REMIND = "workers.checkins.remind"
    CHECKIN_ESCALATE = "workers.checkins.escalate"
    CHECKIN_REALERT = "workers.checkins.realert"


# Jobs that must never wait behind routine texts: workers take them first. A counsellor
# who pressed "Call now" is waiting for their phone to ring.
URGENT_JOBS = frozenset(
    {
        Job.ALERT,
        Job.CALL_COUNSELLOR,
        Job.CHECKIN_CALL,
        Job.CHECKIN_CALLS,
        Job.CHECKIN_REMIND,
        Job.CHECKIN_ESCALATE,
        Job.CHECKIN_REALERT,
    }
)
# The job that does each kind of claimed check-in work.
_CHECKIN_JOBS = {
    Work.CALL: Job.CHECKIN_CALL,
    Work.ESCALATE: Job.CHECKIN_ESCALATE,
    Work.REALERT: Job.CHECKIN_REALERT,
}


def job_queue(connection: redis.Redis, name: str = ROUTINE_QUEUE) -> Queue:
    """Return one of the job queues, for queueing (JSON: jobs carry ids, never objects)."""
    return Queue(
        name, connection=connection, serializer=JSONSerializer, default_timeout=JOB_TIMEOUT
    )


class Jobs:
    """Queues the workers' jobs, each on its queue with its retry policy."""

    def __init__(self, connection: redis.Redis, *, retry: Retry = RETRY) -> None:
        self.connection = connection
        self.retry = retry  # for jobs that send: tests pass shorter gaps
        self._queues = {name: job_queue(connection, name) for name in QUEUE_NAMES}

    def queue(self, name: str = ROUTINE_QUEUE) -> Queue:
        return self._queues[name]

    def after_queued(self, request: Request, *, confirm: bool) -> None:
        """Queue what a request needs when it is made or raised to urgent: confirm, alert."""
        if confirm:
            self.confirm(request.id)
        if request.urgent:
            self.once(Job.ALERT, f"alert-{request.id}", request.id)

    def confirm(self, request_id: str) -> bool:
        """Queue the text that tells a caller their place; False if one is already queued."""
        return self.once(Job.CONFIRM, f"confirm-{request_id}", request_id)

    def expired(self, request_id: str) -> bool:
        """Queue the last word to a caller whose request closed unanswered."""
        return self.once(Job.EXPIRED, f"expired-{request_id}", request_id)

    def missed_call(self, request_id: str, attempt: int) -> bool:
        """Queue the text saying we tried to call and will try again."""
        return self.once(Job.MISSED_CALL, f"missed-{request_id}-{attempt}", request_id, attempt)

    def survey(self, request_id: str) -> bool:
        """Queue the follow-up survey text to a reached caller; False if already queued."""
        return self.once(Job.SURVEY, f"survey-{request_id}", request_id)

    def call_counsellor(self, request_id: str, username: str, kind: str = "request") -> None:
        """Queue the call to a counsellor's phone that starts a bridged call (urgent); kind
        "checkin" bridges to an escalated check-in's caller instead of a request's."""
        args = (request_id, username) if kind == "request" else (request_id, username, kind)
        self.queue(URGENT_QUEUE).enqueue(Job.CALL_COUNSELLOR.value, *args)

    def checkin(self, claimed: Claimed) -> bool:
        """Queue the work a check-in claim stands for, once per (session, attempt)."""
        job = _CHECKIN_JOBS[claimed.work]
        job_id = f"checkin-{claimed.work.value}-{claimed.session}-{claimed.attempt}"
        return self.once(job, job_id, claimed.session, claimed.attempt)

    def checkin_calls(self, claims: list[Claimed]) -> bool:
        """Queue several due check-in calls as one job (many fall due together)."""
        if len(claims) == 1:
            return self.checkin(claims[0])
        first = claims[0]
        items = json.dumps([[c.session, c.attempt] for c in claims], separators=(",", ":"))
        job_id = f"checkin-calls-{first.session}-{first.attempt}"
        return self.once(Job.CHECKIN_CALLS, job_id, items)

    def checkin_reminder(self, session: str, round_: int) -> bool:
        """Queue the "reply OK if you're OK" text, once per round of calls."""
        return self.once(Job.CHECKIN_REMIND, f"checkin-remind-{session}-{round_}", session, round_)

    def login_notice(self, username: str) -> None:
        """Queue the text telling a counsellor about wrong passwords on their account."""
        self.queue().enqueue(
            Job.LOGIN_NOTICE.value, username, retry=self.retry, failure_ttl=FAILURE_TTL
        )

    def housekeeping(self) -> None:
        """Queue one housekeeping pass (expiry, catching up confirmations, purge)."""
        self.queue().enqueue(Job.HOUSEKEEPING.value, result_ttl=0, failure_ttl=FAILURE_TTL)

    def once(self, job: Job, job_id: str, *args: str | int) -> bool:
        """Queue a job under a fixed id unless a job with that id exists; True if queued.

        Two copies of one job must never run side by side: each would see nothing sent yet.
        """
        queue = self.queue(URGENT_QUEUE if job in URGENT_JOBS else ROUTINE_QUEUE)
        try:
            queue.enqueue(
                job.value,
                *args,
                retry=self.retry,
                job_id=job_id,
                unique=True,
                failure_ttl=FAILURE_TTL,
            )
        except DuplicateJobError:
            return False
        return True
