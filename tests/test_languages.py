"""A language is data: one added to a flows directory as the README says is served."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from flask import Flask

from helpline import create_app
from helpline.application.config import load_settings
from helpline.conversation.lint import check_flows
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    HELPLINE_NUMBER,
    SECRET_KEY,
    Call,
    text,
)

# What a French file says on the paths this test plays; the rest stays as copied.
FRENCH_LANGUAGE = """\
language:
  name: Français
  gsm: true
  digit: "7"
  words: lang_fr
  numbers:
    "0": [zéro]
    "1": [un, une]
    "2": [deux]
    "3": [trois]
    "4": [quatre]
    "5": [cinq]
    "6": [six]
    "7": [sept]
    "8": [huit]
    "9": [neuf]
    "*": [étoile]
"""
FRENCH_MESSAGES = {
    "voice.welcome": "Bonjour, et merci d'appeler la ligne d'aide. Cette ligne est confidentielle.",
    "voice.safety_first": (
        "D'abord, si quelqu'un a fait une overdose ou ne respire plus, "
        "raccrochez et appelez le {emergency}."
    ),
    "voice.menu": (
        "Pour la prévention des overdoses, appuyez sur 1. Pour le traitement, appuyez sur 2. "
        "Pour un proche, appuyez sur 3. Pour être rappelé, appuyez sur 4."
    ),
    "voice.recovery_menu": (
        "Dépendance et traitement. Pour la dépendance, appuyez sur 1. "
        "Pour le traitement, appuyez sur 2. Pour le menu, appuyez sur {star_key}."
    ),
    "voice.language_offer": "Pour le français, appuyez sur 7.",
    "sms.menu": (
        "Ligne d'aide confidentielle. Répondez 1 Overdose, 2 Traitement, 3 Un proche, "
        "4 Être rappelé. En danger ? Appelez le {emergency}."
    ),
    "sms.recovery": (
        "La dépendance est un problème de santé, pas une faiblesse. Vous n'êtes pas seul."
    ),
    "sms.language_offer": "En français : répondez FRANCAIS.",
}


def add_french(flows: Path) -> None:
    """Add French to a flows directory, step by step as the README tells an operator."""
    # 1. Copy en.yaml to fr.yaml; give it its own language block (name, key, the words that
    #    name it, the number words) and translate every message and words list (here, the
    #    messages on the paths played below: the rest is left as copied).
    french = yaml.safe_load((flows / "content" / "en.yaml").read_text(encoding="utf-8"))
    french["language"] = yaml.safe_load(FRENCH_LANGUAGE)["language"]
    del french["words"]["lang_en"]
    french["words"]["lang_fr"] = ["Français", "French"]
    french["messages"].update(FRENCH_MESSAGES)
    (flows / "content" / "fr.yaml").write_text(
        yaml.safe_dump(french, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    # 2. Add it to every region file: its voice locale and every value.
    for path in sorted((flows / "regions").glob("*.yaml")):
        region = yaml.safe_load(path.read_text(encoding="utf-8"))
        region["languages"]["fr"] = {
            "voice": "fr-FR",
            "values": region["languages"]["en"]["values"],
        }
        path.write_text(
            yaml.safe_dump(region, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )


@pytest.fixture
def french_app(flows: Path, tmp_path: Path, redis_server: str, redis: object) -> Flask:
    add_french(flows)
    assert check_flows(flows) == []
    settings = load_settings(
        {
            "HELPLINE_FLOWS_DIR": str(flows),
            "HELPLINE_DATA_DIR": str(tmp_path / "var"),
            "REDIS_URL": redis_server,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SECRET_KEY": SECRET_KEY,
            "HELPLINE_PHONE_NUMBER": HELPLINE_NUMBER,
        }
    )
    return create_app(settings)


def test_a_caller_chooses_an_added_language_by_its_key_and_hears_it(french_app):
    call = Call(french_app.test_client())
    assert "Pour le français, appuyez sur 7." in call.step.text

    step = call.press("7")

    spoken = dict(zip(step.says, step.locales, strict=True))
    assert spoken[FRENCH_MESSAGES["voice.welcome"]] == "fr-FR"
    assert "Pour le traitement, appuyez sur 2." in step.text
    assert spoken["For English, press 8."] == "en-GB"  # the other languages offer themselves
    # A number said in French chooses like the key.
    assert "Dépendance et traitement." in call.say("deux").text


def test_a_texter_chooses_an_added_language_by_its_name_and_reads_it(french_app):
    client = french_app.test_client()

    menu = text(client, "Francais")

    assert "Ligne d'aide confidentielle. Répondez 1 Overdose" in menu
    assert "For English, reply ENGLISH." in menu
    assert "La dépendance est un problème de santé" in text(client, "deux")
