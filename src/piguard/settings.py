"""One settings object, read from `PIGUARD_*` environment variables, built once and passed in.

It fails closed: outside dev mode an empty, default or missing key refuses to start.
"""

from __future__ import annotations

import base64
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText

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
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        if self.master_key is not None:
            raw = self.master_key.get_secret_value().strip()
            if raw.lower() in _DEFAULT_KEYS or len(set(raw)) < 8:
                raise _refuse("PIGUARD_MASTER_KEY is empty or a well-known default")
            if len(_decoded(raw)) < 32:
                raise _refuse("PIGUARD_MASTER_KEY must be the base64 of at least 32 random bytes")
        elif not self.dev and not self.resolved_key_file.exists():
            raise _refuse(
                "no key: set PIGUARD_MASTER_KEY, provide PIGUARD_KEY_FILE, "
                "or run in dev mode (PIGUARD_DEV=1) to generate a local key file"
            )
        if self.resolved_keystore_url == self.resolved_database_url:
            # The key store must stay apart: a backup of the data must never hold its keys.
            raise _refuse(
                "PIGUARD_KEYSTORE_URL must name another database than PIGUARD_DATABASE_URL"
            )
        return self

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


def _decoded(raw: str) -> bytes:
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return b""


def _refuse(why: str) -> InvalidInput:
    return InvalidInput(
        LocalText(f"拒绝启动：{why}", f"refusing to start: {why}"), field="PIGUARD_MASTER_KEY"
    )
