"""The shape of the code: dependencies point one way, and no module imports itself back.

Read from the source, not by importing it: a module-level import is a dependency
whether or not a test happens to load it. Imports inside functions are where a module
reaches up on purpose, late (the CLI's `worker` command starting the workers); they are
allowed, but not from `helpline` to `workers` anywhere else.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpline.application.jobs import Job
from tests.factories import PROCESS_WAIT_SECONDS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("helpline", "workers")
# The one place `helpline` may reach `workers`: the CLI command that runs them.
WORKER_COMMAND = ("helpline.cli", "_worker")


def modules() -> dict[str, Path]:
    """Every module of ours, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path) -> Iterator[tuple[str, str | None]]:
    """Yield (imported module, enclosing function or None) for each import of ours."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, function: str | None) -> Iterator[tuple[str, str | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, function or child.name)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    target = f"{base}.{child.module}" if child.module else base
                else:
                    target = child.module or ""
                yield target, function
                for alias in child.names:  # "from helpline.web.console import views"
                    yield f"{target}.{alias.name}", function
            elif isinstance(child, ast.If) and _type_checking(child):
                continue  # annotations only: no import at run time
            else:
                yield from visit(child, function)

    known = modules()
    for target, function in visit(tree, None):
        if target in known and target != name:
            yield target, function


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def graph() -> dict[str, set[str]]:
    """Module-level imports among our modules (what loading a module loads)."""
    return {
        name: {target for target, function in imports(name, path) if function is None}
        for name, path in modules().items()
    }


def test_helpline_never_imports_workers_except_to_run_them():
    reaching_up = [
        f"{name} imports {target}" + (f" in {function}()" if function else "")
        for name, path in modules().items()
        if name.split(".")[0] == "helpline"
        for target, function in imports(name, path)
        if target.split(".")[0] == "workers" and (name, function) != WORKER_COMMAND
    ]
    assert reaching_up == []


def test_there_are_no_import_cycles():
    edges = graph()
    cycles = []
    # Tarjan's strongly connected components: any with more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    assert cycles == []


def test_the_layer_check_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The two checks above fail when they should (they read source, so a fake tree will do)."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "helpline" / "a.py").write_text("from helpline import b\n")
    (tmp_path / "helpline" / "b.py").write_text("import helpline.a\nfrom workers import jobs\n")
    (tmp_path / "workers" / "jobs.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)

    with pytest.raises(AssertionError):
        test_there_are_no_import_cycles()
    with pytest.raises(AssertionError):
        test_helpline_never_imports_workers_except_to_run_them()


@pytest.mark.parametrize("job", list(Job))
def test_every_job_the_web_queues_is_a_function_the_workers_can_run(job):
    module, _, function = job.value.rpartition(".")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_web_process_loads_neither_the_workers_nor_the_twilio_rest_client(
    tmp_path, redis_server
):
    """Queueing a job needs its name only: the web app never loads job code or REST APIs."""
    script = (
        "import sys\n"
        "from helpline import create_app\n"
        "create_app()\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] == 'workers' or m.startswith('twilio.rest')))\n"
    )
    env = {**os.environ, "REDIS_URL": redis_server, "HELPLINE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_WAIT_SECONDS,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_only_the_queue_reads_or_writes_a_requests_record():
    """Notes, send records and bridge status all go through helpline.callbacks.queue."""
    owner = "helpline.callbacks.queue"
    reaching_in = []
    for name, path in modules().items():
        if name == owner:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == owner:
                reaching_in += [f"{name} imports REQ" for a in node.names if a.name == "REQ"]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "cb:req" in node.value:
                    reaching_in.append(f"{name} spells the key")
    assert reaching_in == []


def test_only_the_sessions_module_reads_or_writes_a_check_in():
    """Every check-in record goes through helpline.checkins.sessions."""
    owner = "helpline.checkins.sessions"
    reaching_in = []
    for name, path in modules().items():
        if name == owner:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == owner:
                keys = {"PREFIX", "SESSION", "LOG", "OPEN", "DUE", "PENDING", "ESCALATED"}
                reaching_in += [f"{name} imports {a.name}" for a in node.names if a.name in keys]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if ":ci:" in node.value:
                    reaching_in.append(f"{name} spells the key")
    assert reaching_in == []


# Services and what they stand on: built in helpline/application/composition.py and nowhere else.
COMPOSED = frozenset(
    {
        "ActionRegistry",
        "AuditLog",
        "Blocks",
        "CallbackDesk",
        "CallbackQueue",
        "CheckinDesk",
        "CheckinSessions",
        "Counsellors",
        "Doctor",
        "Jobs",
        "LiveCalls",
        "LocalOutbox",
        "Monitoring",
        "RateLimits",
        "LoginThrottle",
        "Notes",
        "Readiness",
        "SurveyDesk",
        "Surveys",
        "Sealer",
        "TextConversations",
        "Store",
        "TwilioSetup",
        "WebhookValidator",
    }
)


def test_every_service_is_built_in_the_composition_root_only():
    elsewhere = []
    for name, path in modules().items():
        if name == "helpline.application.composition":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                called = node.func
                callee = called.id if isinstance(called, ast.Name) else getattr(called, "attr", "")
                if callee in COMPOSED:
                    elsewhere.append(f"{name}:{node.lineno} builds {callee}")
    assert elsewhere == []


# Each package's layer: a module may import its own layer and those below, never above.
LAYERS = {
    "helpline.infrastructure": 0,
    "helpline.conversation": 1,
    "helpline.callbacks": 1,
    "helpline.checkins": 1,
    "helpline.counsellors": 1,
    "helpline.reports": 1,
    "helpline.application": 2,
    "helpline.web": 3,
    "helpline.cli": 3,
    "workers": 3,
    "helpline": 4,  # the package itself: the lazy way to helpline.web.app.create_app
}


def layer(module: str) -> int:
    """The layer of the innermost package in LAYERS that holds the module."""
    holders = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return LAYERS[max(holders, key=len)]


def test_dependencies_point_down_the_layers():
    upward = [
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
        for name, path in modules().items()
        for target, function in imports(name, path)
        if layer(target) > layer(name) and (name, function) != WORKER_COMMAND
    ]
    assert upward == []


def test_helpline_itself_holds_only_its_layers():
    """A newcomer reads the layers from `ls helpline`: no module sits beside them."""
    top = sorted(path.name for path in (ROOT / "helpline").iterdir() if path.name != "__pycache__")
    assert top == [
        "__init__.py",
        "__main__.py",
        "application",
        "callbacks",
        "checkins",
        "cli",
        "conversation",
        "counsellors",
        "infrastructure",
        "reports",
        "web",
    ]
