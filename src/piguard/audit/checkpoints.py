"""Where signed checkpoints are kept, read back, and how the copies must agree (clause S2).

Three copies: rows of `audit_checkpoints` (in the database), lines of the local checkpoint file
(outside the database, in var/), and lines at the witness (outside var/: `audit.witness`), all
in the line format of `checkpoint.encode_line`. The checkpointer writes the row, then, once it is
committed, the file line, then the witness line; so every witnessed checkpoint is in the file,
and a file is there whenever the database holds a checkpoint. What breaks that, or a seq the
copies name with different heads, is a finding: someone removed or rewrote a copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from piguard.audit.checkpoint import Checkpoint, decode_line
from piguard.audit.verify import Problem
from piguard.kernel.errors import InvalidInput

if TYPE_CHECKING:  # the scan's worker processes import this module: neither is loaded there
    from sqlalchemy import Engine

    from piguard.audit.witness import Witness

SELECT_CHECKPOINTS = "SELECT seq, hash, at, signature, key_id FROM audit_checkpoints"


@dataclass(frozen=True, slots=True)
class Gathered:
    """Every checkpoint to trust (one per seq: witness over file over database, since each
    lives further from the log) and what the copies showed."""

    checkpoints: list[Checkpoint]
    problems: list[Problem]
    from_file: int
    file_found: bool
    witnessed: int


def gather(engine: Engine, file: Path | None, witness: Witness | None) -> Gathered:
    """Read the three copies (database first, so a concurrent writer causes no finding) and
    compare them. Raises WitnessUnavailable when the witness cannot be read: not a verdict."""
    db_cps, problems = db_checkpoints(engine)
    found = file is not None and file.exists()
    file_cps, file_problems = parse_lines(file.read_bytes() if file and found else b"", "file")
    problems += file_problems
    witnessed: list[Checkpoint] = []
    if witness is not None:
        data = witness.read()
        witnessed, witness_problems = parse_lines(data or b"", "witness")
        problems += witness_problems
    problems += _disagreements(db_cps, file_cps, witnessed, found or file is None)
    chosen: dict[int, Checkpoint] = {}
    for cp in (*db_cps, *file_cps, *witnessed):  # later copies win
        chosen[cp.seq] = cp
    return Gathered(list(chosen.values()), problems, len(file_cps), found, len(witnessed))


def _disagreements(
    db_cps: Sequence[Checkpoint],
    file_cps: Sequence[Checkpoint],
    witnessed: Sequence[Checkpoint],
    file_found: bool,
) -> list[Problem]:
    """What the copies show (`file_found` True too when no file is to be compared)."""
    problems: list[Problem] = []
    if db_cps and not file_found:
        newest = max(cp.seq for cp in db_cps)
        problems.append(Problem("checkpoint_missing", newest, "the checkpoint file is missing"))
    in_file = {cp.seq: cp.hash for cp in file_cps}
    lacking = [cp.seq for cp in witnessed if cp.seq not in in_file]
    if lacking and file_found:
        problems.append(
            Problem(
                "checkpoint_missing",
                min(lacking),
                f"the checkpoint file lacks witnessed checkpoints up to seq {max(lacking)}",
            )
        )
    for name, others in (("the database", db_cps), ("the witness", witnessed)):
        differ = sorted({cp.seq for cp in others if in_file.get(cp.seq, cp.hash) != cp.hash})
        if differ:
            problems.append(
                Problem(
                    "checkpoint_mismatch",
                    differ[0],
                    f"the checkpoint file and {name} name other heads for seq {differ[0]}",
                )
            )
    return problems


def parse_lines(data: bytes, source: str) -> tuple[list[Checkpoint], list[Problem]]:
    """The checkpoints of checkpoint lines (`checkpoint.decode_line`), and a problem per
    malformed line. A last line without its newline is a write cut short by a crash: ignored.
    """
    cps: list[Checkpoint] = []
    problems: list[Problem] = []
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            cps.append(decode_line(line)[0])
        except InvalidInput:
            problems.append(
                Problem(
                    "bad_signature",
                    _seq_of(line),
                    f"checkpoint {source} line {number} is malformed",
                )
            )
    return cps, problems


def _seq_of(line: bytes) -> int:
    """The seq a malformed line names, where it names one (0 otherwise): where to report it."""
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError, RecursionError):
        return 0
    return seq if type(seq) is int else 0


def read_checkpoint_file(path: Path | None) -> tuple[list[Checkpoint], list[Problem]]:
    """The checkpoints of the local file (none when absent) and a problem per malformed line."""
    if path is None or not path.exists():
        return [], []
    return parse_lines(path.read_bytes(), "file")


def db_checkpoints(engine: Engine) -> tuple[list[Checkpoint], list[Problem]]:
    """The checkpoint rows, and a problem per malformed row."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(SELECT_CHECKPOINTS)
        rows = cur.fetchall()
        cur.close()
    finally:
        raw.close()
    cps: list[Checkpoint] = []
    problems: list[Problem] = []
    for seq, h, at, sig, key_id in rows:
        try:
            cps.append(_checkpoint(seq, h, at, sig, key_id))
        except (TypeError, InvalidInput):
            where = seq if type(seq) is int else 0
            problems.append(Problem("bad_signature", where, "malformed checkpoint row"))
    return cps, problems


def _checkpoint(seq: object, h: object, at: object, sig: object, key_id: object) -> Checkpoint:
    if type(seq) is not int or not isinstance(at, str) or not isinstance(key_id, str):
        raise TypeError("malformed checkpoint")
    if isinstance(sig, memoryview):
        sig = sig.tobytes()
    return Checkpoint(seq, cast(str, h), at, cast(bytes, sig), key_id)
