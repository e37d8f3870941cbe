"""`piguard policy ...`: validate, show, coverage and diff policy files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from piguard.kernel.errors import PolicyFileError
from piguard.policies import bundled_policy_path
from piguard.policy.coverage import (
    ClauseCoverage,
    CoverageReport,
    Evidence,
    Verdict,
    evidence_from_document,
    judge,
    parse_known_gaps,
)
from piguard.policy.coverage import coverage as clause_coverage
from piguard.policy.diff import diff_policies
from piguard.policy.language import load_policy
from piguard.policy.model import Policy
from piguard.policy.notice import build_notice, render_markdown

app = typer.Typer(help="Validate, render, trace and compare policy files.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

PolicyArg = Annotated[
    Path | None, typer.Argument(help="Policy file (default: the bundled Alipay 2017 policy).")
]
_TEST_NAME = re.compile(r"^\s*(?:async\s+)?def\s+(test_\w+)", re.MULTILINE)


def _load(path: Path | None) -> Policy:
    try:
        return load_policy(path or bundled_policy_path())
    except PolicyFileError as exc:
        errors.print(f"[red]✗[/red] {exc.message.en}", markup=True, highlight=False)
        raise typer.Exit(1) from None


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Policy file to check.")]) -> None:
    """Check a policy file: shape, references, clause citations."""
    policy = _load(file)
    table = Table(title=f"{policy.key} ({policy.profile})")
    table.add_column("section")
    table.add_column("entries", justify="right")
    for name in ("clauses", "categories", "purposes", "services", "settings", "roles"):
        table.add_row(name, str(len(getattr(policy, name))))
    table.add_row("recipients", str(len(policy.recipients)))
    table.add_row("outbound rules", str(len(policy.outbound)))
    table.add_row("rights", str(len(policy.rights)))
    console.print(table)
    console.print(f"[green]✓[/green] {file} is a valid policy")


@app.command()
def show(
    file: PolicyArg = None,
    lang: Annotated[str, typer.Option(help="zh or en")] = "zh",
    raw: Annotated[bool, typer.Option(help="Print Markdown instead of rendering it.")] = False,
) -> None:
    """Render the privacy notice; key clauses are highlighted (P3)."""
    if lang not in ("zh", "en"):
        errors.print(f"--lang must be zh or en, not {lang!r}")
        raise typer.Exit(2)
    text = render_markdown(build_notice(_load(file), "zh" if lang == "zh" else "en"))
    if raw:
        typer.echo(text)
    else:
        console.print(Markdown(text))


def collect_test_names(tests: Path) -> list[str]:
    """Names of the test functions under a folder, read as text (the tests are not imported)."""
    names: list[str] = []
    for path in sorted(tests.rglob("test_*.py")):
        names.extend(_TEST_NAME.findall(path.read_text(encoding="utf-8")))
    return names


@app.command()
def coverage(
    file: PolicyArg = None,
    tests: Annotated[Path, typer.Option(help="Folder of tests to read names from.")] = Path(
        "tests"
    ),
    evidence: Annotated[
        Path | None,
        typer.Option(help="Clause evidence a pytest run wrote (.pytest-clause-evidence.json)."),
    ] = None,
    known_gaps: Annotated[
        Path | None, typer.Option(help="Clauses known to be uncovered, one `ID  why` a line.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Print only problems and the summary.")] = False,
) -> None:
    """Clause → rules → tests. With --evidence, a clause is covered only through a test named for
    it that reached the engine or a service; exits 1 if one is uncovered and not a known gap, or
    a known gap is covered now. Without it, exits 1 if a clause has no rule."""
    policy = _load(file)
    names = collect_test_names(tests) if tests.is_dir() else []
    gaps = parse_known_gaps(_read(known_gaps)) if known_gaps is not None else {}
    report = clause_coverage(policy, names, _evidence(evidence) if evidence else None)
    verdict = judge(report, gaps)
    if not quiet:
        console.print(_coverage_table(policy, report, verdict))
    _summary(report, verdict)
    if not verdict.passed:
        raise typer.Exit(1)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        errors.print(f"cannot read {path}: {exc.strerror}", soft_wrap=True)
        raise typer.Exit(2) from None


def _evidence(path: Path) -> Evidence:
    try:
        return evidence_from_document(json.loads(_read(path)))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        errors.print(f"{path}: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None


def _coverage_table(policy: Policy, report: CoverageReport, verdict: Verdict) -> Table:
    table = Table(title=f"clause coverage of {policy.key}")
    for col in ("clause", "rules", "tests", "proving", "status"):
        table.add_column(col)
    for row in report.rows:
        proving = "-" if row.proving is None else str(len(row.proving))
        status = _status(row, verdict)
        table.add_row(row.clause, str(len(row.rules)), str(len(row.tests)), proving, status)
    return table


def _status(row: ClauseCoverage, verdict: Verdict) -> str:
    if row.clause in verdict.stale:
        return "[red]known gap, covered now[/red]"
    if row.clause in verdict.excused:
        return "[yellow]known gap[/yellow]"
    if not row.covered:
        return "[red]uncovered[/red]"
    return "[green]ok[/green]" if row.proving is not None else "rules only"


def _summary(report: CoverageReport, verdict: Verdict) -> None:
    total, covered = len(report.rows), len(report.rows) - len(report.uncovered)
    if report.measured:
        console.print(f"{total} clauses · {covered} covered (tested through an entry point)")
    else:
        console.print(
            f"{total} clauses · {covered} implemented by rules · tests not measured "
            "(run pytest, then pass --evidence .pytest-clause-evidence.json)"
        )
    if verdict.excused:
        console.print(
            f"[yellow]{len(verdict.excused)} known gaps:[/yellow] {', '.join(verdict.excused)}"
        )
    if verdict.failing:
        console.print(f"[red]{len(verdict.failing)} uncovered:[/red] {', '.join(verdict.failing)}")
    if verdict.stale:
        console.print(
            f"[red]{len(verdict.stale)} known gaps no longer hold (covered, or no such clause);"
            f" remove them from the list:[/red] {', '.join(verdict.stale)}"
        )


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="The published policy.")],
    new: Annotated[Path, typer.Argument(help="The revision.")],
) -> None:
    """Semantic diff; marks the changes that need fresh consent (U3, V2)."""
    result = diff_policies(_load(old), _load(new))
    table = Table(title=f"{result.old} → {result.new}")
    for col in ("section", "key", "change", "detail", "fresh consent"):
        table.add_column(col)
    for c in result.changes:
        table.add_row(
            c.section, c.key, c.kind, c.detail, "[bold red]yes[/bold red]" if c.consent else ""
        )
    console.print(table)
    console.print(
        f"{len(result.changes)} changes · {len(result.needs_reconsent)} need fresh consent"
    )
