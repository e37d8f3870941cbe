"""`piguard witness serve`: the witness service, run apart from piguard (another host or owner)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from piguard.audit.witness_store import WitnessStore
from piguard.cli.common import fail
from piguard.files import GROUP_OR_OTHER_ACCESS, GROUP_OR_OTHER_WRITE, loose_mode, private_dir
from piguard.logs import install_record_factory, uvicorn_log_config
from piguard.web.witness import create_witness_app

app = typer.Typer(
    help="The audit witness service: keeps checkpoint lines outside var/.", no_args_is_help=True
)
console = Console()


@app.callback()
def witness() -> None:
    """The audit witness service: keeps checkpoint lines outside var/."""


@app.command()
def serve(
    folder: Annotated[Path, typer.Option("--dir", help="Where witnessed lines are kept.")],
    token_file: Annotated[
        Path, typer.Option(help="The bearer token (created 0600 with a new token if missing).")
    ],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8700,
) -> None:
    """Serve the witness API: append-only checkpoint logs, one per piguard installation."""
    _private_folder(folder)
    token = _token(token_file)
    install_record_factory()
    api = create_witness_app(WitnessStore(folder), token)
    uvicorn.run(api, host=host, port=port, log_config=uvicorn_log_config())


def _private_folder(folder: Path) -> None:
    private_dir(folder)
    loose = loose_mode(folder.stat().st_mode, GROUP_OR_OTHER_WRITE)
    if loose is not None:
        raise fail(f"folder {folder} has mode {loose:04o}; use one only its owner can write to")


def _token(path: Path) -> str:
    """The token in `path`, or a new one written there 0600 and shown once."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        info = path.stat()
        loose = loose_mode(info.st_mode, GROUP_OR_OTHER_ACCESS)
        if not stat.S_ISREG(info.st_mode) or loose is not None:
            raise fail(f"token file {path} must be a regular file of mode 0600") from None
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 32:
            raise fail(f"token file {path} holds fewer than 32 characters") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    console.print(
        f"new witness token written to {path}; give it to piguard as PIGUARD_AUDIT_WITNESS_TOKEN"
    )
    return token
