"""Walk every state a conversation can reach and prove the safety invariants hold.

Pure, like the engine: no Flask, no Redis, no clock. For each flow, region and store
condition (normal, or degraded: nothing can be read, kept or queued) it starts where a
real call or text starts, with the caller ID usable or not, and tries every input of a
fixed alphabet in every state it reaches, breadth first, so the first path found to
any problem is a shortest one. The walk is bounded by states, not by path length.

The invariants (numbered as in the README):
1. Every reply renders as valid TwiML; every text fits its segment budget in its SMS
   encoding and, as WhatsApp sends it (not folded to GSM-7), WhatsApp's length limit;
   every voice reply ends with a way to answer or a hang-up.
2. A crisis phrase, from any state, gets the emergency reply first; words of suicide or
   self-harm get the self-harm reply first, naming the emergency number and the crisis
   line; either one in the middle of a call back request marks the request urgent.
3. An "at risk" answer is followed, in the same reply, by the emergency number.
4. No unbounded loop: inputs not understood, from any state, end within three replies
   at the main menu or in a goodbye; the main menu is one key or word away everywhere.
5. With the store down, no reply asks what only a kept conversation could understand,
   nobody is asked for a call back that cannot be queued or told they are on the list,
   a request for one is answered plainly with the emergency number and another line,
   and keywords still answer.
6. The emergency number is never far: every SMS reply that asks something names it (or
   names a keyword whose reply does); a call's greeting, goodbyes and fail-safe say it.
"""

from __future__ import annotations

import functools
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from helpline.conversation.actions import DECLARED, WHERE_FACTS
from helpline.conversation.channels import WHATSAPP
from helpline.conversation.danger import Danger
from helpline.conversation.engine import Act, Ask, Engine, Event, Hangup, Reply, Say, State
from helpline.conversation.gsm import segments
from helpline.conversation.lint import Library, sms_text
from helpline.conversation.model import (
    AT_RISK,
    COLLECT_MINUTES,
    COLLECT_PLACE,
    STORE_DOWN,
    STORE_FACT,
    Flow,
    Medium,
)
from helpline.conversation.regions import Region
from helpline.conversation.texting import answer_text
from helpline.infrastructure.constants import MAX_REPROMPTS, SMS_MAX_SEGMENTS

# Renders one reply as TwiML, for invariant 1: the web layer's renderer, passed in as
# (region, channel, events, gsm) -> XML text.
Render = Callable[[Region, Medium, list[Event], bool], str]

# What the web layer can tell a caller of where they stand after an action: each outcome
# that provides these facts is played with each of these (a wait, or closed hours).
WHERE_SAMPLES: tuple[dict[str, str], ...] = (
    {"place": "known", "position": "3", "wait": "known", "minutes": "15"},
    {"place": "known", "position": "12", "hours": "closed", "resume": "at 9:00"},
    {},
)


# A value for each other fact an outcome provides ("time": when a check-in call comes).
SAMPLE_FACTS = {"time": "21:45"}


def outcomes_of(action: str, store_up: bool) -> list[tuple[str, dict[str, str]]]:
    """Every (outcome, facts) the web layer can answer an action with: each declared
    outcome and what it provides; with the store down, only "failed" (nothing is kept)."""
    declared = DECLARED[action]
    if not store_up:
        return [("failed", {})] if "failed" in declared.outcomes else []
    played = []
    for outcome, provides in declared.outcomes.items():
        where = provides & WHERE_FACTS
        others = {fact: SAMPLE_FACTS.get(fact, "1") for fact in provides - WHERE_FACTS}
        samples = WHERE_SAMPLES if where else ({},)
        for sample in samples:
            played.append((outcome, {**{k: v for k, v in sample.items() if k in where}, **others}))
    return played


# Most replies a run of inputs not understood may take before it rests (invariant 4).
MISS_RUN = MAX_REPROMPTS + 1
# States one walk may visit: the shipped flows need about a thousand. A flow whose
# states have no end (a counter the engine never bounds) is reported, not walked for ever.
MAX_STATES = 50_000


