"""Flows and their content as data: parsing and structural validation.

A flow file (flows/*.yaml) holds structure: nodes, the cases that route input, and
where each exit goes. Content files (flows/content/<lang>.yaml) hold the words,
keyed by id, one file per language. Nothing here does I/O beyond reading those files.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

from helpline.conversation.actions import CALLER_FACTS, DECLARED
from helpline.conversation.matching import tokens

T = TypeVar("T")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# Node ids and language codes: they travel unquoted in URLs.
NAME = re.compile(r"[a-z][a-z0-9_]*")
# What the web layer knows at the moment a message is said; every other placeholder
# is a region value (flows/regions/*.yaml), checked by the linter.
RUNTIME_PLACEHOLDERS = frozenset(
    {"number_end", "position", "minutes", "resume", "day", "time", "place", "console", "where"}
)
# The fact that says the store is down, so nothing said now can be remembered: branches
# route on it, and an SMS flow's replies then ask only what a fresh conversation knows.
STORE_FACT, STORE_DOWN = "store", "down"
# The answer that says a caller is at risk right now: their request is urgent, and the
# reply that records it must give the emergency number.
AT_RISK = ("urgent", "yes")
# What a node can collect from free input, by slot: a phone number (the caller's own for a
# call back, or a trusted contact's), a number of minutes, or a place in the caller's words.
COLLECT_PHONE = frozenset({"phone", "contact"})
COLLECT_MINUTES = "minutes"
COLLECT_PLACE = "where"
COLLECTABLE = COLLECT_PHONE | {COLLECT_MINUTES, COLLECT_PLACE}
# Answers a message may say back to the caller ("I heard: {where}"), once a node has
# collected them: never kept in a cached reply (each is a runtime placeholder too).
ANSWER_PLACEHOLDERS = frozenset({COLLECT_PLACE})
DIGIT_KEYS = re.compile(r"^[0-9*#]{1,2}$")
# The keys every language names in words ("two", "dos"), so a reply of one picks it.
NUMBER_KEYS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*")
# What a content file's language block holds.
LANGUAGE_SETTINGS = frozenset({"name", "default", "gsm", "digit", "words", "numbers"})
# What a caller can choose to hear about, as the reports count it: a node that starts a
# topic says which (`topic:`), in every flow.
TOPICS = ("safety", "recovery", "someone_else", "callback", "checkin")


class Medium(StrEnum):
    """How a flow speaks: aloud, or in writing (texts, whether by SMS or WhatsApp)."""

    VOICE = "voice"
    SMS = "sms"


@dataclass(frozen=True)
class Case:
    """One route out of a waiting node: a key press and/or words, and where it goes."""

    goto: str
    digits: tuple[str, ...] = ()
    words: str | None = None
    set: tuple[tuple[str, str], ...] = ()  # answers recorded when this case is taken


@dataclass(frozen=True)
class Branch:
    """Route without input, on a fact or an earlier answer: value -> node."""

    on: str
    cases: tuple[tuple[str, str], ...]
    otherwise: str

    def target(self, value: str | None) -> str:
        return dict(self.cases).get(value or "", self.otherwise)


@dataclass(frozen=True)
class Collect:
    """Take free input as a value into an answer slot (see COLLECTABLE for the kinds)."""

    slot: str
    goto: str


@dataclass(frozen=True)
class OnCrisis:
    """Where a conversation goes on after the emergency reply, instead of the crisis menu.

    A crisis phrase in the middle of a call back request keeps the request: the caller
    hears the emergency advice, then the request carries on, marked urgent.
    """

    goto: str | None  # None: ask the interrupted question again
    set: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Node:
    id: str
    say: tuple[str, ...] = ()
    prompt: tuple[str, ...] = ()
    cases: tuple[Case, ...] = ()
    other: str | None = None
    no_response: str | None = None
    next: str | None = None
    end: bool = False
    offer_languages: bool = False
    branch: Branch | None = None
    collect: Collect | None = None
    action: str | None = None  # an effect the web layer performs on arrival
    outcomes: tuple[tuple[str, str], ...] = ()  # the action's result -> node
    on_crisis: OnCrisis | None = None
    topic: str | None = None  # the topic (TOPICS) this node starts, for the reports

    @property
    def waits(self) -> bool:
        """True if the node stops and waits for the caller's input."""
        return not self.end and self.next is None and not self.branch and not self.action

    def exits(self) -> list[str]:
        targets = [c.goto for c in self.cases]
        targets += [t for t in (self.other, self.no_response, self.next) if t]
        if self.branch:
            targets += [goto for _, goto in self.branch.cases] + [self.branch.otherwise]
        if self.collect:
            targets.append(self.collect.goto)
        targets += [goto for _, goto in self.outcomes]
        if self.on_crisis and self.on_crisis.goto:
            targets.append(self.on_crisis.goto)
        return targets


