"""Rendering TwiML: what the render cache may keep, and that it changes no answer."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from helpline.application.config import Settings
from helpline.conversation import twiml
from helpline.conversation.engine import Ask, Hangup, Say
from helpline.conversation.lint import load_flows
from helpline.conversation.regions import load_region

REGION = load_region(Settings().flows_dir, "GB")
MENU = (Say("voice.menu", "For overdose safety, press 1.", "en"), Ask("en", ("overdose",), 1))


def action_of(xml: str) -> str | None:
    gather = ET.fromstring(xml).find("Gather")
    return None if gather is None else gather.get("action")


def test_each_call_gets_its_own_action_url_from_one_cached_rendering():
    twiml._voice_cached.cache_clear()
    first = twiml.voice(MENU, "/twilio/voice/step?s=first&r=0", REGION)
    second = twiml.voice(MENU, '/twilio/voice/step?s=sec<o>nd"&r=1', REGION)

    assert action_of(first) == "/twilio/voice/step?s=first&r=0"
    assert action_of(second) == '/twilio/voice/step?s=sec<o>nd"&r=1'  # escaped, read back
    assert first.replace("s=first&amp;r=0", "") == second.replace(
        "s=sec&lt;o&gt;nd&quot;&amp;r=1", ""
    )
    info = twiml._voice_cached.cache_info()
    assert (info.currsize, info.hits) == (1, 1)  # no state token in the cache key


def test_what_is_said_about_a_caller_is_rendered_but_never_kept():
    twiml._voice_cached.cache_clear()
    twiml._sms_cached.cache_clear()
    about_them = Say("voice.confirm", "We'll call the number ending 1 2 3.", "en", personal=True)

    spoken = twiml.voice((about_them, Hangup()), "/twilio/voice/step?s=x", REGION)
    texted = twiml.sms((about_them,), gsm=True)

    assert "ending 1 2 3" in spoken and "ending 1 2 3" in texted
    assert twiml._voice_cached.cache_info().currsize == 0
    assert twiml._sms_cached.cache_info().currsize == 0


def test_a_message_is_personal_when_it_fills_in_a_fact_about_the_call_not_a_region_value():
    content = load_flows(Settings().flows_dir).content
    messages = content.messages["en"]
    by_number = [key for key, text in messages.items() if "{number_end}" in text]
    by_region_only = [
        key
        for key, text in messages.items()
        if "{emergency}" in text
        and "{number_end}" not in text
        and "{position}" not in text
        and "{minutes}" not in text
        and "{time}" not in text
        and "{place}" not in text
    ]
    assert by_number and by_region_only
    assert all(content.personal(key, "en") for key in by_number)
    assert not any(content.personal(key, "en") for key in by_region_only)
