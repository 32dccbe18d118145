"""Structured (JSON lines) logging that masks phone numbers wherever they appear."""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any

from helpline.infrastructure.privacy import mask_text

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# A request id (12 hex digits) in the field named for it is shown whole, even when by
# chance it has no letter in it and would otherwise read as a number.
_REQUEST_ID = re.compile(r"[0-9a-f]{12}")


class MaskingJsonFormatter(logging.Formatter):
    """Render a record as one JSON object; mask phone-like numbers in every field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _field(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            # Exception messages can carry input; the type and traceback lines are enough.
            entry["exc"] = mask_text(_traceback_without_message(*record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def _field(key: str, value: object) -> object:
    """Return an extra field's value for the log line, numbers in it masked."""
    if not isinstance(value, str):
        return value
    if key == "request" and _REQUEST_ID.fullmatch(value):
        return value
    return mask_text(value)


def _traceback_without_message(
    exc_type: type[BaseException], _exc: BaseException | None, tb: TracebackType | None
) -> str:
    """Format an exception as the standard traceback does, minus str(exc)."""
    name = f"{exc_type.__module__}.{exc_type.__qualname__}".removeprefix("builtins.")
    return "Traceback (most recent call last):\n" + "".join(traceback.format_tb(tb)) + name


def configure_logging(level: str = "INFO") -> None:
    """Send JSON lines to stderr at level; idempotent, so app factories can call it freely."""
    root = logging.getLogger()
    root.setLevel(level)
    if any(isinstance(h.formatter, MaskingJsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingJsonFormatter())
    root.addHandler(handler)
