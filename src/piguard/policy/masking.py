"""Masking operators: small pure functions, registered by name, named by specs in the policy.

A spec is an operator name with optional integer arguments, e.g. `keep_ends(3,4)` turns
`13812345678` into `138****5678`. Every operator keeps each revealed character at its own
position and never reveals more than the clear value holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Masker = Callable[[str], str]
MASK_CHAR = "*"
CLEAR = "clear"
WITHHELD = "withheld"

_SPEC = re.compile(r"^([a-z_]+)(?:\((\d+(?:,\d+)*)\))?$")


def _keep_ends(head: int, tail: int) -> Masker:
    def mask(value: str) -> str:
        if len(value) <= head + tail:
            return _keep_ends(0, 1)(value) if len(value) > 1 else MASK_CHAR * len(value)
        end = len(value) - tail
        return value[:head] + MASK_CHAR * (end - head) + value[end:]

    return mask


def _keep_start(count: int) -> Masker:
    def mask(value: str) -> str:
        shown = min(count, max(len(value) - 1, 0))
        return value[:shown] + MASK_CHAR * (len(value) - shown)

    return mask


def _name(value: str) -> str:
    return MASK_CHAR * (len(value) - 1) + value[-1:] if len(value) > 1 else MASK_CHAR * len(value)


def _email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at or not local or not domain:
        return _full(value) if at else _keep_ends(1, 0)(value)
    shown = local[:1] if len(local) > 1 else ""
    return shown + MASK_CHAR * (len(local) - len(shown)) + at + domain


def _login(value: str) -> str:
    return _email(value) if "@" in value else _keep_ends(3, 4)(value)


def _full(value: str) -> str:
    return MASK_CHAR * len(value)


def _date_year(value: str) -> str:
    if len(value) <= 4:
        return _full(value)
    return value[:4] + re.sub(r"\d", MASK_CHAR, value[4:])


_FIXED: Mapping[str, Masker] = {
    "name": _name,
    "email": _email,
    "login": _login,
    "full": _full,
    "date_year": _date_year,
}
_PARAMETRIC: Mapping[str, tuple[int, Callable[..., Masker]]] = {
    "keep_ends": (2, _keep_ends),
    "keep_start": (1, _keep_start),
}

OPERATORS: tuple[str, ...] = (CLEAR, WITHHELD, *_FIXED, *(f"{k}(…)" for k in _PARAMETRIC))


class MaskSpecError(ValueError):
    """A masking spec that names no operator or gives the wrong arguments."""


def masker(spec: str) -> Masker:
    """The operator a spec names; `clear` is the identity. `withheld` is not a masker."""
    if spec == CLEAR:
        return str
    found = _SPEC.match(spec)
    if found is None or spec == WITHHELD:
        raise MaskSpecError(f"not a masking operator: {spec!r}")
    name, raw_args = found.group(1), found.group(2)
    args = tuple(int(a) for a in raw_args.split(",")) if raw_args else ()
    if name in _FIXED and not args:
        return _FIXED[name]
    if name in _PARAMETRIC and len(args) == _PARAMETRIC[name][0]:
        return _PARAMETRIC[name][1](*args)
    raise MaskSpecError(f"not a masking operator: {spec!r}")


def check_spec(spec: str) -> None:
    """Raise MaskSpecError unless `spec` is `clear`, `withheld` or a valid operator."""
    if spec != WITHHELD:
        masker(spec)
