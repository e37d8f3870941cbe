"""Bad input: each answer is a 4xx in the one error shape, and nothing is written.

"Nothing" is checked in the SQLite files themselves: subjects, values, blind indexes, consent and
setting events, audit records and data keys. A refusal by the engine is itself audited (S2), so
there the only new rows allowed are audit records with effect `deny`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from api_support import ADDRESS, ID_NUMBER, PHONE, Api, Person, new_person

from piguard.client import PiguardApiError

LOCATION = "user.location.precise"


@pytest.fixture(scope="module")
def existing(api: Api) -> str:
    return api.register(new_person())


@pytest.fixture
def raw(api: Api) -> Iterator[httpx.Client]:
    with api.raw() as client:
        client.headers["Authorization"] = f"Bearer {api.token('account_service')}"
        yield client


def _error(body: object) -> dict[str, object]:
    """The one error shape: code, message in Chinese and English, optional field."""
    assert isinstance(body, dict)
    assert isinstance(body["code"], str)
    message = body["message"]
    assert isinstance(message, dict)
    assert message["zh"].strip()
    assert message["en"].strip()
    assert set(body) <= {"code", "message", "field", "allowed", "reasons"}
    return body


def _api_error(caught: pytest.ExceptionInfo[PiguardApiError]) -> PiguardApiError:
    error = caught.value
    assert error.code
    assert error.message_en.strip()
    assert error.message_zh.strip()
    return error


def test_u2_unknown_purpose_is_refused_by_the_schema_and_nothing_is_written(
    api: Api, existing: str
) -> None:
    before, head = api.counts(), api.audit_head()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("payment_service").collect(existing, "telepathy", {PHONE: "13800130000"})

    error = _api_error(caught)
    assert (error.status, error.code, error.field) == (422, "invalid_input", "body.purpose")
    assert "telepathy" not in error.message_en + error.message_zh + (error.allowed or "")
    after = api.counts()
    assert {k: v for k, v in after.items() if k != "audit_records"} == {
        k: v for k, v in before.items() if k != "audit_records"
    }
    assert api.audit_since(head) == []  # refused before any decision: nothing was asked


def test_u2_unknown_category_names_the_field_by_its_position(api: Api, person: Person) -> None:
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("account_service").register({**person.values, "user.shoe_size": "42"})

    error = _api_error(caught)
    position = len(person.values)  # the sixth key of `values`: its name is the caller's text
    assert (error.status, error.code) == (422, "invalid_input")
    assert error.field == f"body.values.<key:{position}>.[key]"  # not one of the policy's keys
    assert "shoe_size" not in error.message_en + error.message_zh + (error.allowed or "")
    assert api.counts() == before


def test_u2_category_not_declared_for_the_purpose_names_the_field(api: Api, existing: str) -> None:
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("payment_service").collect(existing, "quick_pay", {LOCATION: "39.90,116.40"})

    error = _api_error(caught)
    assert (error.status, error.code, error.field) == (403, "denied", LOCATION)
    assert any(r.startswith("U2:category_not_declared:quick_pay") for r in error.reasons)
    assert api.counts()["personal_values"] == before["personal_values"]


def test_c1_1_malformed_id_number_names_the_field_without_echoing_it(
    api: Api, person: Person
) -> None:
    wrong = person.id_number[:-1] + ("0" if person.id_number[-1] != "0" else "1")
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("account_service").register({**person.values, ID_NUMBER: wrong})

    error = _api_error(caught)
    assert (error.status, error.code, error.field) == (422, "invalid_input", ID_NUMBER)
    assert "check digit" in error.message_en
    for text in (error.message_en, error.message_zh, error.allowed or ""):
        assert wrong not in text
        assert wrong[6:14] not in text  # not even the birth date
    assert api.counts() == before


def test_c1_1_missing_required_field_is_named(api: Api, person: Person) -> None:
    values = {k: v for k, v in person.values.items() if k != ADDRESS}
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("account_service").register(values)

    error = _api_error(caught)
    assert (error.status, error.code, error.field) == (422, "invalid_input", ADDRESS)
    assert ADDRESS in error.message_en
    assert ADDRESS in error.message_zh
    assert api.counts() == before


def test_s2_oversize_body_is_refused_before_it_is_read_naming_the_limit(
    api: Api, raw: httpx.Client, person: Person
) -> None:
    limit = api.piguard.settings.max_body_bytes
    padded = json.dumps({"values": {**person.values, ADDRESS: "北" * limit}}).encode()
    before = api.counts()

    declared = raw.post(
        "/v1/subjects", content=padded, headers={"content-type": "application/json"}
    )
    streamed = raw.post(
        "/v1/subjects",
        content=iter([padded[i : i + 4096] for i in range(0, len(padded), 4096)]),
        headers={"content-type": "application/json"},
    )

    for answer in (declared, streamed):
        assert answer.status_code == 413
        body = _error(answer.json())
        assert body["code"] == "body_too_large"
        assert body["allowed"] == f"at most {limit} bytes"
        assert body["message"] == {
            "zh": f"请求体超过 {limit} 字节的上限",
            "en": f"the body is over the limit of {limit} bytes",
        }
    assert "content-length" not in streamed.request.headers
    assert api.counts() == before


def test_s2_wrong_content_type_is_refused(api: Api, raw: httpx.Client, person: Person) -> None:
    before = api.counts()

    answers = [
        raw.post("/v1/subjects", content=json.dumps({"values": person.values}), headers=headers)
        for headers in (
            {"content-type": "text/plain"},
            {"content-type": "application/x-www-form-urlencoded"},
            {"content-type": "application/json; charset=latin-1"},
            {},
        )
    ]

    for answer in answers:
        assert answer.status_code == 415
        body = _error(answer.json())
        assert (body["code"], body["field"]) == ("unsupported_media_type", "Content-Type")
    assert api.counts() == before


@pytest.mark.parametrize(
    "payload",
    [b"{", b'{"values": {"user.name": "x",}}', b"\xff\xfe{}", b"[1, 2", b'{"values": NaN'],
)
def test_s2_malformed_json_is_400(api: Api, raw: httpx.Client, payload: bytes) -> None:
    before = api.counts()

    answer = raw.post("/v1/subjects", content=payload, headers={"content-type": "application/json"})

    assert answer.status_code == 400
    assert _error(answer.json())["code"] == "malformed_json"
    assert api.counts() == before


def test_s2_unknown_json_key_is_refused(api: Api, raw: httpx.Client, person: Person) -> None:
    before = api.counts()

    answer = raw.post("/v1/subjects", json={"values": person.values, "role": "aml_officer"})

    assert answer.status_code == 422
    body = _error(answer.json())
    assert (body["code"], body["field"]) == ("invalid_input", "body.role")
    assert api.counts() == before


def test_s2_wrong_json_types_name_the_field(api: Api, raw: httpx.Client) -> None:
    answers = {
        "body.values": raw.post("/v1/subjects", json={"values": ["a"]}),
        "body.values.user.name": raw.post("/v1/subjects", json={"values": {"user.name": 1}}),
        "body": raw.post("/v1/subjects", json=[1, 2]),
    }

    for field, answer in answers.items():
        assert answer.status_code == 422
        assert _error(answer.json())["field"] == field


def test_c2_3_duplicate_phone_on_registration_is_a_conflict(api: Api, person: Person) -> None:
    api.register(person)
    twin = new_person()
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("account_service").register({**twin.values, PHONE: person.phone})

    error = _api_error(caught)
    assert (error.status, error.code, error.field) == (409, "conflict", PHONE)
    assert person.phone not in error.message_en
    assert api.counts() == before
