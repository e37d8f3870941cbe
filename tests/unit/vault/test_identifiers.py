"""Table-driven tests of identifier validation; every number is synthetic, built here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric

from piguard.kernel.errors import InvalidInput
from piguard.vault.identifiers import (
    age_on,
    bank_card,
    birth_date_from_resident_id,
    cn_mobile,
    cn_resident_id,
    email,
)
from piguard.vault.validators import VALIDATORS

# Region codes valid for every birth year since 1901 in stdnum's table (Beijing, Shanghai).
REGIONS = ("110101", "110105", "310101")


def resident_id(region: str = "110101", birth: str = "19900307", seq: str = "123") -> str:
    body = region + birth + seq
    return body + ric.calc_check_digit(body + "0")  # the check digit is computed, never guessed


def resident_id_ending_in_x() -> str:
    return next(
        number
        for number in (resident_id(seq=f"{n:03d}") for n in range(1000))
        if number.endswith("X")
    )


def card(prefix: str) -> str:
    return prefix + luhn.calc_check_digit(prefix)


def assert_invalid(
    validator: Callable[[str, str], object], value: str, field: str = "the_field"
) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validator(value, field)
    error = caught.value
    assert error.field == field
    assert error.allowed
    assert error.code == "invalid_input"
    assert error.message.zh.strip()
    assert error.message.en.strip()
    if len(value.strip()) >= 4:
        # Personal data never leaks into an error, its message or its API body.
        assert value.strip() not in str(error.to_dict())
    return error


# --- resident identity numbers (C1.1, M1) ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (resident_id(), resident_id()),
        ("  " + resident_id() + "  ", resident_id()),
        (resident_id()[:6] + " " + resident_id()[6:14] + " " + resident_id()[14:], resident_id()),
        (resident_id_ending_in_x().lower(), resident_id_ending_in_x()),
        # Full-width digits, as some Chinese input methods type them.
        (
            resident_id().translate(str.maketrans("0123456789", "０１２３４５６７８９")),
            resident_id(),
        ),
        (resident_id(region="310101", birth="20000229"), resident_id("310101", "20000229")),
    ],
)
def test_c1_1_resident_id_accepted_and_normalised(raw: str, expected: str) -> None:
    assert cn_resident_id(raw, "id_number") == expected


def test_c1_1_resident_id_check_digit_rejected() -> None:
    valid = resident_id()
    for digit in "0123456789X":
        if digit != valid[-1]:
            error = assert_invalid(cn_resident_id, valid[:-1] + digit, "id_number")
            assert "check digit" in error.message.en


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (resident_id()[:17], "18 characters"),
        (resident_id() + "1", "18 characters"),
        (resident_id()[:15], "18 characters"),  # the old 15-digit format is not accepted
        ("11010A19900307123X", "digits"),
        ("X" + resident_id()[1:], "digits"),
        (resident_id(birth="19900230"), "birth date"),
        (resident_id(birth="19901301"), "birth date"),
        (resident_id(birth="19900001"), "birth date"),
        (resident_id(birth="19010229"), "birth date"),
        (resident_id(region="000000"), "region"),
        (resident_id(region="999999"), "region"),
        ("1" * 400, "invalid format"),
    ],
)
def test_c1_1_resident_id_rejected(raw: str, problem: str) -> None:
    error = assert_invalid(cn_resident_id, raw, "id_number")
    assert problem in error.message.en


@settings(deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    birth=st.dates(min_value=date(1901, 1, 1), max_value=date(2030, 12, 31)),
    seq=st.integers(min_value=0, max_value=999),
)
def test_c1_1_every_synthetic_resident_id_round_trips(region: str, birth: date, seq: int) -> None:
    number = resident_id(region, birth.strftime("%Y%m%d"), f"{seq:03d}")
    assert cn_resident_id(number.lower(), "id_number") == number
    assert birth_date_from_resident_id(number) == birth


def test_m1_birth_date_from_resident_id_validates_first() -> None:
    assert birth_date_from_resident_id(resident_id(birth="20100615")) == date(2010, 6, 15)
    error = assert_invalid(birth_date_from_resident_id, resident_id()[:-1] + "?", "guardian_id")
    assert error.field == "guardian_id"
    with pytest.raises(InvalidInput) as caught:
        birth_date_from_resident_id("123")
    assert caught.value.field == "resident_id"


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (date(2010, 6, 15), date(2010, 6, 15), 0),
        (date(2010, 6, 15), date(2028, 6, 14), 17),
        (date(2010, 6, 15), date(2028, 6, 15), 18),
        (date(2010, 6, 15), date(2028, 12, 31), 18),
        (date(2008, 2, 29), date(2026, 2, 28), 17),
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
    ],
)
def test_m1_age_on(birth: date, on: date, age: int) -> None:
    assert age_on(birth, on) == age


def test_m1_age_on_refuses_a_birth_after_the_day() -> None:
    with pytest.raises(InvalidInput) as caught:
        age_on(date(2030, 1, 2), date(2030, 1, 1))
    assert caught.value.field == "birth_date"


# --- mobile numbers (C1.1, C2.3) -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "+8613812345678",
        "(+86) 13812345678",
        "008613812345678",
        " 138 1234 5678 ",
        "１３８１２３４５６７８",
    ],
)
def test_c2_3_mobile_accepted_as_e164(raw: str) -> None:
    assert cn_mobile(raw, "phone") == "13812345678"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("1381234567", "valid phone"),
        ("138123456789", "valid phone"),
        ("01012345678", "not a mobile"),
        ("+86 10 1234 5678", "not a mobile"),
        ("+1 650 253 0000", "mainland China"),
        ("+852 5123 4567", "mainland China"),
        ("138-1234-DOGS", "digits"),
        ("13812345678 ext 12", "digits"),
        ("13812345678;ext=1", "digits"),
        ("138.1234.5678", "digits"),
        ("++8613812345678", "digits"),
        ("+", "digits"),
        ("( )", "not a phone number"),
        ("1" * 400, "invalid format"),
    ],
)
def test_c2_3_mobile_rejected(raw: str, problem: str) -> None:
    error = assert_invalid(cn_mobile, raw, "phone")
    assert problem in error.message.en


# --- bank cards (C2.1) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (card("62220200000000001"), card("62220200000000001")),
        (card("400000000000000"), card("400000000000000")),
        (card("12345678901"), card("12345678901")),  # 12 digits, the shortest accepted
        (card("123456789012345678"), card("123456789012345678")),  # 19 digits, the longest
        ("6222 0200 0000 0000 " + card("62220200000000001")[-2:], card("62220200000000001")),
        ("6222-0200-0000-0000-" + card("62220200000000001")[-2:], card("62220200000000001")),
    ],
)
def test_c2_1_bank_card_accepted(raw: str, expected: str) -> None:
    assert bank_card(raw, "card_number") == expected


def test_c2_1_bank_card_luhn() -> None:
    valid = card("62220200000000001")
    assert luhn.is_valid(bank_card(valid, "card_number"))
    for digit in "0123456789":
        if digit != valid[-1]:
            error = assert_invalid(bank_card, valid[:-1] + digit, "card_number")
            assert "check digit" in error.message.en


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        (card("1234567890"), "12 to 19"),  # 11 digits
        (card("1234567890123456789"), "12 to 19"),  # 20 digits
        ("6222 0200 0000 000A 1", "digits"),
        ("6222.0200.0000.0000", "digits"),
        ("６２２２０２００００００００００１٣", "digits"),
        ("1" * 400, "invalid format"),
    ],
)
def test_c2_1_bank_card_rejected(raw: str, problem: str) -> None:
    error = assert_invalid(bank_card, raw, "card_number")
    assert problem in error.message.en


# --- email addresses (C2.3) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice.Zhang@Example.COM", "Alice.Zhang@example.com"),
        ("  bob+tag@mail.example.cn ", "bob+tag@mail.example.cn"),
        ("x" * 64 + "@example.com", "x" * 64 + "@example.com"),
        ("张三@例子.中国", "张三@例子.中国"),
        ("alice＠example.com", "alice@example.com"),
    ],
)
def test_c2_3_email_accepted_with_lower_cased_domain(raw: str, expected: str) -> None:
    assert email(raw, "email") == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("alice.example.com", "exactly one @"),
        ("alice@@example.com", "exactly one @"),
        ("a@b@example.com", "exactly one @"),
        ("@example.com", "before @"),
        ("x" * 65 + "@example.com", "before @"),
        ("alice@localhost", "invalid format"),
        ("alice@example.", "invalid format"),
        ("alice@.example.com", "invalid format"),
        ("alice@example..com", "invalid format"),
        ("ali ce@example.com", "invalid format"),
        ("alice@exa mple.com", "invalid format"),
        ("alice\t@example.com", "invalid format"),
        ("alice\x00@example.com", "invalid format"),
        ("<alice@example.com>", "invalid format"),
        ("alice@" + "a" * 64 + ".com", "invalid format"),
        ("a@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + "." + "e" * 70, "254"),
        ("x" * 400, "invalid format"),
    ],
)
def test_c2_3_email_rejected(raw: str, problem: str) -> None:
    error = assert_invalid(email, raw, "email")
    assert problem in error.message.en


# --- the registry ----------------------------------------------------------------------------


def test_c2_3_validators_registry_serves_each_identifier() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    samples = {
        "cn_resident_id": resident_id(),
        "cn_mobile": "13812345678",
        "bank_card": card("62220200000000001"),
        "email": "alice@example.com",
    }
    for kind, sample in samples.items():
        validator = VALIDATORS[kind]
        assert validator(sample, kind, now)
        assert_invalid(lambda value, field, v=validator: v(value, field, now), "not an identifier")


def test_c1_1_region_code_the_library_cannot_place_is_a_clear_refusal() -> None:
    # python-stdnum raises a KeyError for this region code (Lanzhou, 620201): it must be a 422.
    error = assert_invalid(cn_resident_id, resident_id(region="620201"))
    assert "region code" in error.message.en
