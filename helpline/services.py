"""The helpline's resources, built once per app and kept in app.extensions."""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, current_app

from helpline import embedded, twiml
from helpline.callbacks import CallbackQueue, Placement
from helpline.config import Settings
from helpline.crypto import Sealer, lookup_key
from helpline.flows.engine import Engine
from helpline.flows.gsm import as_sent
from helpline.flows.lint import Library, shared_library
from helpline.flows.model import Channel
from helpline.hours import OpeningHours
from helpline.intake import CallbackDesk
from helpline.jobs import Jobs
from helpline.signatures import WebhookValidator
from helpline.sms import SmsConversations
from helpline.store import Store, connect

EXTENSION = "helpline"


@dataclass
class Helpline:
    settings: Settings
    library: Library
    voice: Engine
    sms: SmsConversations
    store: Store
    validator: WebhookValidator
    voice_failsafe: dict[str, str]  # language -> TwiML, rendered once at start-up
    sms_failsafe: dict[str, str]
    queue: CallbackQueue
    desk: CallbackDesk
    sealer: Sealer
    jobs: Jobs

    @property
    def default_language(self) -> str:
        return self.library.content.default_language


def init_app(app: Flask, settings: Settings) -> Helpline:
    """Load flows, connect to Redis (embedded unless REDIS_URL) and register the services."""
    library = shared_library(settings.flows_dir)
    content = library.content
    region = settings.region
    voice_engine = library.engine(Channel.VOICE, region)
    sms_engine = library.engine(Channel.SMS, region)

    redis_url = embedded.resolve_redis_url(settings.redis_url, settings.data_dir)
    store = Store(connect(redis_url), breaker_seconds=settings.redis_breaker_seconds)
    gsm = {code: lang.gsm for code, lang in content.languages.items()}
    sealer = Sealer(settings.encryption_secret)
    phone_key = lookup_key(settings.encryption_secret)
    queue = CallbackQueue(store.client, sealer, phone_key)
    jobs = Jobs(store.client)

    def notify(placement: Placement, confirm: bool) -> None:
        jobs.after_queued(placement.request, confirm=confirm)

    desk = CallbackDesk(
        queue,
        store,
        OpeningHours.parse(settings.hours, settings.zone),
        content,
        notify,
        time.time,
        region.code,
    )
    services = Helpline(
        settings=settings,
        library=library,
        voice=voice_engine,
        sms=SmsConversations(sms_engine, store, phone_key, gsm, desk, sealer),
        store=store,
        validator=WebhookValidator(settings.twilio_auth_token),
        voice_failsafe={
            code: twiml.voice_failsafe(
                content.text("voice.failsafe", code, region.variables(code, spoken=True)),
                region.voice_locales[code],
            )
            for code in content.languages
        },
        sms_failsafe={
            code: twiml.sms_failsafe(
                as_sent(content.text("sms.failsafe", code, region.variables(code)), gsm[code])
            )
            for code in content.languages
        },
        queue=queue,
        desk=desk,
        sealer=sealer,
        jobs=jobs,
    )
    app.extensions[EXTENSION] = services
    app.extensions["redis"] = store.client
    return services


def helpline() -> Helpline:
    """Return the running app's services."""
    services: Helpline = current_app.extensions[EXTENSION]
    return services
