"""What several commands share: settings that fail closed, printed as an error, not a traceback."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console

from piguard.bootstrap import Piguard, build
from piguard.kernel.errors import PiguardError
from piguard.settings import Settings

errors = Console(stderr=True)


def build_or_exit(settings: Settings) -> Piguard:
    """Wire piguard, or print why not (a key that cannot be used, a database that refuses)."""
    try:
        return build(settings)
    except PiguardError as exc:
        errors.print(f"[red]✗[/red] {exc.message.en}", highlight=False)
        raise typer.Exit(2) from None


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except (PiguardError, ValidationError) as exc:
        message = exc.message.en if isinstance(exc, PiguardError) else str(exc)
        errors.print(f"[red]✗[/red] {message}")
        raise typer.Exit(2) from None
