"""S2: settings fail closed: no key outside dev mode, a well-known or patterned key anywhere, the
key store in the main database under another spelling, or a folder other users can write in,
refuses to run.

The refusal is piguard's own `InvalidInput` (its field names the setting), raised as is: it is not
a `ValueError`, so pydantic does not wrap it in a `ValidationError`. Through the CLI it is one
clear line on stderr and exit status 2, never a traceback, and nothing is created on disk.
"""

from __future__ import annotations

import base64
import os
import random
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable
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


def _refusal(excinfo: pytest.ExceptionInfo[InvalidInput], field: str = "PIGUARD_MASTER_KEY") -> str:
    assert type(excinfo.value) is InvalidInput
    assert excinfo.value.field == field
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


# Decoded keys long enough but made by a person (crypto's tests cover each reason).
PATTERNED = {
    "counting": bytes(range(40)),
    "block-twice": random.Random(3).randbytes(20) * 2,
    "passphrase": b"a passphrase someone typed, in base64",
}


@pytest.mark.parametrize("master", PATTERNED.values(), ids=PATTERNED.keys())
@pytest.mark.parametrize("dev", [False, True], ids=["prod", "dev"])
def test_s2_patterned_or_text_master_key_refused_even_in_dev(master: bytes, dev: bool) -> None:
    key = base64.b64encode(master).decode()
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=dev, master_key=key)
    message = _refusal(refused)
    assert message.startswith("refusing to start: PIGUARD_MASTER_KEY is not random bytes: ")
    assert "openssl rand -base64 32" in message  # says how to make a good one
    assert refused.value.allowed
    assert key not in message + refused.value.message.zh


def test_s2_random_master_keys_are_accepted() -> None:
    for _ in range(300):
        Settings(master_key=_good_key())


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


# --- the key store apart from the data ---------------------------------------------------------


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def _hard_link(tmp_path: Path) -> str:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "piguard.db").touch()
    os.link(tmp_path / "var" / "piguard.db", tmp_path / "keys.db")
    return "sqlite:///keys.db"


def _file_link(tmp_path: Path) -> str:
    (tmp_path / "keys.db").symlink_to(tmp_path / "var" / "piguard.db")  # before var/ exists
    return "sqlite:///keys.db"


def _folder_link(tmp_path: Path) -> str:
    (tmp_path / "alias").symlink_to("var", target_is_directory=True)
    return "sqlite:///alias/piguard.db"


# Each gives PIGUARD_KEYSTORE_URL for the file the default PIGUARD_DATABASE_URL (var/piguard.db,
# relative to the working folder) names.
SAME_FILE: dict[str, Callable[[Path], str]] = {
    "dot": lambda _: "sqlite:///var/./piguard.db",
    "dot-dot": lambda _: "sqlite:///var/../var/piguard.db",
    "leading-dot": lambda _: "sqlite:///./var/piguard.db",
    "absolute": lambda tmp: f"sqlite:///{tmp}/var/piguard.db",
    "symlinked-file": _file_link,
    "symlinked-folder": _folder_link,
    "hard-link": _hard_link,
}


@pytest.mark.parametrize("spelling", SAME_FILE.values(), ids=SAME_FILE.keys())
def test_s2_the_key_store_in_the_main_database_file_refuses(
    tmp_path: Path, spelling: Callable[[Path], str]
) -> None:
    url = spelling(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=True, keystore_url=url)
    message = _refusal(refused, "PIGUARD_KEYSTORE_URL")
    assert "names the same database as PIGUARD_DATABASE_URL" in message
    assert f"PIGUARD_DATABASE_URL ({tmp_path.resolve() / 'var' / 'piguard.db'})" in message
    assert refused.value.allowed
    assert _tree(tmp_path) == before  # nothing created


def test_s2_the_main_database_in_the_key_store_file_refuses(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=True, var_dir=tmp_path / "var", database_url="sqlite:///var/./keystore.db")
    assert "names the same database" in _refusal(refused, "PIGUARD_KEYSTORE_URL")


@pytest.mark.parametrize(
    "url",
    ["sqlite:///var/keys.db", "sqlite:///var2/piguard.db", "sqlite:///var/piguard.db.keys"],
)
def test_s2_a_key_store_in_another_file_is_accepted(tmp_path: Path, url: str) -> None:
    (tmp_path / "alias").symlink_to("var2", target_is_directory=True)  # another folder
    assert Settings(dev=True, keystore_url=url).resolved_keystore_url == url


PG = "postgresql+psycopg"