@dataclass(frozen=True)
class Keyword:
    """A word that works from anywhere in an SMS conversation."""

    words: str
    goto: str


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    gsm: bool  # SMS in this language should fit GSM-7 (after folding)
    digit: str  # the key that chooses this language on a call
    words: str  # words id that chooses this language by speech or text
    # Words said or texted for a key, folded for matching: {"TWO": "2", "STAR": "*"}.
    numbers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Content:
    """Messages and word lists for every language, keyed by id."""

    languages: dict[str, Language]
    messages: dict[str, dict[str, str]]  # lang -> key -> text
    words: dict[str, dict[str, tuple[str, ...]]]  # lang -> key -> phrases as written
    default_language: str
    # Phrases folded for matching, by words id: worked out once, on first use.
    _folded: dict[str, tuple[tuple[str, ...], ...]] = field(
        default_factory=dict, repr=False, compare=False
    )
    # What engines build from these words and may share (the danger reader).
    _shared: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)

    def shared(self, key: Hashable, build: Callable[[], T]) -> T:
        """Return what build() makes from this content, made once for every engine."""
        if key not in self._shared:
            self._shared[key] = build()
        return cast(T, self._shared[key])

    def text(self, key: str, lang: str, variables: Mapping[str, str]) -> str:
        template = self.messages[lang][key]
        if "{" not in template:
            return template  # most messages name nothing to fill in
        return PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), template)

    def personal(self, key: str, lang: str) -> bool:
        """Return whether the message fills in a fact about this call (RUNTIME_PLACEHOLDERS)."""
        return _uses_call_facts(self.messages[lang][key])

    def number_words(self) -> dict[str, str]:
        """Return every language's words for a key ("two", "dos" -> "2"), folded."""
        return {word: key for lang in self.languages.values() for word, key in lang.numbers.items()}

    def phrases(self, key: str, lang: str) -> tuple[str, ...]:
        return self.words[lang][key]

    def all_phrase_tokens(self, key: str) -> tuple[tuple[str, ...], ...]:
        """Return the phrases of a words id in every language, folded for matching."""
        if key in self._folded:
            return self._folded[key]
        found: dict[tuple[str, ...], None] = {}
        for lang in self.languages:
            for phrase in self.words[lang].get(key, ()):
                folded = tokens(phrase)
                if folded:
                    found[folded] = None
        self._folded[key] = tuple(found)
        return self._folded[key]