class Store(StrEnum):
    NORMAL = "normal"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class Input:
    """One thing a caller can do, as the webhook would receive it."""

    label: str
    reply: Reply
    # "answer", "miss", "crisis", "self_harm", "at_risk", "menu", "keyword"
    kind: str = "answer"


@dataclass(frozen=True)
class Point:
    """Where a conversation rests between two webhooks, as the web layer keeps it."""

    state: State | None  # None: a text conversation not (or no longer) kept
    opted_out: bool = False
    caller_known: bool = True
    on_duty: bool = True  # a counsellor is on duty within hours (a check-in is offered)
    queued: bool = False  # the caller has a call back request open (at the first input)

    def key(self, routed: frozenset[str]) -> tuple[object, ...]:
        """Identify the point up to what the engine can tell apart.

        The engine routes on an answer only through a branch that reads it; any other
        answer just travels to the action. Their values are folded, so that a number
        keyed in and the caller's own make one state, not one each.
        """
        s = self.state
        who = (self.opted_out, self.caller_known, self.on_duty, self.queued)
        if s is None:
            return (None, *who)
        answers = tuple(sorted((k, v if k in routed else "") for k, v in s.answers.items()))
        return (s.node, s.lang, s.reprompts, s.ended, answers, *who)


@dataclass(frozen=True)
class Turn:
    """One reply: what was said, the state the engine meant to keep, and where it rests."""

    events: list[Event]
    engine_state: State | None
    after: Point


@dataclass(frozen=True)
class Problem:
    invariant: int
    message: str
    flow: str
    region: str
    store: Store
    inputs: tuple[str, ...]

    def __str__(self) -> str:
        path = " -> ".join(self.inputs) if self.inputs else "(the first reply)"
        return (
            f"invariant {self.invariant}: {self.message}\n"
            f"    {self.flow} flow, region {self.region}, store {self.store.value}: {path}"
        )


@dataclass
class Report:
    states: int = 0
    transitions: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"explored {self.states:,} states, {self.transitions:,} transitions, "
            f"{len(self.problems)} problems in {self.seconds:.1f} s"
        )


def explore(library: Library, regions: Iterable[Region], render: Render | None = None) -> Report:
    """Walk every flow in every region under both store conditions; report what fails."""
    started = time.perf_counter()
    report = Report()
    for region in regions:
        for flow in library.flows.values():
            engine = library.engine(flow.channel, region)
            for store in Store:
                _Walk(engine, region, store, render, report).run()
        _check_failsafes(library, region, report)
    report.seconds = time.perf_counter() - started
    return report


def explore_all(library: Library) -> Report:
    """Explore every region, each in a process of its own (forked: they share the loaded
    flows), as many at once as there are cores; one report for all of them."""
    import multiprocessing
    import os

    from helpline.conversation import twiml

    render = twiml.reply
    regions = list(library.regions.values())
    processes = min(len(regions), os.cpu_count() or 1)
    started = time.perf_counter()
    if processes < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return explore(library, regions, render)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(functools.partial(explore, library, render=render), [[r] for r in regions])
    report = Report(
        states=sum(p.states for p in parts),
        transitions=sum(p.transitions for p in parts),
        problems=[found for p in parts for found in p.problems],
    )
    report.seconds = time.perf_counter() - started
    return report


def _check_failsafes(library: Library, region: Region, report: Report) -> None:
    """The answers given when anything fails must carry the emergency number."""
    content = library.content
    for channel in Medium:
        for lang in content.languages:
            variables = region.variables(lang, spoken=channel is Medium.VOICE)
            text = content.text(f"{channel.value}.failsafe", lang, variables)
            if variables["emergency"] not in text:
                report.problems.append(
                    Problem(
                        6,
                        f"{channel.value}.failsafe ({lang}) does not say the emergency number",
                        channel.value,
                        region.code,
                        Store.DEGRADED,
                        (),
                    )
                )


