"""`piguard keys ...`: API keys for roles, and key-encryption-key rotation and retirement."""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from piguard.auth.service import MAX_DAYS
from piguard.cli.common import build_or_exit, refuse, settings_or_exit
from piguard.kernel.errors import PiguardError
from piguard.kernel.text import LocalText
from piguard.settings import Settings
from piguard.vault.keystore import KeyStore
from piguard.vault.rotation import KekRotation

app = typer.Typer(help="API keys, key rotation and retirement.", no_args_is_help=True)
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


_Report = TypeVar("_Report")


def _run_rotation(step: Callable[[KekRotation], _Report]) -> _Report:
    """Run one step of KEK rotation on the local key file; a refusal is one bilingual line."""
    settings = settings_or_exit()
    _local_keys_or_exit(settings)
    app_ = build_or_exit(settings)
    try:
        return step(
            KekRotation(
                settings.resolved_key_file,
                KeyStore(app_.keystore_db),
                app_.transactions,
                app_.audit,
                app_.policy,
            )
        )
    except PiguardError as exc:
        raise refuse(exc, bilingual=True) from None
    except OSError as exc:
        raise refuse(_unwritable(exc), bilingual=True) from None
    finally:
        app_.close()


def _local_keys_or_exit(settings: Settings) -> None:
    if settings.master_key is not None:
        raise refuse(
            PiguardError(
                LocalText(
                    "密钥来自 PIGUARD_MASTER_KEY，没有可轮换的密钥文件：请在密钥管理系统中轮换",
                    "keys come from PIGUARD_MASTER_KEY, not a key file: rotate them in the key "
                    "manager",
                )
            ),
            bilingual=True,
        )


def _unwritable(exc: OSError) -> PiguardError:
    return PiguardError(
        LocalText(
            f"无法写入密钥文件或其所在目录（{exc.strerror}）",
            f"cannot write the key file or its folder ({exc.strerror})",
        )
    )


@app.command()
def rotate(
    batch: Annotated[int, typer.Option(min=1, max=100_000)] = 500,
) -> None:
    """Add a new key-encryption key and re-wrap every data key under it; the old KEK stays
    (retired) until `keys retire`. Safe to interrupt and re-run; audited."""
    report = _run_rotation(lambda rotation: rotation.rotate(operator(), batch))
    how = "finished an earlier rotation" if report.resumed else "rotated"
    console.print(f"{how}: {report.rewrapped} data keys re-wrapped; KEK {report.kek_id} is current")
    console.print(
        f"retired, still in the key file: {', '.join(report.retired)}. Once every server has "
        "picked up the new key (within seconds), run `piguard keys retire`: until then a "
        "key-store backup from before this rotation still opens with this key file.",
        soft_wrap=True,
    )


@app.command()
def retire(
    batch: Annotated[int, typer.Option(min=1, max=100_000)] = 500,
) -> None:
    """Drop retired key-encryption keys from the key file; refused while a data key needs one.
    Afterwards no key-store backup from before the rotation opens with this key file; audited."""
    report = _run_rotation(lambda rotation: rotation.retire(operator(), batch))
    if not report.retired:
        console.print(f"nothing to retire: KEK {report.kek_id} is the only one in the key file")
        return
    console.print(
        f"retired KEK {', '.join(report.retired)}; KEK {report.kek_id} is the only one left"
        + (f" ({report.rewrapped} keys stored meanwhile re-wrapped)" if report.rewrapped else ""),
        soft_wrap=True,
    )
