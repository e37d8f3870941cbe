"""The one error tree of piguard.

Every error carries a stable code, a bilingual message and, where it applies, the offending field.
The web layer maps these classes to HTTP status codes in exactly one place; the domain never knows
about HTTP.
"""

from __future__ import annotations

from piguard.kernel.text import LocalText


class PiguardError(Exception):
    """Root of every error piguard raises on purpose."""

    code = "piguard_error"

    def __init__(
        self,
        message: LocalText,
        *,
        field: str | None = None,
        allowed: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message.en)
        self.message = message
        self.field = field
        self.allowed = allowed
        self.reasons = reasons

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "code": self.code,
            "message": {"zh": self.message.zh, "en": self.message.en},
        }
        if self.field is not None:
            body["field"] = self.field
        if self.allowed is not None:
            body["allowed"] = self.allowed
        if self.reasons:
            body["reasons"] = list(self.reasons)
        return body


class InvalidInput(PiguardError):
    """Input that breaks a rule of shape or content (a field, a value, a reference)."""

    code = "invalid_input"


class PolicyFileError(InvalidInput):
    """A policy file that cannot be loaded: names the file, the path in it and what is allowed."""

    code = "invalid_policy"

    def __init__(self, file: str, path: str, problem: str, *, allowed: str | None = None) -> None:
        where = f"{file}: {path}" if path else file
        text = f"{where}: {problem}" + (f" (allowed: {allowed})" if allowed else "")
        super().__init__(
            LocalText(f"策略文件错误 {text}", f"policy file error {text}"),
            field=path or None,
            allowed=allowed,
        )
        self.file = file
        self.path = path
        self.problem = problem


class NotFound(PiguardError):
    """A thing that does not exist, or that the caller may not know exists."""

    code = "not_found"


class Conflict(PiguardError):
    """A write that contradicts the current state (a duplicate, an immutable field)."""

    code = "conflict"


class Unauthenticated(PiguardError):
    """No valid credentials."""

    code = "unauthenticated"


class Denied(PiguardError):
    """The decision engine said no; `reasons` are the clause IDs of the decision."""

    code = "denied"


class IntegrityError(PiguardError):
    """Stored data failed a check it must pass: a chain, a signature, a ciphertext."""

    code = "integrity_error"


class Overloaded(PiguardError):
    """More work is waiting than the process takes on: nothing was done; try again shortly."""

    code = "overloaded"
    retry_after = 1
