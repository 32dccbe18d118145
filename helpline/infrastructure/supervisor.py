"""Keep child processes running: `helpline serve`'s web and worker, `helpline worker`'s pool.

A child that dies is started again: at once after a good run, then after growing pauses
while it keeps dying young. The other children are left alone. Stopping sends SIGTERM,
waits, then SIGKILLs what is left, as a platform does.

With `own_groups`, each child leads a process group of its own and signals go to the
whole group: whatever a dead child left behind (gunicorn's workers, a worker pool) is
told to stop too. Without, children stay in the supervisor's group, so that a signal to
that group (a platform stopping the process, a supervisor above this one) reaches them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Seconds a child must run to count as having started well: dying sooner backs off.
STABLE_SECONDS = 10.0
# Seconds before restarting a child that died young, doubled each time up to the cap.
FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 30.0
# Seconds children get to finish after SIGTERM before they are killed.
STOP_SECONDS = 20.0
# Seconds between looks at the children.
POLL_SECONDS = 0.2


@dataclass
class Child:
    """One supervised command and its current process."""

    name: str
    command: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    young_deaths: int = 0  # deaths in a row, each before STABLE_SECONDS
    restart_at: float = 0.0


class Supervisor:
    """Start children, restart any that dies, and stop them all when asked."""

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        restart: bool = True,
        own_groups: bool = True,
    ):
        self.children = [Child(name, command) for name, command in commands.items()]
        self.env = dict(env) if env is not None else None
        self.restart = restart
        self.own_groups = own_groups

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def run(self, stopping: Callable[[], bool], also: Callable[[], None] | None = None) -> None:
        """Keep the children running until stopping() is true (or, without restarts, all end);
        also(), if given, is called on every round (it looks after something else)."""
        while not stopping():
            self.check()
            if also is not None:
                also()
            if not self.restart and all(c.process is None for c in self.children):
                return
            time.sleep(POLL_SECONDS)

    def check(self) -> None:
        """Notice children that died; restart those whose pause is over."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                self._buried(child, process.returncode, now)
            if child.process is None and self.restart and now >= child.restart_at:
                self._start(child)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM every child's group, wait up to timeout seconds, then SIGKILL the rest."""
        running = [c.process for c in self.children if c.process is not None]
        for process in running:
            self._signal(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing it", extra={"pid": process.pid})
        for process in running:
            self._signal(process.pid, signal.SIGKILL)
            process.wait()
        for child in self.children:
            child.process = None

    def pids(self) -> dict[str, int]:
        """Return the pid of each running child, by name."""
        return {c.name: c.process.pid for c in self.children if c.process is not None}

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.command, env=self.env, start_new_session=self.own_groups
        )
        child.started_at = time.monotonic()

    def _signal(self, pid: int, signum: int) -> None:
        try:
            if self.own_groups:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # gone already

    def _buried(self, child: Child, status: int, now: float) -> None:
        """Record a child's death, stop what it left behind, and schedule its restart."""
        assert child.process is not None
        if self.own_groups:
            self._signal(child.process.pid, signal.SIGTERM)  # what it left in its group
        child.process = None
        if now - child.started_at < STABLE_SECONDS:
            child.young_deaths += 1
        else:
            child.young_deaths = 0
        pause = 0.0
        if child.young_deaths:
            pause = min(FIRST_PAUSE_SECONDS * 2 ** (child.young_deaths - 1), MAX_PAUSE_SECONDS)
        child.restart_at = now + pause
        if self.restart:
            log.warning(
                "child process ended; restarting it",
                extra={"child": child.name, "status": status, "pause": pause},
            )
