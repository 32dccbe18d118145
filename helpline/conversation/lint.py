"""Load and validate every flow and its content: the loader and the linter are one."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from helpline.conversation.channels import WHATSAPP
from helpline.conversation.engine import Engine, Say, language_offer_key
from helpline.conversation.gsm import as_sent, non_gsm_characters, segments
from helpline.conversation.model import (
    PLACEHOLDER,
    RUNTIME_PLACEHOLDERS,
    STORE_DOWN,
    STORE_FACT,
    Content,
    Flow,
    Medium,
    parse_content,
    parse_flow,
    syntax_problems,
)
from helpline.conversation.regions import Region, load_regions
from helpline.infrastructure.constants import SMS_MAX_SEGMENTS
from helpline.infrastructure.errors import FlowError


@dataclass(frozen=True)
class Library:
    """Every flow, by id, sharing one body of content, and every region it can serve."""

    content: Content
    flows: dict[str, Flow]
    regions: dict[str, Region]

    def flow_for(self, medium: Medium) -> Flow:
        return next(f for f in self.flows.values() if f.channel is medium)

    def engine(self, medium: Medium, region: Region | str) -> Engine:
        """Return the engine that runs this medium's flow for a region's callers."""
        if isinstance(region, str):
            region = self.regions[region]
        return Engine(self.flow_for(medium), region_variables(region, medium), region.code)


def region_variables(region: Region, medium: Medium) -> dict[str, dict[str, str]]:
    """Return a region's placeholder values by language, as the medium gives them."""
    spoken = medium is Medium.VOICE
    return {lang: region.variables(lang, spoken=spoken) for lang in region.languages}


# Texts the workers send on their own, outside any conversation.
OUTBOUND_SMS = (
    "sms.confirm_queued",
    "sms.confirm_soon",
    "sms.missed_call",
    "sms.expired",
    "sms.counsellor_alert",
    "sms.login_attempts",
    "sms.survey",
    "sms.survey_thanks",
)
DAY_KEYS = ("day.today", "day.tomorrow", *(f"day.{n}" for n in range(7)))
# Messages the service says outside any flow: the fail-safe answers, the workers' texts,
# and the words that say when call backs resume.
# What a counsellor hears when a bridged call connects (or cannot).
BRIDGE_MESSAGES = (
    "bridge.greeting",
    "bridge.not_accepted",
    "bridge.not_yours",
    "bridge.ended",
    "bridge.failed",
)
REQUIRED_MESSAGES = (
    "voice.failsafe",
    "sms.failsafe",
    *OUTBOUND_SMS,
    "hours.resume",
    *DAY_KEYS,
    *BRIDGE_MESSAGES,
)
# Facts the web layer gives branches, each with the values that change the route.
FACTS = {
    "caller_id": "known",
    "place": "known",
    "hours": "closed",
    "wait": "known",
    "queued": "open",
    STORE_FACT: STORE_DOWN,
}


def check_flows(flows_dir: Path) -> list[str]:
    """Return every problem found in flows_dir; an empty list means it is fit to serve."""
    return inspect_flows(flows_dir)[0]


def inspect_flows(flows_dir: Path) -> tuple[list[str], Library]:
    """Return every problem found in flows_dir, and the flows as loaded (fit to serve
    only if there are none)."""
    problems: list[str] = []
    library = _load(flows_dir, problems)
    return problems, library


def load_flows(flows_dir: Path) -> Library:
    """Load flows_dir, or raise FlowError listing every problem."""
    problems: list[str] = []
    library = _load(flows_dir, problems)
    if problems:
        raise FlowError(problems)
    return library


def shared_library(flows_dir: Path) -> Library:
    """Return flows_dir loaded and checked, once per process while its files are unchanged.

    A Library is never changed after loading, so every app and worker context in a process
    shares one (loading and checking takes about 0.2 s). Editing a file loads it afresh.
    """
    return _shared(flows_dir.resolve(), fingerprint(flows_dir))


