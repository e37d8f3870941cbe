"""IN lists of a few fixed shapes (`db.in_lists`): the same statement object for every count of
a size class, padded with repeats of the last value, never an empty list."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import BindParameter, Column, MetaData, Select, String, Table, select

from piguard.db.in_lists import in_list

_T = Table("t", MetaData(), Column("id", String))


def _ids(params: tuple[BindParameter[Any], ...]) -> Select[tuple[str]]:
    return select(_T.c.id).where(_T.c.id.in_(params))


def test_s2_counts_of_one_size_class_share_one_statement_and_pad_with_repeats() -> None:
    three, params = in_list(_ids, "k", ["a", "b", "c"])
    four, _ = in_list(_ids, "k", ["a", "b", "c", "d"])
    five, more = in_list(_ids, "k", ["a", "b", "c", "d", "e"])

    assert three is four
    assert five is not four
    assert params == {"k0": "a", "k1": "b", "k2": "c", "k3": "c"}
    assert len(more) == 8
    assert set(more.values()) == {"a", "b", "c", "d", "e"}
    assert str(five).count(":k") == 8


def test_s2_an_empty_in_list_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        in_list(_ids, "k", [])
