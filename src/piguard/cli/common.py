"""What several commands share: settings that fail closed, printed as an error, not a traceback."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from piguard.bootstrap import Piguard, build
from piguard.kernel.errors import PiguardError
from piguard.settings import Settings

errors = Console(stderr=True)


def build_or_exit(settings: Settings) -> Piguard:
    """Wire piguard, or print why not (a key that cannot be used, a database that refuses)."""
    try:
        return build(settings)
    except PiguardError as exc:
        _say(exc.message.en)
        raise typer.Exit(2) from None


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except (PiguardError, ValidationError) as exc:
        _say(exc.message.en if isinstance(exc, PiguardError) else str(exc))
        raise typer.Exit(2) from None


def refuse(exc: PiguardError, *, bilingual: bool = False) -> typer.Exit:
    """Print a refusal of the service (unknown role, unknown key) and the exit to raise; with
    `bilingual`, in Chinese then English (an operator's instruction, such as `keys retire`)."""
    if bilingual:
        _say(exc.message.zh)
    return fail(exc.message.en)


def fail(message: str) -> typer.Exit:
    """Print a message that stops a command and the exit to raise."""
    _say(message)
    return typer.Exit(2)


def _say(message: str) -> None:
    # As written: not read as markup (a `[...]` in it), not wrapped (a path stays whole).
    errors.print(f"[red]✗[/red] {escape(message)}", highlight=False, soft_wrap=True)
