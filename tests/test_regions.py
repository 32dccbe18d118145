"""Regions are files: each says the right thing per language, and the linter holds them to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from helpline import create_app
from helpline.application.config import Settings, load_settings
from helpline.conversation.engine import Reply, Say
from helpline.conversation.lint import check_flows, load_flows
from helpline.conversation.model import Medium
from helpline.conversation.regions import load_region, render
from helpline.infrastructure.errors import ConfigError
from tests.factories import Call, edit, make_settings, text

FLOWS = Settings().flows_dir
LIBRARY = load_flows(FLOWS)


@pytest.fixture
def us_app(tmp_path: Path, redis_server: str, redis: object) -> Flask:
    return create_app(
        make_settings(tmp_path / "var", redis_server, region=load_region(FLOWS, "US"))
    )


# -- choosing a region ------------------------------------------------------------------


def test_helpline_region_picks_the_file_and_gb_is_the_default(tmp_path):
    default = load_settings({"HELPLINE_DATA_DIR": str(tmp_path)})
    us = load_settings({"HELPLINE_REGION": "us", "HELPLINE_DATA_DIR": str(tmp_path)})

    assert default.region.code == "GB"
    assert default.region.variables("en")["emergency"] == "999"
    assert us.region.code == "US"
    assert us.region.variables("es")["emergency"] == "911"
    assert us.region.voice_locales == {"en": "en-US", "es": "es-US"}
    assert default.region.voice_locales == {"en": "en-GB", "es": "es-ES"}


def test_an_unknown_region_is_refused_with_the_files_there_are(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_settings({"HELPLINE_REGION": "FR", "HELPLINE_DATA_DIR": str(tmp_path)})

    assert "HELPLINE_REGION 'FR' is not known" in str(raised.value)
    assert "region files found: gb.yaml, us.yaml" in str(raised.value)


def test_a_region_added_as_a_file_is_served(flows, tmp_path):
    us = (flows / "regions" / "us.yaml").read_text(encoding="utf-8")
    (flows / "regions" / "ca.yaml").write_text(
        us.replace("code: US", "code: CA").replace("America/New_York", "America/Toronto"),
        encoding="utf-8",
    )

    settings = load_settings(
        {
            "HELPLINE_REGION": "CA",
            "HELPLINE_FLOWS_DIR": str(flows),
            "HELPLINE_DATA_DIR": str(tmp_path),
        }
    )

    assert check_flows(flows) == []
    assert settings.region.code == "CA"
    assert settings.zone == "America/Toronto"
    assert set(load_flows(flows).regions) == {"CA", "GB", "US"}


# -- the linter holds every region to every language -------------------------------------


def test_a_value_missing_in_one_language_is_an_error_not_a_fall_back(flows):
    edit(
        flows / "regions" / "us.yaml",
        '      crisis_line: "la línea',
        '      crisis_lines: "la línea',
    )

    problems = check_flows(flows)

    assert "regions/us.yaml: es: value 'crisis_line' is missing" in problems
    assert "regions/gb.yaml: es: value 'crisis_lines' is missing" in problems


def test_a_language_missing_from_a_region_is_an_error(flows):
    text = (flows / "regions" / "gb.yaml").read_text(encoding="utf-8")
    (flows / "regions" / "gb.yaml").write_text(text[: text.index("  es:\n")], encoding="utf-8")

    assert "regions/gb.yaml: language 'es' is missing (every value and voice)" in check_flows(flows)


def test_a_voice_that_is_not_a_locale_is_an_error(flows):
    edit(flows / "regions" / "us.yaml", "voice: es-US", "voice: Spanish")
    assert "regions/us.yaml: es: voice 'Spanish' must be a locale such as en-GB" in check_flows(
        flows
    )


def test_a_placeholder_no_region_gives_is_an_error(flows):
    edit(flows / "content" / "en.yaml", "Call {emergency} now.", "Call {emergency_number} now.")

    problems = check_flows(flows)

    assert any("uses unknown {emergency_number}: no region file gives it" in p for p in problems)


def test_a_phone_number_must_be_marked_so_a_call_spells_it(flows):
    edit(flows / "regions" / "gb.yaml", "on [116 123]", "on 116 123")

    problems = check_flows(flows)

    assert any(
        "regions/gb.yaml: en: value 'crisis_line' has 116 unmarked" in p for p in problems
    ), problems


def test_no_region_files_is_an_error(flows):
    for path in (flows / "regions").glob("*.yaml"):
        path.unlink()

    assert any("no region files" in p for p in check_flows(flows))


# -- what callers hear and read ---------------------------------------------------------


def test_phone_numbers_are_spelled_by_voice_and_other_numbers_are_not():
    gb = LIBRARY.regions["GB"]

    spoken = gb.variables("en", spoken=True)["treatment_line"]
    written = gb.variables("en")["treatment_line"]

    assert spoken == "FRANK on 0 3 0 0, 1 2 3, 6 6 0 0. It is open 24 hours a day"
    assert written == "FRANK on 0300 123 6600. It is open 24 hours a day"
    assert "2009" in gb.variables("en", spoken=True)["not_alone_figure"]
    assert render("Call [1-800-662-4357]", spoken=True) == "Call 1, 8 0 0, 6 6 2, 4 3 5 7"


@pytest.mark.parametrize(
    ("region", "lang", "words"),
    [
        ("GB", "en", "press the hash key"),
        ("US", "en", "press the pound key"),
        ("GB", "es", "la tecla almohadilla"),
        ("US", "es", "la tecla numeral"),
    ],
)
def test_the_keypad_is_named_as_callers_in_the_region_know_it(region, lang, words):
    engine = LIBRARY.engine(Medium.VOICE, region)
    state = engine.start(lang)[0]
    # A call back; not at risk; no break; no caller ID, so a number is keyed in.
    for digits in ("4", "2", "2"):
        state, events = engine.resume(state, Reply(digits=digits))

    said = " ".join(e.text for e in events if isinstance(e, Say))
    assert state.node == "callback_key_number"
    assert words in said
    others = {"hash key", "pound key", "almohadilla", "numeral"} - {words.split(" ", 2)[-1]}
    assert not [word for word in others if word in said]


def test_a_spanish_caller_in_the_us_hears_the_crisis_line_in_spanish(us_app):
    call = Call(us_app.test_client())
    call.press("9")
    for _ in range(3):  # nothing heard, three times: the safe goodbye
        step = call.press("")

    assert step.hangup
    assert "la línea 9 8 8 (en español: llama y marca 2, o envía AYUDA)" in step.text
    assert "crisis line" not in step.text
    assert set(step.locales) == {"es-US"}


def test_a_spanish_texter_in_the_us_reads_the_crisis_line_in_spanish(us_app):
    client = us_app.test_client()
    text(client, "ESPAÑOL")

    reply = text(client, "AYUDA")

    assert "Para hablar ya: la linea 988 (en español: llama y marca 2, o envia AYUDA)." in reply
    assert "crisis line" not in reply
