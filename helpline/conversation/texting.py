"""One text in an SMS conversation, as a pure step: the opt-out words, then the engine.

The web layer reads the conversation, calls answer_text, performs any action, and
keeps what comes back; the explorer calls the same function to prove the flows safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import EllipsisType

from helpline.conversation.danger import Danger
from helpline.conversation.engine import Engine, Event, Reply, State

# Carrier-standard opt-out and opt-in words; matched only as the whole message.
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP", "ALTA"})
# The node that welcomes a texter back after an opt-in word.
RESUBSCRIBED = "resubscribed"


@dataclass(frozen=True)
class TextStep:
    """What one text did: the conversation to keep (None: forget it), what to reply,
    and whether the sender is opted out afterwards."""

    state: State | None
    events: list[Event]
    opted_out: bool


def opt_word(words: tuple[str, ...]) -> str | None:
    """Return "out" or "in" if the whole message (as words) is an opt-out or opt-in word."""
    if len(words) != 1:
        return None
    if words[0] in OPT_OUT_WORDS:
        return "out"
    return "in" if words[0] in OPT_IN_WORDS else None


def answer_text(
    engine: Engine,
    state: State | None,
    opted_out: bool,
    reply: Reply,
    *,
    context: Mapping[str, str],
    danger: Danger | None | EllipsisType = ...,
) -> TextStep:
    """Advance a text conversation by one message. state None: no conversation yet."""
    opt = opt_word(reply.words)
    if opt == "out":
        return TextStep(None, [], True)
    if isinstance(danger, EllipsisType):
        danger = engine.danger(reply.text)
    if opted_out:
        if opt == "in":
            lang = engine.language(state.lang if state else None)
            after, events = engine.enter(RESUBSCRIBED, lang, {}, context)
            return TextStep(after, events, False)
        if state is None and danger is None:
            return TextStep(state, [], True)
        # Someone in danger gets the emergency advice even after opting out. Nothing is
        # kept for an opted-out texter but what a crisis started: they may follow it on.
    fresh = state is None
    if state is None:
        state = State(
            flow=engine.flow.id, node=engine.flow.start, lang=engine.content.default_language
        )
    after, events = engine.resume(state, reply, fresh=fresh, context=context, danger=danger)
    return TextStep(after, events, opted_out)
