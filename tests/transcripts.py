"""Generate the walks behind the golden transcripts and play them through the webhooks.

A walk is a list of inputs from the start of a conversation. For every node of every
flow, in every language, we find the shortest walk that reaches it, then add one more
input for each way out of that node: each case by key and by word, the language
choice, silence, an unknown input, a crisis phrase and, from the menu, words of
self-harm. Together the walks take every exit of every node, so any change to a menu or
a message shows up in a transcript.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from helpline.conversation.engine import Act, Engine, Reply, State, Step
from helpline.conversation.model import Flow, Medium
from helpline.infrastructure.constants import MAX_REPROMPTS

# What the web layer knows when a walk is played: the caller's number is known, a
# counsellor is on duty, a callback request joins an empty queue, open all hours, with no
# history to estimate from, and a check-in is booked. Each walk is a new caller, with no
# request open before it (what they are told once it is, the webhooks show).
FACTS = {"caller_id": "known", "number_end": "1 0 0", "duty": "open"}
OUTCOMES = {
    "callback": ("queued", {"place": "known", "position": "1"}),
    "callback_again": ("none", {}),
    "callback_urgent": ("none", {}),
    "checkin": ("started", {"time": "9:00"}),
    "checkin_where": ("saved", {}),
}
# What a collecting node is given, by slot: numbers international, from the fictional range.
COLLECTED = {"minutes": "10", "where": "12 Elm Street"}


@dataclass(frozen=True)
class Input:
    kind: str  # "keys", "say", "text" or "silence"
    value: str = ""

    def reply(self) -> Reply:
        if self.kind == "keys":
            return Reply(digits=self.value)
        return Reply(text=self.value)

    def describe(self) -> str:
        if self.kind == "keys":
            return f"presses {self.value}"
        if self.kind == "silence":
            return "(silence)"
        return f"says {self.value!r}" if self.kind == "say" else self.value


def exits(engine: Engine, state: State) -> list[tuple[str, Input]]:
    """Every distinct way out of the node `state` is at, labelled."""
    flow, content = engine.flow, engine.content
    node = flow.nodes[state.node]
    voice = flow.channel is Medium.VOICE
    ways: list[tuple[str, Input]] = []
    for case in node.cases:
        for digit in case.digits:
            ways.append((f"key {digit}", Input("keys" if voice else "text", digit)))
        if case.words:
            phrase = content.phrases(case.words, state.lang)[0]
            ways.append((f"words {case.words}", Input("say" if voice else "text", phrase)))
    if node.collect:
        number = "0012025550188" if voice else "+1 202 555 0188"
        value = COLLECTED.get(node.collect.slot, number)
        kind = "say" if voice and node.collect.slot == "where" else "keys" if voice else "text"
        ways.append((f"a {node.collect.slot}", Input(kind, value)))
    if node.offer_languages:
        for lang in content.languages.values():
            if lang.code != state.lang:
                if voice:
                    ways.append((f"language {lang.code}", Input("keys", lang.digit)))
                phrase = content.phrases(lang.words, lang.code)[0]
                ways.append(
                    (f"language word {lang.code}", Input("say" if voice else "text", phrase))
                )
    if not voice:
        for kw in flow.keywords:
            ways.append(
                (f"keyword {kw.words}", Input("text", content.phrases(kw.words, state.lang)[0]))
            )
    if flow.crisis_words:
        phrase = content.phrases(flow.crisis_words, state.lang)[-1]
        ways.append(("crisis", Input("say" if voice else "text", phrase)))
    if flow.self_harm_words and state.node == engine.home:
        # From the menu only: the state explorer proves the reply from every state.
        phrase = content.phrases(flow.self_harm_words, state.lang)[0]
        ways.append(("self-harm", Input("say" if voice else "text", phrase)))
    ways.append(("unknown", Input("keys" if voice else "text", "7" if voice else "zzz")))
    if voice:
        ways.append(("silence", Input("silence")))
    return ways


def advance(engine: Engine, state: State, reply: Reply) -> Step:
    """One step as the webhooks take it, with a callback request queued successfully."""
    state, events = engine.resume(state, reply, context=FACTS)
    if events and isinstance(events[-1], Act):
        result, facts = OUTCOMES[events[-1].action]
        state, after = engine.outcome(state, result, {**FACTS, **facts})
        events = [*events[:-1], *after]
    return state, events


def walks(flow: Flow, engine: Engine, lang: str) -> dict[str, list[list[Input]]]:
    """For each node where a conversation can rest, the shortest walk to it plus one per exit.

    Every conversation starts in the default language, as a real one does; walks in
    another language begin by choosing it.
    """
    state, _ = engine.start()
    first: list[Input] = []
    if lang != state.lang:
        chosen = engine.content.languages[lang]
        if flow.channel is Medium.VOICE:
            first = [Input("keys", chosen.digit)]
        else:
            first = [Input("text", engine.content.phrases(chosen.words, lang)[0])]
        state, _ = engine.resume(state, first[0].reply())
    seen = {(state.node, state.reprompts)}
    reach: dict[str, tuple[State, list[Input]]] = {state.node: (state, first)}
    queue: deque[tuple[State, list[Input]]] = deque([(state, first)])
    while queue:
        state, path = queue.popleft()
        for _, way in exits(engine, state):
            nxt, _ = advance(engine, state, way.reply())
            if nxt.lang != lang:
                continue  # the other language has walks of its own
            reach.setdefault(nxt.node, (nxt, path + [way]))
            if not nxt.ended and (nxt.node, nxt.reprompts) not in seen:
                seen.add((nxt.node, nxt.reprompts))
                queue.append((nxt, path + [way]))
    result: dict[str, list[list[Input]]] = {}
    for node_id, (state, path) in sorted(reach.items()):
        if state.ended:
            result[node_id] = [path]
            continue
        result[node_id] = [path + [way] for _, way in exits(engine, state)]
        if flow.channel is Medium.VOICE:
            # Silence every time: the reprompts, then the safe goodbye.
            result[node_id].append(path + [Input("silence")] * (MAX_REPROMPTS + 1))
    return result


# -- playing a walk through the real webhooks -------------------------------------------

Post = Callable[[str, dict[str, str]], str]


def play_voice(post: Post, walk: list[Input], base_form: dict[str, str]) -> list[str]:
    lines = ["caller: (calls)"]
    path, form = "/twilio/voice", dict(base_form)
    for step in [None, *walk]:
        if step is not None:
            lines.append(f"caller: {step.describe()}")
            form = dict(base_form)
            if step.kind == "keys":
                form["Digits"] = step.value
            elif step.kind == "say":
                form["SpeechResult"] = step.value
        root = ET.fromstring(post(path, form))
        for say in root.iter("Say"):
            lines.append(f"helpline [{say.get('language')}]: {say.text}")
        gather = root.find("Gather")
        if gather is None:
            lines.append("helpline: (hangs up)")
            break
        if gather.get("finishOnKey"):
            lines.append("helpline: (listens for keys ending with #, or speech)")
        else:
            lines.append(f"helpline: (listens for {gather.get('numDigits')} key or speech)")
        path = gather.attrib["action"]
    return lines


def play_sms(post: Post, walk: list[Input], base_form: dict[str, str]) -> list[str]:
    lines: list[str] = []
    for step in walk or [Input("text", "hi")]:
        form = dict(base_form, Body=step.value, MessageSid="SM" + secrets.token_hex(16))
        lines.append(f"texter: {step.value}")
        root = ET.fromstring(post("/twilio/sms", form))
        messages = ["".join(m.itertext()) for m in root.iter("Message")]
        lines.extend(f"helpline: {line}" for m in messages for line in m.split("\n"))
        if not messages:
            lines.append("helpline: (no reply)")
    return lines
