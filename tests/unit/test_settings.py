"""S2: settings fail closed: no key outside dev mode, or a well-known key anywhere, refuses to run.

The refusal is piguard's own `InvalidInput` (field `PIGUARD_MASTER_KEY`), raised as is: it is not
a `ValueError`, so pydantic does not wrap it in a `ValidationError`. Through the CLI it is one
clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from piguard.kernel.errors import InvalidInput
from piguard.settings import Settings
from piguard.vault.crypto import KeyMaterial


def _good_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PIGUARD_* from the outside, and a cwd where the default `var/keys.json` does not exist."""
    for name in list(os.environ):
        if name.startswith("PIGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _refusal(excinfo: pytest.ExceptionInfo[InvalidInput]) -> str:
    assert type(excinfo.value) is InvalidInput
    assert excinfo.value.field == "PIGUARD_MASTER_KEY"
    assert excinfo.value.message.en.startswith("refusing to start: ")
    assert excinfo.value.message.zh.startswith("拒绝启动：")
    return excinfo.value.message.en


def test_s2_no_key_outside_dev_mode_refuses() -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings()
    assert "no key" in _refusal(refused)
    assert not isinstance(refused.value, ValueError)  # so never a pydantic ValidationError


def test_s2_a_named_key_file_that_is_missing_refuses(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings(key_file=tmp_path / "nowhere" / "keys.json")
    assert "no key" in _refusal(refused)


def test_s2_an_existing_key_file_is_accepted_outside_dev(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.json"
    key_file.write_text("{}", encoding="utf-8")  # its content is checked when keys are loaded
    assert Settings(key_file=key_file).resolved_key_file == key_file


@pytest.mark.parametrize(
    "key",
    [
        "",
        "   ",
        "changeme",
        "CHANGEME",
        " change-me ",
        "secret",
        "default",
        "test",
        "dev",
        "a" * 44,
        base64.b64encode(b"a" * 32).decode(),
        base64.b64encode(bytes(32)).decode(),
        "0123456",
    ],
)
@pytest.mark.parametrize("dev", [False, True], ids=["prod", "dev"])
def test_s2_empty_or_default_master_key_refused_even_in_dev(key: str, dev: bool) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=dev, master_key=key)
    assert "empty or a well-known default" in _refusal(refused)


def test_s2_proper_master_key_accepted_and_hidden() -> None:
    key = _good_key()
    settings = Settings(master_key=key)
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == key
    assert key not in repr(settings)
    assert key not in str(settings)
    KeyMaterial.from_master_key(settings.master_key.get_secret_value())  # a usable key


def test_s2_dev_mode_without_key_accepted() -> None:
    settings = Settings(dev=True)
    assert settings.master_key is None
    assert not settings.resolved_key_file.exists()  # created on first build, not by Settings


def test_s2_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = _good_key()
    monkeypatch.setenv("PIGUARD_MASTER_KEY", key)
    monkeypatch.setenv("PIGUARD_VAR_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("PIGUARD_DATABASE_URL", "postgresql+psycopg://db/piguard")
    monkeypatch.setenv("PIGUARD_PORT", "9123")
    monkeypatch.setenv("PIGUARD_CHECKPOINT_SECONDS", "2.5")
    settings = Settings()
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == key
    assert settings.var_dir == tmp_path / "elsewhere"
    assert settings.resolved_database_url == "postgresql+psycopg://db/piguard"
    assert settings.resolved_key_file == tmp_path / "elsewhere" / "keys.json"
    assert (settings.port, settings.checkpoint_seconds, settings.dev) == (9123, 2.5, False)


@pytest.mark.parametrize("value", ["1", "true"])
def test_s2_dev_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PIGUARD_DEV", value)
    assert Settings().dev is True


def test_s2_default_key_from_the_environment_refused_in_dev(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIGUARD_DEV", "1")
    monkeypatch.setenv("PIGUARD_MASTER_KEY", "changeme")
    with pytest.raises(InvalidInput) as refused:
        Settings()
    assert "well-known default" in _refusal(refused)


def test_s2_out_of_range_environment_values_are_validation_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIGUARD_DEV", "1")
    monkeypatch.setenv("PIGUARD_PORT", "0")
    with pytest.raises(ValidationError) as bad:
        Settings()
    assert [e["loc"] for e in bad.value.errors()] == [("port",)]


# --- through the command line --------------------------------------------------------------------


def _serve(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "piguard.cli.main", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**clean, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8", **env},
        timeout=60,
    )


def test_s2_cli_serve_without_key_exits_with_a_message(tmp_path: Path) -> None:
    result = _serve(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "refusing to start: no key" in result.stderr
    assert "PIGUARD_DEV=1" in result.stderr  # says how to get going
    assert not (tmp_path / "var").exists()  # nothing created before refusing


def test_s2_cli_serve_with_a_default_key_exits_with_a_message(tmp_path: Path) -> None:
    result = _serve(tmp_path, PIGUARD_DEV="1", PIGUARD_MASTER_KEY="changeme")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "PIGUARD_MASTER_KEY is empty or a well-known default" in result.stderr
    assert "changeme" not in output
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    "key",
    ["correct-horse-battery-staple-9", base64.b64encode(bytes(range(16))).decode()],
    ids=["not-base64", "16-bytes"],
)
def test_s2_cli_serve_with_a_malformed_key_exits_with_a_message(tmp_path: Path, key: str) -> None:
    result = _serve(tmp_path, PIGUARD_MASTER_KEY=key)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "PIGUARD_MASTER_KEY must be the base64 of at least 32 random bytes" in result.stderr
    assert key not in output
    assert not (tmp_path / "var").exists()
