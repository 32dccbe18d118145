"""The composition root: every service of the helpline, built from Settings in one place.

The web app (helpline.web.services), the workers (workers.jobs.context) and the command
line each make one Components over the Redis client that suits them (the web's fails
fast, the workers' waits for Redis to come back, the command line's is plain) and take
what they need from it. Each service is built on first use and then shared, so a command
that lists counsellors loads no flows.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import redis
from redis.retry import Retry

from helpline.application.actions import ActionRegistry
from helpline.application.checkin import CheckinDesk, Timing
from helpline.application.config import Settings
from helpline.application.intake import CallbackDesk
from helpline.application.jobs import Jobs
from helpline.application.limits import RateLimits
from helpline.application.messaging import TextConversations
from helpline.application.monitoring import Monitoring
from helpline.application.readiness import Readiness
from helpline.application.surveys import SurveyDesk
from helpline.callbacks.blocks import Blocks
from helpline.callbacks.notes import Notes
from helpline.callbacks.queue import CallbackQueue, Placement
from helpline.callbacks.surveys import Surveys
from helpline.checkins.sessions import CheckinSessions
from helpline.conversation import twiml
from helpline.conversation.engine import Engine
from helpline.conversation.gsm import as_sent
from helpline.conversation.lint import Library, shared_library
from helpline.conversation.model import Medium
from helpline.counsellors.accounts import Counsellors
from helpline.counsellors.audit import AuditLog
from helpline.counsellors.calls import LiveCalls
from helpline.counsellors.throttle import LoginThrottle
from helpline.infrastructure import embedded
from helpline.infrastructure.crypto import Sealer, lookup_key
from helpline.infrastructure.hours import OpeningHours
from helpline.infrastructure.outbox import LocalOutbox
from helpline.infrastructure.signatures import WebhookValidator
from helpline.infrastructure.store import Store, connect, connect_sentinel
from helpline.reports import tally


def connect_redis(
    settings: Settings, *, fast_fail: bool = False, retry: Retry | None = None
) -> redis.Redis:
    """Return a client for the helpline's Redis: the master Sentinel names, REDIS_URL,
    or the embedded server (started if it is not running).

    fast_fail: for webhooks, which answer without Redis rather than wait for it.
    retry: how to retry a command that lost its connection (the workers wait).
    """
    target = settings.sentinel
    if target is not None:
        return connect_sentinel(target, fast_fail=fast_fail, retry=retry)
    url = embedded.resolve_redis_url(settings.redis_url, settings.data_dir)
    return connect(url, fast_fail=fast_fail, retry=retry)


if TYPE_CHECKING:
    from collections.abc import Mapping

    from helpline.application.doctor import Doctor
    from helpline.application.twilio_setup import TwilioSetup


class Components:
    """The services one process uses, each built once from its Settings and Redis client."""

    def __init__(self, settings: Settings, client: redis.Redis):
        self.settings = settings
        self.client = client

    # -- infrastructure -----------------------------------------------------------------

    @functools.cached_property
    def store(self) -> Store:
        """Redis for webhooks: a failure opens a short breaker instead of waiting again."""
        return Store(self.client, breaker_seconds=self.settings.redis_breaker_seconds)

    @functools.cached_property
    def sealer(self) -> Sealer:
        return Sealer(self.settings.encryption_secret)

    @functools.cached_property
    def phone_key(self) -> bytes:
        return lookup_key(self.settings.encryption_secret)

    @functools.cached_property
    def local_outbox(self) -> LocalOutbox:
        """Where texts and calls are kept instead of sent, when settings.outbox is local."""
        return LocalOutbox(self.client, self.sealer)

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        """The helpline's own time zone: the one its reports' days are in."""
        return ZoneInfo(self.settings.zone)

    @functools.cached_property
    def reports(self) -> tally.Pending:
        """Report counts seen where nothing is written, sent with this process's next write."""
        store = self.store

        def send(drain: Any) -> None:
            def write(client: redis.Redis) -> None:
                pipe = client.pipeline(transaction=False)
                drain(pipe)
                pipe.execute()

            store.attempt("report counts", write, None)

        return tally.Pending(self.zone, send, flush_seconds=self.settings.report_flush_seconds)

    @functools.cached_property
    def library(self) -> Library:
        return shared_library(self.settings.flows_dir)

    # -- the domain ---------------------------------------------------------------------

    @functools.cached_property
    def queue(self) -> CallbackQueue:
        return CallbackQueue(
            self.client,
            self.sealer,
            self.phone_key,
            min_replicas=self.settings.redis_min_replicas,
            zone=self.zone,
        )

    @functools.cached_property
    def checkin_sessions(self) -> CheckinSessions:
        return CheckinSessions(
            self.client,
            self.sealer,
            self.phone_key,
            min_replicas=self.settings.redis_min_replicas,
            zone=self.zone,
        )

    @functools.cached_property
    def counsellors(self) -> Counsellors:
        return Counsellors(self.client, self.sealer, password_method=self.settings.password_method)

    @functools.cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.client)

    @functools.cached_property
    def notes(self) -> Notes:
        return Notes(self.queue)

    @functools.cached_property
    def blocks(self) -> Blocks:
        return Blocks(self.client, self.sealer, self.phone_key)

    @functools.cached_property
    def live_calls(self) -> LiveCalls:
        return LiveCalls(self.client)

    @functools.cached_property
    def throttle(self) -> LoginThrottle:
        return LoginThrottle(self.client)

    @functools.cached_property
    def jobs(self) -> Jobs:
        return Jobs(self.client)

    @functools.cached_property
    def monitoring(self) -> Monitoring:
        return Monitoring(self.queue, time.time)

    @functools.cached_property
    def hours(self) -> OpeningHours:
        return OpeningHours.parse(self.settings.hours, self.settings.zone)

    @functools.cached_property
    def readiness(self) -> Readiness:
        """Whether Redis, the workers, the scheduler and the flows are all working."""
        return Readiness(self.store, lambda: self.library, self.settings.flows_dir)

    # -- conversations (the web process) ------------------------------------------------

    def warm_web(self) -> None:
        """Build now what every webhook needs, so the first caller waits for none of it."""
        self.texts  # noqa: B018  (each is built on first use)
        self.actions  # noqa: B018
        self.validator  # noqa: B018
        self.voice_failsafe  # noqa: B018
        self.sms_failsafe  # noqa: B018
        self.readiness  # noqa: B018  (notes the flows' files as loaded)

    def engine(self, channel: Medium) -> Engine:
        return self._engines[channel]

    @functools.cached_property
    def voice(self) -> Engine:
        return self.engine(Medium.VOICE)

    @property
    def default_language(self) -> str:
        return self.library.content.default_language

    @functools.cached_property
    def _engines(self) -> dict[Medium, Engine]:
        return {channel: self.library.engine(channel, self.settings.region) for channel in Medium}

    @functools.cached_property
    def desk(self) -> CallbackDesk:
        """Takes call back requests from both channels and queues the jobs they need."""
        jobs = self.jobs

        def notify(placement: Placement, confirm: bool) -> None:
            jobs.after_queued(placement.request, confirm=confirm)

        return CallbackDesk(
            self.queue,
            self.store,
            self.hours,
            self.library.content,
            notify,
            time.time,
            self.blocks,
            self.settings.region.code,
        )

    @functools.cached_property
    def checkins(self) -> CheckinDesk:
        """Books check-in calls from both channels and follows each to its end."""
        settings = self.settings
        return CheckinDesk(
            self.checkin_sessions,
            self.store,
            self.counsellors,
            self.hours,
            self.library.content,
            settings.region.variables,
            self.jobs,
            time.time,
            region=settings.region.code,
            zone=settings.zone,
            timing=Timing(settings.checkin_minute_seconds),
            blocks=self.blocks,
        )

    @functools.cached_property
    def surveys(self) -> SurveyDesk:
        """Follow-up surveys: scheduled after a reached call, sent by the workers, answered
        by text."""
        settings = self.settings
        return SurveyDesk(
            Surveys(self.client, self.queue),
            self.store,
            self.library.content,
            settings.region.variables,
            self.sealer,
            settings.zone,
            delay_minutes=settings.survey_delay_minutes,
            keep_words=settings.survey_keep_words,
        )

    @functools.cached_property
    def actions(self) -> ActionRegistry:
        """The handler of every action a flow can ask for."""
        return ActionRegistry(
            {
                "callback": self.desk.request_callback,
                "callback_again": self.desk.ask_again,
                "callback_urgent": self.desk.make_urgent,
                "checkin": self.checkins.book,
                "checkin_where": self.checkins.add_place,
            }
        )

    @functools.cached_property
    def gsm(self) -> dict[str, bool]:
        """Whether each language's texts must fit the GSM-7 alphabet."""
        return {code: lang.gsm for code, lang in self.library.content.languages.items()}

    @functools.cached_property
    def limits(self) -> RateLimits:
        settings = self.settings
        return RateLimits(
            self.store,
            self.phone_key,
            texts_per_minute=settings.texts_per_minute,
            calls_per_hour=settings.calls_per_hour,
            region=settings.region.code,
            reports=self.reports,
        )

    @functools.cached_property
    def texts(self) -> TextConversations:
        """Text conversations, by SMS and WhatsApp."""
        return TextConversations(
            self.engine(Medium.SMS),
            self.store,
            self.phone_key,
            self.gsm,
            self.desk,
            self.actions,
            self.sealer,
            self.limits,
            self.sms_failsafe,
            self.reports,
            self.checkins,
            self.surveys,
        )

    @functools.cached_property
    def validator(self) -> WebhookValidator:
        return WebhookValidator(self.settings.twilio_auth_token)

    @functools.cached_property
    def voice_failsafe(self) -> dict[str, str]:
        """Language -> the TwiML said when anything fails, rendered once."""
        content, region = self.library.content, self.settings.region
        return {
            code: twiml.voice_failsafe(
                content.text("voice.failsafe", code, region.variables(code, spoken=True)),
                region.voice_locales[code],
            )
            for code in content.languages
        }

    @functools.cached_property
    def sms_failsafe(self) -> dict[str, str]:
        content, region = self.library.content, self.settings.region
        return {
            code: twiml.sms_failsafe(
                as_sent(content.text("sms.failsafe", code, region.variables(code)), self.gsm[code])
            )
            for code in content.languages
        }


def twilio_setup(settings: Settings) -> TwilioSetup:
    """The number's webhook set-up over the Twilio REST client; it needs no Redis.

    Imported here, not at the top: the web process never loads Twilio's REST client.
    """
    from helpline.application.twilio_setup import TwilioSetup
    from helpline.infrastructure.outbound import make_client

    return TwilioSetup(make_client(settings), settings)


def doctor(environ: Mapping[str, str]) -> Doctor:
    """The checks of `helpline doctor`, over the settings read from environ."""
    from helpline.application.doctor import Doctor

    return Doctor(environ)
