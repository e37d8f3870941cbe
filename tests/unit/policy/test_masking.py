"""Masking operators (C2.4, SH3, D1, DEF2)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piguard.policy.masking import MASK_CHAR, MaskSpecError, check_spec, masker


@pytest.mark.parametrize(
    ("spec", "clear", "masked"),
    [
        ("keep_ends(3,4)", "13812345678", "138****5678"),
        ("name", "张三", "*三"),
        ("name", "欧阳娜娜", "***娜"),
        ("name", "李", "*"),
        ("email", "alice@example.com", "a****@example.com"),
        ("login", "13812345678", "138****5678"),
        ("login", "bob@example.cn", "b**@example.cn"),
        ("full", "secret", "******"),
        ("date_year", "1990-05-17", "1990-**-**"),
        ("keep_start(6)", "浙江省杭州市西湖区文三路", "浙江省杭州市******"),
        ("keep_ends(6,4)", "6222021234567890123", "622202*********0123"),
        ("clear", "13812345678", "13812345678"),
    ],
)
def test_sh3_masking_operators(spec: str, clear: str, masked: str) -> None:
    assert masker(spec)(clear) == masked


def test_c2_4_counterparty_name_shows_only_surname_position() -> None:
    assert masker("name")("王小明") == "**明"


@pytest.mark.parametrize("spec", ["keep_ends(3)", "nope", "keep_ends(a,b)", "withheld", ""])
def test_def2_unknown_or_malformed_spec_refused(spec: str) -> None:
    with pytest.raises(MaskSpecError):
        masker(spec)


def test_def2_withheld_is_a_valid_spec_but_not_a_masker() -> None:
    check_spec("withheld")
    with pytest.raises(MaskSpecError):
        masker("withheld")


SPECS = [
    "keep_ends(3,4)",
    "keep_ends(0,4)",
    "keep_ends(6,4)",
    "keep_start(6)",
    "name",
    "email",
    "login",
    "full",
    "date_year",
]


@given(spec=st.sampled_from(SPECS), value=st.text(min_size=0, max_size=40))
def test_def2_masked_never_reveals_more_than_clear(spec: str, value: str) -> None:
    out = masker(spec)(value)
    assert len(out) == len(value)
    revealed = [i for i, ch in enumerate(out) if ch != MASK_CHAR]
    assert all(out[i] == value[i] for i in revealed)
    if len(value) > 1 and spec != "date_year" and not ("@" in value and spec in ("email", "login")):
        assert len(revealed) < len(value) or all(ch == MASK_CHAR for ch in value)
