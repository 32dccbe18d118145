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

# Seconds to wait between key presses while someone keys in a phone number.
NUMBER_TIMEOUT = 10

# Crisis words this long or longer forgive one slip of the thumb or of the ear ("overdoes",
# "unconcious"); shorter ones must be exact, so "doing" is not "ODing", "taking" not
# "waking", "loving" not "moving".
CRISIS_TYPO_FROM = 7

# A message naming an overdose ("overdose", "OD help") is read as one happening when it
# is this short, or when it neither dates it nor asks about it ("how do I prevent one").
NAMED_OVERDOSE_MAX_WORDS = 3

# Most SMS segments any reply may take.
SMS_MAX_SEGMENTS = 2

# Largest webhook body read, in bytes; Twilio's own requests are far smaller.
MAX_WEBHOOK_BYTES = 64 * 1024

# Seconds a client gets to send a request's line and headers: gunicorn's keep-alive
# timeout, which under the gevent worker bounds that read as well as an idle connection.
WEB_KEEPALIVE_SECONDS = 5
# ...and then to send the body (Twilio's arrive in one packet); later, a 408 and close.
REQUEST_BODY_SECONDS = 5.0

# Redis socket timeouts (seconds): a slow Redis must not hold a caller past Twilio's limit.
REDIS_SOCKET_TIMEOUT = 0.5
# After a failure, webhooks skip Redis for this long instead of waiting on it again.
REDIS_BREAKER_SECONDS = 5.0
# Longest a report count seen where nothing is written (a call's later steps, a fail-safe
# answer) waits in a web process for another write to carry it, before it is sent alone.
REPORT_FLUSH_SECONDS = 10.0
REDIS_CONNECT_TIMEOUT = 0.5
# Longest a write waits for replicas to take it (Redis's WAIT) before a caller is told it
# is kept; under REDIS_SOCKET_TIMEOUT, so a webhook never waits past that.
REDIS_REPLICA_WAIT_SECONDS = 0.3

# Longest text read from a single webhook field before matching; the rest is ignored.
MAX_INPUT_CHARS = 1600

# Status callback counters live under this key, one hash per channel.
STATS_KEY = f"{KEY_PREFIX}:stats"

# A counsellor's claim on a callback lasts this long (seconds) unless extended; then the
# request goes back to the queue.
CALLBACK_LEASE_SECONDS = 15 * 60

# Attempts to reach a caller before a request is closed as "no answer".
CALLBACK_MAX_ATTEMPTS = 3

# After a missed call, the request rejoins the queue after this many seconds.
CALLBACK_RETRY_SECONDS = 30 * 60
# ...or if urgent: overdose risk runs in minutes; five give a missed caller time to get free.
CALLBACK_URGENT_RETRY_SECONDS = 5 * 60

# Completed callbacks looked at to estimate how long a caller will wait.
WAIT_SAMPLE = 20

# Longest value one flow answer (e.g. a keyed-in number) may hold.
MAX_ANSWER_CHARS = 200
# Characters of a place described in words (a check-in's "where") that are kept.
MAX_PLACE_CHARS = 160
# Minutes a check-in call may be set for: at least, at most, and offered by default.
CHECKIN_MIN_MINUTES = 1
CHECKIN_MAX_MINUTES = 30
CHECKIN_DEFAULT_MINUTES = 10

# Shortest password a counsellor account accepts.
MIN_PASSWORD_CHARS = 12

# A secret production accepts (SECRET_KEY, HELPLINE_ENCRYPTION_KEY, TWILIO_AUTH_TOKEN) has
# at least this many characters...
MIN_SECRET_CHARS = 32
# ...at least this many different ones...
MIN_SECRET_DISTINCT = 8
# ...and at least this much Shannon entropy per character, in bits. Random hex of 32
# characters (a Twilio auth token) clears all three in every one of 10^6 draws tried;
# 'a' * 32, 32 spaces or a repeated word do not.
MIN_SECRET_BITS_PER_CHAR = 2.75

# How often the queue's depth and longest wait are recorded for the console's chart.
HISTORY_SAMPLE_SECONDS = 5 * 60

# Seconds an outbound REST request to Twilio may take before the worker gives up and retries.
TWILIO_TIMEOUT = 10.0

# HTTP statuses from Twilio's REST API that mean "try again later"; other 4xx never succeed.
TWILIO_RETRY_STATUSES = frozenset({408, 429})

# Twilio's error code for a recipient who has replied STOP to the sending number.
TWILIO_OPTED_OUT_CODE = 21610

# Console sessions end after this many seconds without a counsellor's own action...
SESSION_IDLE_SECONDS = 30 * 60
# ...and this many seconds after login, whatever happens.
SESSION_ABSOLUTE_SECONDS = 12 * 60 * 60

# Login throttling (helpline.counsellors.throttle). Wrong passwords for one account from one
# client (or from one known device) before each further try must wait...
LOGIN_MAX_FAILURES = 10
# ...for this many seconds, doubling with each further wrong password...
LOGIN_FIRST_DELAY_SECONDS = 30
# ...up to this long at most.
LOGIN_LOCK_SECONDS = 15 * 60
# Wrong passwords for one account from all unknown clients together before every unknown
# client waits too (and the account holder is told): a counsellor's known devices do not.
LOGIN_MAX_ACCOUNT_FAILURES = 20
# Wrong passwords from one client address, whatever the usernames, before that address
# waits: a whole office behind one address stays well under it.
LOGIN_MAX_ADDRESS_FAILURES = 30
# A count is forgotten this long after its latest wrong password: longer than the longest
# wait, so someone who keeps guessing never gets the free tries back.
LOGIN_WINDOW_SECONDS = 60 * 60
# A browser that logged in to an account is known to it (a signed cookie) for this long.
LOGIN_DEVICE_SECONDS = 30 * 24 * 60 * 60
# At most one "someone is trying to log in as you" text per account in this many seconds.
LOGIN_NOTICE_SECONDS = 24 * 60 * 60

# Entries the audit log keeps (oldest trimmed first); entries shown on the admin page.
AUDIT_MAX_ENTRIES = 200_000
AUDIT_PAGE_ENTRIES = 200

# Seconds between the console's checks for a changed queue (live updates).
CONSOLE_POLL_SECONDS = 3

# A bridged call's link (in the TwiML URL Twilio fetches) works for this many seconds.
BRIDGE_TOKEN_SECONDS = 10 * 60

# Seconds Twilio rings the caller for, once the counsellor has answered.
BRIDGE_DIAL_TIMEOUT = 30

# Longest note a counsellor may save on one request, in characters.
MAX_NOTE_CHARS = 2000

# How counsellors' passwords are hashed (werkzeug's scrypt: n=2**15, r=8, p=1). Tests pass
# a cheap method through Settings.password_method; a stored hash names its own method.
PASSWORD_METHOD = "scrypt"

# Twilio's own REST API (TWILIO_API_URL points the client elsewhere).
DEFAULT_TWILIO_API_URL = "https://api.twilio.com"

# Seconds a follow-up survey waits for its answer after the text went; then a reply of
# 1 to 5 is an ordinary text again.
SURVEY_OPEN_SECONDS = 7 * 24 * 60 * 60
# Longest HELPLINE_SURVEY_DELAY_MINUTES may be: a survey long after the call is hard to answer.
SURVEY_MAX_DELAY_MINUTES = 7 * 24 * 60