@dataclass(frozen=True)
class Flow:
    id: str
    channel: Medium
    start: str
    nodes: dict[str, Node]
    content: Content
    reprompt: str
    keywords: tuple[Keyword, ...] = ()
    crisis: str | None = None  # node entered when crisis words appear anywhere
    crisis_words: str | None = None
    # Node entered when words about suicide or self-harm appear anywhere, and those words.
    self_harm: str | None = None
    self_harm_words: str | None = None
    other: str | None = None  # where unrecognised input goes when a node does not say
    exhausted: str | None = None  # where a caller goes after too many reprompts
    language_start: str | None = None  # where a caller lands after choosing a language
    # Said instead of a node's own prompt when the conversation cannot be kept (the
    # store is down): the reply may then only ask what a fresh conversation understands.
    stateless_prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def read_yaml(path: Path, problems: list[str]) -> dict[str, Any]:
    """Parse one YAML file into a mapping, recording any problem instead of raising."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(unreadable(path, exc))
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name}: must be a mapping at the top level")
        return {}
    return data


def unreadable(path: Path, exc: Exception) -> str:
    """Say, in one line, why a file could not be read: for a YAML error, where."""
    where = (
        f"{path.parent.name}/{path.name}"
        if path.parent.name in ("content", "regions")
        else path.name
    )
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark, started = exc.problem_mark, exc.context_mark
        what = exc.problem or "a syntax error"
        if exc.context and started is not None and started.line != mark.line:
            what += f" ({exc.context} started on line {started.line + 1})"
        elif exc.context:
            what += f" ({exc.context})"
        return f"{where}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {what}"
    return f"{where}: cannot read: {exc}".replace("\n", " ")


def syntax_problems(flows_dir: Path) -> list[str]:
    """Every file under flows_dir that is not valid YAML, each said once with its line."""
    problems = []
    for path in sorted(flows_dir.rglob("*.yaml")):
        try:
            yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(unreadable(path, exc))
    return problems


def _strs(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.append(f"{where}: expected text or a list of text")
    return ()


# A words list may be written as patterns: "not|isn't breathing" is either word there,
# "really?" may be left out, and "<_who>" is any phrase of the words list _who in the same
# file. Lists whose id starts with "_" are such parts: each language has its own.
PART_PREFIX = "_"
# Most phrases one pattern may stand for: a pattern that grows past this is a mistake.
MAX_EXPANSIONS = 20_000


def expand_pattern(
    pattern: str, parts: Mapping[str, tuple[str, ...]], where: str, problems: list[str]
) -> list[str]:
    """Return every phrase a pattern stands for, in order, without repeats."""
    phrases: list[str] = [""]
    for word in pattern.split():
        optional = len(word) > 1 and word.endswith("?")
        word = word.removesuffix("?") if optional else word
        if word.startswith("<") and word.endswith(">"):
            name = word[1:-1]
            if name not in parts:
                problems.append(f"{where}: {word} is not a words list starting with '_'")
                return []
            choices = list(parts[name])
        else:
            choices = [c for c in word.split("|") if c]
        if optional:
            choices.append("")
        phrases = [f"{p} {c}".strip() for p in phrases for c in choices]
        if len(phrases) > MAX_EXPANSIONS:
            problems.append(f"{where}: {pattern!r} stands for over {MAX_EXPANSIONS:,} phrases")
            return []
    return list(dict.fromkeys(p for p in phrases if p))


def _expand_words(
    raw: dict[str, tuple[str, ...]], name: str, problems: list[str]
) -> dict[str, tuple[str, ...]]:
    """Expand one language's word lists; parts first, each from the parts before it."""
    parts: dict[str, tuple[str, ...]] = {}
    for key, patterns in raw.items():
        if key.startswith(PART_PREFIX):
            where = f"{name}: words {key!r}"
            parts[key] = tuple(
                p for pattern in patterns for p in expand_pattern(pattern, parts, where, problems)
            )
    return {
        key: parts[key]
        if key in parts
        else tuple(
            dict.fromkeys(
                p
                for pattern in patterns
                for p in expand_pattern(pattern, parts, f"{name}: words {key!r}", problems)
            )
        )
        for key, patterns in raw.items()
    }


def _number_words(raw: Any, name: str, problems: list[str]) -> dict[str, str]:
    """Read a language's number words: each key of NUMBER_KEYS -> one word or more."""
    if raw is None:
        return {}  # reported as missing
    if not isinstance(raw, dict):
        problems.append(f"{name}: language.numbers must map each key to its words")
        return {}
    raw = {str(key): words for key, words in raw.items()}
    numbers: dict[str, str] = {}
    for key in NUMBER_KEYS:
        if key not in raw:
            problems.append(f"{name}: language.numbers {key!r} is missing")
    for key, words in raw.items():
        where = f"{name}: language.numbers {key!r}"
        if key not in NUMBER_KEYS:
            problems.append(f"{where} is not a key ({', '.join(NUMBER_KEYS)})")
            continue
        written = _strs(words, where, problems)
        if not written:
            problems.append(f"{where} needs at least one word")
        for word in written:
            folded = tokens(word)
            if len(folded) != 1 or folded[0].isdigit():
                problems.append(f"{where}: {word!r} must be one word")
            elif numbers.setdefault(folded[0], key) != key:
                problems.append(f"{where}: {word!r} already stands for {numbers[folded[0]]!r}")
    return numbers


