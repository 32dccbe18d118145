"""The `helpline` command line."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import signal
import sys
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import redis

from helpline.application.config import Settings, configured_flows_dir, load_settings
from helpline.callbacks.blocks import DEFAULT_BLOCK_DAYS
from helpline.conversation.channels import SMS, WHATSAPP
from helpline.infrastructure import embedded
from helpline.infrastructure.constants import WEB_KEEPALIVE_SECONDS
from helpline.infrastructure.errors import ConfigError, HelplineError
from helpline.infrastructure.logs import configure_logging
from helpline.infrastructure.multiprocess import use_directory
from helpline.infrastructure.phones import to_e164
from helpline.infrastructure.privacy import mask_phone
from helpline.infrastructure.supervisor import Supervisor

if TYPE_CHECKING:
    from helpline.application.composition import Components
    from helpline.callbacks.queue import Request

# Ofcom keeps 020 7946 0000-0999 for drama: a valid number that is never a subscriber's,
# so the simulator's caller can queue a call back and examples can be copied as they are.
EXAMPLE_NUMBER = "+442079460123"
# Default worker processes per CPU: a job mostly waits (on Redis's fsync, on Twilio).
WORKER_PROCESSES_PER_CPU = 2
# ...and at most this many by default (each is about 70 MB).
MAX_DEFAULT_WORKER_PROCESSES = 8


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except HelplineError as exc:
        print(f"helpline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helpline", description=__doc__)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="web + worker + embedded Redis, for development")
    serve.add_argument("--port", type=int, help="web port (default: $PORT or 5000)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.set_defaults(handler=_serve)

    web = commands.add_parser("web", help="the web process (gunicorn)")
    web.add_argument("--port", type=int, help="web port (default: $PORT or 5000)")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on")
    web.add_argument("--workers", type=int, default=None, help="gunicorn worker processes")
    web.set_defaults(handler=_web)

    worker = commands.add_parser("worker", help="the RQ worker processes")
    worker.add_argument(
        "--processes",
        type=int,
        help="worker processes (default: $HELPLINE_WORKER_PROCESSES, else 2 per CPU, up to 8)",
    )
    worker.add_argument(
        "--fork", action="store_true", help="run each job in a forked work-horse (slower)"
    )
    worker.add_argument(
        "--burst", action="store_true", help="work what is queued, in one process, then exit"
    )
    worker.set_defaults(handler=_worker)

    simulate = commands.add_parser("simulate", help="play the helpline through its webhooks")
    sim = simulate.add_subparsers(title="channels", metavar="CHANNEL")
    sms = sim.add_parser("sms", help="send one text and print the reply")
    sms.add_argument("text", nargs="+", help="the text to send")
    sms.add_argument(
        "--whatsapp", action="store_true", help="send it as a WhatsApp message, not an SMS"
    )
    call = sim.add_parser("call", help="play the voice menu (interactive without inputs)")
    call.add_argument(
        "--digits",
        dest="inputs",
        action=_Inputs,
        help="key presses, e.g. 1,3 (* for star); played where they come among --say",
    )
    call.add_argument(
        "--say", dest="inputs", action=_Inputs, help="speech (repeatable), played in order"
    )
    call.set_defaults(inputs=[])
    for sub in (sms, call):
        sub.add_argument(
            "--from",
            dest="sender",
            default=EXAMPLE_NUMBER,
            help="caller's number (default: %(default)s)",
        )
        sub.add_argument("--url", help="a running server's base URL (default: in-process)")
    bridge = sim.add_parser(
        "bridge", help="answer the latest call in the local outbox as the counsellor would"
    )
    bridge.add_argument("--digits", default=None, help="the key to press (default: ask)")
    bridge.add_argument("--url", help="a running server's base URL (default: in-process)")
    bridge.set_defaults(handler=_simulate_bridge)
    sms.set_defaults(handler=_simulate_sms)
    call.set_defaults(handler=_simulate_call)

    flows = commands.add_parser("flows", help="content and menus")
    flow_commands = flows.add_subparsers(title="actions", metavar="ACTION")
    check = flow_commands.add_parser("check", help="lint flows/; non-zero exit on any problem")
    check.add_argument(
        "--dir", type=Path, help="flows directory (default: HELPLINE_FLOWS_DIR, else flows/)"
    )
    check.set_defaults(handler=_flows_check)

    counsellor = commands.add_parser("counsellor", help="counsellor accounts")
    counsellor_commands = counsellor.add_subparsers(title="actions", metavar="ACTION")
    add = counsellor_commands.add_parser(
        "add",
        help="create a login (password prompted, or one line on standard input)",
    )
    add.add_argument("username")
    add.add_argument("--name", required=True, help="the counsellor's name, as colleagues see it")
    add.add_argument(
        "--phone", required=True, help=f"their own phone, E.164 (e.g. {EXAMPLE_NUMBER})"
    )
    add.add_argument("--admin", action="store_true", help="may manage counsellors and data")
    add.set_defaults(handler=_counsellor_add)
    listing = counsellor_commands.add_parser("list", help="every account (phones masked)")
    listing.set_defaults(handler=_counsellor_list)
    duty = counsellor_commands.add_parser("duty", help="put a counsellor on or off duty")
    duty.add_argument("username")
    duty.add_argument("state", choices=["on", "off"])
    duty.set_defaults(handler=_counsellor_duty)
    unlock = counsellor_commands.add_parser(
        "unlock", help="let a counsellor's logins through again after wrong passwords"
    )
    unlock.add_argument("username")
    unlock.set_defaults(handler=_counsellor_unlock)

    queue = commands.add_parser("queue", help="the callback queue")
    queue_commands = queue.add_subparsers(title="actions", metavar="ACTION")
    queue_list = queue_commands.add_parser("list", help="waiting and claimed callbacks")
    queue_list.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    queue_list.set_defaults(handler=_queue_list)

    purge = commands.add_parser("purge", help="delete what is past its retention")
    purge.set_defaults(handler=_purge)

    outbox = commands.add_parser(
        "outbox", help="texts and calls kept instead of sent (development without Twilio)"
    )
    outbox.add_argument("--reveal", action="store_true", help="show whole numbers (audited)")
    outbox.add_argument("--limit", type=int, default=20, help="how many (default: %(default)s)")
    outbox.set_defaults(handler=_outbox)

    block = commands.add_parser("block", help="callers who may not queue call backs")
    block_commands = block.add_subparsers(title="actions", metavar="ACTION")
    block_add = block_commands.add_parser(
        "add", help="block a number from call backs (safety replies still reach it)"
    )
    block_add.add_argument("number", help=f"the caller's number, E.164 (e.g. {EXAMPLE_NUMBER})")
    block_add.add_argument("--reason", required=True, help="why (stored encrypted)")
    block_add.add_argument(
        "--days", type=float, default=DEFAULT_BLOCK_DAYS, help="how long (default: %(default)s)"
    )
    block_add.set_defaults(handler=_block_add)
    block_list = block_commands.add_parser("list", help="blocks in force (numbers masked)")
    block_list.set_defaults(handler=_block_list)
    block_remove = block_commands.add_parser("remove", help="lift a number's block")
    block_remove.add_argument("number", help="the caller's number, E.164")
    block_remove.set_defaults(handler=_block_remove)
    twilio = commands.add_parser("twilio", help="the helpline's Twilio number")
    twilio_commands = twilio.add_subparsers(title="actions", metavar="ACTION")
    configure = twilio_commands.add_parser(
        "configure", help="point the number's webhooks and callbacks at PUBLIC_URL"
    )
    configure.add_argument("--number", help="the number, E.164 (default: $HELPLINE_PHONE_NUMBER)")
    configure.add_argument(
        "--check",
        action="store_true",
        help="change nothing; non-zero exit if any setting is not as it should be",
    )
    configure.set_defaults(handler=_twilio_configure)

    doctor = commands.add_parser(
        "doctor", help="check settings, Redis, Twilio, flows, accounts and workers; one line each"
    )
    doctor.set_defaults(handler=_doctor)
    return parser


# -- processes --------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level)
    port = args.port or settings.port
    env = dict(os.environ)
    if settings.embedded_redis:
        env["REDIS_URL"] = embedded.ensure_running(settings.data_dir)[0]
    python = sys.executable
    web = [python, "-m", "helpline", "web", "--host", args.host, "--port", str(port)]
    # A child that dies is started again; the web never goes down with the worker.
    supervisor = Supervisor(
        {"web": web, "worker": [python, "-m", "helpline", "worker"]}, env=env, own_groups=True
    )
    where = (
        f"embedded, data in {settings.data_dir}"
        if settings.embedded_redis
        else "Sentinel"
        if settings.sentinel
        else "REDIS_URL"
    )
    base = f"http://{'localhost' if args.host in ('127.0.0.1', '0.0.0.0') else args.host}:{port}"

    def announce() -> None:
        print(
            f"\nHelpline is running at {base}\n"
            f"  console:  {base}/console/\n"
            f"{_first_admin_hint(settings)}"
            f"  webhooks: {base}/twilio/voice and {base}/twilio/sms (signed requests only)\n"
            f"  health:   {base}/healthz (liveness), {base}/readyz (every part, JSON)\n"
            f"  Redis:    {where}\n"
            "Try it from another terminal:\n"
            f"  .venv/bin/helpline simulate call --url {base}\n"
            f"  .venv/bin/helpline simulate sms --url {base} SAFE\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )

    # The embedded Redis is ours to keep running too: started again if it stops.
    keeper = embedded.keeper(settings.data_dir) if settings.embedded_redis else None
    try:
        _until_stopped(supervisor, announce, keeper)
    finally:
        if settings.embedded_redis:
            embedded.stop(settings.data_dir)
    return 0


def _first_admin_hint(settings: Settings) -> str:
    """How to make the first admin account, while there is none; else nothing."""
    with _components(settings) as parts:
        try:
            if any(account.admin for account in parts.counsellors.all()):
                return ""
        except redis.RedisError:
            return ""
    return (
        "            nobody can sign in yet: make the first admin with\n"
        "            .venv/bin/helpline counsellor add USERNAME --name 'Full Name' "
        f"--phone {EXAMPLE_NUMBER} --admin\n"
    )


def _until_stopped(
    supervisor: Supervisor,
    started: Callable[[], None] | None = None,
    also: Callable[[], None] | None = None,
) -> None:
    """Start supervisor's children and keep them running until SIGTERM or Ctrl-C;
    also(), if given, looks after something else on the way."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        supervisor.start()
        if started is not None:
            started()
        supervisor.run(lambda: stopping, also)
    finally:
        supervisor.stop()


