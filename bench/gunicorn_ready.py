"""Gunicorn config for bench/webhooks.py: each worker marks itself ready once its app is loaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def post_worker_init(worker: Any) -> None:
    """Create a file named after the worker's pid in $BENCH_READY_DIR."""
    ready_dir = os.environ.get("BENCH_READY_DIR")
    if ready_dir:
        Path(ready_dir, str(worker.pid)).touch()