def parse_content(content_dir: Path, problems: list[str]) -> Content:
    """Read every language file and check they agree key for key."""
    languages: dict[str, Language] = {}
    messages: dict[str, dict[str, str]] = {}
    words: dict[str, dict[str, tuple[str, ...]]] = {}
    default = None
    for path in sorted(content_dir.glob("*.yaml")):
        code = path.stem
        if not NAME.fullmatch(code):
            problems.append(
                f"content/{path.name}: a language code is lower-case letters, such as es"
            )
            continue
        data = read_yaml(path, problems)
        where = f"content/{path.name}"
        meta = data.get("language") or {}
        if not isinstance(meta, dict):
            problems.append(f"{where}: 'language' must be a mapping")
            meta = {}
        for required in ("name", "digit", "words", "numbers"):
            if required not in meta:
                problems.append(f"{where}: language.{required} is missing")
        for unknown in sorted(set(map(str, meta)) - LANGUAGE_SETTINGS):
            problems.append(f"{where}: language.{unknown} is not a setting")
        digit = str(meta.get("digit", ""))
        if digit and not DIGIT_KEYS.match(digit):
            problems.append(f"{where}: language.digit must be a key on the keypad")
        languages[code] = Language(
            code=code,
            name=str(meta.get("name", code)),
            gsm=bool(meta.get("gsm", True)),
            digit=digit,
            words=str(meta.get("words", "")),
            numbers=_number_words(meta.get("numbers"), where, problems),
        )
        if meta.get("default"):
            if default:
                problems.append(f"{path.name}: only one language can be the default")
            default = code
        raw_messages = data.get("messages") or {}
        messages[code] = {}
        for key, text in raw_messages.items():
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{path.name}: message {key!r} must be non-empty text")
                continue
            messages[code][str(key)] = " ".join(text.split())
        raw_words = {
            str(key): _strs(value, f"{path.name}: words {key!r}", problems)
            for key, value in (data.get("words") or {}).items()
        }
        words[code] = _expand_words(raw_words, path.name, problems)
        for key, phrases in words[code].items():
            if not phrases or any(not tokens(p) for p in phrases):
                problems.append(f"{path.name}: words {key!r} has an empty phrase")

    if not languages:
        problems.append(f"{content_dir}: no content files (expected <lang>.yaml)")
    all_message_keys = set().union(*(m.keys() for m in messages.values())) if messages else set()
    all_word_keys = set().union(*(w.keys() for w in words.values())) if words else set()
    # Each language's own name list lives only in its own file ("Español" in es.yaml).
    own_names = {lang.words for lang in languages.values()}
    for code, lang in languages.items():
        if lang.words and lang.words not in words[code]:
            problems.append(f"content/{code}.yaml: words {lang.words!r} is missing")
    all_word_keys -= own_names
    all_word_keys = {key for key in all_word_keys if not key.startswith(PART_PREFIX)}
    for code in languages:
        for key in sorted(all_message_keys - messages[code].keys()):
            problems.append(f"content/{code}.yaml: message {key!r} is missing (translation)")
        for key in sorted(all_word_keys - words[code].keys()):
            problems.append(f"content/{code}.yaml: words {key!r} is missing (translation)")
    digits = [lang.digit for lang in languages.values()]
    if len(set(digits)) != len(digits):
        problems.append("content: two languages share the same language.digit")
    # A reply of one word is read in every language: it must stand for one key only.
    stands_for: dict[str, tuple[str, str]] = {}
    for code, lang in languages.items():
        for word, key in lang.numbers.items():
            other, other_key = stands_for.setdefault(word, (code, key))
            if other_key != key:
                problems.append(
                    f"content/{code}.yaml: language.numbers word {word!r} is {key!r} here "
                    f"but {other_key!r} in {other}.yaml"
                )
    return Content(
        languages=languages,
        messages=messages,
        words=words,
        default_language=default or next(iter(languages), "en"),
    )


