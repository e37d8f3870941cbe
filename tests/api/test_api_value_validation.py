"""Every write path checks each value's format (C1.1, R1, M1): a clear 422 naming the field, what is
allowed, never the value, and nothing written. Through the real HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from api_support import ID_NUMBER, PHONE, SAMPLES, Api, Person, mobile, valid_value

from piguard.client import PiguardApiError
from piguard.policy.model import Policy
from piguard.vault.validators import VALIDATORS, validate

BIRTH_DATE = "user.demographic.date_of_birth"
GENDER = "user.demographic.gender"
NICKNAME = "user.account.nickname"
SEARCH = "user.behavior.search_history"


def _refused(api: Api, write: object, field: str, secret: str) -> PiguardApiError:
    before = api.counts()
    with pytest.raises(PiguardApiError) as caught:
        write()  # type: ignore[operator]
    error = caught.value
    assert (error.status, error.code, error.field) == (422, "invalid_input", field)
    assert error.allowed
    assert error.message_zh
    assert secret not in f"{error.message_en} {error.message_zh} {error.allowed}"
    assert api.counts() == before  # not a partial write, not an audit record of a write
    return error


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not-a-date", "YYYY-MM-DD"),
        ("2999-01-01", "future"),
        ("1850-06-01", "1900"),
        ("1990-02-30", "real date"),
    ],
)
def test_m1_registration_refuses_a_birth_date_that_is_not_a_real_past_date(
    api: Api, person: Person, value: str, problem: str
) -> None:
    accounts = api.as_role("account_service")
    error = _refused(
        api, lambda: accounts.register({**person.values, BIRTH_DATE: value}), BIRTH_DATE, value
    )
    assert problem in error.message_en + (error.allowed or "")


def test_m1_registration_birth_date_must_match_the_resident_id_number(
    api: Api, person: Person
) -> None:
    encoded = f"{person.id_number[6:10]}-{person.id_number[10:12]}-{person.id_number[12:14]}"
    other = "1975-01-01" if encoded != "1975-01-01" else "1976-01-01"
    accounts = api.as_role("account_service")

    error = _refused(
        api, lambda: accounts.register({**person.values, BIRTH_DATE: other}), BIRTH_DATE, other
    )
    assert ID_NUMBER in (error.allowed or "")

    subject_id = accounts.register({**person.values, BIRTH_DATE: encoded})
    read = api.as_subject(subject_id).read(subject_id, "self_service", [BIRTH_DATE])
    assert [v["value"] for v in read["values"]] == [encoded]


@pytest.mark.parametrize(
    ("category", "value"),
    [
        (NICKNAME, "小蚂蚁\x00"),
        (NICKNAME, "小\u202e蚂蚁"),
        (NICKNAME, "第一行\n第二行"),
        (GENDER, "attack helicopter"),
        ("user.demographic.nationality", "Atlantis"),
    ],
)
def test_r1_updates_refuse_control_characters_and_values_outside_the_category_s_format(
    api: Api, person: Person, category: str, value: str
) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    _refused(api, lambda: me.update(subject_id, "self_service", {category: value}), category, value)


def test_r1_free_text_keeps_line_breaks_but_no_control_characters(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    api.as_subject(subject_id).grant_consent(subject_id, "purpose:personalization")
    marketing = api.as_role("marketing_service")

    _refused(
        api,
        lambda: marketing.collect(subject_id, "personalization", {SEARCH: "跑鞋\x1b[2J"}),
        SEARCH,
        "跑鞋\x1b[2J",
    )
    marketing.collect(subject_id, "personalization", {SEARCH: "跑鞋\n登山鞋"})
    read = marketing.read(subject_id, "personalization", [SEARCH])
    assert read["decision"]["effect"] == "allow"


def test_r1_a_valid_enumeration_is_stored_in_its_normal_form(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)

    me.update(subject_id, "self_service", {GENDER: "女", "user.demographic.nationality": "cn"})

    read = me.read(subject_id, "self_service", [GENDER, "user.demographic.nationality"])
    assert {v["category"]: v["value"] for v in read["values"]} == {
        GENDER: "female",
        "user.demographic.nationality": "CN",
    }


def test_r1_the_tests_values_are_valid_for_every_validator(policy: Policy) -> None:
    assert set(SAMPLES) == set(VALIDATORS)
    now = datetime.now(UTC)
    for name, sample in SAMPLES.items():
        for n in (0, 7, 123_456_789):
            validate(name, sample(n), name, now)  # raises InvalidInput if not
    # A category gets its own validator's value; one that names none is free text.
    assert valid_value(policy, PHONE, 42) == mobile(42)
    assert valid_value(policy, "user.behavior.search_history", 1) == SAMPLES["text"](1)
