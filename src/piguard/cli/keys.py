"""`piguard keys ...`: API keys for roles, and key-encryption-key rotation."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from piguard.cli.common import build_or_exit, settings_or_exit
from piguard.vault.keystore import KeyStore
from piguard.vault.rotation import rotate as rotate_keys

app = typer.Typer(help="API keys and key rotation.", no_args_is_help=True)
console = Console()


@app.command("create-api-key")
def create_api_key(
    role: Annotated[str, typer.Option(help="A role of the policy, e.g. payment_service.")],
    label: Annotated[str, typer.Option(help="Who holds the key.")] = "",
    subject: Annotated[str | None, typer.Option(help="For role 'subject': whose key.")] = None,
) -> None:
    """Create an API key bound to a policy role; the token is shown once."""
    app_ = build_or_exit(settings_or_exit())
    try:
        issued = app_.api_keys.create(role, label or role, subject)
    finally:
        app_.close()
    console.print(f"[bold]{issued.role}[/bold] key {issued.key_id}")
    typer.echo(issued.token)


@app.command()
def rotate(
    batch: Annotated[int, typer.Option(min=1, max=100_000)] = 500,
) -> None:
    """Re-wrap every data key under a new key-encryption key; safe to interrupt and re-run."""
    settings = settings_or_exit()
    if settings.master_key is not None:
        console.print(
            "[red]keys come from PIGUARD_MASTER_KEY: rotate them in the key manager[/red]"
        )
        raise typer.Exit(2)
    app_ = build_or_exit(settings)
    try:
        report = rotate_keys(settings.resolved_key_file, KeyStore(app_.keystore_db), batch)
    finally:
        app_.close()
    how = "resumed" if report.resumed else "done"
    console.print(f"rotation {how}: {report.rewrapped} data keys now under KEK {report.kek_id}")
