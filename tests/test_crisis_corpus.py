"""The crisis corpus: how people say someone is in danger now, and what they say otherwise.

tests/corpus/ holds plain messages, one a line: crisis_*.txt (an overdose happening
now), self_harm_*.txt (suicide and self-harm) and ordinary_*.txt (questions, past
events, treatment, greetings, keywords). Each message is said on a call and texted,
from the main menu, through the real engines, in the language of its file.

Targets: at least 98 % of each danger corpus gets the right reply first on each
channel. At most 2 % of ordinary messages get either reply first: about one message in
fifty sends someone to the emergency advice before what they asked, which costs them one
reply; a missed overdose can cost a life, so the line leans towards the emergency.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpline.application.config import Settings
from helpline.conversation.engine import Engine, Reply, Say, State
from helpline.conversation.lint import load_flows
from helpline.conversation.model import Medium
from helpline.conversation.texting import answer_text

CORPUS = Path(__file__).parent / "corpus"
LIBRARY = load_flows(Settings().flows_dir)
ENGINES = {channel: LIBRARY.engine(channel, "GB") for channel in Medium}
FOUND_AT_LEAST = 0.98
FALSE_ALARMS_AT_MOST = 0.02


def corpus(stem: str) -> list[str]:
    """The messages of one corpus file; '#' starts a comment line."""
    lines = (CORPUS / f"{stem}.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def first_said(engine: Engine, lang: str, message: str) -> Say:
    """What the caller hears or reads first after saying the message at the main menu
    (nothing, for an opt-out word)."""
    if engine.flow.channel is Medium.VOICE:
        state, _ = engine.start(lang)
        _, events = engine.resume(state, Reply(text=message), context={"caller_id": "known"})
    else:
        menu = State(flow=engine.flow.id, node=engine.home, lang=lang)
        events = answer_text(engine, menu, False, Reply(text=message), context={}).events
    return next((e for e in events if isinstance(e, Say)), Say("", "", lang))


def reply_first(engine: Engine, node: str | None) -> str:
    assert node is not None
    return engine.flow.nodes[node].say[0]


def rate(hits: list[str], messages: list[str]) -> str:
    return f"{len(hits) / len(messages):.1%} ({len(hits)} of {len(messages)})"


@pytest.mark.parametrize("channel", list(Medium), ids=[c.value for c in Medium])
@pytest.mark.parametrize(
    ("stem", "lang", "danger"),
    [
        ("crisis_en", "en", "crisis"),
        ("crisis_es", "es", "crisis"),
        ("self_harm_en", "en", "self_harm"),
        ("self_harm_es", "es", "self_harm"),
    ],
)
def test_danger_now_gets_its_reply_first(channel, stem, lang, danger):
    engine = ENGINES[channel]
    wanted = reply_first(engine, getattr(engine.flow, danger))
    emergency = engine.value("emergency", lang)
    messages = corpus(stem)

    missed = []
    for message in messages:
        said = first_said(engine, lang, message)
        if said.key != wanted or emergency not in said.text:
            missed.append(message)
        elif danger == "self_harm" and engine.value("crisis_line", lang) not in said.text:
            missed.append(message)

    found = [m for m in messages if m not in missed]
    assert len(found) >= FOUND_AT_LEAST * len(messages), (
        f"{channel.value} {stem}: {rate(found, messages)} answered first; missed {missed}"
    )


@pytest.mark.parametrize("channel", list(Medium), ids=[c.value for c in Medium])
@pytest.mark.parametrize(("stem", "lang"), [("ordinary_en", "en"), ("ordinary_es", "es")])
def test_ordinary_messages_do_not_get_a_danger_reply(channel, stem, lang):
    engine = ENGINES[channel]
    alarms = {reply_first(engine, engine.flow.crisis), reply_first(engine, engine.flow.self_harm)}
    messages = corpus(stem)

    raised = [m for m in messages if first_said(engine, lang, m).key in alarms]

    assert len(raised) <= FALSE_ALARMS_AT_MOST * len(messages), (
        f"{channel.value} {stem}: false alarms {rate(raised, messages)}: {raised}"
    )


def test_the_corpus_is_as_big_as_promised():
    crisis = [m for stem in ("crisis_en", "crisis_es") for m in corpus(stem)]
    self_harm = [m for stem in ("self_harm_en", "self_harm_es") for m in corpus(stem)]
    ordinary = [m for stem in ("ordinary_en", "ordinary_es") for m in corpus(stem)]

    assert len(crisis) >= 150 and len(self_harm) >= 50 and len(ordinary) >= 300