def parse_flow(path: Path, content: Content, problems: list[str]) -> Flow | None:
    """Read one flow file and check its structure against the content."""
    data = read_yaml(path, problems)
    if not data:
        return None
    name = path.name
    known = {
        "id",
        "channel",
        "start",
        "nodes",
        "reprompt",
        "keywords",
        "crisis",
        "crisis_words",
        "self_harm",
        "self_harm_words",
        "other",
        "exhausted",
        "language_start",
        "stateless_prompt",
    }
    for key in sorted(set(data) - known):
        problems.append(f"{name}: unknown setting {key!r}")
    try:
        channel = Medium(str(data.get("channel")))
    except ValueError:
        problems.append(f"{name}: channel must be 'voice' or 'sms'")
        return None

    nodes: dict[str, Node] = {}
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.append(f"{name}: 'nodes' must be a non-empty mapping")
        return None
    for node_id, raw in raw_nodes.items():
        if not NAME.fullmatch(str(node_id)):
            # Node ids travel unquoted in a call's step URL (helpline.web.webhooks).
            problems.append(f"{name}: node id {node_id!r} must be lower-case letters, digits, _")
            continue
        node = _parse_node(str(node_id), raw, f"{name}: node {node_id!r}", problems)
        if node:
            nodes[node.id] = node

    keywords = []
    for i, raw in enumerate(data.get("keywords") or []):
        if not isinstance(raw, dict) or "words" not in raw or "goto" not in raw:
            problems.append(f"{name}: keywords[{i}] needs 'words' and 'goto'")
            continue
        keywords.append(Keyword(words=str(raw["words"]), goto=str(raw["goto"])))

    flow = Flow(
        id=str(data.get("id", path.stem)),
        channel=channel,
        start=str(data.get("start", "")),
        nodes=nodes,
        content=content,
        reprompt=str(data.get("reprompt", "")),
        keywords=tuple(keywords),
        crisis=data.get("crisis"),
        crisis_words=data.get("crisis_words"),
        self_harm=data.get("self_harm"),
        self_harm_words=data.get("self_harm_words"),
        other=data.get("other"),
        exhausted=data.get("exhausted"),
        language_start=data.get("language_start"),
        stateless_prompt=data.get("stateless_prompt"),
    )
    _check_flow(flow, name, problems)
    return flow


def _parse_node(node_id: str, raw: Any, where: str, problems: list[str]) -> Node | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    known = {
        "say",
        "prompt",
        "cases",
        "other",
        "no_response",
        "next",
        "end",
        "offer_languages",
        "branch",
        "collect",
        "action",
        "outcomes",
        "on_crisis",
        "topic",
    }
    for key in sorted(set(raw) - known):
        problems.append(f"{where}: unknown setting {key!r}")
    cases = []
    for i, case in enumerate(raw.get("cases") or []):
        if not isinstance(case, dict) or "goto" not in case:
            problems.append(f"{where}: cases[{i}] needs 'goto'")
            continue
        digits = tuple(str(d) for d in _strs(case.get("digits"), where, problems))
        for d in digits:
            if not DIGIT_KEYS.match(d):
                problems.append(f"{where}: cases[{i}] digits {d!r} is not a key on the keypad")
        if not digits and not case.get("words"):
            problems.append(f"{where}: cases[{i}] needs 'digits' or 'words'")
        answers = case.get("set") or {}
        cases.append(
            Case(
                goto=str(case["goto"]),
                digits=digits,
                words=case.get("words"),
                set=_answers_set(answers, f"{where}: cases[{i}]", problems),
            )
        )
    on_crisis = None
    if "on_crisis" in raw:
        spec = raw["on_crisis"]
        if not isinstance(spec, dict) or set(spec) - {"goto", "set"}:
            problems.append(f"{where}: 'on_crisis' takes 'goto' and/or 'set'")
        else:
            on_crisis = OnCrisis(
                goto=str(spec["goto"]) if spec.get("goto") else None,
                set=_answers_set(spec.get("set") or {}, f"{where}: on_crisis", problems),
            )
    branch = None
    if "branch" in raw:
        spec = raw["branch"]
        if not isinstance(spec, dict) or "fact" not in spec or "otherwise" not in spec:
            problems.append(f"{where}: 'branch' needs 'fact' and 'otherwise'")
        else:
            routes = {k: v for k, v in spec.items() if k not in ("fact", "otherwise")}
            branch = Branch(
                on=str(spec["fact"]),
                cases=tuple((str(k), str(v)) for k, v in routes.items()),
                otherwise=str(spec["otherwise"]),
            )
    collect = None
    if "collect" in raw:
        spec = raw["collect"]
        if not isinstance(spec, dict) or spec.get("slot") not in COLLECTABLE or "goto" not in spec:
            problems.append(
                f"{where}: 'collect' needs 'slot' (one of {sorted(COLLECTABLE)}) and 'goto'"
            )
        else:
            collect = Collect(slot=str(spec["slot"]), goto=str(spec["goto"]))
    action = raw.get("action")
    outcomes = raw.get("outcomes") or {}
    if action is not None:
        if action not in DECLARED:
            problems.append(
                f"{where}: unknown action {action!r} (the actions are: {', '.join(DECLARED)})"
            )
        elif not isinstance(outcomes, dict) or set(outcomes) != set(DECLARED[action].outcomes):
            declared = set(DECLARED[action].outcomes)
            routed = set(outcomes) if isinstance(outcomes, dict) else set()
            problems.append(
                f"{where}: action {action!r} needs outcomes {sorted(declared)}"
                + "".join(f"; {o!r} is not routed" for o in sorted(declared - routed))
                + "".join(f"; {o!r} is never returned" for o in sorted(routed - declared))
            )
            outcomes = {}
    elif outcomes:
        problems.append(f"{where}: 'outcomes' without an 'action'")
    return Node(
        id=node_id,
        say=_strs(raw.get("say"), where, problems),
        prompt=_strs(raw.get("prompt"), where, problems),
        cases=tuple(cases),
        other=raw.get("other"),
        no_response=raw.get("no_response"),
        next=raw.get("next"),
        end=bool(raw.get("end", False)),
        offer_languages=bool(raw.get("offer_languages", False)),
        branch=branch,
        collect=collect,
        action=str(action) if action is not None else None,
        outcomes=tuple((str(k), str(v)) for k, v in outcomes.items())
        if isinstance(outcomes, dict)
        else (),
        on_crisis=on_crisis,
        topic=_topic(raw.get("topic"), where, problems),
    )


