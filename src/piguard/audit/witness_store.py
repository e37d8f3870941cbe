"""The witness service's store: one append-only file of checkpoint lines per installation's log.

What makes it a witness is what it refuses. A line must be a well-formed checkpoint, signed by the
public key the log's first line pinned, and must move the log forward (a higher seq): a caller who
holds every key of the installation still cannot replace or drop what was witnessed. Sending the
newest line again is accepted without change, so a publisher may retry after a lost answer.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from piguard.audit.checkpoint import decode_line
from piguard.files import append_durably, private_dir
from piguard.kernel.errors import Conflict, InvalidInput, NotFound
from piguard.kernel.text import LocalText
from piguard.vault.crypto import verify_signature

LOG_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
LOG_ID_ALLOWED: Final = "1-40 characters a-z, 0-9 and -, starting with a letter or digit"


@dataclass(frozen=True, slots=True)
class _Tip:
    """The newest witnessed line of a log, and the public key its first line pinned."""

    seq: int
    line: bytes
    public_key: bytes


class WitnessStore:
    """Append-only checkpoint logs in `folder` (0700), one `<log id>.jsonl` (0600) each."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)
        private_dir(self._folder)
        self._lock = threading.Lock()
        self._tips: dict[str, _Tip | None] = {}

    def append(self, log_id: str, line: bytes) -> bool:
        """Witness `line`; True when it was new, False when it repeats the newest line.

        InvalidInput for a malformed or badly signed line; Conflict for one that does not move
        the log forward or is signed by another key than the pinned one."""
        path = self._path(log_id)
        line = line.rstrip(b"\n") + b"\n"
        cp, public_key = decode_line(line)
        if not verify_signature(public_key, cp.payload(), cp.signature):
            raise InvalidInput(
                LocalText("检查点签名无效", "the checkpoint's signature does not verify"),
                field="signature",
                allowed="an Ed25519 signature of the checkpoint payload",
                reasons=("S2",),
            )
        with self._lock:
            tip = self._tip(log_id, path)
            if tip is not None:
                if line == tip.line:
                    return False
                self._check_forward(tip, cp.seq, public_key)
            append_durably(path, line)
            pinned = tip.public_key if tip is not None else public_key
            self._tips[log_id] = _Tip(cp.seq, line, pinned)
        return True

    def read(self, log_id: str) -> bytes:
        """Every line witnessed for `log_id`; NotFound when nothing was."""
        path = self._path(log_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(
                LocalText("该日志尚无见证的检查点", "nothing was witnessed for this log"),
                field="log_id",
            ) from None

    def _path(self, log_id: str) -> Path:
        if not isinstance(log_id, str) or LOG_ID.fullmatch(log_id) is None:
            raise InvalidInput(
                LocalText("日志标识无效", "invalid log id"), field="log_id", allowed=LOG_ID_ALLOWED
            )
        return self._folder / f"{log_id}.jsonl"

    def _tip(self, log_id: str, path: Path) -> _Tip | None:
        if log_id not in self._tips:
            self._tips[log_id] = _load_tip(path)
        return self._tips[log_id]

    @staticmethod
    def _check_forward(tip: _Tip, seq: int, public_key: bytes) -> None:
        if public_key != tip.public_key:
            raise Conflict(
                LocalText(
                    "检查点的签名公钥与该日志首条见证的公钥不同",
                    "the checkpoint is signed by another key than the one this log pinned",
                ),
                field="public_key",
                allowed="the public key of the log's first witnessed checkpoint",
                reasons=("S2",),
            )
        if seq <= tip.seq:
            raise Conflict(
                LocalText(
                    f"见证日志只能追加：序号 {seq} 不在已见证的 {tip.seq} 之后",
                    f"the witness is append-only: seq {seq} is not after witnessed seq {tip.seq}",
                ),
                field="seq",
                allowed=f"a seq greater than {tip.seq}",
                reasons=("S2",),
            )


def _load_tip(path: Path) -> _Tip | None:
    """The newest whole line of the file and the first line's key (None: nothing yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    lines = [line for line in data.split(b"\n")[:-1] if line.strip()]  # a torn last line: ignored
    if not lines:
        return None
    _, pinned = decode_line(lines[0])
    newest, _ = decode_line(lines[-1])
    return _Tip(newest.seq, lines[-1] + b"\n", pinned)
