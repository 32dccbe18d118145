"""The supervisor that `helpline serve` and `helpline worker` run their children under."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from helpline.infrastructure.supervisor import FIRST_PAUSE_SECONDS, Supervisor
from tests.factories import WAIT_SECONDS, wait_until


def test_a_child_that_keeps_dying_is_restarted_with_growing_pauses_and_the_others_left_alone(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    crashing = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"
    supervisor = Supervisor(
        {
            "steady": [sys.executable, "-c", "import time; time.sleep(600)"],
            "crashing": [sys.executable, "-c", crashing],
        }
    )
    supervisor.start()
    try:
        steady = supervisor.pids()["steady"]
        began = time.monotonic()

        def started_thrice() -> bool:
            supervisor.check()
            return starts.exists() and len(starts.read_text()) >= 3

        wait_until(started_thrice, WAIT_SECONDS, what="the crashing child's restarts")
        # Two pauses, the second twice the first: not a tight restart loop.
        assert time.monotonic() - began >= 3 * FIRST_PAUSE_SECONDS
        assert supervisor.pids()["steady"] == steady
    finally:
        supervisor.stop()
    assert supervisor.pids() == {}
