"""The format of every category (C1.1, R1): table-driven cases per validator and properties.

Every value is synthetic. A refusal names the field and what is allowed, and never the value.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from piguard.kernel.errors import InvalidInput, PolicyFileError
from piguard.policies import bundled_policy_path
from piguard.policy.language import VALIDATOR_NAMES, load_policy, parse_policy
from piguard.vault.validators import COUNTRIES, DEFAULT, VALIDATORS, validate

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FIELD = "the_field"


def ok(name: str, value: str, now: datetime = NOW) -> str:
    return validate(name, value, FIELD, now)


def refused(name: str, value: str, now: datetime = NOW) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validate(name, value, FIELD, now)
    error = caught.value
    assert (error.field, error.code) == (FIELD, "invalid_input")
    assert error.allowed
    assert error.message.zh.strip()
    assert error.message.en.strip()
    if len(value.strip()) >= 4:
        assert value.strip() not in str(error.to_dict())  # never echoes personal data
    return error


def resident_id(birth: str) -> str:
    body = "110101" + birth + "123"
    return body + ric.calc_check_digit(body + "0")


# --- the registry and the policy ------------------------------------------------------------------


def test_c1_1_the_policy_language_knows_exactly_the_vault_s_validators() -> None:
    assert set(VALIDATORS) == VALIDATOR_NAMES


def test_c1_1_every_category_with_a_format_names_a_validator() -> None:
    policy = load_policy(bundled_policy_path())
    free_text = {k for k, c in policy.categories.items() if c.validator is None}
    # What is left as free text is what people or systems write in sentences or records.
    assert all(
        k.startswith(("user.behavior.", "user.content.", "user.financial.", "user.commerce."))
        or k in ("user.device.installed_apps", "user.account.privacy_choices")
        or k == "user.account.access_log"
        for k in free_text
    ), free_text
    assert len(policy.categories) - len(free_text) >= 44


def test_c1_1_a_policy_naming_an_unknown_validator_is_refused(
    policy_data: dict[str, object],
) -> None:
    categories = policy_data["categories"]
    assert isinstance(categories, dict)
    categories["user.demographic.gender"]["validator"] = "horoscope"
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(yaml.safe_dump(policy_data, allow_unicode=True), "broken.yaml")
    assert caught.value.path == "categories.user.demographic.gender.validator"
    assert "horoscope" in caught.value.problem
    assert "birth_date" in (caught.value.allowed or "")


# --- table-driven cases ---------------------------------------------------------------------------

ACCEPTED = [
    ("birth_date", "1990-03-07", "1990-03-07"),
    ("birth_date", "１９９０-０３-０７", "1990-03-07"),  # full-width digits of a Chinese IME
    ("birth_date", "1900-01-01", "1900-01-01"),
    ("birth_date", "2024-05-02", "2024-05-02"),  # already the 2nd in UTC+14 at 12:00 UTC
    ("document_expiry", "2030-12-31", "2030-12-31"),
    ("document_expiry", "长期", "长期"),
    ("document_expiry", "Long-term", "长期"),
    ("past_time", "2024-05-01T08:30:00+08:00", "2024-05-01T08:30:00+08:00"),
    ("gender", "男", "male"),
    ("gender", "2", "female"),
    ("gender", "Unspecified", "unspecified"),
    ("verification_result", "通过", "pass"),
    ("country", "cn", "CN"),
    ("country", "HK", "HK"),
    ("amount", "12.5", "12.50"),
    ("amount", "1,000", "1000.00"),
    ("count", "0042", "42"),
    ("credit_score", "750", "750"),
    ("geo_point", "39.9042, 116.4074", "39.9042,116.4074"),
    ("geo_point", "-0.00000001,180", "-0.00000001,180"),
    ("ip_address", "192.0.2.10", "192.0.2.10"),
    ("ip_address", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("token", "dev-0001", "dev-0001"),
    ("blob_reference", "oss://kyc/2024/05/scan-1.jpg", "oss://kyc/2024/05/scan-1.jpg"),
    ("account_number", "1234 5678-90", "12345678-90"),
    ("name", "*三", "*三"),
    ("name", "阿沛·阿旺晋美", "阿沛·阿旺晋美"),
    ("line", "北京市东城区测试路1号 3单元", "北京市东城区测试路1号 3单元"),
    ("text", "第一行\n第二行\tend", "第一行\n第二行\tend"),
    ("cn_phone", "010-6552 9988", "01065529988"),
    ("cn_phone", "+86 138 1234 5678", "13812345678"),
    ("login_name", "13812345678", "13812345678"),
    ("login_name", "Alice@Example.COM", "Alice@example.com"),
    ("cn_resident_id", resident_id("19900307"), resident_id("19900307")),
]


@pytest.mark.parametrize(("name", "raw", "stored"), ACCEPTED)
def test_r1_valid_values_are_stored_in_their_normal_form(name: str, raw: str, stored: str) -> None:
    assert ok(name, raw) == stored
    assert ok(name, stored) == stored  # the normal form is itself valid, and a fixed point


REFUSED = [
    ("birth_date", "not-a-date", "YYYY-MM-DD"),
    ("birth_date", "1990-02-30", "real date"),
    ("birth_date", "19900307", "YYYY-MM-DD"),
    ("birth_date", "2999-01-01", "future"),
    ("birth_date", "2024-05-03", "future"),
    ("birth_date", "1899-12-31", "1900"),
    ("document_expiry", "1970-01-01", "range"),
    ("document_expiry", "2999-01-01", "range"),
    ("past_time", "2024-05-01T08:30:00", "offset"),
    ("past_time", "2024-05-01", "offset"),
    ("past_time", "2999-05-01T08:30:00+08:00", "future"),
    ("gender", "attack helicopter", "allowed value"),
    ("verification_result", "fingerprint.png", "allowed value"),
    ("country", "XX", "ISO 3166-1"),
    ("country", "CHN", "longer than 2"),
    ("country", "CS", "ISO 3166-1"),  # withdrawn in 2006
    ("amount", "-5", "number"),
    ("amount", "1.005", "number"),
    ("amount", "1e9", "number"),
    ("amount", "NaN", "number"),
    ("count", "1.5", "number"),
    ("credit_score", "1001", "1000"),
    ("geo_point", "91,0", "outside"),
    ("geo_point", "39.9", "latitude,longitude"),
    ("ip_address", "999.1.1.1", "IP address"),
    ("token", "has space", "visible ASCII"),
    ("blob_reference", "just-a-name.jpg", "storage reference"),
    ("account_number", "12", "4 to 40"),
    ("name", "x" * 101, "100"),
    ("line", "x" * 501, "500"),
    ("line", "first\nsecond", "control"),
    ("name", "a\u202eb", "control"),  # right-to-left override (a Trojan-source trick)
    ("text", "nul\x00inside", "control"),
    ("text", "zero\u200bwidth", "control"),
    ("text", "bom\ufeff", "control"),
    ("text", "\ud800", "control"),
    ("text", "   ", "empty"),
    ("cn_phone", "12345", "phone number"),
    ("login_name", "13812345678@", "invalid format"),
    ("cn_resident_id", resident_id("29990101"), "future"),
    ("cn_resident_id", resident_id("18991231"), "1900"),
]


@pytest.mark.parametrize(("name", "raw", "problem"), REFUSED)
def test_r1_invalid_values_are_refused_naming_the_field(name: str, raw: str, problem: str) -> None:
    error = refused(name, raw)
    assert problem in error.message.en + (error.allowed or "")


def test_r1_free_text_is_the_default_and_bounded() -> None:
    assert DEFAULT == "text"
    assert validate(None, " 跑步鞋 ", FIELD, NOW) == "跑步鞋"
    refused("text", "x" * 4097)
    refused("no_such_validator", "x")


def test_m1_the_birth_date_bound_follows_the_injected_clock() -> None:
    later = NOW + timedelta(days=365 * 10)
    refused("birth_date", "2030-01-01")
    assert ok("birth_date", "2030-01-01", later) == "2030-01-01"


def test_r1_the_country_list_is_iso_3166_1_alpha_2() -> None:
    assert len(COUNTRIES) == 249
    assert {"CN", "HK", "MO", "TW", "US", "SS", "XK"} - COUNTRIES == {"XK"}  # XK: not ISO


# --- properties -----------------------------------------------------------------------------------


def _accepted(name: str, raw: str, now: datetime) -> str | None:
    """The stored form, or None when refused; only InvalidInput naming the field may escape."""
    try:
        return validate(name, raw, FIELD, now)
    except InvalidInput as error:
        if error.field != FIELD:
            raise
        return None


_any_text = st.text(st.characters(codec="utf-8"), max_size=60) | st.text(max_size=60)
_moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(VALIDATORS)), raw=_any_text, now=_moments)
def test_r1_validators_refuse_only_with_invalid_input_and_accept_no_control_characters(
    name: str, raw: str, now: datetime
) -> None:
    stored = _accepted(name, raw, now)
    if stored is None:
        return
    lines = name == DEFAULT
    for char in stored:
        category = unicodedata.category(char)
        assert category not in ("Cc", "Cf", "Cs") or (lines and char in "\n\r\t")
    assert validate(name, stored, FIELD, now) == stored


@settings(max_examples=200, deadline=None)
@given(day=st.dates(min_value=date(1850, 1, 1), max_value=date(2200, 1, 1)), now=_moments)
def test_m1_every_accepted_birth_date_round_trips(day: date, now: datetime) -> None:
    stored = _accepted("birth_date", day.isoformat(), now)
    possible = date(1900, 1, 1) <= day <= (now + timedelta(hours=14)).date()
    assert (stored is not None) is possible
    assert stored is None or date.fromisoformat(stored) == day


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(["birth_date", "document_expiry", "amount", "geo_point", "gender"]),
    raw=st.from_regex(r"[0-9０-９\-.,: 长期男女a-zA-Z]{0,24}", fullmatch=True),
)
def test_r1_near_misses_of_formats_never_raise_anything_else(name: str, raw: str) -> None:
    _accepted(name, raw, NOW)  # anything but InvalidInput fails the test
