"""Performing the actions the flows ask for: one handler for each declared action.

The engine ends a step with Act(name) when a node asks for an action; the registry finds
that action's handler, performs it and continues the flow with the outcome and the facts
the handler returns. The declarations (helpline.conversation.actions) say which outcomes
and facts a handler may return; the registry holds it to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from helpline.application.intake import Caller
from helpline.conversation.actions import DECLARED, Action
from helpline.conversation.engine import Act, Engine, State, Step

# Performs an action for this caller at this state: (outcome, facts for the flow).
Handler = Callable[[State, Caller], tuple[str, dict[str, str]]]


class ActionRegistry:
    """Every declared action with its handler; dispatches the engine's Act by name."""

    def __init__(self, handlers: Mapping[str, Handler], declared: Mapping[str, Action] = DECLARED):
        missing, unknown = declared.keys() - handlers.keys(), handlers.keys() - declared.keys()
        if missing or unknown:
            raise ValueError(
                f"actions without a handler: {sorted(missing)}; "
                f"handlers for no declared action: {sorted(unknown)}"
            )
        self.declared = declared
        self.handlers = dict(handlers)

    def settle(self, engine: Engine, caller: Caller, step: Step, facts: Mapping[str, str]) -> Step:
        """If the step ends by asking for an action, perform it and continue the flow."""
        state, events = step
        if not events or not isinstance(events[-1], Act):
            return step
        action = self.declared[events[-1].action]
        result, more = self.handlers[action.name](state, caller)
        if result not in action.outcomes or not more.keys() <= action.provides(result):
            raise ValueError(f"action {action.name!r} returned what it does not declare")
        state, after = engine.outcome(state, result, {**facts, **more})
        return state, [*events[:-1], *after]
