"""One settings object, read from `PIGUARD_*` environment variables, built once and passed in.

It fails closed: it refuses to start (one `InvalidInput` naming the setting and what is allowed)
outside dev mode without a key; with a master key that is empty, a well-known default, short, a
pattern or text; when the key store is the main database under another spelling; and when a folder
piguard keeps files in can be written by other users. It only reads the disk, never writes to it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from piguard.files import GROUP_OR_OTHER_WRITE, loose_mode
from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText
from piguard.vault.crypto import MASTER_KEY_ALLOWED, master_key_problem

# Values people paste from examples: never accepted as a key.
_DEFAULT_KEYS = frozenset({"", "changeme", "change-me", "secret", "default", "test", "dev"})


class Settings(BaseSettings):
    """Everything configurable about a piguard process."""

    model_config = SettingsConfigDict(env_prefix="PIGUARD_", frozen=True, extra="ignore")

    dev: bool = False
    var_dir: Path = Path("var")
    database_url: str | None = None
    keystore_url: str | None = None
    master_key: SecretStr | None = None
    key_file: Path | None = None
    policy_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    checkpoint_seconds: float = Field(default=1.0, gt=0, le=3600)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # POST /v1/decide/batch: 1,000 requests of ~150 bytes, with room for long category lists.
    max_batch_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Requests in the app at once, per process; the next is refused with 503 and Retry-After.
    max_in_flight: int = Field(default=256, ge=1, le=100_000)
    log_level: str = "INFO"
    audit_witness: str | None = None
    audit_witness_token: SecretStr | None = None

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        self._check_key()
        self._check_databases()
        self._check_folders()
        self._check_witness()
        return self

    def _check_key(self) -> None:
        if self.master_key is not None:
            raw = self.master_key.get_secret_value().strip()
            if raw.lower() in _DEFAULT_KEYS or len(set(raw)) < 8:
                raise _refuse("PIGUARD_MASTER_KEY is empty or a well-known default", _KEY)
            problem = master_key_problem(raw)
            if problem is not None:
                raise _refuse(problem, _KEY, MASTER_KEY_ALLOWED)
        elif not self.dev and not self.resolved_key_file.exists():
            raise _refuse(
                "no key: set PIGUARD_MASTER_KEY, provide PIGUARD_KEY_FILE, "
                "or run in dev mode (PIGUARD_DEV=1) to generate a local key file",
                _KEY,
            )

    def _check_databases(self) -> None:
        # The key store must stay apart: a backup of the data must never hold its keys. So the
        # same file reached by another spelling (`./`, `..`, a symlink, a hard link) is the same
        # database; on a server, another schema of the same database is too (one dump has both).
        data = _parsed(self.resolved_database_url, "PIGUARD_DATABASE_URL")
        keys = _parsed(self.resolved_keystore_url, "PIGUARD_KEYSTORE_URL")
        if _same_database(data, keys):
            raise _refuse(
                f"PIGUARD_KEYSTORE_URL ({_where(keys)}) names the same database as "
                f"PIGUARD_DATABASE_URL ({_where(data)}); the key store must be another database",
                "PIGUARD_KEYSTORE_URL",
                "another SQLite file, or another database (host, port or name)",
            )

    def _check_folders(self) -> None:
        # Folders where piguard keeps its files: another user able to write there could plant or
        # swap a database or key file, so one writable by the group or others refuses to start.
        # A folder that does not exist yet is fine: piguard creates it 0700.
        seen: set[Path] = set()
        for folder, name in self._folders():
            where = folder.resolve()
            if where in seen:
                continue
            seen.add(where)
            try:
                mode = folder.stat().st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _refuse(
                    f"{name}: folder {folder} cannot be read ({exc.strerror})", name
                ) from None
            if not stat.S_ISDIR(mode):
                raise _refuse(f"{name}: {folder} is not a folder", name)
            loose = loose_mode(mode, GROUP_OR_OTHER_WRITE)
            if loose is not None:
                raise _refuse(
                    f"{name}: folder {folder} has mode {loose:04o}, so other users can write in "
                    f"it; allowed: a folder only its owner can write to (e.g. chmod 700 {folder})",
                    name,
                    "a folder not writable by its group or others, e.g. mode 0700",
                )

    def _check_witness(self) -> None:
        # A witness inside var/ would be copied, deleted or rewritten with it: no witness at all.
        if self.witness_url is not None:
            self._check_witness_url(self.witness_url)
            return
        folder = self.witness_folder
        if folder is None:
            return
        if not folder.is_absolute():
            raise _refuse(
                f"{_WITNESS} must be an absolute folder or an http(s) URL",
                _WITNESS,
                _WITNESS_ALLOWED,
            )
        var = self.var_dir.resolve()
        if folder.resolve() == var or folder.resolve().is_relative_to(var):
            raise _refuse(
                f"{_WITNESS} ({folder}) lies inside PIGUARD_VAR_DIR ({var}); whoever holds var/ "
                "could rewrite it with the log",
                _WITNESS,
                _WITNESS_ALLOWED,
            )

    def _check_witness_url(self, url: str) -> None:
        parsed = urlsplit(url)
        host = (parsed.hostname or "").lower()
        if parsed.scheme not in ("http", "https") or not host or parsed.query or parsed.fragment:
            raise _refuse(f"{_WITNESS} is not a witness URL", _WITNESS, _WITNESS_ALLOWED)
        if parsed.scheme == "http" and host not in _LOCAL_HOSTS:
            raise _refuse(
                f"{_WITNESS} uses plain http to another host: the token would travel in clear",
                _WITNESS,
                "https://, or http:// to this machine (127.0.0.1, localhost, ::1)",
            )
        token = self.audit_witness_token
        if token is None or len(token.get_secret_value().strip()) < 32:
            raise _refuse(
                "PIGUARD_AUDIT_WITNESS_TOKEN is missing or shorter than 32 characters",
                "PIGUARD_AUDIT_WITNESS_TOKEN",
                "the witness service's token (its --token-file)",
            )

    @property
    def witness_url(self) -> str | None:
        """The witness service's URL, when the witness is one."""
        value = (self.audit_witness or "").strip()
        return value if value.startswith(("http://", "https://")) else None

    @property
    def witness_folder(self) -> Path | None:
        """The witness folder, when the witness is one."""
        value = (self.audit_witness or "").strip()
        return Path(value) if value and self.witness_url is None else None

    def _folders(self) -> list[tuple[Path, str]]:
        folders = [(self.var_dir, "PIGUARD_VAR_DIR")]
        if self.witness_folder is not None:
            folders.append((self.witness_folder, _WITNESS))
        if self.master_key is None:
            folders.append((self.resolved_key_file.parent, "PIGUARD_KEY_FILE"))
        for url, name in (
            (self.resolved_database_url, "PIGUARD_DATABASE_URL"),
            (self.resolved_keystore_url, "PIGUARD_KEYSTORE_URL"),
        ):
            file = _sqlite_file(make_url(url))
            if file is not None:
                folders.append((file.parent, name))
        return folders

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'piguard.db'}"

    @property
    def resolved_keystore_url(self) -> str:
        return self.keystore_url or f"sqlite:///{self.var_dir / 'keystore.db'}"

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file or self.var_dir / "keys.json"

    @property
    def checkpoint_file(self) -> Path:
        return self.var_dir / "audit-checkpoints.jsonl"