def _topic(raw: Any, where: str, problems: list[str]) -> str | None:
    if raw is None:
        return None
    if raw not in TOPICS:
        problems.append(f"{where}: unknown topic {raw!r} (the topics are: {', '.join(TOPICS)})")
        return None
    return str(raw)


def topic_sections(flow: Flow) -> dict[str, str]:
    """Node id -> the topic whose part of the flow it is in.

    A topic's part is what its node leads to without passing through the main menu or
    another topic's node; a node two topics lead to belongs to neither. Moving into a
    topic's node from outside its part is choosing that topic; moving back to it from
    inside (its menu again) is not.
    """
    owners: dict[str, set[str]] = {}
    starts = {node.id: node.topic for node in flow.nodes.values() if node.topic}
    stops = set(starts) | {flow.start, flow.language_start or flow.start}
    home = flow.nodes[flow.start]
    while home.next is not None and home.next not in stops:
        stops.add(home.next)  # the greeting leads to the main menu: the way home
        home = flow.nodes[home.next]
    for first, name in starts.items():
        seen, todo = {first}, [first]
        while todo:
            for target in flow.nodes[todo.pop()].exits():
                if target not in seen and target not in stops and target in flow.nodes:
                    seen.add(target)
                    todo.append(target)
        for node_id in seen:
            owners.setdefault(node_id, set()).add(name)
    return {node_id: names.pop() for node_id, names in owners.items() if len(names) == 1}


