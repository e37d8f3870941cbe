"""`piguard`: the command line entry point."""

from __future__ import annotations

import typer

from piguard.cli import audit, keys, policy, serve, witness

app = typer.Typer(
    name="piguard",
    help="piguard: a personal-information protection engine that enforces a privacy policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(policy.app, name="policy")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(witness.app, name="witness")
app.command("serve")(serve.serve)
app.command("demo")(serve.demo)

if __name__ == "__main__":  # pragma: no cover
    app()
