"""Telling counsellors that someone keeps trying wrong passwords on their account.

The web process queues a job that carries the username only; the worker
(workers/notices.py) reads the counsellor's number (sealed at rest) and texts them from
the helpline's number. At most one text per account per LOGIN_NOTICE_SECONDS, so the
notice cannot be turned into a way to flood a counsellor's phone. The key that spaces
them also records the send, so a retried job (a timeout or a kill mid-send) looks in
Twilio's log before sending again.
"""

from __future__ import annotations

from helpline.application.jobs import Jobs
from helpline.counsellors.throttle import LOGINS, account_digest
from helpline.infrastructure.constants import LOGIN_NOTICE_SECONDS

NOTICE = LOGINS + "notice:"  # <account>: "queued", "sending:<time>", "sent:<sid>", "failed"
MESSAGE = "sms.login_attempts"
SENDING = "sending:"
SENT = "sent:"


def notice_key(username: str) -> str:
    """Return the key that spaces one account's notices and records how the last one went."""
    return NOTICE + account_digest(username)


def queue_notice(jobs: Jobs, username: str) -> bool:
    """Queue the text to username unless one was queued lately; True if queued now."""
    if not jobs.connection.set(notice_key(username), "queued", nx=True, ex=LOGIN_NOTICE_SECONDS):
        return False
    jobs.login_notice(username)
    return True
