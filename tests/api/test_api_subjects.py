"""Subjects through the API: masked staff views, the subject's own view, isolation, immutable
fields, location switch, crypto-shredding."""

from __future__ import annotations

import pytest
from api_support import (
    ADDRESS,
    BANK_ACCOUNT,
    ID_NUMBER,
    NAME,
    PHONE,
    Api,
    Person,
    luhn_card,
    mobile,
    new_person,
)
from sqlalchemy import event

from piguard.client import PiguardApiError

LOCATION = "user.location.precise"
RISK = {
    "user.device.ip_address": "192.0.2.10",
    "user.device.device_id": "dev-0001",
    "user.device.os_version": "iOS 17.4",
    "user.behavior.service_logs": "login ok",
}


def _shown(read: dict[str, object]) -> dict[str, object]:
    values = read["values"]
    assert isinstance(values, list)
    return {v["category"]: v["value"] for v in values}


def test_s2_def2_staff_sees_masked_phone(api: Api, person: Person) -> None:
    subject_id = api.register(person)

    read = api.as_role("customer_service_agent").read(
        subject_id, "customer_service", [PHONE, NAME, ID_NUMBER]
    )

    shown = _shown(read)
    phone = str(shown[PHONE])
    # Stored as the 11-digit national number, masked by the policy's keep_ends(3,4).
    assert phone == f"{person.phone[:3]}****{person.phone[-4:]}"
    assert shown[NAME] == "*" * (len(person.name) - 1) + person.name[-1]
    assert person.id_number not in str(read)
    assert read["decision"]["effect"] == "allow"
    assert {"clause": "S2", "code": "allow:customer_service_agent:customer_service"} in read[
        "decision"
    ]["reasons"]
    assert "audit" in read["decision"]["obligations"]


def test_r1_subject_sees_own_values_in_clear(api: Api, person: Person) -> None:
    subject_id = api.register(person)

    read = api.as_subject(subject_id).read(subject_id, "self_service", list(person.values))

    shown = _shown(read)
    assert shown[NAME] == person.name
    assert shown[ID_NUMBER] == person.id_number
    assert shown[PHONE].endswith(person.phone)
    assert shown[ADDRESS] == person.address
    assert shown[BANK_ACCOUNT] == person.bank_account
    assert read["decision"]["reasons"][0]["clause"] == "R1"
    assert {v["source"] for v in read["values"]} == {"subject"}


def test_s2_subject_key_cannot_reach_another_subject(api: Api) -> None:
    first = api.register(new_person())
    second = api.register(new_person())

    with pytest.raises(PiguardApiError) as caught:
        api.as_subject(second).read(first, "self_service", [NAME])
    with pytest.raises(PiguardApiError) as missing:
        api.as_subject(second).read("sub_00000000000000000000000000000000", "self_service", [NAME])

    assert caught.value.status == 404
    assert (caught.value.code, caught.value.message_en) == (
        missing.value.code,
        missing.value.message_en,
    )


