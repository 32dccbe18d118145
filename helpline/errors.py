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