def gunicorn_command(bind: str, workers: str) -> list[str]:
    """Return the gunicorn command line that the Procfile's web line and `helpline web` run.

    gevent workers: a greenlet per connection, so a client trickling its request holds
    no worker (bench/slow_clients.py), and the keep-alive timeout also bounds the time
    a client gets to send a request's line and headers. No access log: it would show
    numbers in URLs.
    """
    return [
        "gunicorn",
        "--bind",
        bind,
        "--worker-class",
        "gevent",
        "--keep-alive",
        str(WEB_KEEPALIVE_SECONDS),
        "--workers",
        workers,
        "--graceful-timeout",
        "20",
        # Hooks: the master prepares the metrics directory its workers write to.
        "--config",
        "python:helpline.web.gunicorn_conf",
        "helpline:create_app()",
    ]


def _web(args: argparse.Namespace) -> int:
    # Checked first: gunicorn reads WEB_CONCURRENCY when imported, and fails with a traceback.
    workers = args.workers or _web_concurrency()
    from helpline.conversation.lint import load_flows

    settings = load_settings()
    port = args.port or settings.port
    # Fail here, loudly, before gunicorn starts.
    load_flows(settings.flows_dir)
    if settings.embedded_redis:
        embedded.ensure_running(settings.data_dir)
    # gunicorn replaces this process, as the Procfile starts it: in a fresh interpreter
    # its gevent workers patch the standard library before the app imports anything.
    command = gunicorn_command(f"{args.host}:{port}", str(workers))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", *command])