@pytest.mark.parametrize(
    ("data", "keys", "where"),
    [
        (
            f"{PG}://app@db.internal/piguard",
            "postgresql://keys:pw@DB.internal:5432/piguard",
            "db.internal:5432/piguard",
        ),
        (f"{PG}://app@localhost/piguard", f"{PG}://app@127.0.0.1:5432/piguard", "localhost"),
        (f"{PG}:///piguard?host=/run/postgresql", f"{PG}://app@localhost/piguard", "localhost"),
        (f"{PG}://piguard@db", f"{PG}://piguard@db/piguard", "db:5432/piguard"),  # the user's
        # Another schema of the same database: one dump of it holds data and keys together.
        (
            f"{PG}://app@db/piguard?options=-csearch_path%3Ddata",
            f"{PG}://app@db/piguard?options=-csearch_path%3Dkeys",
            "db:5432/piguard",
        ),
    ],
)
def test_s2_the_key_store_in_the_main_postgresql_database_refuses(
    data: str, keys: str, where: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=True, database_url=data, keystore_url=keys)
    message = _refusal(refused, "PIGUARD_KEYSTORE_URL")
    assert f"names the same database as PIGUARD_DATABASE_URL ({where}" in message
    assert "pw" not in message


@pytest.mark.parametrize(
    "keys",
    [
        f"{PG}://app@db/piguard_keys",
        f"{PG}://app@db:5433/piguard",
        f"{PG}://app@keys.internal/piguard",
        "sqlite:///var/keystore.db",
    ],
)
def test_s2_a_key_store_in_another_postgresql_database_is_accepted(keys: str) -> None:
    Settings(dev=True, database_url=f"{PG}://app@db/piguard", keystore_url=keys)


@pytest.mark.parametrize("name", ["database_url", "keystore_url"])
def test_s2_a_malformed_database_url_refuses(name: str) -> None:
    field = f"PIGUARD_{name.upper()}"
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=True, **{name: "not a url"})
    assert f"{field} is not a database URL (allowed: sqlite:///" in _refusal(refused, field)


# --- folders other users can write in -----------------------------------------------------------

LOOSE = [0o770, 0o775, 0o720, 0o777, 0o757, 0o702, 0o1777]
TIGHT = [0o700, 0o750, 0o755, 0o711, 0o500]


def _folder(path: Path, mode: int) -> Path:
    path.mkdir(parents=True)
    path.chmod(mode)
    return path


def _loose_refusal(refused: pytest.ExceptionInfo[InvalidInput], field: str, path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    message = _refusal(refused, field)
    assert f"{field}: folder {path} has mode {mode:04o}, so other users can write in it" in message
    assert f"allowed: a folder only its owner can write to (e.g. chmod 700 {path})" in message
    assert refused.value.allowed == "a folder not writable by its group or others, e.g. mode 0700"


@pytest.mark.parametrize("mode", LOOSE, ids=oct)
def test_s2_a_var_dir_others_can_write_in_refuses(tmp_path: Path, mode: int) -> None:
    var = _folder(tmp_path / "var", mode)
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=True, var_dir=var)
    _loose_refusal(refused, "PIGUARD_VAR_DIR", var)
    assert list(var.iterdir()) == []


@pytest.mark.parametrize("mode", TIGHT, ids=oct)
def test_s2_a_var_dir_only_its_owner_can_write_in_is_accepted(tmp_path: Path, mode: int) -> None:
    var = _folder(tmp_path / "var", mode)
    assert Settings(dev=True, var_dir=var).var_dir == var


@pytest.mark.parametrize("mode", [0o770, 0o777], ids=oct)
def test_s2_a_key_file_folder_others_can_write_in_refuses(tmp_path: Path, mode: int) -> None:
    secrets_dir = _folder(tmp_path / "secrets", 0o700)
    key_file = secrets_dir / "keys.json"
    key_file.write_text("{}", encoding="utf-8")
    secrets_dir.chmod(mode)
    with pytest.raises(InvalidInput) as refused:
        Settings(var_dir=tmp_path / "var", key_file=key_file)
    _loose_refusal(refused, "PIGUARD_KEY_FILE", secrets_dir)
    # With a master key, the key file is not used: its folder does not matter.
    Settings(var_dir=tmp_path / "var", key_file=key_file, master_key=_good_key())


def test_s2_a_sqlite_folder_others_can_write_in_refuses(tmp_path: Path) -> None:
    open_folder = _folder(tmp_path / "open", 0o777)
    with pytest.raises(InvalidInput) as refused:
        Settings(
            dev=True, var_dir=tmp_path / "var", database_url=f"sqlite:///{open_folder}/main.db"
        )
    _loose_refusal(refused, "PIGUARD_DATABASE_URL", open_folder)
    assert list(open_folder.iterdir()) == []


