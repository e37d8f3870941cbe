"""Audit records for refused requests the decision engine never saw (clause S2).

Policy denials are recorded by the enforcement point. What is refused before a decision is
recorded here, from the one error handler (`web.errors`):
- 404 on an authenticated route: a subject key addressing another subject (`not_bound:<route>`),
  or any caller naming a subject, event or account that does not exist (`not_found:<route>`);
- 401: in aggregate. The first unauthenticated request of each minute is recorded at once
  (`unauthenticated:<route>`); the rest of that minute are counted and recorded as one record
  (`unauthenticated_more:<n>`) when a later minute's first one arrives or the app shuts down. A
  flood of bad keys costs the log two records a minute, not one per request.

Records hold the caller's label, the route, the method's action, and what the caller named (subject
id, purpose, category keys) only in the bounded, sanitised forms of `audit.chain`: never a body,
a token, or a submitted value.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Final

from starlette.requests import Request

from piguard.audit.chain import LIMITS, bounded_keys
from piguard.audit.ports import AuditDraft
from piguard.auth.service import Caller
from piguard.bootstrap import Piguard
from piguard.kernel.errors import PiguardError

log = logging.getLogger("piguard.web")

ANONYMOUS: Final = "anonymous"
WINDOW_SECONDS: Final = 60
MAX_CATEGORIES: Final = 64
_ACTIONS: Final = {
    "GET": "read", "HEAD": "read", "POST": "write", "PUT": "update", "PATCH": "update",
    "DELETE": "erase",
}  # fmt: skip
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,79}")
_NOT_CODE = re.compile(r"[^A-Za-z0-9_.:-]")
_CLAUSES: Final = ("S2",)


class RefusalAudit:
    """Records the refusals of one app; thread-safe (handlers run on the event loop, routes in
    a thread pool)."""

    def __init__(self, piguard: Piguard, window_seconds: int = WINDOW_SECONDS) -> None:
        self._piguard = piguard
        self._window_seconds = window_seconds
        self._lock = threading.Lock()
        self._window = -1
        self._suppressed = 0

    def refused(self, request: Request, exc: PiguardError, status: int) -> None:
        """Record a 404 (per request) or a 401 (in aggregate); nothing for other statuses."""
        try:
            if status == 404:
                caller: Caller | None = getattr(request.state, "caller", None)
                if caller is not None:
                    self._not_found(request, exc, caller)
            elif status == 401:
                self._unauthenticated(request)
        except PiguardError as error:  # the refusal stands; the record's failure is logged
            log.warning("refusal not audited: %s", error.code)

    def flush(self) -> None:
        """Record the unauthenticated requests counted but not yet recorded (at shutdown)."""
        with self._lock:
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self._append(ANONYMOUS, "read", "", "", (), f"unauthenticated_more:{suppressed}")

    def _not_found(self, request: Request, exc: PiguardError, caller: Caller) -> None:
        named = getattr(exc, "subject", None)
        subject = named if isinstance(named, str) else request.path_params.get("subject_id", "")
        kind = "not_bound" if named is not None else "not_found"
        purpose = request.query_params.get("purpose", "")
        raw = request.query_params.get("categories", "")
        keys = tuple(dict.fromkeys(k for k in raw.split(",", MAX_CATEGORIES)[:MAX_CATEGORIES] if k))
        self._append(
            caller.actor.label,
            _action(request),
            purpose if _PURPOSE.fullmatch(purpose) else "",
            _bounded(str(subject), LIMITS["subject"]),
            bounded_keys(keys),
            f"{kind}:{_route(request)}",
        )

    def _unauthenticated(self, request: Request) -> None:
        window = int(self._piguard.clock.now().timestamp()) // self._window_seconds
        with self._lock:
            first = window != self._window
            if first:
                self._window = window
                suppressed, self._suppressed = self._suppressed, 0
            else:
                self._suppressed += 1
        if not first:
            return
        if suppressed:
            self._append(ANONYMOUS, "read", "", "", (), f"unauthenticated_more:{suppressed}")
        subject = _bounded(str(request.path_params.get("subject_id", "")), LIMITS["subject"])
        self._append(
            ANONYMOUS, _action(request), "", subject, (), f"unauthenticated:{_route(request)}"
        )

    def _append(
        self,
        actor: str,
        action: str,
        purpose: str,
        subject: str,
        categories: tuple[str, ...],
        detail: str,
    ) -> None:
        self._piguard.audit.enqueue(
            AuditDraft(
                actor=actor,
                action=action,
                purpose=purpose,
                subject=subject,
                categories=categories,
                effect="deny",
                clauses=_CLAUSES,
                policy_version=self._piguard.policy.key,
                detail=detail[: LIMITS["detail"]],
            )
        )


def _action(request: Request) -> str:
    return _ACTIONS.get(request.method, "request")


def _route(request: Request) -> str:
    """The route's endpoint name (`read`, `erase_values`, …); `unmatched` outside any route."""
    endpoint = request.scope.get("endpoint")
    name = getattr(endpoint, "__name__", "unmatched")
    return _bounded(str(name), 40)


def _bounded(text: str, limit: int) -> str:
    """`text` as a short code: other characters become `?`, cut to `limit` ending in `~`."""
    clean = _NOT_CODE.sub("?", text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "~"
