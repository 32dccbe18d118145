"""Channels: what each one makes of an address, its length rules, and its settings."""

from __future__ import annotations

import re

import pytest

from helpline.application.config import load_settings
from helpline.conversation.channels import SMS, VOICE, WHATSAPP, channel_named, texting_channel
from helpline.conversation.engine import Say
from helpline.conversation.twiml import sms, split_message
from helpline.infrastructure.errors import ConfigError
from tests.factories import sms_replies


@pytest.mark.parametrize(
    ("address", "channel", "number"),
    [
        ("+12025550107", SMS, "+12025550107"),
        ("+447700900123", SMS, None),  # a drama number: not one anyone could call
        ("whatsapp:+12025550107", WHATSAPP, "+12025550107"),
        ("WhatsApp:+12025550107", WHATSAPP, "+12025550107"),
        ("whatsapp:12345", WHATSAPP, None),  # not a number anyone could call back
        ("80800", SMS, None),  # a short code
        ("messenger:1234567890", SMS, None),  # nothing we could call back
    ],
)
def test_a_text_is_placed_on_its_channel_with_the_number_behind_it(address, channel, number):
    assert texting_channel(address) is channel
    assert channel.number(address, "GB") == number


def test_a_whatsapp_address_is_never_taken_for_a_phone_number():
    assert SMS.number("whatsapp:+12025550107", "GB") is None
    assert VOICE.number("whatsapp:+12025550107", "GB") is None
    assert WHATSAPP.number("+12025550107", "GB") is None
    assert WHATSAPP.address("+12025550107") == "whatsapp:+12025550107"


def test_records_name_their_channel_and_an_unknown_name_is_read_as_a_text():
    assert [channel_named(name) for name in ("voice", "sms", "whatsapp")] == [
        VOICE,
        SMS,
        WHATSAPP,
    ]
    assert channel_named("carrier-pigeon") is SMS


def test_only_sms_folds_a_gsm_language_to_gsm_spellings():
    assert SMS.gsm(True) and not SMS.gsm(False)
    assert not WHATSAPP.gsm(True)


def test_a_long_whatsapp_reply_goes_as_several_messages_cut_between_words():
    line = "Naloxone reverses an opioid overdose for a while. "
    text = (line * 40).strip()  # about 2,000 characters
    parts = split_message(text, WHATSAPP.max_chars)
    assert len(parts) == 2
    assert all(len(part) <= 1600 for part in parts)
    assert " ".join(parts) == text
    assert parts[0].endswith("while.")

    rendered = sms_replies(sms([Say("long", text, "en")], gsm=False, max_chars=WHATSAPP.max_chars))
    assert rendered == parts
    assert sms_replies(sms([Say("long", text, "en")], gsm=False)) == [text]  # SMS: one message


def test_whatsapp_sender_defaults_to_the_helpline_number_on_whatsapp():
    settings = load_settings({"HELPLINE_PHONE_NUMBER": "+442079460123"})
    assert settings.sender(WHATSAPP) == "whatsapp:+442079460123"
    assert settings.sender(SMS) == settings.sender(VOICE) == "+442079460123"
    assert settings.whatsapp_template_sid is None

    own = load_settings(
        {
            "HELPLINE_WHATSAPP_FROM": "whatsapp:+14155238886",
            "HELPLINE_WHATSAPP_TEMPLATE_SID": "HX" + "0f" * 16,
        }
    )
    assert own.sender(WHATSAPP) == "whatsapp:+14155238886"
    assert own.whatsapp_template_sid == "HX" + "0f" * 16


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("HELPLINE_WHATSAPP_FROM", "+14155238886", "must be 'whatsapp:' and the sender's number"),
        ("HELPLINE_WHATSAPP_FROM", "whatsapp:4155238886", "such as whatsapp:+442079460123"),
        ("HELPLINE_WHATSAPP_TEMPLATE_SID", "MG" + "0" * 32, "must be a Content SID"),
        ("HELPLINE_WHATSAPP_TEMPLATE_SID", "HX123", "'HX' and 32 hex digits"),
    ],
)
def test_whatsapp_settings_say_what_is_wrong(name, value, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_settings({name: value})
