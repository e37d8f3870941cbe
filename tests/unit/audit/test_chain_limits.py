"""S2: a record holds any request the API accepts, and no caller text beyond bounded keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piguard.audit.chain import LIMITS, MAX_KEY_CHARS, MAX_KEYS, ChainBuilder, bounded_keys
from piguard.kernel.errors import InvalidInput
from piguard.policies import bundled_policy_path
from piguard.policy.language import load_policy
from piguard.vault.crypto import ChainKey

AT = "2024-05-01T12:00:00.000001+00:00"
KEY = ChainKey(b"c" * 32)


def _append(**changes: object) -> None:
    fields: dict[str, object] = {
        "at": AT, "actor": "staff:ops", "action": "read", "purpose": "risk_control",
        "subject": "sub_1", "categories": ("phone",), "effect": "allow", "clauses": ("S2",),
        "policy_version": "alipay-2017@1", "detail": "ok", **changes,
    }  # fmt: skip
    ChainBuilder(KEY).append(**fields)  # type: ignore[arg-type]


def test_s2_every_category_and_every_clause_of_the_policy_fit_one_record() -> None:
    policy = load_policy(bundled_policy_path())
    _append(categories=tuple(policy.categories), clauses=tuple(policy.clauses))


def test_s2_the_api_s_longest_requests_fit_once_bounded() -> None:
    # 64 keys, as the categories query allows, each as long as the query's 8192 characters allow.
    asked = tuple(f"user.{i:02d}" + "x" * 120 for i in range(64))
    keys = bounded_keys(asked)
    _append(categories=keys)
    assert all(len(k) == MAX_KEY_CHARS and k.endswith("~") for k in keys)


@pytest.mark.parametrize("field", sorted(set(LIMITS) - {"clauses", "detail"}))
def test_s2_text_fields_are_held_to_their_column_widths(field: str) -> None:
    _append(**{field: "x" * LIMITS[field]})
    with pytest.raises(InvalidInput) as caught:
        _append(**{field: "x" * (LIMITS[field] + 1)})
    assert caught.value.field == field


def test_s2_short_clean_keys_are_kept_as_they_are() -> None:
    keys = ("user.name", "user.contact.phone_number")
    assert bounded_keys(keys) == keys


def test_s2_odd_keys_are_sanitised_and_too_many_are_counted() -> None:
    assert bounded_keys(('a"b', "c,d", "", "\x00")) == ("a?b", "c?d", "?", "?")
    many = bounded_keys(tuple(f"k{i}" for i in range(MAX_KEYS + 10)))
    assert len(many) == MAX_KEYS
    assert many[-1] == "+11"
    assert many[-2] == f"k{MAX_KEYS - 2}"


@given(st.lists(st.text(max_size=200), max_size=80))
def test_s2_any_keys_once_bounded_are_accepted_by_the_chain(keys: list[str]) -> None:
    bounded = bounded_keys(tuple(keys))
    _append(categories=bounded)
    assert all(len(k) <= MAX_KEY_CHARS for k in bounded)
