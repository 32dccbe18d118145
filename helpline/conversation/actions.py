"""The actions a flow can ask for, as declarations: what each is called, the answers it
reads, the outcomes it ends in and the facts each outcome tells the flow.

The linter checks flows against these; the application layer performs them
(helpline.application.actions holds one handler for each, and refuses to start without).
A node names an action and routes every outcome; what the nodes after an outcome say may
use the facts that outcome provides, up to the next question.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Facts known of every caller at every step, before any action: whether their number
# can be offered back to them (and its last digits), whether the store is up, whether
# they have a call back request open already ("queued": "open"), and whether a
# counsellor is on duty within hours now ("duty": "open"), so a check-in can be offered.
CALLER_FACTS = frozenset({"caller_id", "number_end", "store", "queued", "duty"})
# Where a request stands once it is on the list: the place, the wait or the hours.
WHERE_FACTS = frozenset({"place", "position", "wait", "minutes", "hours", "resume"})


@dataclass(frozen=True)
class Action:
    """One effect a node can ask for, and everything a flow may rely on from it."""

    name: str
    needs: frozenset[str]  # answers it reads, recorded earlier in the conversation
    outcomes: Mapping[str, frozenset[str]]  # each outcome -> the facts it provides
    # Outcomes that tell the caller it is done (on the list, a call booked): never
    # reached with the store down.
    promises: frozenset[str] = frozenset()

    def provides(self, outcome: str) -> frozenset[str]:
        return self.outcomes.get(outcome, frozenset())


CALLBACK = Action(
    name="callback",
    needs=frozenset({"phone", "voicemail", "texts", "urgent"}),
    outcomes={
        "queued": WHERE_FACTS,
        "already": WHERE_FACTS,
        "failed": frozenset(),
        "blocked": frozenset(),  # the caller may not queue call backs (an admin's block)
    },
    promises=frozenset({"queued", "already"}),
)
# Someone with a call back request open asks again: it is brought back into the line
# (from a retry's wait) and they are told where it stands; "none" if it closed meanwhile.
CALLBACK_AGAIN = Action(
    name="callback_again",
    needs=frozenset(),
    outcomes={"already": WHERE_FACTS, "none": frozenset(), "failed": frozenset()},
    promises=frozenset({"already"}),
)
# Things have got worse for someone on the list: their open request is made urgent.
CALLBACK_URGENT = Action(
    name="callback_urgent",
    needs=frozenset(),
    outcomes={"raised": WHERE_FACTS, "none": frozenset(), "failed": frozenset()},
    promises=frozenset({"raised"}),
)
# A check-in call: booked (or moved, for a caller with one open already) for about {time};
# "unavailable" when no counsellor is on duty any more; "failed" when it cannot be kept.
CHECKIN = Action(
    name="checkin",
    needs=frozenset({"minutes", "where", "contact"}),
    outcomes={
        "started": frozenset({"time"}),
        "updated": frozenset({"time"}),
        "unavailable": frozenset(),
        "failed": frozenset(),
    },
    promises=frozenset({"started", "updated"}),
)
# The place for the caller's open check-in, sent later (booked by phone, "text it to us"):
# "none" when they have no check-in open.
CHECKIN_WHERE = Action(
    name="checkin_where",
    needs=frozenset({"where"}),
    outcomes={"saved": frozenset(), "none": frozenset(), "failed": frozenset()},
    promises=frozenset({"saved"}),
)
# Every action a flow may name, by name.
DECLARED: Mapping[str, Action] = {
    action.name: action
    for action in (CALLBACK, CALLBACK_AGAIN, CALLBACK_URGENT, CHECKIN, CHECKIN_WHERE)
}
