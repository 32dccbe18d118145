"""Seeded random walks through the signed webhooks, checking the safety invariants end to end.

helpline.conversation.explore proves the six invariants on the engine, state by state. This
walks the real thing: a few thousand random inputs (menu keys, junk keys, phone numbers,
words from the flows, crisis phrases in English and Spanish, alone or in a sentence,
STOP and START, silence, odd Unicode, long junk), posted as Twilio posts them (signed,
a call following each Gather's action URL, a fresh MessageSid on every text), to an app
on real Redis and to one whose Redis cannot be reached. Every answer's TwiML is checked:

1. a 200 with a <Response> from the flow (never the fail-safe); a voice answer says
   something and ends with a <Gather> or a <Hangup>; every SMS fits 2 segments.
2. A crisis phrase is answered first with the emergency advice.
3. An "at risk" answer to the triage question (1, "yes", or yes as people say it: "yes
   I am", "I'm at risk", "sí, ahora") hears the emergency number in that same reply.
4. No more than 3 "not understood" replies in a row before the main menu or a hang-up.
5. With Redis down nobody is told they are on the list, nobody is asked the triage
   question, and asking for a call back gets the emergency number and the crisis line.
   With Redis up, nobody is told they are on the list unless Redis holds their request.
6. Every SMS reply (each ends by asking for the next text) names the emergency number,
   or a keyword whose reply does; every call's greeting and every hang-up says it.

Callers and texters are modelled, not uniform: each does what the last answer asks
(an offered key, a number when asked for one) as often as its drawn diligence says, and
otherwise anything from the alphabet; some calls are made to ask for a counsellor, and
nearly everyone asked whether they are at risk answers. With Redis down, the breaker
reads a clock the walk moves, so some inputs meet Redis refusing them there and then.

A walk is deterministic: a failure names its seed and the inputs of the conversation
that led to it, and `pytest tests/test_random_walk.py -k "calls and normal and seed2"`
replays it exactly.
"""

from __future__ import annotations

import functools
import random
import re
import string
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.composition import Components
from helpline.conversation.gsm import as_sent, segments
from helpline.conversation.model import PLACEHOLDER
from helpline.infrastructure.constants import REDIS_BREAKER_SECONDS, SMS_MAX_SEGMENTS
from tests.factories import (
    FakeClock,
    call_params,
    callback_number,
    make_settings,
    parse_voice,
    sms_params,
    sms_replies,
    twilio_post,
)

SEEDS = range(3)
CONDITIONS = ("normal", "degraded")
# Inputs each walk posts (one walk per channel, condition and seed): enough for a call
# back request, with its five questions, to be completed by chance.
INPUTS_PER_WALK = 400
MAX_CALL_STEPS = 20
# How often a texter's next text comes after another texter's.
INTERLEAVE = 0.15
# A closed port: every connection is refused at once, as when Redis is down.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
# With Redis down, how often the breaker's 5 s pass before an input, so that webhooks
# meet a Redis refusing them there and then, not only the open breaker.
BREAKER_LAPSES = 0.1

# What the GB test settings say, as each channel says it.
EMERGENCY = {"voice": "9 9 9", "sms": "999"}
MAX_MISSES_IN_A_ROW = 3

# Content keys (without the channel prefix) the checks look for.
MAIN_MENU = "menu"
GREETING = "welcome"  # a call's first words, and again after choosing a language
EMERGENCY_ADVICE = {"voice": "emergency", "sms": "crisis"}
NOT_UNDERSTOOD = {
    "voice": ("reprompt", "callback_bad_number"),
    "sms": ("not_understood", "callback_bad_number"),
}
TRIAGE = "callback_triage"
ASKS_FOR_A_NUMBER = {
    "voice": ("callback_key_number",),
    "sms": ("callback_number", "callback_key_number"),
}
# Said only to someone whose call back was queued (or already was).
ON_THE_LIST = (
    "callback_queued",
    "callback_already",
    "callback_position",
    "callback_soon",
    "callback_wait_known",
    "callback_wait_unknown",
    "callback_closed",
    "callback_done",
)

# -- the alphabet ------------------------------------------------------------------------

