"""Exceptions raised by the helpline package."""

from __future__ import annotations


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


class NotYours(QueueError):
    """The request is not (or no longer) claimed by this counsellor."""
