"""The embedded Redis default and `helpline serve`: one server, shared, persistent."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import redis as redis_py

from helpline.infrastructure import embedded
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    HELPLINE_NUMBER,
    PROCESS_WAIT_SECONDS,
    SECRET_KEY,
    USABLE_CALLER,
    WAIT_SECONDS,
    child_pids,
    run_helpline,
    sign,
    wait_until,
)
from tests.processes import free_port
from tests.twilio_api import TwilioApi


def test_embedded_redis_keeps_data_across_a_restart_with_aof(tmp_path):
    url, started = embedded.ensure_running(tmp_path)
    assert started
    redis_py.Redis.from_url(url).set("helpline:test", "kept")
    assert redis_py.Redis.from_url(url).config_get("appendonly") == {"appendonly": "yes"}
    embedded.stop(tmp_path)
    assert not embedded.is_running(tmp_path)
    url, started = embedded.ensure_running(tmp_path)
    try:
        assert started
        assert redis_py.Redis.from_url(url).get("helpline:test") == b"kept"
    finally:
        embedded.stop(tmp_path)


def test_second_caller_finds_the_running_server_instead_of_starting_another(tmp_path):
    first, started = embedded.ensure_running(tmp_path)
    try:
        second, started_again = embedded.ensure_running(tmp_path)
        assert started and not started_again and first == second
    finally:
        embedded.stop(tmp_path)


def _serve(
    data_dir: Path, port: int, stderr: Path | None = None, **extra: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(HELPLINE_DATA_DIR=str(data_dir), TWILIO_AUTH_TOKEN=AUTH_TOKEN, SECRET_KEY=SECRET_KEY)
    env.update(extra)
    with open(stderr or os.devnull, "w") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "helpline", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )


def _post_sms(port: int, body: str) -> str:
    url = f"http://127.0.0.1:{port}/twilio/sms"
    form = {
        "From": "+447700900123",
        "To": "+447700900999",
        "Body": body,
        "MessageSid": "SM" + secrets.token_hex(16),
    }
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"X-Twilio-Signature": sign(url, form)},
    )
    with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
        return response.read().decode()


def _wait_until_up(port: int, process: subprocess.Popen[str]) -> None:
    def healthy() -> bool:
        assert process.poll() is None, "helpline serve exited early"
        try:
            url = f"http://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=WAIT_SECONDS) as response:
                return bool(response.status == 200)
        except OSError:  # not listening yet
            return False

    wait_until(healthy, PROCESS_WAIT_SECONDS, what="helpline serve to answer /healthz")


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=PROCESS_WAIT_SECONDS)
    if process.stdout:
        process.stdout.close()


def test_serve_runs_web_worker_and_redis_and_conversations_survive_a_restart(tmp_path):

    port = free_port()
    process = _serve(tmp_path, port)
    try:
        _wait_until_up(port, process)
        banner = _banner(process)
        assert f"Helpline is running at http://localhost:{port}" in banner
        assert f"console:  http://localhost:{port}/console/" in banner
        assert "nobody can sign in yet: make the first admin with" in banner
        assert "helpline counsellor add USERNAME --name 'Full Name' --phone" in banner
        assert "Dependence is a medical problem" in _post_sms(port, "2")
        client = redis_py.Redis.from_url(embedded.url_for(tmp_path))
        wait_until(
            lambda: bool(client.smembers("rq:workers")),
            PROCESS_WAIT_SECONDS,
            what="the worker to register itself in the shared Redis",
        )
        client.close()
    finally:
        _stop(process)
    assert not embedded.is_running(tmp_path), "serve stops the embedded Redis on exit"

    admin = ["counsellor", "add", "ada", "--name", "Ada", "--phone", USABLE_CALLER, "--admin"]
    env = {**os.environ, "HELPLINE_DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET_KEY}
    env.pop("REDIS_URL", None)
    assert run_helpline(*admin, env=env, stdin="a long enough password\n").returncode == 0

    process = _serve(tmp_path, port)
    try:
        _wait_until_up(port, process)
        # With an admin, the banner no longer asks for one.
        assert "nobody can sign in yet" not in _banner(process)
        # The conversation state survived: "1" picks from the recovery menu.
        assert "Regular opioid use changes the brain" in _post_sms(port, "1")
    finally:
        _stop(process)


def _banner(process: subprocess.Popen[str]) -> str:
    """What serve printed on starting, up to its last line."""
    assert process.stdout is not None
    lines = []
    while not lines or not lines[-1].startswith("Press Ctrl-C"):
        line = process.stdout.readline()
        assert line, "serve ended its output before the banner's last line"
        lines.append(line)
    return "".join(lines)


def test_serve_starts_its_embedded_redis_again_if_it_is_killed(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    process = _serve(tmp_path, port, stderr=log)
    try:
        _wait_until_up(port, process)
        first = embedded.server_pid(tmp_path)
        assert first is not None
        os.kill(first, signal.SIGKILL)

        def back() -> bool:
            return embedded.server_pid(tmp_path) not in (None, first) and _answers(port)

        wait_until(back, PROCESS_WAIT_SECONDS, what="the embedded Redis to be started again")
        # Texts are answered and the console's sign-in page is served again.
        assert "Dependence is a medical problem" in _post_sms(port, "2")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT_SECONDS) as page:
            assert page.status == 200 and "/console/login" in page.url
    finally:
        _stop(process)
    assert "the embedded Redis stopped; starting it again" in log.read_text()


# Whom the call back is for, when a texter asks for it on another phone.
OTHER_PHONE = USABLE_CALLER


def _answers(port: int) -> bool:
    """Return whether the web answers /healthz with 200 right now."""
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=WAIT_SECONDS) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _worker_child(process: subprocess.Popen[str]) -> int | None:
    """Return the pid of serve's worker child, if one runs."""
    for pid in child_pids(process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in command:
            return pid
    return None


def test_serve_restarts_a_killed_worker_while_the_web_keeps_answering(
    tmp_path: Path, twilio_api: TwilioApi
) -> None:
    port = free_port()
    process = _serve(
        tmp_path,
        port,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_API_URL=twilio_api.url,
        HELPLINE_PHONE_NUMBER=HELPLINE_NUMBER,
    )
    try:
        _wait_until_up(port, process)
        wait_until(lambda: _worker_child(process) is not None, PROCESS_WAIT_SECONDS)
        victim = _worker_child(process)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            assert _answers(port), "the web stopped answering"
            return _worker_child(process) not in (None, victim)

        wait_until(replaced, PROCESS_WAIT_SECONDS, what="a new worker")
        assert process.poll() is None

        # The new worker works: a call back asked for on another phone is confirmed by text.
        for body in ("TALK", "2", "no", OTHER_PHONE, "1", "1"):
            _post_sms(port, body)
        twilio_api.wait_for(1, timeout=PROCESS_WAIT_SECONDS)
        assert _answers(port)
    finally:
        _stop(process)
    assert [m.form["To"] for m in twilio_api.messages()] == [OTHER_PHONE]
