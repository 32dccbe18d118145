"""The flow engine: advances a conversation one step. Pure: no I/O, no clock.

    engine = Engine(flow, {"en": {"emergency": "999", ...}, "es": {...}})
    state, events = engine.start()
    state, events = engine.resume(state, Reply(digits="1"))

The web layer turns events into TwiML and keeps the state; the simulator prints them.
"""

from __future__ import annotations

import functools
import re
from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from types import EllipsisType
from typing import Any, cast

from helpline.conversation.danger import Danger, DangerReader
from helpline.conversation.matching import (
    KeywordIndex,
    as_choice,
    contains_phrase,
    first_phrase,
    tokens,
)
from helpline.conversation.model import (
    ANSWER_PLACEHOLDERS,
    COLLECT_MINUTES,
    COLLECT_PHONE,
    COLLECT_PLACE,
    STORE_DOWN,
    STORE_FACT,
    Case,
    Flow,
    Medium,
    Node,
    topic_sections,
)
from helpline.infrastructure.constants import (
    CHECKIN_MAX_MINUTES,
    CHECKIN_MIN_MINUTES,
    CRISIS_TYPO_FROM,
    MAX_ANSWER_CHARS,
    MAX_PLACE_CHARS,
    MAX_REPROMPTS,
)
from helpline.infrastructure.phones import to_e164

# A number of minutes as keyed, texted or heard: "10", "10 min", "10 minutes", "10 minutos".
_MINUTES = re.compile(r"(\d{1,2})(?:\s*(?:m|mins?|minutes?|minutos?))?\.?", re.IGNORECASE)


@dataclass(frozen=True)
class State:
    """Where a conversation is; small and JSON-serialisable."""

    flow: str
    node: str
    lang: str
    # Inputs in a row that were not understood; past MAX_REPROMPTS the flow gives up
    # on the question (voice: the safe goodbye; SMS: the main menu).
    reprompts: int = 0
    ended: bool = False
    # What the caller has told us on the way to an action (e.g. a callback number).
    # The web layer keeps these sealed: they can hold a phone number.
    answers: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies field by field, on every webhook.
        return {
            "flow": self.flow,
            "node": self.node,
            "lang": self.lang,
            "reprompts": self.reprompts,
            "ended": self.ended,
            "answers": dict(self.answers),
        }


@dataclass(frozen=True)
class Reply:
    """What the caller did: keys pressed, and/or words spoken or texted."""

    digits: str = ""
    text: str = ""

    @functools.cached_property
    def words(self) -> tuple[str, ...]:
        """The text folded into plain words, worked out once for every matcher."""
        return tokens(self.text)


@dataclass(frozen=True)
class Say:
    key: str
    text: str
    lang: str
    personal: bool = False  # the text holds facts about the caller (their number's end)


@dataclass(frozen=True)
class Ask:
    """Wait for input; hints are phrases speech recognition should expect."""

    lang: str
    hints: tuple[str, ...]
    max_digits: int
    collect: bool = False  # free input (a phone number), ended by the # key


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Act:
    """Perform an effect (queue a callback), then call Engine.outcome with its result."""

    action: str


Event = Say | Ask | Hangup | Act
Step = tuple[State, list[Event]]


def language_offer_key(flow: Flow) -> str:
    """Return the message each language uses to offer itself in this flow's channel."""
    return f"{flow.channel.value}.language_offer"