def _answers_set(raw: Any, where: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'set' must be a mapping of answers")
        return ()
    return tuple((str(k), str(v)) for k, v in raw.items())


def _check_flow(flow: Flow, name: str, problems: list[str]) -> None:
    content = flow.content
    message_keys = set().union(*(m.keys() for m in content.messages.values()))
    word_keys = set().union(*(w.keys() for w in content.words.values()))

    def need_node(target: str | None, where: str) -> None:
        if target is not None and target not in flow.nodes:
            problems.append(f"{name}: {where} goes to {target!r}, which is not a node")

    def need_message(key: str, where: str) -> None:
        if key not in message_keys:
            problems.append(f"{name}: {where} says {key!r}, which is not in the content")

    def need_words(key: str | None, where: str) -> None:
        if key is not None and key not in word_keys:
            problems.append(f"{name}: {where} listens for {key!r}, which is not in the content")

    if not flow.start:
        problems.append(f"{name}: 'start' is missing")
    need_node(flow.start or None, "start")
    need_node(flow.crisis, "crisis")
    need_node(flow.other, "other")
    need_node(flow.exhausted, "exhausted")
    need_node(flow.language_start, "language_start")
    need_words(flow.crisis_words, "crisis_words")
    if bool(flow.crisis) != bool(flow.crisis_words):
        problems.append(f"{name}: 'crisis' and 'crisis_words' go together")
    need_node(flow.self_harm, "self_harm")
    need_words(flow.self_harm_words, "self_harm_words")
    if bool(flow.self_harm) != bool(flow.self_harm_words):
        problems.append(f"{name}: 'self_harm' and 'self_harm_words' go together")
    if flow.stateless_prompt:
        need_message(flow.stateless_prompt, "stateless_prompt")
    if flow.reprompt:
        need_message(flow.reprompt, "reprompt")
    else:
        problems.append(f"{name}: 'reprompt' is missing")
    if flow.channel is Medium.VOICE and not flow.exhausted:
        problems.append(f"{name}: a voice flow needs 'exhausted' (the goodbye after reprompts)")
    if flow.channel is Medium.SMS and not flow.other:
        problems.append(f"{name}: an SMS flow needs 'other' (where unrecognised texts go)")
    if flow.channel is Medium.SMS and not flow.stateless_prompt:
        problems.append(
            f"{name}: an SMS flow needs 'stateless_prompt' (what a reply asks when the"
            " conversation cannot be kept)"
        )
    for kw in flow.keywords:
        need_node(kw.goto, f"keyword {kw.words!r}")
        need_words(kw.words, "keywords")
    for lang in content.languages.values():
        need_words(lang.words, f"language {lang.code}")

    offers_languages = False
    for node in flow.nodes.values():
        where = f"node {node.id!r}"
        for key in node.say + node.prompt:
            need_message(key, where)
        for target in node.exits():
            need_node(target, where)
        for case in node.cases:
            need_words(case.words, where)
        offers_languages |= node.offer_languages
        moves = [m for m in ("end", "next", "branch", "action") if getattr(node, m)]
        if len(moves) > 1:
            problems.append(f"{name}: {where} cannot combine {' and '.join(moves)}")
        if node.collect and not node.waits:
            problems.append(f"{name}: {where} collects input, so it must wait for it")
        if node.waits and not (
            node.prompt and (node.cases or node.offer_languages or node.collect)
        ):
            problems.append(f"{name}: {where} waits for input, so it needs 'prompt' and 'cases'")
        if not node.waits and (node.cases or node.prompt):
            problems.append(f"{name}: {where} does not wait, so 'cases'/'prompt' would be unused")
        if node.on_crisis and not node.waits:
            problems.append(f"{name}: {where} does not wait, so 'on_crisis' would be unused")
        if node.on_crisis and not (flow.crisis or flow.self_harm):
            problems.append(f"{name}: {where} has 'on_crisis' but the flow has no 'crisis'")
        seen_digits: set[str] = set()
        for case in node.cases:
            for d in case.digits:
                if d in seen_digits:
                    problems.append(f"{name}: {where} uses key {d!r} twice")
                seen_digits.add(d)
        if node.offer_languages:
            clash = seen_digits & {lang.digit for lang in content.languages.values()}
            if clash:
                problems.append(f"{name}: {where} key {sorted(clash)} also chooses a language")
    if offers_languages and not flow.language_start:
        problems.append(f"{name}: nodes offer languages, so 'language_start' is needed")

    _check_next_cycles(flow, name, problems)
    _check_reachable(flow, name, problems)
    _check_actions(flow, name, problems)


def _check_next_cycles(flow: Flow, name: str, problems: list[str]) -> None:
    for node in flow.nodes.values():
        seen = {node.id}
        current = node
        while current.next and current.next in flow.nodes:
            if current.next in seen:
                problems.append(f"{name}: node {node.id!r} loops through 'next' without waiting")
                break
            seen.add(current.next)
            current = flow.nodes[current.next]


def _check_reachable(flow: Flow, name: str, problems: list[str]) -> None:
    roots = [flow.start, flow.crisis, flow.self_harm, flow.other, flow.exhausted]
    roots.append(flow.language_start)
    roots += [kw.goto for kw in flow.keywords]
    pending = [r for r in roots if r in flow.nodes]
    reached: set[str] = set()
    while pending:
        node_id = pending.pop()
        if node_id in reached:
            continue
        reached.add(node_id)
        pending.extend(t for t in flow.nodes[node_id].exits() if t in flow.nodes)
    for node_id in flow.nodes:
        if node_id not in reached:
            problems.append(f"{name}: node {node_id!r} is unreachable")


def _check_actions(flow: Flow, name: str, problems: list[str]) -> None:
    """An action's needs are recorded somewhere in the flow, and every fact a message says
    is known where it is said: what is known of every caller, and after an action's
    outcome what that outcome provides, until the flow next waits (a reprompt knows only
    the caller's facts)."""
    recorded = {slot for node in flow.nodes.values() for slot, _ in _records(node)}
    acting = {n.action for n in flow.nodes.values() if n.action and n.action in DECLARED}
    for action in sorted(acting):
        for answer in sorted(DECLARED[action].needs - recorded):
            problems.append(
                f"{name}: action {action!r} needs answer {answer!r}; no node records it"
            )

    def runtime(key: str) -> set[str]:
        return {
            fact
            for messages in flow.content.messages.values()
            for fact in PLACEHOLDER.findall(messages.get(key, ""))
            if fact in RUNTIME_PLACEHOLDERS - ANSWER_PLACEHOLDERS  # said back once collected
        }

    # Where a step starts, and what it knows there.
    starts: list[tuple[str, frozenset[str], str]] = []
    roots = [flow.start, flow.crisis, flow.self_harm, flow.other, flow.exhausted]
    roots += [flow.language_start, *(kw.goto for kw in flow.keywords)]
    roots += [t for node in flow.nodes.values() if node.waits for t in node.exits()]
    starts += [(root, CALLER_FACTS, "") for root in dict.fromkeys(roots) if root]
    for node in flow.nodes.values():
        declared = DECLARED.get(node.action) if node.action else None
        if declared is not None:
            for result, target in node.outcomes:
                after = f" after action {declared.name!r} ends {result!r}"
                starts.append((target, CALLER_FACTS | declared.provides(result), after))
    facts_of_all = CALLER_FACTS.union(
        *(a.provides(o) for a in DECLARED.values() for o in a.outcomes)
    )
    reported: set[tuple[str, str, str, str]] = set()
    for root, known, after in starts:
        seen, pending = set(), [root]
        while pending:
            node_id = pending.pop()
            if node_id in seen or node_id not in flow.nodes:
                continue
            seen.add(node_id)
            node = flow.nodes[node_id]
            said = [(key, known) for key in node.say] + [(key, CALLER_FACTS) for key in node.prompt]
            for key, facts in said:
                for fact in sorted(runtime(key) - facts):
                    if (node_id, key, fact, after) not in reported:
                        reported.add((node_id, key, fact, after))
                        problems.append(
                            f"{name}: node {node_id!r} says {key!r}, which uses {{{fact}}}:"
                            f" nothing provides it there{after or ' (no action before it)'}"
                        )
            if node.branch and node.branch.on in facts_of_all and node.branch.on not in known:
                pending.append(node.branch.otherwise)  # a fact not known here is never met
            elif not node.waits and not node.action:
                pending.extend(t for t in node.exits() if t not in seen)


def _records(node: Node) -> list[tuple[str, str]]:
    """Every answer a node can record, as (slot, value); a collected slot's value is ''."""
    recorded = [pair for case in node.cases for pair in case.set]
    if node.on_crisis:
        recorded += node.on_crisis.set
    if node.collect:
        recorded.append((node.collect.slot, ""))
    return recorded


@functools.lru_cache(maxsize=4096)
@functools.cache
def _uses_call_facts(template: str) -> bool:
    return any(name in RUNTIME_PLACEHOLDERS for name in PLACEHOLDER.findall(template))
