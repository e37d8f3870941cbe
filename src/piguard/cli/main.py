"""`piguard`: the command line entry point."""

from __future__ import annotations

import typer

from piguard.cli import demo, policy

app = typer.Typer(
    name="piguard",
    help="piguard: a personal-information protection engine that enforces a privacy policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(policy.app, name="policy")
app.command("demo")(demo.demo)

if __name__ == "__main__":  # pragma: no cover
    app()
