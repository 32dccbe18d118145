"""The action registry: each action a flow names is performed by its own handler."""

from __future__ import annotations

import pytest

from helpline.application.actions import ActionRegistry
from helpline.application.config import Settings
from helpline.application.intake import Caller
from helpline.conversation.actions import CALLBACK, CHECKIN, CHECKIN_WHERE, Action
from helpline.conversation.channels import SMS
from helpline.conversation.engine import Act, Say, State
from helpline.conversation.explore import outcomes_of
from helpline.conversation.lint import load_flows
from helpline.conversation.model import Medium

ENGINE = load_flows(Settings().flows_dir).engine(Medium.SMS, "GB")
CALLER = Caller(number="+447700900123", channel=SMS, webhook_sid="")
# The other actions' handlers, for a registry that tests the callback's.
OTHERS = {
    name: lambda s, c: ("failed", {})
    for name in ("callback_again", "callback_urgent", "checkin", "checkin_where")
}


def at_the_request() -> tuple[State, list]:
    state, events = ENGINE.enter("callback_queue", "en", {"phone": "caller"})
    assert events[-1] == Act("callback")
    return state, events


def said(events: list) -> str:
    return "\n".join(e.text for e in events if isinstance(e, Say))


def test_the_flow_continues_with_what_the_handler_returns():
    asked: list[State] = []

    def handler(state: State, caller: Caller) -> tuple[str, dict[str, str]]:
        asked.append(state)
        return "already", {"place": "known", "position": "4"}

    state, events = ActionRegistry({"callback": handler, **OTHERS}).settle(
        ENGINE, CALLER, at_the_request(), {}
    )
    assert [s.answers for s in asked] == [{"phone": "caller"}]
    assert "number 4" in said(events)
    assert not any(isinstance(e, Act) for e in events)


def test_a_step_without_an_action_is_left_alone():
    step = ENGINE.enter("callback_failed", "en")
    assert (
        ActionRegistry({"callback": lambda s, c: ("failed", {}), **OTHERS}).settle(
            ENGINE, CALLER, step, {}
        )
        == step
    )


def test_every_declared_action_needs_a_handler_and_every_handler_a_declaration():
    check_in = Action("check_in", needs=frozenset(), outcomes={"done": frozenset()})
    with pytest.raises(ValueError, match=r"without a handler: \['check_in'\]"):
        ActionRegistry(
            {"callback": lambda s, c: ("failed", {})},
            {"callback": CALLBACK, "check_in": check_in},
        )
    with pytest.raises(ValueError, match=r"for no declared action: \['check_in'\]"):
        ActionRegistry({"callback": lambda s, c: ("failed", {}), "check_in": lambda s, c: ("", {})})


@pytest.mark.parametrize(
    "returned", [("lost", {}), ("failed", {"position": "4"})], ids=["outcome", "fact"]
)
def test_a_handler_returning_what_its_action_does_not_declare_is_refused(returned):
    registry = ActionRegistry({"callback": lambda s, c: returned, **OTHERS})
    with pytest.raises(ValueError, match="does not declare"):
        registry.settle(ENGINE, CALLER, at_the_request(), {})


@pytest.mark.parametrize("action", [CALLBACK, CHECKIN, CHECKIN_WHERE], ids=lambda a: a.name)
def test_the_explorer_plays_every_outcome_of_each_action_and_only_facts_it_declares(action):
    played = outcomes_of(action.name, store_up=True)
    assert {result for result, _ in played} == set(action.outcomes)
    assert all(facts.keys() <= action.provides(result) for result, facts in played)
    assert outcomes_of(action.name, store_up=False) == [("failed", {})]


def test_the_explorer_tells_callers_where_they_stand_both_ways():
    # A wait, and closed hours.
    played = outcomes_of("callback", store_up=True)
    assert {"wait", "hours"} <= {fact for _, facts in played for fact in facts}