# How often a caller does what the last answer asks, drawn for each call or texter: some
# walk deep into the menus, others press anything.
DILIGENCE = (0.3, 0.6, 0.9)
# How often a call is made to ask for a counsellor: 4, or the words, at the main menu.
CALLS_FOR_A_COUNSELLOR = 0.3
# How often the triage question ("are you at risk ... right now?") gets an answer.
ANSWER_TRIAGE = 0.9
# What a caller does otherwise, and how often.
VOICE_MOVES = {
    "key": 10,
    "junk keys": 3,
    "number": 3,
    "word": 12,
    "crisis": 8,
    "silence": 5,
    "odd": 2,
    "long": 2,
}
TEXT_MOVES = {**VOICE_MOVES, "silence": 2, "opt word": 3}

# Caller IDs, with the number they can be called back on (None: withheld, or one that
# phonenumbers rejects: the Ofcom drama range is not a valid UK number).
CALLERS = {
    callback_number(4): callback_number(4),
    callback_number(5): callback_number(5),
    "+447700900123": None,
    "anonymous": None,
}
SENDERS = {
    callback_number(1): callback_number(1),
    callback_number(2): callback_number(2),
    callback_number(3): callback_number(3),
    "+447700900123": None,
}
# Valid numbers a caller may key in or text, as E.164 for the GB region.
NUMBERS = {
    "02079460123": "+442079460123",
    "0012025550188": "+12025550188",
    "+12025550188": "+12025550188",
}
KEYED_NUMBERS = ("02079460123", "0012025550188")
TEXTED_NUMBERS = ("02079460123", "+12025550188")
KEYS = tuple("0123456789*#")
JUNK_KEYS = (
    "12345",
    "99",
    "00",
    "44",
    "1#",
    "*9*",
    "######",
    "0000000000000000000",
    "123456789012",
)
WORDS = (
    "yes",
    "no",
    "sí",
    "menu",
    "MENÚ",
    "TALK",
    "SAFE",
    "HELP",
    "ESPAÑOL",
    "English",
    "recovery",
    "naloxone",
    "repeat",
    "back",
    "someone else",
    "counsellor",
    "talk to someone",
    "call me",
    "HABLAR",
    "hello",
    "what?",
    "I relapsed last night",
)
# A spoken "overdose" picks the overdose safety menu; texted, it is a crisis word.
SPOKEN_WORDS = (*WORDS, "overdose")
CRISIS = (
    "not breathing",
    "NOT BREATHING!!",
    "I think he is not breathing",
    "she won't wake up",
    "my friend overdosed",
    "help, he is unconscious",
    "his lips are blue",
    "he collapsed",
    "no respira",
    "mi amigo no respira",
    "creo que no respira",
    "está inconsciente",
    "se desmayó",
    "stop, he's not breathing",
)
TEXTED_CRISIS = (*CRISIS, "overdose", "OD", "my mate took an overdose")
OPT_WORDS = ("STOP", "stop", "START", "UNSTOP", "yes")
# Answers to "are you at risk of an overdose, or of harming yourself, right now?": the
# "yes" the question asks for, and yes as people say it.
AT_RISK_ANSWERS = ("yes", "YES", "sí", "yes I am", "I am at risk", "I'm at risk", "sí, ahora")
NOT_AT_RISK_ANSWERS = ("no", "I'm not", "no thanks")
ASK_CALL_BACK_SPOKEN = ("counsellor", "talk to someone")
ASK_CALL_BACK_TEXTED = ("TALK", "call me", "HABLAR")
ODD = (
    "🧪💉",
    "\u202eevil\u202c",
    "\u200b",
    "Z\u0351\u0352\u0353",
    "ñ€^{}[]~|\\",
    "<Say>hi</Say>]]>",
    "&amp; %00 ?=#",
    "١٢٣",
    "５",
    "\x00\x07",
    "\r\n\t",
)
JUNK_CHARACTERS = string.ascii_letters + string.digits + " .,!?'éñü€😀\u0301\u202e"

# -- what the app says -----------------------------------------------------------------


def _pattern(template: str, variables: dict[str, str], fold: Callable[[str], str]) -> str:
    """A regex for a message as sent: region values filled in, any other value a wildcard."""
    parts, last = [], 0
    for placeholder in PLACEHOLDER.finditer(template):
        parts.append(re.escape(fold(template[last : placeholder.start()])))
        value = variables.get(placeholder.group(1))
        parts.append(re.escape(fold(value)) if value is not None else ".+?")
        last = placeholder.end()
    parts.append(re.escape(fold(template[last:])))
    return "".join(parts)


