"""`piguard serve` and `piguard demo`: run the service."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from sqlalchemy import func, select

from piguard.bootstrap import Piguard
from piguard.cli.common import build_or_exit, settings_or_exit
from piguard.cli.keys import operator
from piguard.logs import install_record_factory, uvicorn_log_config
from piguard.population import seed_population
from piguard.vault.tables import SubjectRow
from piguard.web.app import create_app
from piguard.web.factory import TARGET, freeze_start_up

console = Console()
DEMO_ROLES = (
    "account_service",
    "payment_service",
    "marketing_service",
    "customer_service_agent",
    "privacy_officer",
    "auditor",
)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes, each building its own piguard.")
    ] = 1,
) -> None:
    """Serve the API against an existing database."""
    settings = settings_or_exit()
    app_ = build_or_exit(settings)  # refuses bad settings, and migrates, once
    host, port = host or settings.host, port or settings.port
    if workers == 1:
        _run(app_, host, port)
        return
    app_.close()
    install_record_factory()
    uvicorn.run(TARGET, factory=True, workers=workers, **uvicorn_options(host, port))


def demo(
    people: Annotated[int, typer.Option(min=0, max=1_000_000, help="Synthetic people.")] = 1000,
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Set up, then exit.")] = False,
) -> None:
    """Set up var/, keys and database, seed a synthetic population, print keys, serve."""
    settings = settings_or_exit(dev=True)
    app_ = build_or_exit(settings)
    existing = _subjects(app_)
    if existing < people:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("seeding synthetic people", total=people - existing)
            seed_population(
                app_, people - existing, lambda: bar.advance(task), seed=2017 + existing
            )
    first = _first_subject(app_)
    tokens = demo_keys(app_, first)
    if tokens:
        console.rule("demo API keys (generated now, shown once)")
        for role, token in tokens.items():
            console.print(f"[bold]{role}[/bold]  {token}", soft_wrap=True, highlight=False)
    else:
        console.print(
            "demo API keys exist and are unexpired (their tokens were shown when they were made; "
            "`piguard keys list` shows them); mint another with "
            "`piguard keys create-api-key --role ROLE`",
            soft_wrap=True,
            highlight=False,
        )
    base = f"http://{settings.host}:{port}"
    console.print(f"API docs: {base}/docs · policy notice: {base}/v1/policy?lang=en")
    if first is not None:
        console.print(
            "try: curl -H 'Authorization: Bearer <customer_service_agent token>' "
            f"'{base}/v1/subjects/{first}?purpose=customer_service'",
            soft_wrap=True,
        )
    console.print(f"population: {_subjects(app_)} subjects in {settings.resolved_database_url}")
    if no_serve:
        app_.close()
        return
    _run(app_, settings.host, port)


def demo_keys(app_: Piguard, subject: str | None) -> dict[str, str]:
    """Tokens of the demo keys minted now: one per demo role (and the first subject) that has no
    live demo key yet. Tokens are never stored, so an existing key is not shown again; restarts
    never add live demo keys."""
    now = app_.clock.now()
    live = {k.label for k in app_.api_keys.list_keys() if k.live(now)}
    wanted: list[tuple[str, str, str | None]] = [(r, f"demo {r}", None) for r in DEMO_ROLES]
    if subject is not None:
        wanted.append(("subject", "demo subject", subject))
    tokens = {}
    for role, label, bound in wanted:
        if label not in live:
            issued = app_.api_keys.create(role, label, bound, actor=operator())
            tokens[role if bound is None else f"subject {bound}"] = issued.token
    return tokens


def _first_subject(app_: Piguard) -> str | None:
    with app_.transactions.read() as uow:
        return uow.connection.scalar(
            select(SubjectRow.id).where(SubjectRow.status == "active").order_by(SubjectRow.id)
        )


def _subjects(app_: Piguard) -> int:
    with app_.transactions.read() as uow:
        return int(uow.connection.scalar(select(func.count()).select_from(SubjectRow)) or 0)


def server_config(app_: Piguard, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for the API: every log handler, the access log's included, writes
    through the redaction filter, and every record made in the process is redacted."""
    install_record_factory()
    return uvicorn.Config(create_app(app_), **uvicorn_options(host, port))


def uvicorn_options(host: str, port: int) -> dict[str, Any]:
    """How piguard is served, whatever the app (bench/api.py serves its baseline the same way)."""
    return {"host": host, "port": port, "log_config": uvicorn_log_config("INFO")}


def _run(app_: Piguard, host: str, port: int) -> None:
    # uvicorn shuts down on SIGTERM, then raises the signal again for the handler it found: that
    # one must end through `finally`, so that closing writes the queued audit records (refusals)
    # and seals the head, rather than the default handler ending the process at once.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        config = server_config(app_, host, port)
        freeze_start_up()
        uvicorn.Server(config).run()
    finally:
        app_.close()
        signal.signal(signal.SIGTERM, previous)


def _stopped(_signum: int, _frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)  # a clean stop