class Engine:
    """Runs one flow with a region's placeholder values (emergency number, crisis line),
    one set per language."""

    def __init__(
        self,
        flow: Flow,
        variables: Mapping[str, Mapping[str, str]],
        phone_region: str = "GB",
    ):
        self.flow = flow
        self.phone_region = phone_region
        self.content = flow.content
        self.variables = {lang: dict(values) for lang, values in variables.items()}
        # Where a conversation rests when it starts: the main menu.
        home = flow.nodes[flow.start]
        while home.next is not None:
            home = flow.nodes[home.next]
        self.home = home.id
        self._sections = topic_sections(flow)
        # Fold every phrase once, up front: matching runs on every webhook.
        keys = set().union(*(w.keys() for w in self.content.words.values()))
        self._phrases = {key: self.content.all_phrase_tokens(key) for key in keys}
        self._keywords = KeywordIndex(self._phrases[kw.words] for kw in flow.keywords)
        self._languages = list(self.content.languages)
        self._numbers = self.content.number_words()
        self._asks: dict[tuple[str, str], tuple[Event, ...]] = {}
        self._language_names = KeywordIndex(
            self._phrases[lang.words] for lang in self.content.languages.values()
        )
        # A slip is forgiven in long words, texted or heard wrong ("no rrespira"); words
        # as written are read first, so "overdose" is never taken for "overdosed".
        lists = (
            flow.crisis_words if flow.crisis else None,
            flow.self_harm_words if flow.self_harm else None,
        )
        self._danger = self.content.shared(
            ("danger", *lists),
            lambda: DangerReader(self.content, *lists, fuzzy=True, typo_from=CRISIS_TYPO_FROM),
        )

    # -- public API --------------------------------------------------------------------

    def start(self, lang: str | None = None) -> Step:
        """Begin a conversation at the flow's start."""
        return self.enter(self.flow.start, self.language(lang))

    def danger(self, text: str) -> Danger | None:
        """Return the danger the text speaks of (texts forgive one typo in long words)."""
        return self._danger.read(tokens(text))

    def is_crisis(self, text: str) -> bool:
        """Return True if the text may say someone is in danger now."""
        return self.danger(text) is not None

    def danger_reply(
        self, danger: Danger, lang: str, context: Mapping[str, str] | None = None
    ) -> list[Say]:
        """What a person in danger hears first: the crisis (or self-harm) answer's words."""
        answer = self.flow.self_harm if danger is Danger.SELF_HARM else self.flow.crisis
        if not answer:
            return []
        variables = self._variables(context if context is not None else {}, lang)
        return [self._say(key, lang, variables) for key in self.flow.nodes[answer].say]

    def topic(self, before: str | None, after: str) -> str | None:
        """Return the topic a step from node `before` to node `after` chose, if any."""
        chosen = self._sections.get(after)
        if chosen is None or (before is not None and self._sections.get(before) == chosen):
            return None
        return chosen

    def resume(
        self,
        state: State,
        reply: Reply,
        *,
        fresh: bool = False,
        context: Mapping[str, str] | None = None,
        danger: Danger | None | EllipsisType = ...,
    ) -> Step:
        """Advance the conversation by one input.

        fresh=True marks the first message of a new conversation: unrecognised text then
        gets the menu without an apology for not understanding. context holds what the
        web layer knows now (e.g. whether the caller's number is known), for branches
        and placeholders. danger passes on danger(reply.text) when the caller has
        already worked it out, so the text is not read twice.
        """
        flow = self.flow
        if state.ended:
            state = self.start(state.lang)[0]  # a new conversation, at the menu
        node = flow.nodes[state.node]
        words = reply.words
        choice = reply.digits.strip()[:2] or as_choice(reply.text, self._numbers, words)
        lang, answers = state.lang, state.answers
        context = context if context is not None else {}

        def go(
            target: str,
            more: tuple[tuple[str, str], ...] = (),
            *,
            new_lang: str = lang,
            misses: int = 0,
        ) -> Step:
            return self.enter(target, new_lang, {**answers, **dict(more)}, context, misses)

        # A person in danger comes first, whatever the conversation was doing.
        if isinstance(danger, EllipsisType):
            danger = self._danger.read(words)
        answer = flow.self_harm if danger is Danger.SELF_HARM else flow.crisis
        if danger is not None and answer:
            first = self.danger_reply(danger, lang, context)
            # A message that only names an overdose may be choosing the topic this menu
            # offers ("overdose safety"): the emergency reply first, then the topic.
            topic = danger is Danger.NAMED and node.on_crisis is None
            asked = self._match_words(node, words, keywords=False) if topic else None
            if asked is not None:
                state, events = go(asked.goto, asked.set)
                return state, [*first, *events]
            if node.on_crisis is None:
                return go(answer)
            # The emergency reply first; then what the caller was asking for goes on.
            state, events = go(node.on_crisis.goto or node.id, node.on_crisis.set)
            return state, [*first, *events]

        if choice:
            for case in node.cases:
                if choice in case.digits:
                    return go(case.goto, case.set)

        if node.collect and node.collect.slot != COLLECT_PLACE:
            value = self._collected(node.collect.slot, reply)
            if value:
                return go(node.collect.goto, ((node.collect.slot, value),))

        chosen = self._chosen_language(node, choice, words)
        if chosen and flow.language_start:
            return go(flow.language_start, new_lang=chosen)

        if words:
            matched = self._match_words(node, words)
            if matched:
                if matched not in node.cases:
                    answers = {}  # a keyword starts afresh: nothing asked before carries on
                return go(matched.goto, matched.set)

        # A place in the caller's own words: whatever no case or keyword took.
        if node.collect and node.collect.slot == COLLECT_PLACE:
            value = self._collected(COLLECT_PLACE, reply)
            if value:
                return go(node.collect.goto, ((COLLECT_PLACE, value),))

        # Not understood. Every route below counts a miss, so that no question, not even
        # one whose 'other' loops back to itself, can be asked for ever.
        misses = 0 if fresh else min(state.reprompts + 1, MAX_REPROMPTS)
        silent = not choice and not words and not reply.digits
        if silent and flow.channel is Medium.VOICE and not node.no_response:
            return self.reprompt(state, context)
        if state.reprompts >= MAX_REPROMPTS and flow.exhausted:
            return self.exhausted(state, context)
        if silent and node.no_response:
            return go(node.no_response, misses=misses)
        if node.other:
            return go(node.other, misses=misses)
        if flow.other:
            state, events = go(flow.other, misses=misses)
            if fresh:
                return state, events
            return state, [self._say(flow.reprompt, lang), *events]
        return self.reprompt(state, context)

    def outcome(self, state: State, result: str, context: Mapping[str, str]) -> Step:
        """Continue after the web layer performed the action at state's node.

        The answers are dropped here: they were for the action, which has used them.
        """
        node = self.flow.nodes[state.node]
        return self.enter(dict(node.outcomes)[result], state.lang, {}, context)

    def restore(self, raw: Mapping[str, Any]) -> State | None:
        """Rebuild a state from stored or URL values; None if it does not fit this flow."""
        try:
            state = State(
                flow=str(raw["flow"]),
                node=str(raw["node"]),
                lang=str(raw["lang"]),
                reprompts=int(raw.get("reprompts", 0)),
                ended=bool(raw.get("ended", False)),
                answers=_answers(raw.get("answers")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        valid = (
            state.flow == self.flow.id
            and state.node in self.flow.nodes
            and (state.ended or self.flow.nodes[state.node].waits)
            and state.lang in self.content.languages
            and 0 <= state.reprompts <= MAX_REPROMPTS
        )
        return state if valid else None

    # -- steps -------------------------------------------------------------------------

    def enter(
        self,
        node_id: str,
        lang: str,
        answers: Mapping[str, str] | None = None,
        context: Mapping[str, str] | None = None,
        misses: int = 0,
    ) -> Step:
        """Arrive at a node: say what it says, follow 'next' and branches until it waits,
        acts or ends. misses carries the inputs not understood on the way here."""
        answers = dict(answers or {})
        context = context if context is not None else {}
        variables = self._variables(context, lang, answers)
        events: list[Event] = []
        node = self.flow.nodes[node_id]
        while True:
            events.extend(self._say(key, lang, variables) for key in node.say)
            if node.branch:
                on = node.branch.on
                node = self.flow.nodes[node.branch.target(context.get(on) or answers.get(on))]
            elif node.next is not None:
                node = self.flow.nodes[node.next]
            else:
                break
        if node.id == self.home:
            answers = {}  # the main menu starts afresh: answers never carry past it
        state = State(flow=self.flow.id, node=node.id, lang=lang, reprompts=misses, answers=answers)
        if node.end:
            events.append(Hangup())
            return replace(state, ended=True, answers={}), events
        if node.action:
            return state, [*events, Act(node.action)]
        if (
            self.flow.stateless_prompt
            and node.id != self.flow.start
            and context.get(STORE_FACT) == STORE_DOWN
        ):
            # Nothing said now will be remembered, so ask only what a conversation that
            # starts afresh understands: the next text is read from the start.
            start = self.flow.nodes[self.flow.start]
            events.append(self._say(self.flow.stateless_prompt, lang, variables))
            events.append(Ask(lang=lang, hints=(), max_digits=1))
            return State(flow=self.flow.id, node=start.id, lang=lang), events
        return state, events + self._prompt(node, lang, variables)

    def reprompt(self, state: State, context: Mapping[str, str] | None = None) -> Step:
        """Ask again after silence or an unknown key; after too many, say goodbye safely."""
        if state.reprompts >= MAX_REPROMPTS and self.flow.exhausted:
            return self.exhausted(state, context)
        node = self.flow.nodes[state.node]
        context = context if context is not None else {}
        variables = self._variables(context, state.lang, state.answers)
        events: list[Event] = [self._say(self.flow.reprompt, state.lang)]
        misses = min(state.reprompts + 1, MAX_REPROMPTS)
        return replace(state, reprompts=misses), events + self._prompt(node, state.lang, variables)

    def exhausted(self, state: State, context: Mapping[str, str] | None = None) -> Step:
        """Give up on a question after too many misses: say so, then go where the flow says."""
        assert self.flow.exhausted is not None
        after, events = self.enter(self.flow.exhausted, state.lang, {}, context)
        return after, [self._say(self.flow.reprompt, state.lang), *events]

    # -- helpers -----------------------------------------------------------------------

    def language(self, lang: str | None) -> str:
        """Return lang if the content has it, else the default language."""
        return lang if lang in self.content.languages else self.content.default_language

    def value(self, name: str, lang: str) -> str:
        """Return a region value (the emergency number...) as this channel gives it in lang."""
        return self.variables[lang][name]

    def _variables(
        self, context: Mapping[str, str], lang: str, answers: Mapping[str, str] | None = None
    ) -> Mapping[str, str]:
        """Region values in lang, then the web layer's facts: looked up, never copied, so a
        fact is worked out only if a message or a branch asks for it (intake.CallerFacts);
        then the answers a message may say back (ANSWER_PLACEHOLDERS)."""
        # ChainMap only reads here; its type asks for mutable maps.
        region = cast("MutableMapping[str, str]", self.variables[lang])
        said = {k: answers[k] for k in ANSWER_PLACEHOLDERS if answers and k in answers}
        return ChainMap(region, cast("MutableMapping[str, str]", context), said)

    def _say(self, key: str, lang: str, variables: Mapping[str, str] | None = None) -> Say:
        text = self.content.text(
            key, lang, self.variables[lang] if variables is None else variables
        )
        return Say(key=key, text=text, lang=lang, personal=self.content.personal(key, lang))

    def _prompt(self, node: Node, lang: str, variables: Mapping[str, str]) -> list[Event]:
        events: list[Event] = [self._say(key, lang, variables) for key in node.prompt]
        return events + self._asking(node, lang)

    def _asking(self, node: Node, lang: str) -> list[Event]:
        """The offers of other languages and the Ask that end a node's prompt in lang.

        They depend on the node and the language only, so each is built once.
        """
        found = self._asks.get((node.id, lang))
        if found is not None:
            return list(found)
        events: list[Event] = []
        hints: list[str] = []
        for case in node.cases:
            if case.words:
                hints.extend(self.content.phrases(case.words, lang))
        if node.offer_languages:
            for other in self.content.languages.values():
                if other.code != lang:
                    events.append(self._say(language_offer_key(self.flow), other.code))
                    hints.extend(self.content.phrases(other.words, other.code))
        digits = [len(d) for case in node.cases for d in case.digits] or [1]
        events.append(
            Ask(
                lang=lang,
                hints=tuple(dict.fromkeys(hints)),
                max_digits=max(digits),
                # Keyed numbers end with #; a place is said, so its keys are choices.
                collect=node.collect is not None and node.collect.slot != COLLECT_PLACE,
            )
        )
        self._asks[node.id, lang] = tuple(events)
        return events

    def _collected(self, slot: str, reply: Reply) -> str | None:
        """Return the value free input gives a collecting node's slot, or None."""
        if slot in COLLECT_PHONE:
            return to_e164(reply.digits or reply.text, self.phone_region)
        if slot == COLLECT_MINUTES:
            found = _MINUTES.fullmatch((reply.digits or reply.text).strip())
            if found and CHECKIN_MIN_MINUTES <= int(found[1]) <= CHECKIN_MAX_MINUTES:
                return str(int(found[1]))
            return None
        # Words, not a stray key: a place has letters in it.
        place = " ".join(reply.text.split())[:MAX_PLACE_CHARS]
        return place if any(ch.isalpha() for ch in place) and not reply.digits else None

    def _chosen_language(self, node: Node, choice: str | None, words: tuple[str, ...]) -> str:
        if self.flow.channel is Medium.SMS:
            # A language's name works anywhere in a text conversation.
            found = self._language_names.find(words, fuzzy=True)
            if found is not None:
                return self._languages[found]
        if not node.offer_languages:
            return ""
        for lang in self.content.languages.values():
            if self.flow.channel is Medium.VOICE and choice == lang.digit:
                return lang.code
            if contains_phrase(words, self._phrases[lang.words]):
                return lang.code
        return ""

    def _match_words(
        self, node: Node, words: tuple[str, ...], *, keywords: bool = True
    ) -> Case | None:
        # Exact matches beat typo-forgiving ones, so "HELLO" is never read as "HELP".
        for fuzzy in (False, True):
            keyword = self._keywords.find(words, fuzzy=fuzzy) if keywords else None
            if keyword is not None:
                return Case(goto=self.flow.keywords[keyword].goto)
            # The case whose words come first in the reply, the longest there, wins.
            found = [
                (where, order, case)
                for order, case in enumerate(node.cases)
                if case.words
                and (where := first_phrase(words, self._phrases[case.words], fuzzy=fuzzy))
            ]
            if found:
                return min(found, key=lambda hit: (hit[0], hit[1]))[2]
        return None


def _answers(raw: Any) -> dict[str, str]:
    """Validate stored answers: short text values under short names, nothing else."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 8:
        raise ValueError("answers must be a small mapping")
    answers = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("answers must map text to text")
        if len(key) > 32 or len(value) > MAX_ANSWER_CHARS:
            raise ValueError("answer too long")
        answers[key] = value
    return answers
