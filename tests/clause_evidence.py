"""Clause evidence: which of piguard's entry points each test's body reached (a pytest plugin).

Registered from `tests/conftest.py`. For the session it wraps the product's entry points (the
decision engine, the services, the audit log and its verification, notice rendering, masking, the
SLA clock, the HTTP app and every request it serves) so that every call is recorded against the
test whose body is running, whatever thread makes it. A test that starts a process running
piguard's own code (the CLI, a worker built by `bootstrap.build`) reaches it too. Fixtures do not
count: only the call phase of a test is measured.

At the end it writes `.pytest-clause-evidence.json` in the project root (`--clause-evidence`
elsewhere): for every test that passed, its function name and the entry points it reached.
`piguard policy coverage --evidence FILE` counts a clause as tested only through a test named for
it that reached one; a test that only reads the policy file (pins a YAML value) reaches none.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from piguard.policy.coverage import EVIDENCE_FORMAT

EVIDENCE_FILE: Final = ".pytest-clause-evidence.json"

# (module, attribute): a class (each of its public methods is an entry point), a method, or a
# function (replaced in every piguard module that imported it).
ENTRY_POINTS: Final = (
    ("piguard.policy.decide", "DecisionEngine"),
    ("piguard.vault.service", "VaultService"),
    ("piguard.vault.rotation", "rotate"),
    ("piguard.vault.rotation", "retire"),
    ("piguard.consent.service", "ConsentService"),
    ("piguard.auth.service", "ApiKeys"),
    ("piguard.audit.log", "AuditLog"),
    ("piguard.audit.verify", "verify_chain"),
    ("piguard.audit.scan", "verify"),
    ("piguard.audit.scan", "verify_storage"),
    ("piguard.policy.notice", "build_notice"),
    ("piguard.policy.notice", "render_markdown"),
    ("piguard.policy.masking", "masker"),
    ("piguard.policy.sla", "deadline"),
    ("piguard.policy.sla", "is_overdue"),
    ("piguard.web.app", "create_app"),
    ("piguard.web.middleware", "SecurityHeaders.__call__"),  # every HTTP request the app serves
)
# Functions that build an operator: reached when the operator runs on a value, not when it is
# built (loading a policy builds every mask of it to check the specs).
BUILDERS: Final = frozenset({("piguard.policy.masking", "masker")})
PROCESS: Final = "process:piguard"


class Recorder:
    """The entry points reached by the body of the running test, and which tests passed.

    `hit` runs on every call of an entry point, from any thread: one `set.add`, atomic in CPython,
    on the set of the running test."""

    def __init__(self) -> None:
        self._current: set[str] | None = None
        self._reached: dict[str, set[str]] = {}
        self._names: dict[str, str] = {}
        self._passed: set[str] = set()

    def start(self, nodeid: str, name: str) -> None:
        self._names[nodeid] = name
        self._current = self._reached.setdefault(nodeid, set())

    def stop(self) -> None:
        self._current = None

    def hit(self, entry: str) -> None:
        current = self._current
        if current is not None:
            current.add(entry)

    def passed(self, nodeid: str) -> None:
        self._passed.add(nodeid)

    def document(self) -> dict[str, Any]:
        tests = {
            nodeid: {"name": self._names[nodeid], "reached": sorted(self._reached[nodeid])}
            for nodeid in sorted(self._passed & self._names.keys())
        }
        return {"format": EVIDENCE_FORMAT, "tests": tests}


class Wrapping:
    """The session's replacements of entry points, undone at its end."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._undo: list[tuple[object, str, object]] = []

    def install(self) -> None:
        for module_name, attribute in ENTRY_POINTS:
            owner: Any = importlib.import_module(module_name)
            *path, name = attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            target = getattr(owner, name)
            if inspect.isclass(target):
                self._wrap_class(target)
            elif path:
                self._replace(owner, name, self._recording(attribute, target))
            else:
                self._wrap_function(module_name, name, target)
        self._wrap_popen()

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

    def _replace(self, owner: object, name: str, value: object) -> None:
        self._undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def _recording(self, entry: str, func: Callable[..., Any]) -> Callable[..., Any]:
        hit = self._recorder.hit

        @functools.wraps(func)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            hit(entry)
            return func(*args, **kwargs)

        return recorded

    def _wrap_class(self, cls: type) -> None:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(member):
                self._replace(cls, name, self._recording(f"{cls.__name__}.{name}", member))

    def _recording_result(self, entry: str, build: Callable[..., Any]) -> Callable[..., Any]:
        hit = self._recorder.hit

        @functools.wraps(build)
        def built(*args: Any, **kwargs: Any) -> Any:
            operator = build(*args, **kwargs)

            def run(*args: Any, **kwargs: Any) -> Any:
                hit(entry)
                return operator(*args, **kwargs)

            return run

        return built

    def _wrap_function(self, module_name: str, attribute: str, func: Callable[..., Any]) -> None:
        """Replace the function in its module and in every piguard module that imported it."""
        entry = f"{module_name.rsplit('.', 1)[-1]}.{attribute}"
        if (module_name, attribute) in BUILDERS:
            wrapped = self._recording_result(entry, func)
        else:
            wrapped = self._recording(entry, func)
        for module in _piguard_modules():
            for name, value in list(vars(module).items()):
                if value is func:
                    self._replace(module, name, wrapped)

    def _wrap_popen(self) -> None:
        original = subprocess.Popen.__init__
        hit = self._recorder.hit

        @functools.wraps(original)
        def init(popen: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
            if _runs_piguard(args):
                hit(PROCESS)
            original(popen, args, *rest, **kwargs)

        self._replace(subprocess.Popen, "__init__", init)


def _runs_piguard(args: Any) -> bool:
    """Whether a command runs piguard's own code: its console script, `-m piguard...`, or a
    `-c` script that imports piguard."""
    argv = [str(a) for a in (args if isinstance(args, list | tuple) else [args])]
    if argv and Path(argv[0]).name == "piguard":
        return True
    for flag, value in itertools.pairwise(argv):
        if flag == "-m" and value.split(".")[0] == "piguard":
            return True
        if flag == "-c" and _IMPORTS_PIGUARD.search(value):
            return True
    return False


_IMPORTS_PIGUARD: Final = re.compile(r"^\s*(?:from|import)\s+piguard\b", re.MULTILINE)


def _piguard_modules() -> Iterator[Any]:
    for name, module in list(sys.modules.items()):
        if module is not None and (name == "piguard" or name.startswith("piguard.")):
            yield module


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clause-evidence",
        default=None,
        help=f"where to write the clause evidence (default: {EVIDENCE_FILE} in the rootdir)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(EvidencePlugin(config), "clause-evidence-recorder")


class EvidencePlugin:
    """The session's hooks: wrap the entry points, measure each test's body, write the file."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._recorder = Recorder()
        self._wrapping = Wrapping(self._recorder)
        self._wrapping.install()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        self._recorder.start(item.nodeid, getattr(item, "originalname", item.name))
        try:
            return (yield)
        finally:
            self._recorder.stop()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self._recorder.passed(report.nodeid)

    def pytest_sessionfinish(self) -> None:
        if self._config.option.collectonly:
            return
        target = self._config.getoption("--clause-evidence") or (
            self._config.rootpath / EVIDENCE_FILE
        )
        text = json.dumps(self._recorder.document(), indent=1, sort_keys=True)
        Path(target).write_text(text + "\n", encoding="utf-8")

    def pytest_unconfigure(self) -> None:
        self._wrapping.uninstall()
