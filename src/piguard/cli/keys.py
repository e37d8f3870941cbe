"""`piguard keys ...`: API keys for roles, and key-encryption-key rotation."""

from __future__ import annotations

import getpass
import re
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from piguard.auth.service import MAX_DAYS
from piguard.cli.common import build_or_exit, refuse, settings_or_exit
from piguard.kernel.errors import PiguardError
from piguard.vault.keystore import KeyStore
from piguard.vault.rotation import rotate as rotate_keys

app = typer.Typer(help="API keys and key rotation.", no_args_is_help=True)
console = Console()


def operator() -> str:
    """The audit log's actor for a CLI command: `cli:<login name>` (or `cli:unknown`)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    user = re.sub(r"[^A-Za-z0-9_.-]", "_", user)[:100]
    return f"cli:{user or 'unknown'}"


@app.command("create-api-key")
def create_api_key(
    role: Annotated[str, typer.Option(help="A role of the policy, e.g. payment_service.")],
    label: Annotated[str, typer.Option(help="Who holds the key.")] = "",
    subject: Annotated[str | None, typer.Option(help="For role 'subject': whose key.")] = None,
    days: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_DAYS, help="Days valid (default 90; 30 for a subject key)."),
    ] = None,
) -> None:
    """Create an API key bound to a policy role; the token is shown once."""
    app_ = build_or_exit(settings_or_exit())
    try:
        issued = app_.api_keys.create(role, label or role, subject, days=days, actor=operator())
    except PiguardError as exc:
        raise refuse(exc) from None
    finally:
        app_.close()
    until = f"{issued.expires_at:%Y-%m-%d %H:%M} UTC"
    console.print(f"[bold]{issued.role}[/bold] key {issued.key_id}, expires {until}")
    typer.echo(issued.token)


@app.command("list")
def list_keys() -> None:
    """Every API key: id, role, subject, label, created, expires, revoked (never a secret)."""
    app_ = build_or_exit(settings_or_exit())
    try:
        keys, now = app_.api_keys.list_keys(), app_.clock.now()
    finally:
        app_.close()
    columns = ("id", "role", "subject", "label", "created", "expires", "revoked", "live")
    table = Table(*columns, box=None)  # plain columns: readable, and easy to grep
    for k in keys:
        table.add_row(
            k.key_id,
            k.role,
            k.subject_id or "",
            k.label,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.expires_at:%Y-%m-%d %H:%M}" + (" (legacy)" if k.legacy else ""),
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
            "yes" if k.live(now) else "no",
        )
    Console(width=200).print(table, highlight=False)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id, from `keys list`.")]) -> None:
    """Revoke an API key at once; audited under the operator's name."""
    app_ = build_or_exit(settings_or_exit())
    try:
        changed = app_.api_keys.revoke(key_id, actor=operator())
    except PiguardError as exc:
        raise refuse(exc) from None
    finally:
        app_.close()
    console.print(f"key {key_id} " + ("revoked" if changed else "was already revoked"))


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