@functools.lru_cache(maxsize=8)
def _shared(flows_dir: Path, fingerprint: tuple[tuple[str, int, int], ...]) -> Library:
    return load_flows(flows_dir)


def fingerprint(flows_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of every file under flows_dir."""
    found = []
    for path in sorted(flows_dir.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found.append((str(path.relative_to(flows_dir)), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def _load(flows_dir: Path, problems: list[str]) -> Library:
    library = _load_files(flows_dir, problems)
    broken = syntax_problems(flows_dir)
    if broken:
        # Every other problem would follow from what could not be read: say only that.
        problems[:] = broken
    return library


def _load_files(flows_dir: Path, problems: list[str]) -> Library:
    content = parse_content(flows_dir / "content", problems)
    by_code = load_regions(flows_dir, problems)
    _check_regions(content, by_code, problems)
    regions = list(by_code.values())
    flows: dict[str, Flow] = {}
    for path in sorted(flows_dir.glob("*.yaml")):
        flow = parse_flow(path, content, problems)
        if flow is None:
            continue
        if flow.id in flows:
            problems.append(f"{path.name}: flow id {flow.id!r} is used twice")
        flows[flow.id] = flow
    for channel in Medium:
        if sum(f.channel is channel for f in flows.values()) != 1:
            problems.append(f"{flows_dir}: needs exactly one {channel.value} flow")
    for flow in flows.values():
        if any(n.offer_languages for n in flow.nodes.values()):
            key = language_offer_key(flow)
            for code, messages in content.messages.items():
                if key not in messages:
                    problems.append(f"content/{code}.yaml: message {key!r} is missing")
    for code, messages in content.messages.items():
        for key in REQUIRED_MESSAGES:
            if key not in messages:
                problems.append(f"content/{code}.yaml: message {key!r} is missing")
    if not problems:
        _check_failsafe_sizes(content, regions, problems)
        _check_outbound_sizes(content, regions, problems)
        for flow in flows.values():
            if flow.channel is Medium.SMS:
                _check_sms_sizes(flow, regions, problems)
    return Library(content=content, flows=flows, regions=by_code)


def _check_regions(content: Content, regions: dict[str, Region], problems: list[str]) -> None:
    """Every region speaks every content language, with every value the content uses.

    A value missing in one language is an error, never a fall back to another language.
    """
    used: dict[str, str] = {}  # placeholder -> the first message that uses it
    for code, messages in content.messages.items():
        for key, text in messages.items():
            for name in PLACEHOLDER.findall(text):
                used.setdefault(name, f"content/{code}.yaml: message {key!r}")
    defined = {
        name
        for region in regions.values()
        for lang in region.languages.values()
        for name in lang.values
    }
    for name, where in sorted(used.items()):
        if name not in defined and name not in RUNTIME_PLACEHOLDERS:
            problems.append(f"{where} uses unknown {{{name}}}: no region file gives it")
    for name in sorted(defined & RUNTIME_PLACEHOLDERS):
        problems.append(f"regions: {{{name}}} is filled in by the service; a region cannot set it")
    needed = (defined | used.keys()) - RUNTIME_PLACEHOLDERS
    for region in regions.values():
        where = f"regions/{region.code.lower()}.yaml"
        for code in content.languages:
            if code not in region.languages:
                problems.append(f"{where}: language {code!r} is missing (every value and voice)")
                continue
            for name in sorted(needed - region.languages[code].values.keys()):
                problems.append(f"{where}: {code}: value {name!r} is missing")
        for code in sorted(region.languages.keys() - content.languages.keys()):
            problems.append(f"{where}: language {code!r} has no content/{code}.yaml")


def sms_text(events: Iterable[object], gsm: bool) -> str:
    """Join what a step says into the one SMS that carries it."""
    return as_sent("\n".join(e.text for e in events if isinstance(e, Say)), gsm)


def _check_failsafe_sizes(content: Content, regions: list[Region], problems: list[str]) -> None:
    for region in regions:
        for lang in content.languages.values():
            text = content.text("sms.failsafe", lang.code, region.variables(lang.code))
            _check_sms_text(text, lang.gsm, f"{lang.code}: sms.failsafe ({region.code})", problems)


def longest_context(content: Content, lang: str) -> dict[str, str]:
    """Return the longest values the web layer can put in a message, for size checks."""
    resumes = [
        content.text("hours.resume", lang, {"day": content.text(day, lang, {}), "time": "10:30"})
        for day in DAY_KEYS
    ]
    return {
        "number_end": "123",
        "position": "1000",
        "minutes": "240",
        "resume": max(resumes, key=len),
    }


def fact_combinations() -> list[dict[str, str]]:
    """Return every combination of the branch facts, so size checks see every route."""
    combos: list[dict[str, str]] = [{}]
    for name, value in FACTS.items():
        combos = [c for combo in combos for c in (combo, {**combo, name: value})]
    return combos


def _check_outbound_sizes(content: Content, regions: list[Region], problems: list[str]) -> None:
    for region in regions:
        for lang in content.languages.values():
            values = {**region.variables(lang.code), **longest_context(content, lang.code)}
            for key in OUTBOUND_SMS:
                text = content.text(key, lang.code, values)
                _check_sms_text(text, lang.gsm, f"{lang.code}: {key} ({region.code})", problems)


def _check_sms_text(text: str, gsm: bool, where: str, problems: list[str]) -> None:
    """A text must fit both ways it is sent: by SMS (folded to GSM-7 spellings in a GSM-7
    language, in segments) and by WhatsApp (as written, in characters)."""
    written = as_sent(text, WHATSAPP.gsm(gsm))
    if WHATSAPP.max_chars is not None and len(written) > WHATSAPP.max_chars:
        problems.append(f"{where}: {len(written)} characters, over WhatsApp's {WHATSAPP.max_chars}")
    text = as_sent(text, gsm)
    count = segments(text)
    if count > SMS_MAX_SEGMENTS:
        problems.append(
            f"{where}: {count} SMS segments, over {SMS_MAX_SEGMENTS} ({len(text)} characters)"
        )
    bad = non_gsm_characters(text) if gsm else []
    if bad:
        problems.append(f"{where}: {''.join(bad)!r} would force UCS-2 encoding")


def _check_sms_sizes(flow: Flow, regions: list[Region], problems: list[str]) -> None:
    """Every reply the flow can send must fit the segment budget, in every language/region."""
    for region in regions:
        engine = Engine(flow, region_variables(region, Medium.SMS))
        for lang in flow.content.languages.values():
            if flow.other:
                # Unrecognised text gets the same reply from every node: check it once.
                events = [
                    engine._say(flow.reprompt, lang.code),
                    *engine.enter(flow.other, lang.code)[1],
                ]
                where = f"{flow.id}: {lang.code}: sending 'other' to {flow.other!r} ({region.code})"
                _check_sms_text(sms_text(events, False), lang.gsm, where, problems)
            longest = longest_context(flow.content, lang.code)
            for node_id, node in flow.nodes.items():
                # Branches route on facts: check the reply along every route.
                arrivals = {
                    sms_text(engine.enter(node_id, lang.code, {}, {**longest, **facts})[1], False)
                    for facts in fact_combinations()
                }
                replies = {f"arriving at (route {n})": text for n, text in enumerate(arrivals)}
                if node.waits:
                    state = engine.enter(node_id, lang.code, {}, longest)[0]
                    replies["reprompting at"] = sms_text(engine.reprompt(state, longest)[1], False)
                for what, text in replies.items():
                    where = f"{flow.id}: {lang.code}: {what} {node_id!r} ({region.code})"
                    _check_sms_text(text, lang.gsm, where, problems)