class Lines:
    """A channel's messages in every language, as its replies carry them."""

    def __init__(self, services: Components, channel: str):
        content = services.library.content
        region = services.settings.region
        self.languages = tuple(content.languages)
        self._patterns: dict[tuple[str, str], re.Pattern[str]] = {}
        prefix = f"{channel}."
        for code, language in content.languages.items():
            fold = functools.partial(as_sent, gsm=channel == "sms" and language.gsm)
            for key, template in content.messages[code].items():
                if key.startswith(prefix):
                    name = key.removeprefix(prefix)
                    variables = region.variables(code, spoken=channel == "voice")
                    self._patterns[(name, code)] = re.compile(_pattern(template, variables, fold))

    def says(self, text: str, *names: str) -> bool:
        """True if the text holds any of the named messages, in any language."""
        return any(
            self._patterns[(name, code)].search(text) for name in names for code in self.languages
        )

    def opens_with(self, text: str, name: str, lang: str | None = None) -> bool:
        """True if the text starts with the named message (in lang, or in any language)."""
        codes = (lang,) if lang else self.languages
        return any(self._patterns[(name, code)].match(text) for code in codes)


@dataclass(frozen=True)
class Answer:
    """One webhook answer: the raw TwiML, and what it says in order."""

    body: str
    texts: tuple[str, ...]  # each <Say> of a call, or each <Message> of a text
    hangup: bool = False
    action: str | None = None  # where a call posts its next input

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


NO_ANSWER_YET = Answer("", ())


@dataclass(frozen=True)
class Move:
    """One input, as Twilio posts it."""

    label: str
    digits: str | None = None  # keys pressed on a call
    text: str | None = None  # speech on a call, the body of a text
    crisis: bool = False

    def call_params(self) -> dict[str, str]:
        """Digits or SpeechResult as a call's step posts them; neither after silence."""
        if self.digits is not None:
            return {"Digits": self.digits}
        return {} if self.text is None else {"SpeechResult": self.text}


def _keys(digits: str) -> Move:
    return Move(f"press {digits!r}", digits=digits)


def _words(channel: str, text: str) -> Move:
    verb = "say" if channel == "voice" else "text"
    return Move(f"{verb} {text!r}", text=text)


# -- the walk ------------------------------------------------------------------------------


@dataclass
class Conversation:
    """One call, or one texter's conversation: who, what they sent, and what came back."""

    who: str
    own_number: str | None  # the caller ID as a number we could call back
    path: list[str] = field(default_factory=list)
    last: Answer = NO_ANSWER_YET
    diligence: float = 0.5  # how often they do what the last answer asks
    misses_in_a_row: int = 0
    numbers_given: set[str] = field(default_factory=set)

    def call_back_numbers(self) -> list[str]:
        """Numbers this conversation could have asked to be called on."""
        return sorted({*self.numbers_given, *([self.own_number] if self.own_number else [])})


@dataclass
class Subject:
    """The app a walk talks to; with Redis down, the clock its breaker reads."""

    client: FlaskClient
    breaker_clock: FakeClock | None = None  # None: Redis is up

    @property
    def degraded(self) -> bool:
        return self.breaker_clock is not None


