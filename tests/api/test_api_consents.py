"""C5/R2: a consent opens personalisation, its withdrawal closes it at once; Kantara receipts."""

from __future__ import annotations

import pytest
from api_support import Api, Person, new_person

from piguard.client import PiguardApiError
from piguard.consent.service import Provenance
from piguard.kernel.errors import InvalidInput
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind

SCOPE = "purpose:personalization"
SEARCH = "user.behavior.search_history"


def _refused(call: object) -> PiguardApiError:
    assert callable(call)
    with pytest.raises(PiguardApiError) as caught:
        call()
    return caught.value


def test_c5_r2_consent_opens_and_withdrawal_closes_personalization(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    me, marketing = api.as_subject(subject_id), api.as_role("marketing_service")

    before = _refused(lambda: marketing.collect(subject_id, "personalization", {SEARCH: "跑鞋"}))
    granted = me.grant_consent(subject_id, SCOPE, channel="app", method="checkbox")
    marketing.collect(subject_id, "personalization", {SEARCH: "跑鞋"}, source="app")
    read = marketing.read(subject_id, "personalization", [SEARCH])
    withdrawn = me.withdraw_consent(subject_id, SCOPE, channel="app", method="checkbox")
    after = _refused(lambda: marketing.read(subject_id, "personalization", [SEARCH]))

    assert before.status == 403
    assert f"C5:consent_required:{SCOPE}" in before.reasons
    assert (granted["kind"], granted["scope"], granted["channel"]) == ("grant", SCOPE, "app")
    assert granted["policy_version"] == api.piguard.policy.key
    assert len(granted["notice_hash"]) == 64
    assert read["decision"]["effect"] == "allow"
    assert [v["value"] for v in read["values"]] == ["跑鞋"]
    assert withdrawn["kind"] == "withdraw"
    assert after.status == 403
    assert f"C5:consent_required:{SCOPE}" in after.reasons
    history = me.consents(subject_id)
    assert [e["kind"] for e in history["events"]] == ["grant", "withdraw"]
    assert history["current"] == {}


def test_c5_kantara_receipt(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    event = me.grant_consent(subject_id, SCOPE, method="checkbox", evidence="ui:consent-v1")

    receipt = me.receipt(subject_id, event["id"], lang="en")
    chinese = me.receipt(subject_id, event["id"], lang="zh")

    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["consentReceiptID"] == event["id"]
    assert receipt["piiPrincipalId"] == subject_id
    assert receipt["language"] == "en"
    assert receipt["jurisdiction"] == "CN"
    assert receipt["collectionMethod"] == "checkbox"
    [service] = receipt["services"]
    assert service["purposes"][0]["purposeCategory"] == ["personalization"]
    assert receipt["extensions"]["piguard"]["evidence"] == "ui:consent-v1"
    assert chinese["language"] == "zh"
    assert chinese["services"][0]["purposes"][0]["purpose"] != service["purposes"][0]["purpose"]
    assert person.name not in str(receipt)
    assert person.phone not in str(receipt)


def test_r2_receipts_and_consents_of_others_are_invisible(api: Api) -> None:
    first = api.register(new_person())
    second = api.register(new_person())
    event = api.as_subject(first).grant_consent(first, SCOPE)

    as_other = api.as_subject(second)
    missing = [
        _refused(lambda: as_other.receipt(first, event["id"])),
        _refused(lambda: as_other.receipt(second, event["id"])),
        _refused(lambda: as_other.consents(first)),
        _refused(lambda: as_other.grant_consent(first, SCOPE)),
    ]

    assert [e.status for e in missing] == [404, 404, 404, 404]


def test_r2_bad_scope_and_channel_are_named(api: Api) -> None:
    subject_id = api.register(new_person())
    me = api.as_subject(subject_id)

    errors = [
        _refused(lambda: me.grant_consent(subject_id, "purpose:telepathy")),
        _refused(lambda: me.grant_consent(subject_id, "everything")),
        _refused(lambda: me.grant_consent(subject_id, SCOPE, channel="carrier_pigeon")),
        _refused(lambda: me.change_settings(subject_id, {"mind_reading": True})),
    ]

    assert [(e.status, e.field) for e in errors] == [
        (422, "scope"),
        (422, "body.scope"),
        (422, "channel"),
        (422, "body.changes.<key:0>.[key]"),  # an unknown setting by its position, never its name
    ]
    for error in errors:
        said = f"{error.message_en} {error.message_zh} {error.allowed}"
        for submitted in ("telepathy", "everything", "carrier_pigeon", "mind_reading"):
            assert submitted not in said


@pytest.mark.parametrize(
    "evidence", ["张三 13912345678 同意了", "call with Zhang San", "ok\nnext line"]
)
def test_s2_consent_evidence_is_a_reference_never_free_text(
    api: Api, person: Person, evidence: str
) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    before = api.counts()

    with pytest.raises(PiguardApiError) as caught:
        me.grant_consent(subject_id, "purpose:personalization", evidence=evidence)
    recorded = me.grant_consent(subject_id, "purpose:personalization")

    assert (caught.value.status, caught.value.field) == (422, "body.evidence")
    assert evidence not in caught.value.message_en + caught.value.message_zh
    assert api.counts()["consent_events"] == before["consent_events"] + 1
    assert recorded["evidence"] == ""


def test_s2_the_service_refuses_free_text_evidence_on_every_path(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    service = api.piguard.consents
    actor = Actor(ActorKind.SUBJECT, "subject", principal="test")

    with pytest.raises(InvalidInput) as caught:
        service.grant(
            actor,
            subject_id,
            "purpose:personalization",
            how=Provenance(evidence="电话录音：张三同意"),
        )

    assert caught.value.field == "evidence"
    service.grant(
        actor, subject_id, "purpose:personalization", how=Provenance(evidence="call:2026-11-29/17")
    )