def _web_concurrency() -> int:
    """Return WEB_CONCURRENCY (the Procfile's setting), else 2 workers."""
    return _count_from_env("WEB_CONCURRENCY", 2)


def _count_from_env(name: str, default: int) -> int:
    """Return the environment variable `name` as a whole number above 0, else default."""
    text = os.environ.get(name, "")
    try:
        count = int(text) if text else default
        if count < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{name} must be a whole number above 0, not {text!r}") from None
    return count


def _usable_cpus() -> int:
    """Return how many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker(args: argparse.Namespace) -> int:
    settings = load_settings()  # a bad setting fails here once, not in every process
    if args.processes is not None and args.processes < 1:
        raise ConfigError(f"--processes must be a whole number above 0, not {args.processes}")
    default = min(WORKER_PROCESSES_PER_CPU * _usable_cpus(), MAX_DEFAULT_WORKER_PROCESSES)
    processes = args.processes or _count_from_env("HELPLINE_WORKER_PROCESSES", default)
    # Before anything imports prometheus_client: the pool's processes inherit it.
    use_directory(settings.metrics_dir, "workers")
    if processes == 1 or args.burst:
        from workers.main import run

        return run(settings, burst=args.burst, fork=args.fork)
    configure_logging(settings.log_level)
    one = [sys.executable, "-m", "helpline", "worker", "--processes", "1"]
    if args.fork:
        one.append("--fork")
    # The pool stays in this process's group: a signal to the group reaches every worker.
    pool = Supervisor({f"worker-{n}": one for n in range(1, processes + 1)}, own_groups=False)
    _until_stopped(pool)
    return 0


# -- simulator --------------------------------------------------------------------------


def _simulation(settings: Settings, url: str | None):
    from helpline.cli import simulate

    if url:
        return simulate.over_http(url, settings.twilio_auth_token), False
    started = False
    if settings.embedded_redis:
        redis_url, started = embedded.ensure_running(settings.data_dir)
        settings = settings.with_overrides(redis_url=redis_url)
    return simulate.in_process(settings), started


def _simulate_sms(args: argparse.Namespace) -> int:
    from helpline.cli import simulate

    settings = load_settings()
    transport, started = _simulation(settings, args.url)
    try:
        with transport as post:
            channel = WHATSAPP if args.whatsapp else SMS
            sender, to = channel.address(args.sender), settings.sender(channel)
            print(simulate.sms(post, sender, to, " ".join(args.text)))
    finally:
        if started:
            embedded.stop(settings.data_dir)
    return 0


def _simulate_bridge(args: argparse.Namespace) -> int:
    from helpline.cli import simulate

    settings = load_settings()
    with _components(settings) as parts:
        call = next((e for e in parts.local_outbox.entries(50) if e.kind == "call"), None)
    if call is None:
        raise HelplineError(
            "no call in the local outbox: press Call now on a claimed request in the console "
            "(with `helpline serve` running, and HELPLINE_OUTBOX=local or no Twilio account)"
        )
    keys = [args.digits] if args.digits is not None else None

    def next_input() -> str | None:
        if keys is not None:
            return keys.pop(0) if keys else None
        try:
            return input("  press a key (1 to be connected)> ")
        except EOFError:
            return None

    transport, started = _simulation(settings, args.url)
    try:
        with transport as post:
            start = urllib.parse.urlsplit(call.url).path
            simulate.call(post, call.from_, call.to, next_input, print, start=start)
    finally:
        if started:
            embedded.stop(settings.data_dir)
    return 0


class _Inputs(argparse.Action):
    """Collect --digits and --say into one list, in the order they were given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        inputs = [*getattr(namespace, self.dest, [])]
        if option_string == "--digits":
            inputs.extend(key.strip() for key in str(values).split(",") if key.strip())
        else:
            inputs.append(str(values))
        setattr(namespace, self.dest, inputs)