class Walk:
    """One seeded walk: draws inputs, posts them, and checks every answer."""

    def __init__(self, subject: Subject, channel: str, seed: int):
        client = subject.client
        self.client = client
        self.channel = channel
        self.degraded = subject.degraded
        self.breaker_clock = subject.breaker_clock
        self.seed = seed
        self.rng = random.Random(seed)
        self.services: Components = client.application.extensions["helpline"]
        self.lines = Lines(self.services, channel)
        self.emergency = EMERGENCY[channel]
        # The crisis line as the region gives it, in each language (each reply's own is
        # checked by tests/test_regions.py).
        region = self.services.settings.region
        self.crisis_lines = [
            region.variables(lang, spoken=channel == "voice")["crisis_line"]
            for lang in region.languages
        ]
        self.inputs = 0
        self.tested: Counter[str] = Counter()  # how often each check had something to check
        self._keyword_gives_emergency: dict[str, bool] = {}
        self._failsafes = {
            *self.services.voice_failsafe.values(),
            *self.services.sms_failsafe.values(),
        }

    # -- posting --------------------------------------------------------------------------

    def before_input(self, conversation: Conversation) -> None:
        """Count the input; with Redis down, sometimes let the breaker's time run out."""
        self.inputs += 1
        if self.breaker_clock is not None and self.rng.random() < BREAKER_LAPSES:
            self.breaker_clock.advance(REDIS_BREAKER_SECONDS)
            conversation.path.append(f"({REDIS_BREAKER_SECONDS:g} s pass)")

    def post(self, conversation: Conversation, path: str, params: dict[str, str]) -> Answer:
        """POST a signed webhook; check invariant 1 on what comes back; parse it."""
        response = twilio_post(self.client, path, params)
        body = response.get_data(as_text=True)
        where = functools.partial(self.where, conversation, body)  # called only on failure
        assert response.status_code == 200, f"invariant 1: HTTP {response.status_code}\n{where()}"
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise AssertionError(f"invariant 1: not XML ({exc})\n{where()}") from None
        assert root.tag == "Response", f"invariant 1: not TwiML\n{where()}"
        assert body not in self._failsafes, f"invariant 1: the fail-safe answered\n{where()}"
        if self.channel == "sms":
            return self._text_answer(body, where)
        return self._voice_answer(root, body, where)

    def _voice_answer(self, root: ET.Element, body: str, where: Callable[[], str]) -> Answer:
        step = parse_voice(body)
        verbs = [child.tag for child in root]
        assert verbs and verbs[-1] in ("Gather", "Hangup"), (
            f"invariant 1: a voice answer ends with {verbs[-1:]}\n{where()}"
        )
        assert step.says and all(s.strip() for s in step.says), (
            f"invariant 1: a voice answer leaves the caller in silence\n{where()}"
        )
        action = step.action if step.gather is not None else None
        assert action is None or action.startswith("/twilio/voice/step?"), (
            f"invariant 1: a Gather posts elsewhere: {action}\n{where()}"
        )
        return Answer(body, tuple(step.says), hangup=step.hangup, action=action)

    def _text_answer(self, body: str, where: Callable[[], str]) -> Answer:
        messages = sms_replies(body)
        for message in messages:
            assert message.strip(), f"invariant 1: an empty <Message>\n{where()}"
            assert segments(message) <= SMS_MAX_SEGMENTS, (
                f"invariant 1: an SMS of {segments(message)} segments\n{where()}"
            )
        return Answer(body, tuple(messages))

    def where(self, conversation: Conversation, body: str) -> str:
        """Say where a failure happened: the seed replays the whole walk up to it."""
        path = " -> ".join(conversation.path) or "(the first answer)"
        others = " (other texters' inputs came in between)" if self.channel == "sms" else ""
        return (
            f"{self.channel} walk, store {'degraded' if self.degraded else 'normal'}, "
            f"seed {self.seed}, input {self.inputs}\n"
            f"{conversation.who}{others}: {path}\nanswer: {body}"
        )

    # -- the invariants, on one answer ----------------------------------------------------

    def check(self, conversation: Conversation, move: Move | None, answer: Answer) -> None:
        """Check invariants 2 to 6 on an answer to move (None: the call was answered)."""
        text, lines = answer.text, self.lines
        before = conversation.last
        where = functools.partial(self.where, conversation, answer.body)

        # 2. A crisis phrase gets the emergency advice first.
        if move is not None and move.crisis:
            self.tested["crisis phrase"] += 1
            lang = _voice_language(before.action) if self.channel == "voice" else None
            first = answer.texts[0] if answer.texts else ""
            assert lines.opens_with(first, EMERGENCY_ADVICE[self.channel], lang), (
                f"invariant 2: a crisis phrase is not answered first with the emergency"
                f" advice\n{where()}"
            )
            assert self.emergency in first, f"invariant 2: no emergency number\n{where()}"

        # 3. "Yes, I am at risk" hears the emergency number in the same reply.
        if move is not None and lines.says(before.text, TRIAGE) and _says_at_risk(move):
            self.tested["at-risk answer"] += 1
            assert self.emergency in text, (
                f"invariant 3: an at-risk answer hears no emergency number\n{where()}"
            )

        # 4. Inputs not understood end soon, at the main menu or in a goodbye.
        not_understood = lines.says(text, *NOT_UNDERSTOOD[self.channel])
        self.tested["not understood"] += not_understood
        if answer.hangup or lines.says(text, MAIN_MENU):
            conversation.misses_in_a_row = 0
        elif not_understood:
            conversation.misses_in_a_row += 1
        else:
            conversation.misses_in_a_row = 0
        run = conversation.misses_in_a_row
        assert run <= MAX_MISSES_IN_A_ROW, (
            f"invariant 4: {run} replies in a row say the input was not understood\n{where()}"
        )

        # 5. Nobody is told they are on the list unless they are.
        if lines.says(text, *ON_THE_LIST):
            self.tested["told on the list"] += 1
            assert not self.degraded, (
                f"invariant 5: with Redis down, a caller is told they are on the list\n{where()}"
            )
            queue = self.services.queue
            numbers = conversation.call_back_numbers()
            # Or the one request a sender keeps open, whichever number it names (asked for
            # in an earlier call or text).
            own = conversation.own_number
            asked_before = own is not None and queue.open_request_from(own) is not None
            assert asked_before or any(queue.open_request_for(n) for n in numbers), (
                f"invariant 5: told they are on the list, but Redis holds no open request"
                f" for {numbers}\n{where()}"
            )
        if self.degraded:
            assert not lines.says(text, TRIAGE), (
                f"invariant 5: with Redis down, a call back that cannot be queued is"
                f" offered\n{where()}"
            )
            if move is not None and self._asks_for_a_call_back(move, before):
                self.tested["call back asked for, Redis down"] += 1
                crisis_line = any(line in text for line in self.crisis_lines)
                assert self.emergency in text and crisis_line, (
                    f"invariant 5: with Redis down, a call back request is not answered with"
                    f" the emergency number and the crisis line\n{where()}"
                )
        elif lines.says(text, TRIAGE):
            self.tested["triage asked"] += 1

        # 6. The emergency number is never far.
        if self.channel == "voice":
            if move is None or lines.says(text, GREETING):
                self.tested["greeting"] += 1
                assert self.emergency in text, (
                    f"invariant 6: the greeting does not say the emergency number\n{where()}"
                )
            if answer.hangup:
                self.tested["hang-up"] += 1
                assert self.emergency in text, (
                    f"invariant 6: a goodbye does not say the emergency number\n{where()}"
                )
        else:
            for message in answer.texts:
                assert self._names_emergency(message), (
                    f"invariant 6: an SMS reply names neither the emergency number nor a"
                    f" keyword that leads to it\n{where()}"
                )

    def _asks_for_a_call_back(self, move: Move, before: Answer) -> bool:
        at_menu = self.lines.says(before.text, MAIN_MENU)
        if self.channel == "voice":
            return at_menu and (move.digits == "4" or move.text in ASK_CALL_BACK_SPOKEN)
        return move.text in ASK_CALL_BACK_TEXTED or (at_menu and move.text == "4")

    def _names_emergency(self, message: str) -> bool:
        """True if an SMS says the number, or names a keyword (in capitals) whose reply does."""
        if self.emergency in message:
            return True
        return any(
            self._keyword_leads_to_emergency(word)
            for word in dict.fromkeys(re.findall(r"\b[A-ZÁÉÍÓÚÑ]{2,}\b", message))
        )

    def _keyword_leads_to_emergency(self, word: str) -> bool:
        """Text the word from a number of its own, once; does the reply name the number?"""
        if word not in self._keyword_gives_emergency:
            probe = Conversation(callback_number(90 + len(self._keyword_gives_emergency)), None)
            probe.path.append(f"text {word!r} (does this keyword lead to {self.emergency}?)")
            answer = self.post(probe, "/twilio/sms", sms_params(word, sender=probe.who))
            self._keyword_gives_emergency[word] = self.emergency in answer.text
        return self._keyword_gives_emergency[word]

    def check_coverage(self, *needed: str) -> None:
        """Each check this walk exists for had something to check."""
        missing = [name for name in needed if not self.tested[name]]
        assert not missing, (
            f"seed {self.seed} never put these to the test: {missing} (tested: "
            f"{dict(self.tested)}); choose other seeds or a longer walk"
        )

    # -- drawing inputs -------------------------------------------------------------------

    def draw(self, conversation: Conversation) -> Move:
        """A random input: what the last answer asks for, as often as this caller obliges."""
        rng = self.rng
        if self.lines.says(conversation.last.text, TRIAGE) and rng.random() < ANSWER_TRIAGE:
            # Asked whether they are in danger, nearly everyone answers, as they would.
            if rng.random() < 0.4:
                return self._press(rng.choice("12"))
            return _words(self.channel, rng.choice((*AT_RISK_ANSWERS, *NOT_AT_RISK_ANSWERS)))
        if rng.random() < conversation.diligence:
            return self._follow(conversation.last)
        voice = self.channel == "voice"
        moves = VOICE_MOVES if voice else TEXT_MOVES
        kind = rng.choices(list(moves), weights=list(moves.values()))[0]
        if kind in ("key", "junk keys", "number"):
            numbers = KEYED_NUMBERS if voice else TEXTED_NUMBERS
            pool = {"key": KEYS, "junk keys": JUNK_KEYS, "number": numbers}[kind]
            return self._press(rng.choice(pool))
        if kind in ("word", "opt word"):
            pool = {"word": SPOKEN_WORDS if voice else WORDS, "opt word": OPT_WORDS}[kind]
            return _words(self.channel, rng.choice(pool))
        if kind == "crisis":
            phrase = rng.choice(CRISIS if voice else TEXTED_CRISIS)
            if rng.random() < 0.2:  # inside a long message, well within what is read
                phrase = f"{phrase} {_junk(rng, 50, 1_000)}"
            return Move(f"{'say' if voice else 'text'} {_short(phrase)}", text=phrase, crisis=True)
        if kind == "silence":
            return Move("(silence)") if voice else _words(self.channel, "")
        if kind == "odd":
            return _words(self.channel, "".join(rng.choices(ODD, k=rng.randint(1, 4))))
        junk = _junk(rng, 200, 2_000)
        return Move(f"{'say' if voice else 'text'} {_short(junk)}", text=junk)

    def call_for_a_counsellor(self) -> Move:
        """Ask a call's main menu for a counsellor's call back, by key or in words."""
        if self.rng.random() < 0.5:
            return _keys("4")
        return _words("voice", self.rng.choice(ASK_CALL_BACK_SPOKEN))

    def _press(self, keys: str) -> Move:
        """Keys pressed on a call; the same characters sent as a text."""
        return _keys(keys) if self.channel == "voice" else _words("sms", keys)

    def _follow(self, last: Answer) -> Move:
        """Do what the last answer asks: a number when asked for one, else an offered key."""
        rng = self.rng
        if self.lines.says(last.text, *ASKS_FOR_A_NUMBER[self.channel]) and rng.random() < 0.7:
            numbers = KEYED_NUMBERS if self.channel == "voice" else TEXTED_NUMBERS
            return self._press(rng.choice(numbers) if rng.random() < 0.8 else rng.choice(JUNK_KEYS))
        offered = list(dict.fromkeys(re.findall(r"\b\d\b", last.text))) or list(KEYS)
        return self._press(rng.choice(offered))


