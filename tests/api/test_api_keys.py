"""S2 over HTTP: API keys expire, are listed without secrets, and are revoked at once, by whom
the engine allows (the privacy officer in the bundled policy); issuing and revoking are audited
without the token. The server's clock is fixed, so expiry is tested by moving it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from api_support import Api, new_person, running_api
from sqlalchemy import update

from piguard.auth.tables import ApiKeyRow
from piguard.kernel.clock import FixedClock
from piguard.kernel.errors import NotFound

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, clock: FixedClock) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("piguard-keys"), clock) as running:
        yield running


@pytest.fixture(scope="module")
def http(api: Api) -> Iterator[httpx.Client]:
    with api.raw() as client:
        yield client


def _get(http: httpx.Client, token: str, url: str = "/v1/keys") -> httpx.Response:
    return http.get(url, headers={"Authorization": f"Bearer {token}"})


def _delete(http: httpx.Client, token: str, key_id: str) -> httpx.Response:
    return http.delete(f"/v1/keys/{key_id}", headers={"Authorization": f"Bearer {token}"})


def _officer(api: Api) -> str:
    return api.piguard.api_keys.create("privacy_officer", "officer").token


def test_s2_a_key_works_until_it_expires_then_is_refused_like_an_unknown_one(
    api: Api, http: httpx.Client, clock: FixedClock
) -> None:
    issued = api.piguard.api_keys.create("auditor", "short", days=2)
    assert issued.expires_at == clock.now() + timedelta(days=2)
    assert _get(http, issued.token, "/v1/audit/verify").status_code == 200
    unknown = _get(http, f"pgk_key_{'0' * 32}.{'x' * 43}", "/v1/audit/verify")

    clock.advance(timedelta(days=2))
    try:
        expired = _get(http, issued.token, "/v1/audit/verify")
        assert expired.status_code == 401
        assert expired.json() == unknown.json()
    finally:
        clock.advance(-timedelta(days=2))
    assert _get(http, issued.token, "/v1/audit/verify").status_code == 200


def test_s2_default_lifetimes_are_90_days_and_30_for_a_subjects_own_key(
    api: Api, clock: FixedClock
) -> None:
    staff = api.piguard.api_keys.create("auditor", "default")
    subject = api.register(new_person())
    own = api.piguard.api_keys.create("subject", "own", subject)
    assert staff.expires_at == clock.now() + timedelta(days=90)
    assert own.expires_at == clock.now() + timedelta(days=30)


def test_s2_a_key_issued_before_expiry_existed_lives_its_default_lifetime(
    api: Api, http: httpx.Client, clock: FixedClock
) -> None:
    issued = api.piguard.api_keys.create("auditor", "legacy")
    with api.piguard.transactions.write() as uow:  # as migration 0004 leaves an older row
        uow.connection.execute(
            update(ApiKeyRow).where(ApiKeyRow.id == issued.key_id).values(expires_at=None)
        )
        uow.commit()
    listed = {k.key_id: k for k in api.piguard.api_keys.list_keys()}[issued.key_id]
    assert listed.legacy
    assert listed.expires_at == clock.now() + timedelta(days=90)
    assert _get(http, issued.token, "/v1/audit/verify").status_code == 200
    clock.advance(timedelta(days=90))
    try:
        assert _get(http, issued.token, "/v1/audit/verify").status_code == 401
    finally:
        clock.advance(-timedelta(days=90))


def test_s2_the_privacy_officer_lists_keys_without_any_secret(api: Api, http: httpx.Client) -> None:
    issued = api.piguard.api_keys.create("payment_service", "listed")
    answer = _get(http, _officer(api))
    assert answer.status_code == 200
    found = {k["id"]: k for k in answer.json()}[issued.key_id]
    assert set(found) == {
        "id", "role", "subject_id", "label", "created_at", "expires_at", "revoked_at", "live"
    }  # fmt: skip
    assert (found["role"], found["label"], found["live"]) == ("payment_service", "listed", True)
    secret = issued.token.partition(".")[2]
    assert secret not in answer.text
    assert hashlib.sha256(secret.encode()).hexdigest() not in answer.text


def test_s2_the_privacy_officer_revokes_a_key_and_it_is_refused_at_once(
    api: Api, http: httpx.Client
) -> None:
    victim = api.piguard.api_keys.create("auditor", "to revoke")
    assert _get(http, victim.token, "/v1/audit/verify").status_code == 200
    head = api.audit_head()

    assert _delete(http, _officer(api), victim.key_id).status_code == 204

    assert _get(http, victim.token, "/v1/audit/verify").status_code == 401
    assert _delete(http, _officer(api), victim.key_id).status_code == 204  # already: no change
    revokes = [r for r in api.records_since(head, key_events=True) if r["action"] == "key_revoke"]
    assert len(revokes) == 1
    assert revokes[0]["actor"].startswith("staff:privacy_officer:key_")
    assert revokes[0]["detail"] == f"key_revoke:{victim.key_id}:role:auditor"
    assert victim.token.partition(".")[2] not in str(api.records_since(0, key_events=True))


@pytest.mark.parametrize("role", ["auditor", "payment_service", "customer_service_agent"])
def test_s2_another_role_may_neither_list_nor_revoke_keys(
    api: Api, http: httpx.Client, role: str
) -> None:
    victim = api.piguard.api_keys.create("auditor", "kept")
    token = api.piguard.api_keys.create(role, "not an officer").token
    listed, revoked = _get(http, token), _delete(http, token, victim.key_id)
    assert (listed.status_code, revoked.status_code) == (403, 403)
    assert revoked.json()["reasons"] == [f"S2:no_grant:{role}:update:access_management"]
    assert _get(http, victim.token, "/v1/audit/verify").status_code == 200


def test_s2_a_subjects_own_key_may_neither_list_nor_revoke_keys(
    api: Api, http: httpx.Client
) -> None:
    subject = api.register(new_person())
    own = api.piguard.api_keys.create("subject", "own", subject)
    victim = api.piguard.api_keys.create("auditor", "kept")
    assert _get(http, own.token).status_code == 403
    assert _delete(http, own.token, victim.key_id).status_code == 403
    assert _delete(http, own.token, own.key_id).status_code == 403


def test_s2_revoking_an_unknown_key_is_404(api: Api, http: httpx.Client) -> None:
    answer = _delete(http, _officer(api), "key_000000000000ffffffffffffffffffff")
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")


def test_s2_issuing_a_key_is_audited_in_its_transaction_without_the_token(api: Api) -> None:
    head = api.audit_head()
    issued = api.piguard.api_keys.create("auditor", "audited", actor="cli:tester")
    records = api.records_since(head, key_events=True)
    assert [(r["actor"], r["action"], r["detail"]) for r in records] == [
        ("cli:tester", "key_issue", f"key_issue:{issued.key_id}:role:auditor")
    ]
    assert records[0]["purpose"] == "access_management"
    assert issued.token.partition(".")[2] not in str(records)


def test_s2_the_keys_table_never_holds_a_token(api: Api) -> None:
    issued = api.piguard.api_keys.create("auditor", "stored")
    raw = (api.var_dir / "piguard.db").read_bytes()
    assert issued.token.partition(".")[2].encode() not in raw


def test_r4_no_subject_key_for_an_unknown_or_erased_subject(api: Api, http: httpx.Client) -> None:
    before, ghost = api.audit_head(), "sub_" + "0" * 32
    with pytest.raises(NotFound):
        api.piguard.api_keys.create("subject", "ghost", ghost)
    subject = api.register(new_person())
    officer = _officer(api)
    erased = http.delete(f"/v1/subjects/{subject}", headers={"Authorization": f"Bearer {officer}"})
    assert erased.status_code == 204
    keys_before = len(api.piguard.api_keys.list_keys())
    with pytest.raises(NotFound):
        api.piguard.api_keys.create("subject", "after erasure", subject)
    assert len(api.piguard.api_keys.list_keys()) == keys_before  # nothing issued, nothing half-done
    issued = [
        r
        for r in api.records_since(before, key_events=True)
        if r["action"] == "key_issue" and r["subject"] in (ghost, subject)
    ]
    assert issued == []
