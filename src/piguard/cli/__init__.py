"""The command line: one Typer group per area."""