def test_s2_a_var_dir_that_is_a_file_refuses(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("", encoding="utf-8")
    with pytest.raises(InvalidInput) as refused:
        Settings(dev=True, var_dir=tmp_path / "var")
    assert f"PIGUARD_VAR_DIR: {tmp_path / 'var'} is not a folder" in _refusal(
        refused, "PIGUARD_VAR_DIR"
    )


# --- through the command line --------------------------------------------------------------------


def _serve(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return _cli(cwd, ["serve", "--port", "1"], **env)


def _cli(cwd: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIGUARD_")}
    return subprocess.run(  # noqa: S603 - our own CLI, with the tests' arguments
        [sys.executable, "-m", "piguard.cli.main", *args],
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


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of a refusal on stderr: exit status 2, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert result.stderr.startswith("✗ refusing to start: "), output
    return result.stderr


@pytest.mark.parametrize("master", PATTERNED.values(), ids=PATTERNED.keys())
def test_s2_cli_serve_with_a_patterned_master_key_exits_with_a_message(
    tmp_path: Path, master: bytes
) -> None:
    key = base64.b64encode(master).decode()
    result = _serve(tmp_path, PIGUARD_MASTER_KEY=key)
    assert "PIGUARD_MASTER_KEY is not random bytes: " in _refused(result)
    assert key not in result.stdout + result.stderr
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    "url",
    ["sqlite:///var/./piguard.db", "sqlite:///var/../var/piguard.db", "sqlite:///alias/piguard.db"],
    ids=["dot", "dot-dot", "symlinked-folder"],
)
def test_s2_cli_serve_with_the_key_store_in_the_main_database_exits_with_a_message(
    tmp_path: Path, url: str
) -> None:
    (tmp_path / "alias").symlink_to("var", target_is_directory=True)
    result = _serve(tmp_path, PIGUARD_DEV="1", PIGUARD_KEYSTORE_URL=url)
    message = _refused(result)
    assert "PIGUARD_KEYSTORE_URL" in message
    assert f"same database as PIGUARD_DATABASE_URL ({tmp_path.resolve()}/var/piguard.db)" in message
    assert _tree(tmp_path) == {tmp_path / "alias"}  # nothing created


@pytest.mark.parametrize("mode", [0o770, 0o777], ids=oct)
def test_s2_cli_demo_with_a_var_dir_others_can_write_in_exits_with_a_message(
    tmp_path: Path, mode: int
) -> None:
    var = _folder(tmp_path / "var", mode)
    result = _cli(tmp_path, ["demo", "--no-serve", "--people", "1"])
    message = _refused(result)
    assert f"PIGUARD_VAR_DIR: folder var has mode {mode:04o}" in message
    assert "allowed: a folder only its owner can write to (e.g. chmod 700 var)" in message
    assert list(var.iterdir()) == []


# --- the audit witness (S2): outside var/, and never a token in clear over the network ---------

_WITNESS_TOKEN = "w" * 40


def test_s2_a_witness_folder_outside_var_is_accepted(tmp_path: Path) -> None:
    settings = Settings(dev=True, var_dir=tmp_path / "var", audit_witness=str(tmp_path / "w"))
    assert settings.witness_folder == tmp_path / "w"
    assert settings.witness_url is None


@pytest.mark.parametrize("inside", ["var", "var/witness", "var/../var/w"])
def test_s2_a_witness_folder_inside_var_refuses(tmp_path: Path, inside: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Settings(dev=True, var_dir=tmp_path / "var", audit_witness=str(tmp_path / inside))
    assert "inside PIGUARD_VAR_DIR" in _refusal(caught, "PIGUARD_AUDIT_WITNESS")


def test_s2_a_relative_witness_folder_refuses(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        Settings(dev=True, var_dir=tmp_path / "var", audit_witness="witness")
    assert "absolute" in _refusal(caught, "PIGUARD_AUDIT_WITNESS")


def test_s2_a_witness_folder_others_can_write_in_refuses(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir(mode=0o700)
    folder.chmod(0o777)
    with pytest.raises(InvalidInput) as caught:
        Settings(dev=True, var_dir=tmp_path / "var", audit_witness=str(folder))
    assert "0777" in _refusal(caught, "PIGUARD_AUDIT_WITNESS")


@pytest.mark.parametrize(
    "url",
    [
        "https://witness.example.org/v1/logs/pay/checkpoints",
        "http://127.0.0.1:8700/v1/logs/pay/checkpoints",
    ],
)
def test_s2_a_witness_service_with_a_token_is_accepted(url: str) -> None:
    settings = Settings(dev=True, audit_witness=url, audit_witness_token=_WITNESS_TOKEN)
    assert settings.witness_url == url
    assert _WITNESS_TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("url", "token", "says"),
    [
        ("http://witness.example.org/v1/logs/pay/checkpoints", _WITNESS_TOKEN, "plain http"),
        ("https://witness.example.org/x", None, "TOKEN is missing"),
        ("https://witness.example.org/x", "short", "TOKEN is missing"),
        ("https:///no-host", _WITNESS_TOKEN, "not a witness URL"),
        ("https://w.example.org/x?token=abc", _WITNESS_TOKEN, "not a witness URL"),
    ],
)
def test_s2_an_unsafe_witness_service_setting_refuses(
    url: str, token: str | None, says: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Settings(dev=True, audit_witness=url, audit_witness_token=token)
    field = "PIGUARD_AUDIT_WITNESS_TOKEN" if "TOKEN" in says else "PIGUARD_AUDIT_WITNESS"
    assert says in _refusal(caught, field)
