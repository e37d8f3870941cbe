"""`Sensitive[T]` wraps a personal value so that it never prints by accident."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

_HIDDEN = "Sensitive(***)"


class Sensitive(Generic[T]):
    """A value that masks itself in repr, str and format; `.reveal()` is the one way in."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return _HIDDEN

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _HIDDEN

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sensitive) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Sensitive values are not pickled")
