"""Witnesses: where checkpoint lines are kept outside var/, so that whoever holds var/ and every
key still cannot rewrite history before the last witnessed checkpoint unnoticed (clause S2).

A witness is a port with two adapters, named by one setting (`PIGUARD_AUDIT_WITNESS`):
- `DirectoryWitness`: a folder on another volume or owned by another user; the lines are appended
  to a file there with O_APPEND and fsync;
- `HttpWitness`: a witness service (`piguard witness serve`, or anything speaking its two calls),
  which keeps an append-only log per installation and refuses a line that does not move forward.

The witness only stores and returns lines; verification compares them with the database and the
local checkpoint file (`audit.scan`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Protocol

import httpx

from piguard.files import append_durably
from piguard.kernel.errors import PiguardError
from piguard.kernel.text import LocalText

WITNESS_FILE: Final = "audit-checkpoints.jsonl"
_TIMEOUT: Final = 5.0


class WitnessUnavailable(PiguardError):
    """The witness could not store or return checkpoint lines (down, refused, unreadable)."""

    code = "witness_unavailable"


class Witness(Protocol):
    """Somewhere outside var/ that keeps every checkpoint line it was given, in order."""

    def describe(self) -> str:
        """Where the lines go, for messages (never a secret)."""
        ...

    def publish(self, line: bytes) -> None:
        """Keep one checkpoint line (`checkpoint.encode_line`); WitnessUnavailable if it cannot."""
        ...

    def read(self) -> bytes | None:
        """Every line kept so far, or None when nothing was ever witnessed."""
        ...


class DirectoryWitness:
    """Checkpoint lines in `<folder>/audit-checkpoints.jsonl`, the folder outside var/."""

    def __init__(self, folder: Path) -> None:
        self._file = Path(folder) / WITNESS_FILE

    def describe(self) -> str:
        return f"directory {self._file.parent}"

    def publish(self, line: bytes) -> None:
        try:
            append_durably(self._file, line)
        except OSError as exc:
            raise _unavailable(self.describe(), exc.strerror or type(exc).__name__) from None

    def read(self) -> bytes | None:
        try:
            return self._file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _unavailable(self.describe(), exc.strerror or type(exc).__name__) from None


class HttpWitness:
    """A witness service at `url` (`.../v1/logs/<log id>/checkpoints`), with a bearer token."""

    def __init__(self, url: str, token: str, *, transport: httpx.BaseTransport | None = None):
        self._url = url
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {token}"},
            timeout=_TIMEOUT,
            transport=transport,
            follow_redirects=False,
        )

    def describe(self) -> str:
        return f"witness service {self._url}"

    def publish(self, line: bytes) -> None:
        response = self._call("POST", content=line)
        if response.status_code not in (200, 201):
            raise _unavailable(self.describe(), _refusal(response))

    def read(self) -> bytes | None:
        response = self._call("GET")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unavailable(self.describe(), _refusal(response))
        return response.content

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpWitness:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, content: bytes | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if content is not None else {}
        try:
            return self._client.request(method, self._url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise _unavailable(self.describe(), type(exc).__name__) from None


def _refusal(response: httpx.Response) -> str:
    """The witness's error code, or the status: enough to act on, never the line itself."""
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    return f"HTTP {response.status_code}" + (f" {code}" if isinstance(code, str) else "")


def _unavailable(where: str, why: str) -> WitnessUnavailable:
    return WitnessUnavailable(
        LocalText(
            f"审计见证不可用（{where}）：{why}", f"audit witness unavailable ({where}): {why}"
        ),
        reasons=("S2",),
    )
