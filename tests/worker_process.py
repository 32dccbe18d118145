"""The real worker process with short intervals, for crash tests.

Run: python -m tests.worker_process [--fork]   (--fork: a work-horse per job, as RQ's default)

Settings come from the environment, as for `helpline worker`.
"""

from __future__ import annotations

import sys

from helpline.application.config import load_settings
from workers import main as worker
from workers.main import run

# Seconds: short enough that a dead worker's job is retried within a few seconds.
INTERVALS = {"maintenance_interval": 1, "job_monitoring_interval": 1, "heartbeat_grace": 1}
# Seconds between looks at the check-ins due (1 s each in production): a call a test
# waits for is placed within a fifth of a second of its due time.
POLL_SECONDS = 0.2


def main() -> None:
    worker.IDLE_POLL_SECONDS = POLL_SECONDS
    worker.CHECKIN_POLL_SECONDS = POLL_SECONDS
    sys.exit(run(load_settings(), fork="--fork" in sys.argv[1:], **INTERVALS))


if __name__ == "__main__":
    main()
