"""The flow engine: advances a conversation one step. Pure: no I/O, no clock.

    engine = Engine(flow, variables)
    state, events = engine.start()
    state, events = engine.resume(state, Reply(digits="1"))

The web layer turns events into TwiML and keeps the state; the simulator prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from helpline.constants import MAX_REPROMPTS
from helpline.flows.matching import as_choice, contains_phrase, is_keyword, tokens
from helpline.flows.model import Channel, Flow, Node


@dataclass(frozen=True)
class State:
    """Where a conversation is; small and JSON-serialisable."""

    flow: str
    node: str
    lang: str
    reprompts: int = 0
    ended: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reply:
    """What the caller did: keys pressed, and/or words spoken or texted."""

    digits: str = ""
    text: str = ""


@dataclass(frozen=True)
class Say:
    key: str
    text: str
    lang: str


@dataclass(frozen=True)
class Ask:
    """Wait for input; hints are phrases speech recognition should expect."""

    lang: str
    hints: tuple[str, ...]
    max_digits: int


@dataclass(frozen=True)
class Hangup:
    pass


Event = Say | Ask | Hangup
Step = tuple[State, list[Event]]


def language_offer_key(flow: Flow) -> str:
    """Return the message each language uses to offer itself in this flow's channel."""
    return f"{flow.channel.value}.language_offer"


class Engine:
    """Runs one flow with one set of placeholder values (emergency number, crisis line)."""

    def __init__(self, flow: Flow, variables: Mapping[str, str]):
        self.flow = flow
        self.content = flow.content
        self.variables = dict(variables)
        # Fold every phrase once, up front: matching runs on every webhook.
        keys = set().union(*(w.keys() for w in self.content.words.values()))
        self._phrases = {key: self.content.all_phrase_tokens(key) for key in keys}
        self._crisis = self._phrases[flow.crisis_words] if flow.crisis_words else ()

    # -- public API --------------------------------------------------------------------

    def start(self, lang: str | None = None) -> Step:
        """Begin a conversation at the flow's start."""
        return self.enter(self.flow.start, self.language(lang))

    def is_crisis(self, text: str) -> bool:
        """Return True if the text holds any crisis phrase (forgiving one typo in long words)."""
        words = tokens(text)
        # Typos are forgiven in texts; speech recognition returns real words, where
        # forgiving "overdose" as "overdosed" would skip the menu the caller asked for.
        fuzzy = self.flow.channel is Channel.SMS
        return bool(self._crisis and words and contains_phrase(words, self._crisis, fuzzy=fuzzy))

    def resume(self, state: State, reply: Reply, *, fresh: bool = False) -> Step:
        """Advance the conversation by one input.

        fresh=True marks the first message of a new conversation: unrecognised text then
        gets the menu without an apology for not understanding.
        """
        flow = self.flow
        if state.ended:
            state = replace(state, node=flow.start, ended=False, reprompts=0)
        node = flow.nodes[state.node]
        words = tokens(reply.text)
        choice = reply.digits.strip()[:2] or as_choice(reply.text)

        # A person in danger comes first, whatever the conversation was doing.
        if flow.crisis and self.is_crisis(reply.text):
            return self.enter(flow.crisis, state.lang)

        if choice:
            for case in node.cases:
                if choice in case.digits:
                    return self.enter(case.goto, state.lang)

        lang = self._chosen_language(node, choice, words)
        if lang and flow.language_start:
            return self.enter(flow.language_start, lang)

        if words:
            target = self._match_words(node, words)
            if target:
                return self.enter(target, state.lang)

        if not choice and not words:
            if node.no_response:
                return self.enter(node.no_response, state.lang)
            if flow.channel is Channel.VOICE:
                return self.reprompt(state)
        if node.other:
            return self.enter(node.other, state.lang)
        if flow.other:
            state, events = self.enter(flow.other, state.lang)
            if fresh:
                return state, events
            return state, [self._say(flow.reprompt, state.lang), *events]
        return self.reprompt(state)

    def restore(self, raw: Mapping[str, Any]) -> State | None:
        """Rebuild a state from stored or URL values; None if it does not fit this flow."""
        try:
            state = State(
                flow=str(raw["flow"]),
                node=str(raw["node"]),
                lang=str(raw["lang"]),
                reprompts=int(raw.get("reprompts", 0)),
                ended=bool(raw.get("ended", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None
        valid = (
            state.flow == self.flow.id
            and state.node in self.flow.nodes
            and state.lang in self.content.languages
            and 0 <= state.reprompts <= MAX_REPROMPTS
        )
        return state if valid else None

    # -- steps -------------------------------------------------------------------------

    def enter(self, node_id: str, lang: str) -> Step:
        """Arrive at a node: say what it says, then follow 'next' until it waits or ends."""
        events: list[Event] = []
        node = self.flow.nodes[node_id]
        while True:
            events.extend(self._say(key, lang) for key in node.say)
            if node.next is None:
                break
            node = self.flow.nodes[node.next]
        state = State(flow=self.flow.id, node=node.id, lang=lang)
        if node.end:
            events.append(Hangup())
            return replace(state, ended=True), events
        return state, events + self._prompt(node, lang)

    def reprompt(self, state: State) -> Step:
        """Ask again after silence or an unknown key; after too many, say goodbye safely."""
        if state.reprompts >= MAX_REPROMPTS and self.flow.exhausted:
            return self.enter(self.flow.exhausted, state.lang)
        node = self.flow.nodes[state.node]
        events: list[Event] = [self._say(self.flow.reprompt, state.lang)]
        return replace(state, reprompts=state.reprompts + 1), events + self._prompt(
            node, state.lang
        )

    # -- helpers -----------------------------------------------------------------------

    def language(self, lang: str | None) -> str:
        """Return lang if the content has it, else the default language."""
        return lang if lang in self.content.languages else self.content.default_language

    def _say(self, key: str, lang: str) -> Say:
        return Say(key=key, text=self.content.text(key, lang, self.variables), lang=lang)

    def _prompt(self, node: Node, lang: str) -> list[Event]:
        events: list[Event] = [self._say(key, lang) for key in node.prompt]
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
        events.append(Ask(lang=lang, hints=tuple(dict.fromkeys(hints)), max_digits=max(digits)))
        return events

    def _chosen_language(self, node: Node, choice: str | None, words: tuple[str, ...]) -> str:
        for lang in self.content.languages.values():
            phrases = self._phrases[lang.words]
            if self.flow.channel is Channel.VOICE and node.offer_languages and choice == lang.digit:
                return lang.code
            if self.flow.channel is Channel.SMS and is_keyword(words, phrases, fuzzy=True):
                return lang.code
            if node.offer_languages and contains_phrase(words, phrases):
                return lang.code
        return ""

    def _match_words(self, node: Node, words: tuple[str, ...]) -> str | None:
        # Exact matches beat typo-forgiving ones, so "HELLO" is never read as "HELP".
        for fuzzy in (False, True):
            for kw in self.flow.keywords:
                if is_keyword(words, self._phrases[kw.words], fuzzy=fuzzy):
                    return kw.goto
            for case in node.cases:
                if case.words and contains_phrase(words, self._phrases[case.words], fuzzy=fuzzy):
                    return case.goto
        return None