def test_r1_id_number_is_immutable_phone_changes_only_through_verification(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    someone = new_person()
    api.register(someone)
    new_phone = mobile(9000 + person.n % 1000)

    with pytest.raises(PiguardApiError) as id_number:
        me.update(subject_id, "self_service", {ID_NUMBER: new_person().id_number})
    refusals = []
    for phone in (new_phone, someone.phone):
        for write in (me.update, me.collect):
            with pytest.raises(PiguardApiError) as caught:
                write(subject_id, "self_service", {PHONE: phone})
            refusals.append((caught.value.status, caught.value.reasons))
    changed = api.as_role("account_service").change_identifiers(
        subject_id, {PHONE: new_phone}, evidence="sms-otp:20261129-1"
    )

    assert (id_number.value.status, id_number.value.field) == (403, ID_NUMBER)
    assert id_number.value.reasons == (f"R1:immutable:{ID_NUMBER}",)
    # A registered number and a fresh one are refused alike: no 409 tells whose it is (C2.3).
    assert refusals == [(403, (f"R1:identifier_change_required:{PHONE}",))] * 4
    assert len(changed["value_ids"]) == 1
    shown = _shown(me.read(subject_id, "self_service", [PHONE, ID_NUMBER]))
    assert shown[ID_NUMBER] == person.id_number
    assert shown[PHONE] == new_phone


def test_c4_location_off_refuses_location_but_not_payment(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    api.as_subject(subject_id).change_settings(subject_id, {"location_collection": False})
    payments = api.as_role("payment_service")
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        payments.collect(subject_id, "risk_control", {**RISK, LOCATION: "39.9042,116.4074"})
    after_refusal = api.counts()
    risk = payments.collect(subject_id, "risk_control", RISK)
    card = payments.collect(subject_id, "quick_pay", {BANK_ACCOUNT: luhn_card(50_000 + person.n)})

    assert caught.value.status == 403
    assert any(r.startswith("C4:setting:location_collection") for r in caught.value.reasons)
    assert after_refusal["personal_values"] == before["personal_values"]
    assert len(risk["value_ids"]) == len(RISK)
    assert len(card["value_ids"]) == 1


def test_r4_erasure_shreds_the_subject(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    held = api.held_for(subject_id)

    me.erase(subject_id)

    # Staff find no such subject; the subject's own key was revoked with the erasure (S2).
    agent = api.as_role("customer_service_agent")
    for client, status in ((agent, 404), (me, 401)):
        with pytest.raises(PiguardApiError) as caught:
            client.read(subject_id, "self_service", [NAME])
        assert caught.value.status == status
    with pytest.raises(PiguardApiError) as again:
        api.as_role("privacy_officer").erase(subject_id)
    assert again.value.status == 404
    assert held["data_keys"] == 1
    assert held["blind_indexes"] >= 2  # ID number and phone
    after = api.held_for(subject_id)
    # The key is gone, so whatever ciphertext is left (purged later) can never be read again.
    assert (after["data_keys"], after["blind_indexes"]) == (0, 0)


def test_r3_subject_deletes_a_bound_card_and_the_aml_copy_stays(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    card = luhn_card(person.n + 7)
    api.as_role("payment_service").collect(subject_id, "quick_pay", {BANK_ACCOUNT: card})

    deleted = me.erase_values(subject_id, "self_service", [BANK_ACCOUNT])

    assert deleted == 1
    kept = me.read(subject_id, "self_service", [BANK_ACCOUNT])["values"]
    # The card bound for Quick Pay is gone; the one registration verified stays for AML (R4).
    assert [(v["value"], v["purposes"]) for v in kept] == [(person.bank_account, ["kyc_aml"])]
    assert me.erase_values(subject_id, "self_service", [BANK_ACCOUNT]) == 0


def test_r1_c2_3_the_general_update_route_cannot_change_an_identifier(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("account_service").update(
            subject_id, "identifier_change", {PHONE: mobile(8000 + person.n % 1000)}
        )

    assert caught.value.status == 403
    assert caught.value.reasons == ("R1:verification_required:identifier_change",)
    assert api.counts()["personal_values"] == before["personal_values"]


def test_sh4_a_legal_request_is_read_over_http_only_with_its_case_reference(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    legal = api.as_role("legal_response_service")

    with pytest.raises(PiguardApiError) as without:
        legal.read(subject_id, "legal_request", [NAME])
    with pytest.raises(PiguardApiError) as odd:
        legal.read(subject_id, "legal_request", [NAME], case_reference="(2026) 京01")
    answer = legal.read(subject_id, "legal_request", [NAME], case_reference="bj-2026-xingchu-123")

    assert (without.value.status, without.value.reasons) == (
        403,
        ("SH4:case_reference_required",),
    )
    assert (odd.value.status, odd.value.field) == (422, "query.case_reference")
    assert answer["decision"]["effect"] == "allow"
    assert _shown(answer)[NAME] == person.name


def test_r4_s2_an_erasure_whose_key_store_fails_answers_503_and_the_subject_is_gone(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    store = api.piguard.keystore_db

    def refuse(_conn: object, _cur: object, sql: str, *_rest: object) -> None:
        if sql.lstrip().upper().startswith("DELETE FROM DATA_KEYS"):
            raise RuntimeError("key store down")

    event.listen(store, "before_cursor_execute", refuse)
    try:
        with pytest.raises(PiguardApiError) as caught:
            me.erase(subject_id)
    finally:
        event.remove(store, "before_cursor_execute", refuse)

    error = caught.value
    assert (error.status, error.code) == (503, "erasure_incomplete")
    assert "next start" in error.message_en
    assert "下次启动" in error.message_zh
    with pytest.raises(PiguardApiError) as read:
        api.as_role("customer_service_agent").read(subject_id, "self_service", [NAME])
    assert read.value.status == 404
    assert api.held_for(subject_id)["data_keys"] == 1  # destroyed at the next start
    assert api.piguard.vault.finish_erasures() == 1
    assert api.held_for(subject_id)["data_keys"] == 0
