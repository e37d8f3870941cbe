"""Helpers for the hostile-caller suite: raw calls with a token, stored rows, minors' ID numbers."""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Any

import httpx
from stdnum.cn import ric

from api.api_support import Api

ID_NUMBER = "user.government_id.national_identification_number"
BIRTH = "user.demographic.date_of_birth"
DOCUMENT = "user.government_id.document_image"


def call(api: Api, token: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request as the holder of `token` (none: no Authorization header)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with api.raw() as raw:
        return raw.request(method, path, headers=headers, **kw)


def own_key(api: Api, subject: str) -> str:
    """A fresh key of the subject itself (role `subject`, bound to it)."""
    return api.piguard.api_keys.create("subject", "hostile suite", subject).token


def stored(api: Api) -> dict[str, int]:
    """Rows of every table that holds data or choices; the audit log (which records refusals
    too) is left out."""
    return {t: n for t, n in api.counts().items() if t != "audit_records"}


def id_born(born: date, seq: str = "123") -> str:
    """A valid resident ID number (ISO 7064 MOD 11-2) for someone born on `born`."""
    first17 = f"110101{born:%Y%m%d}{seq}"
    return first17 + ric.calc_check_digit(first17 + "?")  # stdnum ignores the last character


def reasons(answer: httpx.Response) -> list[str]:
    body = answer.json()
    return list(body.get("reasons") or [])


def audit_clauses(api: Api, role: str, action: str, purpose: str) -> list[str]:
    """The clauses of the newest audit record of `role` doing `action` for `purpose`."""
    api.piguard.audit.flush()
    db = sqlite3.connect(f"file:{api.var_dir / 'piguard.db'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT clauses FROM audit_records WHERE actor LIKE ? AND action = ? AND purpose = ? "
            "ORDER BY seq DESC LIMIT 1",
            (f"%:{role}:%", action, purpose),
        ).fetchone()
    finally:
        db.close()
    return str(row[0]).split(",") if row else []