def _junk(rng: random.Random, shortest: int, longest: int) -> str:
    return "".join(rng.choices(JUNK_CHARACTERS, k=rng.randint(shortest, longest)))


def _short(text: str) -> str:
    """A long input as a failure message shows it."""
    return repr(text) if len(text) <= 40 else f"{text[:32]!r}... ({len(text)} chars)"


def _voice_language(action: str | None) -> str | None:
    """The language a call is in, as its next step's URL carries it."""
    if not action:
        return None
    return parse_qs(urlsplit(action).query).get("lang", [None])[0]


def _says_at_risk(move: Move) -> bool:
    """True if move, as an answer to the triage question, says "yes, I am at risk"."""
    if move.digits is not None:
        return move.digits == "1"
    return move.text is not None and (move.text == "1" or move.text in AT_RISK_ANSWERS)


class VoiceCall(Conversation):
    """One phone call: answered, then each input posted to the last Gather's action URL."""

    def __init__(self, walk: Walk, caller: str):
        super().__init__(caller, CALLERS[caller], diligence=walk.rng.choice(DILIGENCE))
        self.walk = walk
        self.params = call_params(sender=caller)  # one CallSid for the whole call
        answer = walk.post(self, "/twilio/voice", self.params)
        walk.check(self, None, answer)
        self.last = answer

    @property
    def ended(self) -> bool:
        return self.last.action is None

    def send(self, move: Move) -> Answer:
        assert self.last.action is not None, "a call that ended takes no input"
        self.walk.before_input(self)
        self.path.append(move.label)
        if move.digits in NUMBERS:
            self.numbers_given.add(NUMBERS[move.digits])
        answer = self.walk.post(self, self.last.action, {**self.params, **move.call_params()})
        self.walk.check(self, move, answer)
        self.last = answer
        return answer


