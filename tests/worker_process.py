"""The real worker process with short intervals, for crash tests: python -m tests.worker_process.

Settings come from the environment, as for `helpline worker`.
"""

from __future__ import annotations

from helpline.config import load_settings
from workers.main import run

# Seconds: short enough that a dead worker's job is retried within a few seconds.
INTERVALS = {"maintenance_interval": 1, "job_monitoring_interval": 1, "heartbeat_grace": 1}


def main() -> None:
    run(load_settings(), **INTERVALS)


if __name__ == "__main__":
    main()
