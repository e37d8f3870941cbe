"""`piguard demo`: a tour of the bundled policy (the running service comes with the vault)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from piguard.cli import policy as policy_cli
from piguard.policies import bundled_policy_path

console = Console()


def demo() -> None:
    """Validate, show and trace the bundled policy."""
    path = bundled_policy_path()
    console.rule("piguard policy validate")
    policy_cli.validate(path)
    console.rule("piguard policy show --lang en")
    policy_cli.show(path, lang="en", raw=False)
    console.rule("piguard policy coverage")
    policy_cli.coverage(path, tests=Path("tests"), quiet=False)
