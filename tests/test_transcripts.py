"""Golden transcripts: every exit of every node, in every language, through the webhooks.

Run `pytest --update-transcripts` to rewrite them after a deliberate content change,
then review the diff like any other change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpline.application.config import Settings
from helpline.conversation.engine import Engine
from helpline.conversation.lint import load_flows
from helpline.conversation.model import Medium
from tests import transcripts
from tests.factories import HELPLINE_NUMBER, callback_number, sign

GOLDEN = Path(__file__).parent / "golden"
LIBRARY = load_flows(Settings().flows_dir)
# 2027-01-15 08:00 UTC: a check-in asked for then is booked for the same time in every run.
FROZEN_CLOCK = 1_800_000_000.0


def _engine(channel: Medium) -> Engine:
    return LIBRARY.engine(channel, "GB")


CASES = [
    (channel, lang, node_id)
    for channel in Medium
    for lang in LIBRARY.content.languages
    for node_id in transcripts.walks(LIBRARY.flow_for(channel), _engine(channel), lang)
]


def _transcript(client, channel: Medium, lang: str, node_id: str) -> str:  # type: ignore[no-untyped-def]
    def post(path: str, form: dict[str, str]) -> str:
        response = client.post(
            path, data=form, headers={"X-Twilio-Signature": sign("http://localhost" + path, form)}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True)

    engine = _engine(channel)
    sections = []
    for index, walk in enumerate(transcripts.walks(engine.flow, engine, lang)[node_id]):
        # A number and a call of its own per walk (Redis is flushed per test), so each
        # starts afresh, as a new caller would.
        sender = callback_number(index)
        if channel is Medium.VOICE:
            base = {"CallSid": f"CA{index:032d}", "From": sender, "To": HELPLINE_NUMBER}
            lines = transcripts.play_voice(post, walk, base)
        else:
            base = {"From": sender, "To": HELPLINE_NUMBER}
            lines = transcripts.play_sms(post, walk, base)
        inputs = ", ".join(step.describe() for step in walk) or "(none)"
        sections.append(f"== {inputs}\n" + "\n".join(lines))
    header = f"# {channel.value} / {lang} / {node_id}: the way here, then every way out\n"
    return header + "\n\n".join(sections) + "\n"


@pytest.mark.parametrize(
    ("channel", "lang", "node_id"),
    CASES,
    ids=[f"{channel.value}-{lang}-{node}" for channel, lang, node in CASES],
)
def test_transcript_matches_golden(client, alex, request, channel, lang, node_id):
    # A counsellor on duty (a check-in can be offered), and a clock that says the same
    # time in every run (the time a check-in call is booked for).
    services = client.application.extensions["helpline"]
    services.counsellors.set_on_duty(alex.username, True)
    services.checkins.clock = lambda: FROZEN_CLOCK
    path = GOLDEN / channel.value / lang / f"{node_id}.txt"
    actual = _transcript(client, channel, lang, node_id)
    if request.config.getoption("--update-transcripts"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"no golden transcript {path}; run pytest --update-transcripts"
    assert actual == path.read_text(encoding="utf-8")


# Resting nodes a walk through working webhooks never reaches, and where they are tested.
ELSEWHERE = {
    # Redis down while queueing: tests/test_intake.py and tests/test_safety.py; a blocked
    # caller: tests/test_intake.py; check-ins with nobody on duty, a hidden number, or
    # Redis down: tests/test_checkins.py. The queue failing after a returning requester's
    # text was read: tests/test_intake.py.
    Medium.VOICE: {
        "callback_failed",
        "callback_blocked",
        "callback_again_failed",
        "callback_urgent_failed",
        "checkin_failed",
        "checkin_no_number",
        "checkin_unavailable",
    },
    # Also a caller ID that cannot be called back: tests/test_safety.py; and check-ins
    # with nobody on duty, or Redis down: tests/test_checkins.py, tests/test_failsafe.py.
    Medium.SMS: {
        "callback_failed",
        "callback_blocked",
        "callback_again_failed",
        "callback_urgent_failed",
        "callback_key_number",
        "checkin_unavailable",
        "checkin_failed",
        "checkin_no_number",
        "checkin_where_none",
        "checkin_where_failed",
    },
}


def test_golden_transcripts_cover_every_node_in_every_language():
    for channel in Medium:
        flow = LIBRARY.flow_for(channel)
        for lang in LIBRARY.content.languages:
            written = {p.stem for p in (GOLDEN / channel.value / lang).glob("*.txt")}
            # Nodes that only pass through ("greeting") appear inside the others.
            resting = {node_id for node_id, node in flow.nodes.items() if node.waits or node.end}
            assert written == resting - ELSEWHERE[channel], (channel, lang, resting ^ written)
