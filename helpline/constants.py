"""Values that shape behaviour, each in one place."""

from __future__ import annotations

# Prefix of every Redis key the helpline owns, so a shared Redis stays tidy.
KEY_PREFIX = "helpline"

# How long an SMS conversation remembers where it was, in seconds.
SMS_STATE_TTL = 60 * 60

# Reprompts after no input or an unrecognised key before the voice menu says goodbye.
MAX_REPROMPTS = 2

# Seconds the voice menu waits for a key press or speech before it reprompts.
GATHER_TIMEOUT = 6

# Most SMS segments any reply may take.
SMS_MAX_SEGMENTS = 2

# Largest webhook body read, in bytes; Twilio's own requests are far smaller.
MAX_WEBHOOK_BYTES = 64 * 1024

# Redis socket timeouts (seconds): a slow Redis must not hold a caller past Twilio's limit.
REDIS_SOCKET_TIMEOUT = 0.5
REDIS_CONNECT_TIMEOUT = 0.5

# Longest text read from a single webhook field before matching; the rest is ignored.
MAX_INPUT_CHARS = 1600

# Status callback counters live under this key, one hash per channel.
STATS_KEY = f"{KEY_PREFIX}:stats"

# Seconds an outbound REST request to Twilio may take before the worker gives up and retries.
TWILIO_TIMEOUT = 10.0

# HTTP statuses from Twilio's REST API that mean "try again later"; other 4xx never succeed.
TWILIO_RETRY_STATUSES = frozenset({408, 429})

# Twilio's error code for a recipient who has replied STOP to the sending number.
TWILIO_OPTED_OUT_CODE = 21610
