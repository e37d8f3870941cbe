"""Support for tests that run piguard's command line as an operator would: a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import piguard

SOURCES = str(Path(piguard.__file__).resolve().parents[1])


def run_cli(
    var_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`piguard ARGS` in dev mode on `var_dir`, as login `operator1`, output captured."""
    return subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "piguard.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONPATH": SOURCES,
            "PIGUARD_DEV": "1",
            "PIGUARD_VAR_DIR": str(var_dir),
            "USER": "operator1",
            "LOGNAME": "operator1",
            **(env or {}),
        },
    )
