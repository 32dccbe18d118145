"""Exceptions raised by the helpline package."""

from __future__ import annotations

from enum import StrEnum


class HelplineError(Exception):
    """Base class for errors the helpline reports to operators."""


class ConfigError(HelplineError):
    """The configuration is missing something or holds a bad value."""


class FlowError(HelplineError):
    """A flow or its content failed validation."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class EmbeddedRedisError(HelplineError):
    """The embedded redis-server could not be started."""


class SealError(HelplineError):
    """An encrypted value could not be opened (wrong key, or altered)."""


class QueueError(HelplineError):
    """A callback-queue operation could not be done as asked."""


class QueueUnavailable(QueueError):
    """Redis could not be reached, so the queue could not be read or changed."""


class NotDurable(HelplineError):
    """Fewer replicas than required took a write in time: a failover could lose it."""


class NotKept(QueueUnavailable):
    """The request was written, but too few replicas have it to promise it is kept."""


class NotYours(QueueError):
    """The request is not (or no longer) claimed by this counsellor."""


class Failure(StrEnum):
    """What a worker should do about a failed request to Twilio's REST API."""

    RETRY = "retry"  # Twilio or the network had a moment: try again later
    OPTED_OUT = "opted_out"  # the recipient replied STOP: never retry, never resend
    PERMANENT = "permanent"  # the request itself is wrong: retrying cannot help


class OutboundError(HelplineError):
    """A request to Twilio's REST API failed; says how, never to whom or what Twilio said."""

    def __init__(self, kind: Failure, status: int | None = None, code: int | None = None):
        self.kind = kind
        self.status = status  # HTTP status, None when no response came back
        self.code = code  # Twilio's error code, when it gave one
        super().__init__(f"Twilio REST request failed: {kind} (HTTP {status}, code {code})")

    @property
    def retryable(self) -> bool:
        return self.kind is Failure.RETRY

    def __reduce__(self) -> tuple[type[OutboundError], tuple[Failure, int | None, int | None]]:
        """Pickle by kind, status and code, as the constructor takes them."""
        return (type(self), (self.kind, self.status, self.code))
