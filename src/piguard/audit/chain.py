"""The audit chain: entries linked in order by a keyed hash, built in memory before storage.

Each entry's hash is HMAC-SHA256, under a chain key held outside the database, of the canonical
encoding of every other field (`prev_hash` and `seq` included), so changing, dropping or moving a
stored entry breaks the chain at that entry, and a writer without the key cannot make a record
that links (clause S2). The canonical encoding is JSON with sorted keys, separators `,` `:`,
UTF-8 (`encode`): anyone holding the key can recompute it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final, Protocol, cast

from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText

GENESIS: Final = "0" * 64
"""The `prev_hash` of the first entry."""
EFFECTS: Final = frozenset({"allow", "deny", "not_applicable"})
COLUMNS: Final = (
    "seq", "at", "actor", "action", "purpose", "subject", "categories",
    "effect", "clauses", "policy_version", "detail", "prev_hash", "hash",
)  # fmt: skip
"""Column order of a stored row (`Row`)."""

Row = tuple[int, str, str, str, str, str, str, str, str, str, str, str, str]
"""A stored entry in `COLUMNS` order; `categories` and `clauses` comma-joined (`"a,b"`, `""`)."""

LIMITS: Final = {
    "actor": 120, "action": 16, "purpose": 80, "subject": 40, "policy_version": 80,
    "clauses": 400, "detail": 200,
}  # fmt: skip
"""Longest text per field: the widths of the stored columns (`tables.AuditRecordRow`), so that a
record the chain accepts is one every database stores."""
MAX_KEY_CHARS: Final = 64
"""Longest category key recorded as given; longer or odd keys are recorded by `bounded_keys`."""
MAX_KEYS: Final = 1024
"""Most category keys in one record (the API asks for at most 64)."""

_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
_CODE = re.compile(rf"[A-Za-z0-9_.:-]{{0,{LIMITS['detail']}}}")
_HASH = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_KEY_CHARS}}}")
_NOT_KEY = re.compile(r"[^A-Za-z0-9_.:-]")
_JOINED_LIMITS: Final = {"categories": MAX_KEYS * (MAX_KEY_CHARS + 1), "clauses": LIMITS["clauses"]}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited access. Invariant: no personal information, only ids, keys and codes."""

    seq: int
    at: str
    actor: str
    action: str
    purpose: str
    subject: str
    categories: tuple[str, ...]
    effect: str
    clauses: tuple[str, ...]
    policy_version: str
    detail: str
    prev_hash: str
    hash: str

    def as_row(self) -> Row:
        """The values to store, in `COLUMNS` order."""
        return (
            self.seq, self.at, self.actor, self.action, self.purpose, self.subject,
            ",".join(self.categories), self.effect, ",".join(self.clauses),
            self.policy_version, self.detail, self.prev_hash, self.hash,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        seq, at, actor, action, purpose, subject, cats, effect, clauses, pv, detail, prev, h = row
        return cls(
            seq, at, actor, action, purpose, subject, split_keys(cats), effect,
            split_keys(clauses), pv, detail, prev, h,
        )  # fmt: skip


def split_keys(joined: str) -> tuple[str, ...]:
    """The keys of a stored comma-joined column (`""` is no key)."""
    return tuple(joined.split(",")) if joined else ()


def format_at(moment: datetime) -> str:
    """The `at` form of an aware datetime: ISO-8601 in UTC with microseconds."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be aware datetimes")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def is_at(value: object) -> bool:
    """True for a record time as `format_at` writes it."""
    return isinstance(value, str) and _AT.fullmatch(value) is not None


def is_link_hash(value: object) -> bool:
    """True for a chain hash: 64 lower-case hex digits."""
    return isinstance(value, str) and _HASH.fullmatch(value) is not None


class LinkKey(Protocol):
    """The chain key as the chain sees it: `vault.crypto.ChainKey` (HMAC-SHA256)."""

    def mac(self, data: bytes) -> str:
        """Hex HMAC of `data`: a record's link hash."""
        ...


def encode(
    seq: int,
    at: str,
    actor: str,
    action: str,
    purpose: str,
    subject: str,
    categories: str,
    effect: str,
    clauses: str,
    policy_version: str,
    detail: str,
    prev_hash: str,
) -> bytes:
    """The canonical bytes of a record: every field but `hash`, as sorted-key compact JSON in
    UTF-8, with `categories` and `clauses` given as stored (comma-joined, `""` for none) and
    encoded as arrays of keys.

    The one encoder of the chain, for the builder, the verifier and its worker processes alike.
    Fast path: a template fill, exact when no field needs a JSON escape, which the count of
    quotes, backslashes and control bytes proves; otherwise (and for any field of another type)
    the bytes come from `json.dumps`. Raises TypeError or ValueError for what JSON cannot encode.
    """
    cats, cat_quotes = _items(categories)
    cls, cl_quotes = _items(clauses)
    data = (
        f'{{"action":"{action}","actor":"{actor}","at":"{at}","categories":[{cats}],'
        f'"clauses":[{cls}],"detail":"{detail}","effect":"{effect}",'
        f'"policy_version":"{policy_version}","prev_hash":"{prev_hash}","purpose":"{purpose}",'
        f'"seq":{seq},"subject":"{subject}"}}'
    ).encode()
    if (
        len(data) - len(data.translate(None, _ESCAPED)) == _QUOTES + cat_quotes + cl_quotes
        and type(seq) is int
        and _all_text(at, actor, action, purpose, subject, effect, policy_version, detail)
        and type(prev_hash) is str
    ):
        return data
    return _json(
        seq, at, actor, action, purpose, subject, categories, effect, clauses, policy_version,
        detail, prev_hash,
    )  # fmt: skip


_ESCAPED: Final = bytes(range(32)) + b'"\\'
_QUOTES: Final = 42  # the template's own quotes
_MAX_ITEMS: Final = 4096
_item_memo: dict[object, tuple[str, int]] = {"": ("", 0)}


def _items(joined: str) -> tuple[str, int]:
    """Comma-joined keys as JSON array items, and the quotes that adds (memoised: few sets)."""
    try:
        return _item_memo[joined]
    except (KeyError, TypeError):
        pass
    if type(joined) is not str:
        return "", -1  # never the fast path: `_json` refuses it
    items = '"' + joined.replace(",", '","') + '"'
    found = items, len(items) - len(joined)
    if len(_item_memo) < _MAX_ITEMS:
        _item_memo[joined] = found
    return found


def _all_text(*values: object) -> bool:
    return all(type(value) is str for value in values)


def _json(
    seq: object, at: object, actor: object, action: object, purpose: object, subject: object,
    categories: object, effect: object, clauses: object, policy_version: object,
    detail: object, prev_hash: object,
) -> bytes:  # fmt: skip
    if type(seq) is not int or not isinstance(categories, str) or not isinstance(clauses, str):
        raise TypeError("seq is an integer; categories and clauses are comma-joined text")
    body = {
        "seq": seq, "at": at, "actor": actor, "action": action, "purpose": purpose,
        "subject": subject, "categories": list(split_keys(categories)), "effect": effect,
        "clauses": list(split_keys(clauses)), "policy_version": policy_version,
        "detail": detail, "prev_hash": prev_hash,
    }  # fmt: skip
    if not _all_text(at, actor, action, purpose, subject, effect, policy_version, detail):
        raise TypeError("record fields are text")
    if type(prev_hash) is not str:
        raise TypeError("record fields are text")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _invalid(field: str, allowed: str) -> InvalidInput:
    return InvalidInput(
        LocalText(f"审计记录字段 {field} 无效", f"invalid audit entry field {field}"),
        field=field,
        allowed=allowed,
    )


def _clean(value: object, limit: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= limit
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    )


def _text(field: str, value: object, *, required: bool = True) -> str:
    limit = LIMITS[field]
    if not _clean(value, limit) or (required and not value):
        raise _invalid(field, f"printable text without quotes or backslashes, 1-{limit} chars")
    return cast(str, value)


@lru_cache(maxsize=1024)
def _joined_keys(keys: tuple[str, ...], limit: int) -> str | None:
    """The keys comma-joined when each is non-empty, clean and comma-free (memoised: few sets)."""
    if not all(isinstance(key, str) and key and "," not in key for key in keys):
        return None
    joined = ",".join(keys)
    return joined if _clean(joined, limit) else None


def _keys(field: str, value: object) -> tuple[tuple[str, ...], str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _invalid(field, "a sequence of keys")
    keys = value if type(value) is tuple else tuple(value)
    limit = _JOINED_LIMITS[field]
    try:
        joined = _joined_keys(keys, limit)
    except TypeError:  # an unhashable key
        joined = None
    if joined is None:
        raise _invalid(
            field, f"non-empty keys without commas, quotes or backslashes, {limit} chars in all"
        )
    return keys, joined


@lru_cache(maxsize=1024)
def bounded_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """Category keys as a record may hold them: `keys` itself when every key is a short code
    (`[A-Za-z0-9_.:-]`, at most MAX_KEY_CHARS); otherwise each odd key sanitised (other
    characters become `?`) and cut to MAX_KEY_CHARS ending in `~`, at most MAX_KEYS of them, the
    last then saying how many more were asked (`+N`). A caller's unknown key is never recorded
    beyond that bounded, sanitised form."""
    if len(keys) <= MAX_KEYS and all(isinstance(k, str) and _KEY.fullmatch(k) for k in keys):
        return keys
    out = [_bounded_key(k) for k in keys[:MAX_KEYS]]
    if len(keys) > MAX_KEYS:
        out[-1] = f"+{len(keys) - MAX_KEYS + 1}"
    return tuple(out)


def _bounded_key(key: object) -> str:
    text = _NOT_KEY.sub("?", key) if isinstance(key, str) else "?"
    if not text:
        return "?"
    return text if len(text) <= MAX_KEY_CHARS else text[: MAX_KEY_CHARS - 1] + "~"


def _effect(value: object) -> str:
    if not isinstance(value, str) or value not in EFFECTS:
        raise _invalid("effect", "allow, deny or not_applicable")
    return value


def _match(field: str, value: object, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise _invalid(field, allowed)
    return value


def check_subject(value: object) -> str:
    """Validate a subject pseudonym alone, as `ChainBuilder.append` would."""
    return _text("subject", value, required=False)


class ChainBuilder:
    """Computes seq and keyed hashes of the next entries after a known head (last_seq, last_hash).

    Invariant: the entries it returns are gapless and linked under `key`. A repository inserts a
    batch in one transaction; a unique `seq` makes a concurrent writer's batch fail rather than
    fork the chain.
    """

    __slots__ = ("_key", "_last_hash", "_last_seq")

    def __init__(self, key: LinkKey, last_seq: int = 0, last_hash: str = GENESIS) -> None:
        if isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0:
            raise _invalid("last_seq", "an integer >= 0")
        if not is_link_hash(last_hash) or (last_seq == 0 and last_hash != GENESIS):
            raise _invalid("last_hash", "64 lower-case hex digits; GENESIS when last_seq is 0")
        self._key = key
        self._last_seq = last_seq
        self._last_hash = last_hash

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def last_hash(self) -> str:
        return self._last_hash

    def append(
        self,
        *,
        at: str,
        actor: str,
        action: str,
        purpose: str,
        subject: str,
        categories: Sequence[str],
        effect: str,
        clauses: Sequence[str],
        policy_version: str,
        detail: str,
    ) -> AuditEntry:
        """Validate the fields and return the next linked entry (the head moves past it).

        Fields are ids, keys and codes, never personal values: printable, no quotes, backslashes or
        control characters, keys without commas. A bad field raises InvalidInput naming it and
        leaves the head where it was.
        """
        cats, _ = _keys("categories", categories)
        clauses_t, _ = _keys("clauses", clauses)
        at = _match("at", at, _AT, "ISO-8601 UTC with microseconds, e.g. from format_at()")
        actor, action = _text("actor", actor), _text("action", action)
        purpose = _text("purpose", purpose, required=False)
        subject = _text("subject", subject, required=False)
        effect, pv = _effect(effect), _text("policy_version", policy_version)
        detail = _match("detail", detail, _CODE, "a code: [A-Za-z0-9_.:-], 0-200 chars")
        seq, *_, prev, digest = self.append_checked(
            at, actor, action, purpose, subject, cats, effect, clauses_t, pv, detail
        )
        return AuditEntry(
            seq, at, actor, action, purpose, subject, cats, effect, clauses_t, pv, detail,
            prev, digest,
        )  # fmt: skip

    def append_checked(
        self,
        at: str,
        actor: str,
        action: str,
        purpose: str,
        subject: str,
        categories: tuple[str, ...],
        effect: str,
        clauses: tuple[str, ...],
        policy_version: str,
        detail: str,
    ) -> Row:
        """`append` for fields that already passed its checks (the audit log checks each draft
        before it writes): the same link, returned as the row to store, without checking twice."""
        cats, clauses_text = ",".join(categories), ",".join(clauses)
        seq, prev = self._last_seq + 1, self._last_hash
        row = (
            seq, at, actor, action, purpose, subject, cats, effect, clauses_text, policy_version,
            detail, prev,
        )  # fmt: skip
        digest = self._key.mac(encode(*row))
        self._last_seq, self._last_hash = seq, digest
        return (*row, digest)
