"""Which counsellors are on a bridged call now, so nobody starts a second over the first.

Keys (under helpline:counsellors:):
    live:<username>   the request whose bridged call is ringing or in progress; set when
                      the call is asked for, gone when Twilio reports the counsellor's leg
                      ended, or after LIVE_CALL_SECONDS if that report never comes
"""

from __future__ import annotations

import redis

from helpline.infrastructure.constants import KEY_PREFIX

LIVE = f"{KEY_PREFIX}:counsellors:live:"
# Longest a call is taken to last without Twilio saying it ended.
LIVE_CALL_SECONDS = 2 * 60 * 60
# Call statuses after which the counsellor's phone is free again.
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class LiveCalls:
    """The bridged calls counsellors are on."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def start(self, username: str, rid: str) -> bool:
        """Note that the counsellor's call for rid starts; False if one is already live."""
        return bool(self.client.set(LIVE + username, rid, nx=True, ex=LIVE_CALL_SECONDS))

    def current(self, username: str) -> str | None:
        """The request whose call the counsellor is on, if any."""
        raw = self.client.get(LIVE + username)
        return raw.decode() if isinstance(raw, bytes) else raw

    def changed(self, username: str, rid: str, status: str) -> None:
        """Twilio reported the counsellor's leg for rid: free them if it has ended."""
        if status in ENDED and self.current(username) == rid:
            self.client.delete(LIVE + username)