class TextConversation(Conversation):
    """One texter: each text a fresh webhook with a fresh MessageSid."""

    def __init__(self, walk: Walk, sender: str):
        super().__init__(sender, SENDERS[sender], diligence=walk.rng.choice(DILIGENCE))
        self.walk = walk

    def send(self, move: Move) -> Answer:
        self.walk.before_input(self)
        self.path.append(move.label)
        if move.text in NUMBERS:
            self.numbers_given.add(NUMBERS[move.text])
        answer = self.walk.post(self, "/twilio/sms", sms_params(move.text or "", sender=self.who))
        self.walk.check(self, move, answer)
        self.last = answer
        return answer


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_without_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    """One app whose Redis refuses every connection, for every walk with Redis down.

    Nothing is kept without Redis, so one walk cannot leak into the next; only the
    breaker has a state, and each walk starts once it has lapsed. The breaker reads a
    clock of the walk's own: the walk decides when its 5 s have passed, so it replays
    the same on a fast machine and a slow one. (The walks with Redis up never trip it.)
    """
    clock = FakeClock(1_000.0)
    settings = make_settings(tmp_path_factory.mktemp("no-redis") / "var", UNREACHABLE_REDIS)
    app = create_app(settings)
    app.extensions["helpline"].store.clock = clock  # the breaker's clock, one store for all
    yield Subject(app.test_client(), clock)
    app.extensions["redis"].close()