class _Walk:
    """One flow, one region, one store condition: a breadth-first walk of its states."""

    def __init__(
        self,
        engine: Engine,
        region: Region,
        store: Store,
        render: Render | None,
        report: Report,
    ):
        self.engine = engine
        self.flow: Flow = engine.flow
        self.region = region
        self.store = store
        self.render = render
        self.report = report
        self.voice = self.flow.channel is Medium.VOICE
        self.home = engine.home
        self.intake = _intake_nodes(self.flow, self.home)
        self.callback_intake = _intake_nodes(self.flow, self.home, {"callback"})
        self.told_queued = _told_queued(self.flow)
        self._rendered: dict[tuple[Event, ...], str | None] = {}
        self._alphabets: dict[tuple[str, str], list[Input]] = {}
        self._keyword_gives: dict[str, bool] = {}
        self._problems: set[tuple[int, str]] = set()
        self._routed = frozenset(n.branch.on for n in self.flow.nodes.values() if n.branch)
        self._steps: dict[tuple[object, ...], list[Turn]] = {}
        self._danger: dict[Input, Danger | None] = {}
        self._sms_checked: set[tuple[Event, ...]] = set()

    # -- the walk -------------------------------------------------------------------------

    def run(self) -> None:
        parents: dict[tuple[object, ...], tuple[tuple[object, ...] | None, str]] = {}
        points: dict[tuple[object, ...], Point] = {}
        pending: deque[Point] = deque()
        for root, events in self._roots():
            key = root.key(self._routed)
            if key not in parents:
                parents[key] = (None, "")
                points[key] = root
                pending.append(root)
            self._check_first_reply(events, lambda: ())
        while pending:
            if len(points) > MAX_STATES:
                message = f"more than {MAX_STATES:,} states: some state has no bound"
                self._problem(4, message, lambda: ())
                break
            point = pending.popleft()
            here = point.key(self._routed)

            def path(here: tuple[object, ...] = here) -> tuple[str, ...]:
                return _path(parents, here)

            self._check_point(point, path)
            ways = self._alphabet(point)
            if point.state is not None and point.state.reprompts:
                # Only a miss reads the count of misses: any other input does here what
                # it does at the same point with none, which is walked instead.
                ways = [way for way in ways if way.kind == "miss"]
                twin = replace(point, state=replace(point.state, reprompts=0))
                if twin.key(self._routed) not in parents:
                    parents[twin.key(self._routed)] = parents[here]
                    points[twin.key(self._routed)] = twin
                    pending.append(twin)
            for way in ways:
                for turn in self._step(point, way):
                    self.report.transitions += 1
                    self._check_turn(point, way, turn, path)
                    key = turn.after.key(self._routed)
                    over = self.voice and turn.after.state is not None and turn.after.state.ended
                    if key not in parents and not over:
                        parents[key] = (here, way.label)
                        points[key] = turn.after
                        pending.append(turn.after)
        self.report.states += len(points)

    def _roots(self) -> Iterator[tuple[Point, list[Event]]]:
        # Off duty only changes what a check-in request is told, and a request open
        # already only what asking for one is told (only a known caller has one): one
        # caller each is enough. A request open is known for the first input only (it
        # may close before the next): every way into the intake is tried with it, and
        # what follows is walked as for anyone else, so the walk stays about the size
        # it was.
        roots = (
            (True, True, False),
            (False, True, False),
            (True, False, False),
            (True, True, True),
        )
        for known, on_duty, queued in roots:
            if self.voice:
                state, events = self.engine.start()
                yield Point(state, caller_known=known, on_duty=on_duty, queued=queued), events
            else:
                yield Point(None, caller_known=known, on_duty=on_duty, queued=queued), []

    def _facts(self, point: Point, store: Store | None = None) -> dict[str, str]:
        facts: dict[str, str] = {}
        if point.caller_known:
            facts.update(caller_id="known", number_end="1 2 3" if self.voice else "123")
        if point.on_duty:
            facts["duty"] = "open"
        if (store or self.store) is Store.DEGRADED:
            facts[STORE_FACT] = STORE_DOWN
        elif point.queued:
            facts["queued"] = "open"
        return facts

    def _step(self, point: Point, way: Input, store: Store | None = None) -> list[Turn]:
        """Every way the web layer can answer this input here (an action has outcomes)."""
        store = store or self.store
        key = (point.key(self._routed), way, store)
        if key not in self._steps:
            self._steps[key] = self._take(point, way, store)
        return self._steps[key]

    def _take(self, point: Point, way: Input, store: Store) -> list[Turn]:
        facts = self._facts(point, store)
        if self.voice:
            assert point.state is not None
            danger = self._read(way)
            state, events = self.engine.resume(point.state, way.reply, context=facts, danger=danger)
            opted_out = False
        else:
            step = answer_text(
                self.engine,
                point.state,
                point.opted_out,
                way.reply,
                context=facts,
                danger=self._read(way),
            )
            if not step.events:
                kept = None if step.opted_out else point.state
                after = replace(point, state=kept, opted_out=step.opted_out, queued=False)
                return [Turn([], step.state, after if store is Store.NORMAL else _fresh(point))]
            assert step.state is not None
            state, events, opted_out = step.state, step.events, step.opted_out
        turns = []
        for engine_state, said in self._settle(state, events, facts, store):
            if store is Store.DEGRADED and not self.voice:
                after = _fresh(point)  # nothing is read or kept
            else:
                after = replace(point, state=engine_state, opted_out=opted_out, queued=False)
            turns.append(Turn(said, engine_state, after))
        return turns

    def _settle(
        self, state: State, events: list[Event], facts: Mapping[str, str], store: Store
    ) -> list[tuple[State, list[Event]]]:
        if not events or not isinstance(events[-1], Act):
            return [(state, events)]
        settled = []
        for result, more in outcomes_of(events[-1].action, store is Store.NORMAL):
            after, said = self.engine.outcome(state, result, {**facts, **more})
            settled.append((after, [*events[:-1], *said]))
        return settled

    # -- the alphabet ---------------------------------------------------------------------

    def _alphabet(self, point: Point) -> list[Input]:
        state = point.state
        node_id = state.node if state else self.flow.start
        lang = state.lang if state else self.engine.content.default_language
        cached = self._alphabets.get((node_id, lang))
        if cached is None:
            cached = self._alphabets[(node_id, lang)] = list(self._inputs(node_id, lang))
        return cached

    def _inputs(self, node_id: str, lang: str) -> Iterator[Input]:
        content, node = self.engine.content, self.flow.nodes[node_id]
        voice = self.voice

        def keys(value: str, kind: str = "answer") -> Input:
            if voice:
                return Input(f"presses {value}", Reply(digits=value), kind)
            return Input(f"texts {value!r}", Reply(text=value), kind)

        def words(value: str, kind: str = "answer") -> Input:
            verb = "says" if voice else "texts"
            return Input(f"{verb} {value!r}", Reply(text=value), kind)

        used: set[str] = set()
        for case in node.cases:
            kind = "at_risk" if AT_RISK in case.set else "answer"
            for digit in case.digits:
                used.add(digit)
                yield keys(digit, kind)
            if case.words:
                yield words(content.phrases(case.words, lang)[0], kind)
        for other in content.languages.values():
            if voice:
                used.add(other.digit)
                yield keys(other.digit)
            yield words(content.phrases(other.words, other.code)[0])
        if not voice:
            for kw in self.flow.keywords:
                yield words(content.phrases(kw.words, lang)[0], "keyword")
            for word in ("STOP", "START", "YES"):
                yield words(word, "keyword")
        # Any crisis phrase, alone or inside a sentence, in any language; a word that
        # names an overdose, alone; words of suicide or self-harm.
        if self.flow.crisis_words:
            for code in content.languages:
                phrases = content.phrases(self.flow.crisis_words, code)
                yield words(phrases[0], "crisis")
                yield words(f"help my friend {phrases[-1]} please", "crisis")
                named = content.words[code].get(f"{self.flow.crisis_words}_word")
                if named:
                    yield words(named[0], "crisis")
        if self.flow.self_harm_words:
            for code in content.languages:
                yield words(content.phrases(self.flow.self_harm_words, code)[0], "self_harm")
        # Numbers: national in either region's format, international, and too short.
        yield keys("02079460123")
        yield keys("2025550188")
        yield words("+1 202 555 0188")
        # A key no case takes (where minutes are asked, a number of them out of range).
        minutes = node.collect is not None and node.collect.slot == COLLECT_MINUTES
        unused = "99" if minutes else next(d for d in "7569318240#" if d not in used)
        yield keys(unused, "miss")
        yield keys("12345", "miss")
        # Free words are a place, where a node asks for one; elsewhere, not understood.
        takes_words = node.collect is not None and node.collect.slot == COLLECT_PLACE
        yield words("zzq wibble", "answer" if takes_words else "miss")
        yield Input("(silence)" if voice else "texts ''", Reply(), "miss")
        yield keys("*" if voice else "0", "menu")
        if not voice:
            yield words(content.phrases("kw_menu", lang)[0], "menu")

    # -- the invariants -------------------------------------------------------------------

    def _problem(
        self, invariant: int, message: str, path: Callable[[], tuple[str, ...]], *more: str
    ) -> None:
        """Report a problem once, with the first (so a shortest) path found to it."""
        if (invariant, message) in self._problems:
            return
        self._problems.add((invariant, message))
        inputs = (*path(), *more)
        self.report.problems.append(
            Problem(invariant, message, self.flow.id, self.region.code, self.store, inputs)
        )

    def _check_first_reply(self, events: list[Event], path: Callable[[], tuple[str, ...]]) -> None:
        if not events:
            return
        self._check_reply(events, path)
        if not self._names(events, "emergency"):
            self._problem(6, "the greeting does not say the emergency number", path)

    def _check_reply(self, events: list[Event], path: Callable[[], tuple[str, ...]]) -> None:
        """Invariant 1, and the SMS and hang-up halves of 6, for any reply."""
        if not events:
            return
        lang = next((e.lang for e in events if isinstance(e, Say | Ask)), "")
        rendered = self._render(events, lang)
        if rendered is None:
            self._problem(1, "a reply does not render as TwiML", path)
        if self.voice:
            if not isinstance(events[-1], Ask | Hangup):
                self._problem(1, "a voice reply ends without a question or a hang-up", path)
            if isinstance(events[-1], Hangup) and not self._names(events, "emergency"):
                self._problem(6, "a goodbye does not say the emergency number", path)
            return
        key = tuple(events)
        if key in self._sms_checked:
            return  # the same reply, already checked
        self._sms_checked.add(key)
        gsm = self.engine.content.languages[lang].gsm if lang else True
        text = sms_text(events, gsm)
        if segments(text) > SMS_MAX_SEGMENTS:
            self._problem(1, f"an SMS reply takes {segments(text)} segments: {text[:60]!r}", path)
        written = sms_text(events, WHATSAPP.gsm(gsm))
        if WHATSAPP.max_chars is not None and len(written) > WHATSAPP.max_chars:
            self._problem(1, f"a WhatsApp reply has {len(written)} characters: {text[:60]!r}", path)
        if any(isinstance(e, Ask) for e in events) and not self._names_emergency(text, lang):
            self._problem(6, f"an SMS menu does not name the emergency number: {text!r}", path)

    def _check_point(self, point: Point, path: Callable[[], tuple[str, ...]]) -> None:
        """Invariant 4: from here, misses end soon and the main menu is one step away."""
        state = point.state
        if state is None or state.ended or point.opted_out:
            return
        for way in self._alphabet(point):
            if way.kind == "miss" and not self._misses_end(point, way):
                self._problem(
                    4,
                    f"repeating {way.label} at {state.node!r} never ends",
                    path,
                    *[way.label] * MISS_RUN,
                )
        menus = [way for way in self._alphabet(point) if way.kind == "menu"]
        if menus and not any(self._reaches_home(point, way) for way in menus):
            self._problem(
                4,
                f"{menus[0].label} at {state.node!r} does not reach the main menu",
                path,
                menus[0].label,
            )

    def _reaches_home(self, point: Point, way: Input) -> bool:
        return all(
            t.engine_state is not None and t.engine_state.node == self.home
            for t in self._step(point, way)
        )

    def _misses_end(self, point: Point, way: Input) -> bool:
        for _ in range(MISS_RUN):
            turns = self._step(point, way)
            state = turns[0].engine_state
            if state is None or state.ended or state.node == self.home:
                return True
            point = turns[0].after
            if point.state is None:
                return True
        return False

    def _check_turn(
        self, point: Point, way: Input, turn: Turn, path: Callable[[], tuple[str, ...]]
    ) -> None:
        events = turn.events
        self._check_reply(events, lambda: (*path(), way.label))
        says = [e for e in events if isinstance(e, Say)]
        if way.kind == "crisis" and events:
            crisis = self.flow.nodes[self.flow.crisis].say[0] if self.flow.crisis else None
            if not says or says[0].key != crisis or not self._names(says[:1], "emergency"):
                self._problem(
                    2, f"a crisis phrase at {_at(point)} is not answered first", path, way.label
                )
        if way.kind == "self_harm" and events:
            node = self.flow.self_harm
            first = self.flow.nodes[node].say[0] if node else None
            if (
                not says
                or says[0].key != first
                or not self._names(says[:1], "emergency")
                or not self._names(says[:1], "crisis_line")
            ):
                message = (
                    f"words of self-harm at {_at(point)} are not answered first with the"
                    " emergency number and the crisis line"
                )
                self._problem(2, message, path, way.label)
        if way.kind in ("crisis", "self_harm") and point.state and not point.state.ended:
            asking = self.flow.nodes[point.state.node].on_crisis is not None
            after = turn.engine_state
            if asking and after is not None and after.node in self.intake:
                if dict(after.answers).get(AT_RISK[0]) != AT_RISK[1]:
                    message = f"danger said at {_at(point)} leaves the request not urgent"
                    self._problem(2, message, path, way.label)
        if way.kind == "at_risk" and not self._names(events, "emergency"):
            self._problem(
                3, f"an at-risk answer at {_at(point)} hears no emergency number", path, way.label
            )
        if self.store is Store.DEGRADED:
            self._check_degraded(point, way, turn, path)

    def _check_degraded(
        self, point: Point, way: Input, turn: Turn, path: Callable[[], tuple[str, ...]]
    ) -> None:
        """Invariant 5."""
        state, events = turn.engine_state, turn.events
        if state is not None and not state.ended:
            if not self.voice and state.node != self.flow.start:
                self._problem(
                    5, f"with the store down, a reply asks at {state.node!r}", path, way.label
                )
            if state.node in self.intake:
                message = f"with the store down, a call back is asked for at {state.node!r}"
                self._problem(5, message, path, way.label)
        said = {e.key for e in events if isinstance(e, Say)}
        if said & self.told_queued:
            self._problem(
                5, "with the store down, a caller is told they are on the list", path, way.label
            )
        normal = self._step(point, way, Store.NORMAL)
        asked = [t for t in normal if t.engine_state and t.engine_state.node in self.intake]
        called = [
            t for t in asked if t.engine_state and t.engine_state.node in self.callback_intake
        ]
        if called and events:
            if not self._names(events, "emergency") or not self._names(events, "crisis_line"):
                self._problem(
                    5,
                    "with the store down, a call back request is not answered with the"
                    " emergency number and another line",
                    path,
                    way.label,
                )
        if way.kind == "keyword" and normal and normal[0].events:
            first = [e.key for e in normal[0].events if isinstance(e, Say)][:1]
            if not asked and first and first != [e.key for e in events if isinstance(e, Say)][:1]:
                self._problem(
                    5, f"with the store down, {way.label} gets another answer", path, way.label
                )

    # -- helpers --------------------------------------------------------------------------

    def _names(self, events: Iterable[Event], name: str) -> bool:
        """True if something said gives the region's value (in the language it is said in)."""
        return any(self.engine.value(name, e.lang) in e.text for e in events if isinstance(e, Say))

    def _read(self, way: Input) -> Danger | None:
        if way not in self._danger:
            self._danger[way] = self.engine.danger(way.reply.text)
        return self._danger[way]

    def _render(self, events: list[Event], lang: str) -> str | None:
        if self.render is None:
            return ""
        key = tuple(events)
        if key not in self._rendered:
            gsm = self.engine.content.languages[lang].gsm if lang else True
            try:
                xml = self.render(self.region, self.flow.channel, events, gsm)
                if ET.fromstring(xml).tag != "Response":
                    raise ValueError("not a TwiML response")
                self._rendered[key] = xml
            except Exception:  # noqa: BLE001 - any failure to render is the finding
                self._rendered[key] = None
        return self._rendered[key]

    def _names_emergency(self, text: str, lang: str) -> bool:
        """True if the text says the number, or names a keyword (as written) that does."""
        if self.engine.value("emergency", lang) in text:
            return True
        written = set(text.replace(",", " ").replace(".", " ").split())
        for kw in self.flow.keywords:
            for phrase in self.engine.content.phrases(kw.words, lang):
                if " " not in phrase and phrase.isupper() and phrase in written:
                    if self._keyword_gives_emergency(phrase):
                        return True
        return False

    def _keyword_gives_emergency(self, word: str) -> bool:
        if word not in self._keyword_gives:
            turns = self._step(Point(None), Input(word, Reply(text=word)), Store.NORMAL)
            self._keyword_gives[word] = all(self._names(t.events, "emergency") for t in turns)
        return self._keyword_gives[word]


