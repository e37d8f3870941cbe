"""/v1/decide/batch: many questions for one caller in one round trip, each answered and audited
exactly as /v1/decide answers and audits it; the whole batch refused when any part may not be
asked, with nothing audited for it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import NAME, PHONE, Api, new_person, running_api, write_locked

from piguard.client import PiguardApiError

BATCH = "/v1/decide/batch"
STORED = (
    "SELECT actor, action, purpose, subject, categories, effect, clauses, detail FROM audit_records"
    " WHERE seq > ? AND action NOT LIKE 'key_%' ORDER BY seq"
)
SEARCH = "user.behavior.search_history"
BANK = "user.financial.bank_account"


def _post(api: Api, token: str, body: object) -> httpx.Response:
    with api.raw() as raw:
        return raw.post(BATCH, json=body, headers={"Authorization": f"Bearer {token}"})


def _stored_since(var_dir: Path, seq: int) -> list[tuple[Any, ...]]:
    """Decision records after `seq`, read from the SQLite file as it is: no flush first."""
    db = sqlite3.connect(f"file:{var_dir / 'piguard.db'}?mode=ro", uri=True)
    try:
        return db.execute(STORED, (seq,)).fetchall()
    finally:
        db.close()


def _mixed(subject_id: str) -> list[dict[str, Any]]:
    """Allowed and denied questions of a marketing service, with and without a subject."""
    return [
        {"action": "read", "purpose": "personalization", "categories": [SEARCH]},
        {"action": "read", "purpose": "kyc_aml", "categories": [NAME]},
        {
            "action": "read",
            "purpose": "personalization",
            "categories": [SEARCH],
            "subject_id": subject_id,
        },
        {"action": "read", "purpose": "personalization", "categories": [SEARCH, SEARCH]},
        {
            "action": "read",
            "purpose": "personalization",
            "categories": [SEARCH],
            "exemption": "criminal_justice",
            "case_reference": "case-2024-17",
            "authority": "bj-psb",
        },
        {"action": "share", "purpose": "personalization", "categories": [PHONE], "region": "US"},
    ]


def test_s2_a_batch_answers_and_audits_exactly_as_the_single_route(api: Api) -> None:
    subject_id = api.register(new_person())
    api.as_subject(subject_id).grant_consent(subject_id, "purpose:personalization")
    marketing = api.as_role("marketing_service")
    asked = _mixed(subject_id)

    head = api.audit_head()
    singles = [marketing._call("POST", "/v1/decide", json=body) for body in asked]
    middle = api.audit_head()
    batched = marketing.decide_batch(asked)

    assert batched == singles
    assert {a["effect"] for a in batched} == {"allow", "deny"}
    single_records = api.records_since(head)[: len(asked)]
    assert api.records_since(middle) == single_records
    assert [r["subject"] for r in single_records] == [b.get("subject_id", "") for b in asked]


def test_s2_every_record_of_a_batch_is_committed_when_the_answer_returns(api: Api) -> None:
    agent = api.as_role("customer_service_agent")
    purposes = ["customer_service", "kyc_aml"] * 250
    head = api.audit_head()

    answers = agent.decide_batch(
        [{"action": "read", "purpose": p, "categories": [PHONE]} for p in purposes]
    )
    stored = _stored_since(api.var_dir, head)  # straight from the file: no flush

    assert len(answers) == len(stored) == 500
    assert [row[2] for row in stored] == purposes
    assert [row[5] for row in stored] == [a["effect"] for a in answers]
    assert {row[7] for row in stored} == {"decide"}


def test_s2_a_batch_of_1000_is_answered_and_1001_or_none_refused_whole(api: Api) -> None:
    token = api.token("customer_service_agent")
    one = {"action": "read", "purpose": "customer_service", "categories": [PHONE, NAME]}
    head = api.audit_head()

    full = _post(api, token, {"requests": [one] * 1000})
    assert full.status_code == 200
    assert len(full.json()["answers"]) == 1000
    assert len(_stored_since(api.var_dir, head)) == 1000

    head = api.audit_head()
    over = _post(api, token, {"requests": [one] * 1001})
    empty = _post(api, token, {"requests": []})
    not_list = _post(api, token, {"requests": one})
    bare = _post(api, token, [one])
    missing = _post(api, token, {})

    assert (over.status_code, over.json()["field"]) == (422, "body.requests")
    assert over.json()["allowed"] == "max_length: 1000"
    assert (empty.status_code, empty.json()["field"]) == (422, "body.requests")
    assert empty.json()["allowed"] == "min_length: 1"
    for answer in (not_list, bare, missing):
        assert answer.status_code == 422
        assert answer.json()["field"] in ("body", "body.requests")
    assert api.audit_since(head) == []


def test_s2_an_invalid_item_refuses_the_whole_batch_naming_it(api: Api) -> None:
    token = api.token("marketing_service")
    good = {"action": "read", "purpose": "personalization", "categories": [SEARCH]}
    head = api.audit_head()

    spoof = _post(api, token, {"requests": [good, {**good, "actor": "aml_officer"}]})
    claimed = _post(
        api, token, {"requests": [good, good, {**good, "recipient": {"id": "x", "type": "bank"}}]}
    )
    unknown = _post(api, token, {"requests": [good, {**good, "purpose": "telepathy"}]})

    assert (spoof.status_code, spoof.json()["field"]) == (422, "body.requests.1.actor")
    assert (claimed.status_code, claimed.json()["field"]) == (422, "body.requests.2.recipient")
    assert (unknown.status_code, unknown.json()["field"]) == (422, "body.requests.1.purpose")
    assert api.audit_since(head) == []


def test_u2_one_foreign_subject_refuses_a_subject_keys_batch_as_the_single_route(
    api: Api,
) -> None:
    mine, theirs = api.register(new_person()), api.register(new_person())
    token = api.piguard.api_keys.create("subject", "batch test", mine).token
    own = {"action": "read", "purpose": "self_service", "categories": [NAME], "subject_id": mine}
    foreign = {**own, "subject_id": theirs}
    allowed = _post(api, token, {"requests": [own, own]})
    head = api.audit_head()

    with api.raw() as raw:
        single = raw.post("/v1/decide", json=foreign, headers={"Authorization": f"Bearer {token}"})
    after_single = api.audit_head()
    batched = _post(api, token, {"requests": [own, foreign, own]})

    assert allowed.status_code == 200
    assert single.status_code == batched.status_code == 404
    assert batched.json() == single.json()
    [single_refusal, batch_refusal] = api.records_since(head)
    assert api.records_since(after_single) == [batch_refusal]  # the refusal only, no decision
    assert single_refusal["detail"] == "not_bound:decide"
    assert batch_refusal == {**single_refusal, "detail": "not_bound:decide_batch"}
    assert theirs not in batched.text


def test_u2_an_unknown_subject_refuses_the_whole_batch(api: Api) -> None:
    known = api.register(new_person())
    token = api.token("payment_service")
    ask = {"action": "read", "purpose": "quick_pay", "categories": [NAME]}
    gone = "sub_00000000000000000000000000000000"
    head = api.audit_head()

    answer = _post(
        api, token, {"requests": [{**ask, "subject_id": known}, {**ask, "subject_id": gone}]}
    )

    assert answer.status_code == 404
    assert [r["effect"] for r in api.records_since(head)] == ["deny"]  # the refusal, not a decision
    assert {r["detail"] for r in api.records_since(head)} != {"decide"}


def test_sh0_c8_unregistered_recipients_and_claimed_exemptions_are_denied_in_a_batch(
    api: Api,
) -> None:
    phone = "13912345678"
    payment = api.as_role("payment_service")
    asked = [
        {"action": "share", "purpose": "quick_pay", "categories": [BANK], "recipient": phone},
        {"action": "share", "purpose": "quick_pay", "categories": [BANK], "recipient": "icbc"},
        {
            "action": "read",
            "purpose": "quick_pay",
            "categories": [NAME],
            "exemption": "criminal_justice",
            "case_reference": "c-1",
        },
    ]
    head = api.audit_head()

    answers = payment.decide_batch(asked)
    records = api.records_since(head)

    assert [a["effect"] for a in answers] == ["deny"] * 3
    for unregistered in answers[:2]:
        assert unregistered["reasons"][0]["code"] == "recipient_unregistered:<input>"
    assert answers[2]["reasons"] == [
        {"clause": "C8", "code": "exemption_not_granted:criminal_justice:payment_service"}
    ]
    assert [r["detail"] for r in records] == ["decide", "decide", "decide:case:c-1"]
    assert phone not in json.dumps(answers) + json.dumps(records)


def test_s2_a_batch_body_may_exceed_the_single_limit_up_to_its_own(api: Api) -> None:
    token = api.token("customer_service_agent")
    single_limit = api.piguard.settings.max_body_bytes
    limit = api.piguard.settings.max_batch_body_bytes
    one = {"action": "read", "purpose": "customer_service", "categories": [PHONE, NAME] * 30}
    big = json.dumps({"requests": [one] * 100}).encode()
    huge = json.dumps({"requests": [one] * 1000, "pad": "x" * limit}).encode()
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    assert single_limit < len(big) < limit

    with api.raw() as raw:
        accepted = raw.post(BATCH, content=big, headers=headers)
        refused = raw.post(BATCH, content=huge, headers=headers)
        single = raw.post("/v1/decide", content=big, headers=headers)

    assert accepted.status_code == 200
    assert len(accepted.json()["answers"]) == 100
    assert (refused.status_code, refused.json()["allowed"]) == (413, f"at most {limit} bytes")
    assert (single.status_code, single.json()["allowed"]) == (
        413,
        f"at most {single_limit} bytes",
    )


def test_s2_a_batch_gets_503_not_answers_while_the_log_cannot_be_written(
    tmp_path: Path,
) -> None:
    with running_api(tmp_path / "var") as api:
        agent = api.as_role("customer_service_agent")
        one = {"action": "read", "purpose": "customer_service", "categories": [PHONE]}
        agent.decide_batch([one])  # the key minted and recorded before the lock
        with write_locked(api.var_dir / "piguard.db"), pytest.raises(PiguardApiError) as error:
            agent.decide_batch([one] * 3)
        after = agent.decide_batch([one])

    assert (error.value.status, error.value.code) == (503, "audit_unavailable")
    assert after[0]["effect"] == "allow"
