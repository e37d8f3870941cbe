"""IN lists as statements of a few fixed shapes, each built and compiled once.

A statement whose IN list has one bound parameter per value is a new statement for each count
of values: SQLAlchemy caches its compilation by shape, but a statement sent as the driver's own
SQL (`audit.writer.locked_reads`, a pipeline on PostgreSQL) would be compiled again each time.
Here the count is rounded up to a power of two and the list padded with its last value (an IN
list ignores repeats), so a statement is one of a handful, built once per size by its maker.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import BindParameter, Select, bindparam

T = TypeVar("T", bound=tuple[Any, ...])

Bound = tuple[Select[Any], dict[str, Any]]
"""A statement and its parameters."""


def in_list(
    make: Callable[[tuple[BindParameter[Any], ...]], Select[T]], name: str, values: Collection[str]
) -> tuple[Select[T], dict[str, Any]]:
    """`make(params)`'s statement for at least one value, and its parameters: `params` are
    `name`0..`name`n-1 for n the count of `values` rounded up to a power of two."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    ordered = list(values)
    size = 1 << (len(ordered) - 1).bit_length()
    ordered += [ordered[-1]] * (size - len(ordered))
    return _made(make, name, size), {f"{name}{i}": v for i, v in enumerate(ordered)}


@lru_cache(maxsize=256)
def _made(
    make: Callable[[tuple[BindParameter[Any], ...]], Select[Any]], name: str, size: int
) -> Select[Any]:
    return make(tuple(bindparam(f"{name}{i}") for i in range(size)))