def _at(point: Point) -> str:
    return repr(point.state.node) if point.state else "the start"


def _fresh(point: Point) -> Point:
    return replace(point, state=None, opted_out=False, queued=False)


def _path(
    parents: Mapping[tuple[object, ...], tuple[tuple[object, ...] | None, str]],
    key: tuple[object, ...],
) -> tuple[str, ...]:
    labels: list[str] = []
    current: tuple[object, ...] | None = key
    while current is not None:
        parent, label = parents[current]
        if parent is not None:
            labels.append(label)
        current = parent
    return tuple(reversed(labels))


def _intake_nodes(flow: Flow, home: str, actions: Iterable[str] | None = None) -> frozenset[str]:
    """Waiting nodes from which an action (of `actions`, or any) can be reached without
    passing the main menu or a check of the store: the questions of a request. A menu
    that offers a call back reaches it only through that check, which answers plainly
    when the store is down."""
    checks = {n for n, node in flow.nodes.items() if node.branch and node.branch.on == STORE_FACT}
    found: set[str] = set()
    for node_id, node in flow.nodes.items():
        if not node.waits or node_id == home:
            continue
        seen, pending = {home, *checks}, [node_id]
        while pending:
            current = flow.nodes[pending.pop()]
            if current.action and (actions is None or current.action in actions):
                found.add(node_id)
                break
            for target in current.exits():
                if target not in seen:
                    seen.add(target)
                    pending.append(target)
    return frozenset(found)


def _told_queued(flow: Flow) -> frozenset[str]:
    """Messages that tell a caller their request is on the list (or their check-in
    booked): what the nodes an action's promising outcomes lead to say first."""
    told: set[str] = set()
    for node in flow.nodes.values():
        declared = DECLARED.get(node.action) if node.action else None
        promises = declared.promises if declared else frozenset()
        for result, target in node.outcomes:
            if result in promises:
                told.update(flow.nodes[target].say)
    return frozenset(told)
