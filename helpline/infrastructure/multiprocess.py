"""Where each process writes its metrics: a directory per role, under the metrics dir.

prometheus_client decides when it is first imported whether counts live in memory or in
files under PROMETHEUS_MULTIPROC_DIR, and a forked process inherits that decision. So
the process that starts a role's others (gunicorn's master, `helpline worker`) calls
`use_directory` before anything imports prometheus_client; this module imports none of it.
"""

from __future__ import annotations

import os
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The roles whose processes write counts, each to a directory of its own.
ROLES = ("web", "workers")


def use_directory(directory: Path, role: str) -> Path:
    """Make this process, and those it starts, write counts for `role` under directory.

    The role's old files are removed, unless a parent already prepared the same
    directory (a pool's worker): a role starting afresh starts its counts at zero, which
    Prometheus reads as a restart.
    """
    if role not in ROLES:
        raise ValueError(f"unknown metrics role {role!r}")
    path = directory.resolve() / role
    if os.environ.get(MULTIPROCESS_ENV) == str(path) and path.is_dir():
        return path
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_ENV] = str(path)
    return path
