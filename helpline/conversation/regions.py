"""Regions as data: what a deployment tells callers about local services, per language.

A region is a file, flows/regions/<code>.yaml: its code, the time zone its opening
hours are read in, and for every content language the voice locale and the values the
content's placeholders take ({emergency}, {crisis_line}, ...). Phone numbers inside a
value are marked with square brackets, "[116 123]": a text shows them as written, a
call spells them digit by digit. Every other number ("24 hours", "2009") is said as a
number. The flows linter checks each region against the content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from helpline.conversation.model import read_yaml
from helpline.infrastructure.errors import ConfigError

REGIONS_DIR = "regions"
# A phone number as a region file marks it: digits, spaces and dashes in [brackets].
PHONE_MARK = re.compile(r"\[([^\[\]]*)\]")
PHONE_DIGITS = re.compile(r"\d[\d -]*\d|\d")
# Unmarked numbers a value may hold without being read as a phone number: short ones
# ("24 hours", "1 in 5") and years ("2009").
# A voice locale as Twilio names one: language, then country (en-GB, es-US, cmn-CN).
VOICE_LOCALE = re.compile(r"[a-z]{2,3}-[A-Z]{2}")
PLAIN_NUMBER = re.compile(r"\d{1,2}|(?:19|20)\d\d")


@dataclass(frozen=True)
class RegionLanguage:
    """One language in one region: the voice that speaks it and the placeholder values."""

    voice: str  # Twilio's speech and text-to-speech locale, e.g. en-GB, es-US
    values: dict[str, str]  # placeholder -> text as written in the file (phones marked)


@dataclass(frozen=True)
class Region:
    """What a deployment tells callers about local emergency, crisis and drug services."""

    code: str
    timezone: str  # where opening hours are read, unless HELPLINE_TIMEZONE says otherwise
    languages: dict[str, RegionLanguage]

    @property
    def voice_locales(self) -> dict[str, str]:
        """Return the helpline language -> Twilio voice locale."""
        return {code: lang.voice for code, lang in self.languages.items()}

    def variables(self, lang: str, *, spoken: bool = False) -> dict[str, str]:
        """Return the placeholder values in lang; spoken: phone numbers digit by digit."""
        values = self.languages[lang].values
        return {name: render(text, spoken=spoken) for name, text in values.items()}


def render(text: str, *, spoken: bool = False) -> str:
    """Unmark the phone numbers in a region value; spoken: spell them digit by digit."""
    return PHONE_MARK.sub(lambda m: speakable(m.group(1)) if spoken else m.group(1), text)


def speakable(number: str) -> str:
    """Spell a phone number for text-to-speech: '116 123' -> '1 1 6, 1 2 3'."""
    groups = re.split(r"[ -]+", number.strip())
    return ", ".join(" ".join(group) for group in groups if group)


def region_files(flows_dir: Path) -> list[Path]:
    return sorted((flows_dir / REGIONS_DIR).glob("*.yaml"))


def load_region(flows_dir: Path, code: str) -> Region:
    """Read one region's file, or raise ConfigError saying which files there are."""
    path = flows_dir / REGIONS_DIR / f"{code.strip().lower()}.yaml"
    if not path.is_file():
        found = ", ".join(p.name for p in region_files(flows_dir)) or "none"
        raise ConfigError(
            f"HELPLINE_REGION {code!r} is not known: there is no {path}; region files found: "
            f"{found}"
        )
    problems: list[str] = []
    region = parse_region(path, problems)
    if problems or region is None:
        raise ConfigError("; ".join(problems) or f"{path}: not a region file")
    return region


def load_regions(flows_dir: Path, problems: list[str]) -> dict[str, Region]:
    """Read every region file, recording problems instead of raising."""
    regions: dict[str, Region] = {}
    paths = region_files(flows_dir)
    if not paths:
        problems.append(f"{flows_dir / REGIONS_DIR}: no region files (expected <code>.yaml)")
    for path in paths:
        region = parse_region(path, problems)
        if region is not None:
            regions[region.code] = region
    return regions


def parse_region(path: Path, problems: list[str]) -> Region | None:
    """Read one region file; its shape only (the linter checks it against the content)."""
    where = f"regions/{path.name}"
    data = read_yaml(path, problems)
    if not data:
        return None
    for key in sorted(set(data) - {"code", "timezone", "languages"}):
        problems.append(f"{where}: unknown setting {key!r}")
    code = str(data.get("code", "")).strip()
    if code.lower() != path.stem.lower() or code != code.upper():
        problems.append(f"{where}: code must be the file's name in capitals ({path.stem.upper()})")
    timezone = str(data.get("timezone", ""))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}: timezone {timezone!r} is not a known time zone")
    raw_languages = data.get("languages")
    if not isinstance(raw_languages, dict) or not raw_languages:
        problems.append(f"{where}: 'languages' must map each language to its voice and values")
        return None
    languages = {}
    for lang, raw in raw_languages.items():
        here = f"{where}: {lang}"
        if not isinstance(raw, dict) or set(raw) != {"voice", "values"}:
            problems.append(f"{here}: needs exactly 'voice' (a locale) and 'values'")
            continue
        if not VOICE_LOCALE.fullmatch(str(raw["voice"])):
            problems.append(f"{here}: voice {raw['voice']!r} must be a locale such as en-GB")
        values = raw["values"]
        if not isinstance(values, dict):
            problems.append(f"{here}: 'values' must map each placeholder to its text")
            continue
        checked = {}
        for name, text in values.items():
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{here}: value {name!r} must be non-empty text")
                continue
            problems.extend(f"{here}: value {name!r} {p}" for p in _number_problems(text))
            checked[str(name)] = " ".join(text.split())
        languages[str(lang)] = RegionLanguage(voice=str(raw["voice"]), values=checked)
    return Region(code=code.upper(), timezone=timezone, languages=languages)


def _number_problems(text: str) -> list[str]:
    """Say what is wrong with the numbers in a value: a phone must be marked, and only it."""
    found = []
    for mark in PHONE_MARK.findall(text):
        if not PHONE_DIGITS.fullmatch(mark):
            found.append(f"marks [{mark}] as a phone number: only digits, spaces and dashes")
    for number in re.findall(r"\d+", PHONE_MARK.sub("", text)):
        if not PLAIN_NUMBER.fullmatch(number):
            found.append(
                f"has {number} unmarked: write a phone number in [brackets] so a call spells it"
            )
    if "[" in PHONE_MARK.sub("", text) or "]" in PHONE_MARK.sub("", text):
        found.append("has a bracket that does not mark a phone number")
    return found