@pytest.fixture
def subject(request: pytest.FixtureRequest, condition: str) -> Subject:
    """The usual app on real (flushed) Redis, or the one whose Redis cannot be reached."""
    if condition == "normal":
        return Subject(request.getfixturevalue("client"))
    degraded: Subject = request.getfixturevalue("app_without_redis")
    assert degraded.breaker_clock is not None
    degraded.breaker_clock.advance(REDIS_BREAKER_SECONDS)  # as a fresh app's
    return degraded


# -- the walks -------------------------------------------------------------------------------

seeds = pytest.mark.parametrize("seed", SEEDS, ids=lambda seed: f"seed{seed}")
conditions = pytest.mark.parametrize("condition", CONDITIONS)


@seeds
@conditions
def test_random_calls_keep_the_safety_invariants(subject, condition, seed) -> None:
    walk = Walk(subject, "voice", seed)
    while walk.inputs < INPUTS_PER_WALK:
        call = VoiceCall(walk, walk.rng.choice(list(CALLERS)))
        if walk.rng.random() < CALLS_FOR_A_COUNSELLOR:
            call.send(walk.call_for_a_counsellor())
        for _ in range(walk.rng.randint(1, MAX_CALL_STEPS)):
            if call.ended:
                break
            call.send(walk.draw(call))

    needed = ["greeting", "crisis phrase", "hang-up", "not understood"]
    if condition == "normal":
        needed += ["triage asked", "at-risk answer", "told on the list"]
    else:
        needed += ["call back asked for, Redis down"]
    walk.check_coverage(*needed)


@seeds
@conditions
def test_random_texts_keep_the_safety_invariants(subject, condition, seed) -> None:
    walk = Walk(subject, "sms", seed)
    texters = {sender: TextConversation(walk, sender) for sender in SENDERS}
    texter = texters[walk.rng.choice(list(SENDERS))]
    while walk.inputs < INPUTS_PER_WALK:
        if walk.rng.random() < INTERLEAVE:
            texter = texters[walk.rng.choice(list(SENDERS))]
        texter.send(walk.draw(texter))

    # With Redis down every text starts afresh, and a first text is never "not understood".
    needed = ["crisis phrase"]
    if condition == "normal":
        needed += ["not understood", "triage asked", "at-risk answer", "told on the list"]
    else:
        needed += ["call back asked for, Redis down"]
    walk.check_coverage(*needed)