_KEY = "PIGUARD_MASTER_KEY"
_WITNESS = "PIGUARD_AUDIT_WITNESS"
_WITNESS_ALLOWED = (
    "an absolute folder outside var/ (another volume or owner), or the URL of a witness service "
    "(https://host/v1/logs/<log id>/checkpoints)"
)
_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"postgresql": 5432}


def _parsed(url: str, name: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        allowed = "sqlite:///path/to/file.db or postgresql+psycopg://user@host:port/database"
        raise _refuse(f"{name} is not a database URL (allowed: {allowed})", name, allowed) from None


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL; None for another backend or an in-memory database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return None if "uri" in url.query else Path(url.database)


def _identity(url: URL) -> tuple[str, ...] | None:
    """What names one database: a SQLite file by its resolved path (symlinks, `.` and `..`
    followed, relative to the working folder), a server's by host, port and database name."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        file = _sqlite_file(url)
        return None if file is None else ("sqlite", str(file.resolve()))
    socket = url.query.get("host")  # postgresql:///db?host=/run/postgresql
    host = (url.host or (socket if isinstance(socket, str) else "")).lower()
    port = url.port or _DEFAULT_PORTS.get(backend, 0)
    # No host, a loopback address and a socket folder all reach this machine's server (told
    # apart by port); without a database name, PostgreSQL uses the one named like the user.
    return (
        backend,
        "localhost" if host in _LOCAL_HOSTS or host.startswith("/") else host,
        str(port),
        url.database or url.username or "",
    )


def _same_database(a: URL, b: URL) -> bool:
    first, second = _identity(a), _identity(b)
    if first is None or second is None:  # in memory: each connection has its own
        return False
    if first == second:
        return True
    if first[0] == second[0] == "sqlite":
        try:  # hard links: two paths, one file
            return os.path.samefile(first[1], second[1])
        except OSError:
            return False
    return False


def _where(url: URL) -> str:
    identity = _identity(url)
    if identity is None:
        return url.render_as_string(hide_password=True)
    if identity[0] == "sqlite":
        return identity[1]
    return f"{identity[1]}:{identity[2]}/{identity[3]}"


def _refuse(why: str | LocalText, field: str, allowed: str | None = None) -> InvalidInput:
    text = why if isinstance(why, LocalText) else LocalText(why, why)
    return InvalidInput(
        LocalText(f"拒绝启动：{text.zh}", f"refusing to start: {text.en}"),
        field=field,
        allowed=allowed,
    )
