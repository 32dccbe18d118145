"""The follow-up survey: one text some time after a counsellor reached a caller, and its answer.

When an outcome of "reached" is recorded on a request whose caller said texts are OK,
the survey falls due HELPLINE_SURVEY_DELAY_MINUTES later; the workers' housekeeping
hands it to a job (by request id), which checks opt-outs again and texts it once. A
reply of 1 to 5 from that number, before the survey expires, is its answer: the score is
counted in the day's report counters as the survey closes, and the words are dropped
unless an admin keeps them (sealed onto the request). Anything else is an ordinary text.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from redis.client import Pipeline

from helpline.callbacks.queue import Outcome, Request
from helpline.callbacks.surveys import Pending, Surveys
from helpline.conversation.engine import Say
from helpline.conversation.model import Content
from helpline.infrastructure.constants import MAX_INPUT_CHARS
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import SealError
from helpline.infrastructure.metrics import SURVEYS
from helpline.infrastructure.store import Store
from helpline.reports import tally

log = logging.getLogger(__name__)

# The survey's question, and the reply to an answer.
QUESTION, THANKS = "sms.survey", "sms.survey_thanks"
# An answer: a score of 1 to 5 first ("4", "4.", "4/5", "4 - it helped"), then any words.
# A number that runs on ("45", "4pm", "1/2") is no score.
_ANSWER = re.compile(r"\s*([1-5])(?:\s*/\s*5)?(?![0-9A-Za-z/])[\s.,:;!)\-]*(.*)", re.DOTALL)


def score_of(body: str) -> tuple[int, str] | None:
    """Return (score, words) if a text answers a survey, else None."""
    found = _ANSWER.fullmatch(body[:MAX_INPUT_CHARS])
    return None if found is None else (int(found.group(1)), found.group(2).strip())


class SurveyDesk:
    """Schedules surveys, tells the workers which are due, and takes their answers."""

    def __init__(
        self,
        surveys: Surveys,
        store: Store,
        content: Content,
        variables: Callable[[str], Mapping[str, str]],
        sealer: Sealer,
        zone: str,
        *,
        delay_minutes: int,
        keep_words: bool,
        clock: Callable[[], float] = time.time,
    ):
        self.surveys = surveys
        self.store = store
        self.content = content
        self.variables = variables  # the region's placeholder values, by language
        self.sealer = sealer
        self.zone = ZoneInfo(zone)
        self.delay_minutes = delay_minutes  # 0: no surveys
        self.keep_words = keep_words
        self.clock = clock

    # -- after the call ------------------------------------------------------------------

    def reached(self, request: Request) -> bool:
        """Make a reached caller's survey due later, if they welcome texts; True if so."""
        if not self.delay_minutes or not request.texts_ok:
            return False
        due = self.clock() + self.delay_minutes * 60
        # The outcome is recorded already: Redis failing now costs one survey, not the page.
        return self.store.attempt(
            "survey schedule", lambda _client: self.surveys.schedule(request.id, due), False
        )

    def due(self) -> list[str]:
        """Return the requests whose survey text is due now."""
        return self.surveys.due(self.clock())

    def handed_on(self, rid: str) -> None:
        self.surveys.handed_on(rid)

    @staticmethod
    def wanted(request: Request) -> bool:
        """Whether a request is one a survey is for: its caller was reached."""
        return request.outcome == Outcome.REACHED.value

    def opening(self, who: str, request: Request) -> None:
        """Wait for an answer from `who` (before the text goes, so a quick reply is heard)."""
        self.surveys.open(who, Pending(request.id, request.lang))

    def not_sent(self, who: str, rid: str) -> None:
        """The text did not go: wait for no answer."""
        self.surveys.withdraw(who, rid)

    def sent(self) -> None:
        """Count a survey text handed to Twilio in today's report."""
        pipe = self.surveys.client.pipeline(transaction=False)
        tally.count(pipe, self.zone, tally.SURVEY_SENT, now=self._now())
        pipe.execute()
        SURVEYS.labels("sent").inc()

    # -- the answer ----------------------------------------------------------------------

    def texted(self, who: str, body: str) -> list[Say] | None:
        """Take a text of 1 to 5 from a number with a survey waiting as its answer: count
        the score as the survey closes, and return the thanks. None (carry on with the
        conversation) for any other text, or with no survey waiting after all.

        Called only when the text's own read saw a survey waiting for `who`.
        """
        answer = score_of(body)
        if answer is None or not who:
            return None
        score, words = answer

        def count(pipe: Pipeline, pending: Pending) -> None:
            tally.count(pipe, self.zone, tally.SURVEY_SCORES[score - 1], now=self._now())

        def seal(pending: Pending) -> str:
            return self.sealer.seal(words, pending.request)

        kept = seal if self.keep_words and words else None

        def close(_client: object) -> Pending | None:
            return self.surveys.close(who, count, kept)

        pending = self.store.attempt("survey answer", close, None)
        if pending is None:
            return None
        SURVEYS.labels("answered").inc()
        log.info("survey answered", extra={"request": pending.request})
        lang = pending.lang if pending.lang in self.content.languages else None
        lang = lang or self.content.default_language
        thanks = self.content.text(THANKS, lang, dict(self.variables(lang)))
        return [Say(key=THANKS, text=thanks, lang=lang)]

    def words(self, rid: str) -> str | None:
        """Return the words kept from a request's survey answer (for its counsellors)."""
        sealed = self.surveys.sealed_words(rid)
        if sealed is None:
            return None
        try:
            return self.sealer.open(sealed, rid)
        except SealError:
            log.error("survey words do not open", extra={"request": rid})
            return None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), self.zone)