def _simulate_call(args: argparse.Namespace) -> int:
    from helpline.cli import simulate

    settings = load_settings()
    scripted = list(args.inputs)
    interactive = not scripted

    def next_input() -> str | None:
        if not interactive:
            return scripted.pop(0) if scripted else None
        try:
            line = input("  keys or words (Enter for silence, q to hang up)> ")
        except EOFError:
            return None
        return None if line.strip().lower() in {"q", "quit"} else line

    transport, started = _simulation(settings, args.url)
    try:
        with transport as post:
            simulate.call(post, args.sender, settings.phone_number, next_input, print)
    finally:
        if started:
            embedded.stop(settings.data_dir)
    return 0


# -- flows ------------------------------------------------------------------------------


def _flows_check(args: argparse.Namespace) -> int:
    from helpline.conversation.explore import explore_all
    from helpline.conversation.lint import inspect_flows

    flows_dir = args.dir or configured_flows_dir()
    if not flows_dir.is_dir():
        print(f"helpline: {flows_dir} is not a directory of flows", file=sys.stderr)
        return 2
    problems, library = inspect_flows(flows_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {flows_dir}", file=sys.stderr)
        return 1
    nodes = sum(len(f.nodes) for f in library.flows.values())
    languages = ", ".join(library.content.languages)
    print(f"flows OK: {len(library.flows)} flows, {nodes} nodes, languages {languages}")
    # Then prove the safety invariants over every state, region and store condition.
    report = explore_all(library)
    for found in report.problems:
        print(found)
    print(report.summary())
    return 1 if report.problems else 0


# -- data -------------------------------------------------------------------------------


@contextlib.contextmanager
def _redis(settings: Settings) -> Iterator[redis.Redis]:
    """Connect to Redis, starting the embedded one for this command if nothing runs."""
    from helpline.application.composition import connect_redis

    started = False
    if settings.embedded_redis:
        url, started = embedded.ensure_running(settings.data_dir)
        settings = settings.with_overrides(redis_url=url)
    client = connect_redis(settings)
    try:
        client.ping()
    except redis.RedisError as exc:
        where = "REDIS_SENTINELS" if settings.sentinel else "REDIS_URL"
        raise HelplineError(
            f"cannot reach Redis ({type(exc).__name__}); check {where} or start the service"
        ) from None
    try:
        yield client
    finally:
        client.close()
        if started:
            embedded.stop(settings.data_dir)


@contextlib.contextmanager
def _components(settings: Settings) -> Iterator[Components]:
    """The helpline's services over a plain Redis client (see _redis)."""
    from helpline.application.composition import Components

    with _redis(settings) as client:
        yield Components(settings, client)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat it: "):
            raise HelplineError("the two passwords differ; nothing was created")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _counsellor_add(args: argparse.Namespace) -> int:
    from helpline.infrastructure.phones import to_e164

    settings = load_settings()
    phone = to_e164(args.phone, settings.region.code)
    if phone is None:
        raise HelplineError(
            f"--phone {mask_phone(args.phone)} is not a valid phone number; "
            f"give it in international form, e.g. {EXAMPLE_NUMBER}"
        )
    password = _read_password()
    with _components(settings) as parts:
        account = parts.counsellors.add(
            args.username, name=args.name, phone=phone, password=password, admin=args.admin
        )
        parts.audit.record("cli", "counsellor_add", detail=account.username)
    print(f"added {account.role.value} {account.username} ({account.name}, {account.phone_masked})")
    return 0


def _counsellor_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    with _components(settings) as parts:
        accounts = parts.counsellors.all()
    if not accounts:
        print("no counsellors yet: add one with `helpline counsellor add`")
        return 0
    rows = []
    for c in accounts:
        flags = ", ".join(f for f, on in (("on duty", c.on_duty), ("disabled", c.disabled)) if on)
        rows.append([c.username, c.name, c.role.value, c.phone_masked, flags])
    _print_table(["USERNAME", "NAME", "ROLE", "PHONE", "STATE"], rows)
    return 0


def _counsellor_duty(args: argparse.Namespace) -> int:
    settings = load_settings()
    with _components(settings) as parts:
        parts.counsellors.set_on_duty(args.username, args.state == "on")
        parts.audit.record("cli", f"duty_{args.state}", detail=args.username)
    print(f"{args.username} is {args.state} duty")
    return 0


def _counsellor_unlock(args: argparse.Namespace) -> int:
    settings = load_settings()
    with _components(settings) as parts:
        if parts.counsellors.get(args.username) is None:
            raise HelplineError(f"no counsellor called {args.username!r}")
        parts.throttle.unlock(args.username)
        parts.audit.record("cli", "login_unlock", detail=args.username)
    print(f"{args.username} is unlocked: their next login is checked at once, from anywhere")
    return 0


def _queue_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    with _components(settings) as parts:
        requests = parts.queue.active()
    if args.json:
        rows = [{**r.to_json(), "scheduled": _scheduled(r)} for r in requests]
        print(json.dumps(rows, indent=2))
        return 0
    if not requests:
        print("no one is waiting")
        return 0
    zone = ZoneInfo(settings.zone)

    def local(stamp: float | None) -> str:
        return "" if stamp is None else datetime.fromtimestamp(stamp, zone).strftime(_WHEN)

    _print_table(
        ["ID", "STATUS", "PRIORITY", "CHANNEL", "LANG", "ASKED", "DUE", "NUMBER", "WITH"],
        [
            [
                r.id,
                "scheduled" if _scheduled(r) else r.status.value,
                r.priority.value,
                r.channel,
                r.lang,
                local(r.created_at),
                local(r.due_at) if _scheduled(r) else "",
                r.phone_masked,
                r.claimed_by or "",
            ]
            for r in requests
        ],
    )
    return 0


# Times the queue listing shows, in the helpline's own time zone, named.
_WHEN = "%Y-%m-%d %H:%M %Z"


def _scheduled(request: Request) -> bool:
    """Whether a request waits for a later time (a retry, a "call back at"), not in line."""
    from helpline.callbacks.queue import Status

    return request.status is Status.WAITING and request.due_at is not None


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows under a header row, each column as wide as its widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _e164(text: str) -> str:
    number = to_e164(text, "ZZ")
    if number is None or not text.strip().startswith("+"):
        raise HelplineError(
            f"{mask_phone(text)} is not a number in E.164 form: '+', country code and "
            f"number, no spaces, such as {EXAMPLE_NUMBER}"
        )
    return number


def _outbox(args: argparse.Namespace) -> int:
    settings = load_settings()
    with _components(settings) as parts:
        entries = parts.local_outbox.entries(max(1, args.limit))
        if args.reveal and entries:
            parts.audit.record("cli", "outbox_reveal", detail=str(len(entries)))
    if settings.outbox != "local":
        print("(texts and calls go to Twilio here; these were kept earlier)", file=sys.stderr)
    if not entries:
        print("the outbox is empty")
    for entry in reversed(entries):
        to = entry.to if args.reveal else mask_phone(entry.to)
        when = entry.date_created.strftime("%Y-%m-%d %H:%M:%S UTC")
        if entry.kind == "call":
            print(f"{when}  call  to {to}: answers with {urllib.parse.urlsplit(entry.url).path}")
        else:
            print(f"{when}  text  to {to}: {entry.body}")
    return 0


def _block_add(args: argparse.Namespace) -> int:
    number = _e164(args.number)
    with _components(load_settings()) as parts:
        try:
            block = parts.blocks.add(number, reason=args.reason, days=args.days, by="cli")
        except ValueError as exc:
            raise HelplineError(str(exc)) from None
        parts.audit.record("cli", "block", detail=block.masked)
    print(f"{block.masked} may not queue call backs until {block.ends}")
    print("every safety and crisis reply still reaches it")
    return 0


def _block_list(args: argparse.Namespace) -> int:
    with _components(load_settings()) as parts:
        blocks = parts.blocks.all()
    if not blocks:
        print("no one is blocked")
    for block in blocks:
        print(f"{block.masked}  until {block.ends}  by {block.by}  {block.reason}")
    return 0


def _block_remove(args: argparse.Namespace) -> int:
    number = _e164(args.number)
    with _components(load_settings()) as parts:
        if not parts.blocks.remove_number(number):
            raise HelplineError(f"{mask_phone(number)} is not blocked")
        parts.audit.record("cli", "unblock", detail=mask_phone(number))
    print(f"{mask_phone(number)} may queue call backs again")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from helpline.callbacks import retention

    settings = load_settings()
    with _components(settings) as parts:
        removed = retention.purge(parts.queue, parts.audit, settings.retention_days)
        parts.audit.record("cli", "purge", detail=str(removed))
    print(f"purged {removed} closed request(s) older than {settings.retention_days:g} days")
    return 0


# -- operations -------------------------------------------------------------------------


def _twilio_configure(args: argparse.Namespace) -> int:
    from helpline.application.composition import twilio_setup
    from helpline.application.twilio_setup import shown

    settings = load_settings()
    setup = twilio_setup(settings)
    plan = setup.plan(args.number)
    for warning in setup.warnings():
        print(f"warning: {warning}")
    print(f"{plan.number} ({plan.sid}) on Twilio account {settings.twilio_account_sid}:")
    if args.check:
        for setting in plan.settings:
            if setting.needed:
                print(f"  wrong  {setting.label}: {shown(setting.old)}, not {shown(setting.new)}")
            else:
                print(f"  ok     {setting.label}: {shown(setting.new)}")
        if plan.changes:
            print(
                f"{len(plan.changes)} of {len(plan.settings)} settings are not as they should be; "
                "`helpline twilio configure` sets them"
            )
            return 1
        print(f"all {len(plan.settings)} settings point at {shown(settings.public_url or '')}")
        return 0
    done = setup.apply(plan)
    if plan.changes:
        _audit_twilio_change(settings, len(plan.changes) - len(done.changes))
    for setting in plan.changes:
        print(f"  changed  {setting.label}: {shown(setting.old)} \u2192 {shown(setting.new)}")
    if done.changes:
        for setting in done.changes:
            print(f"  NOT SET  {setting.label}: still {shown(setting.old)}")
        print(f"Twilio did not keep {len(done.changes)} setting(s); try again", file=sys.stderr)
        return 1
    kept = len(plan.settings) - len(plan.changes)
    print(f"{len(plan.changes)} setting(s) changed, {kept} already right")
    return 0


def _audit_twilio_change(settings: Settings, changed: int) -> None:
    """Write a change made on Twilio to the audit log; say so if that cannot be done."""
    try:
        with _components(settings) as parts:
            parts.audit.record("cli", "twilio_configure", detail=str(changed))
    except (HelplineError, redis.RedisError) as exc:
        print(f"warning: not written to the audit log: {exc}", file=sys.stderr)


def _doctor(args: argparse.Namespace) -> int:
    from helpline.application import doctor
    from helpline.application.composition import doctor as make_doctor

    # The twilio library logs request URLs and headers at INFO.
    configure_logging("WARNING")
    findings = []
    for finding in make_doctor(os.environ).checks():
        print(finding.line(), flush=True)
        findings.append(finding)
    print(doctor.summary(findings))
    return 1 if any(f.level is doctor.Level.FAIL for f in findings) else 0
