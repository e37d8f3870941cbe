"""The audit log holds every request the API accepts, and every refusal (S2, R1).

An attacker's view through the real HTTP server: another subject's key, unknown subjects, bad keys,
long unknown category keys. Each refusal answers as before and leaves a record naming the attempt,
with nothing of the request beyond bounded keys; the chain still verifies (`piguard audit verify`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_support import EMAIL, NAME, PHONE, Api, Person, new_person, serve

from piguard.bootstrap import build
from piguard.client import PiguardApiError, PiguardClient
from piguard.settings import Settings
from piguard.web.app import create_app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Any]]:
    """A server of its own, with its app: the tests below also count records and flush tallies."""
    var_dir = tmp_path_factory.mktemp("refusals")
    piguard = build(Settings(dev=True, var_dir=var_dir))
    app = create_app(piguard)
    try:
        with serve(app) as base_url:
            running = Api(base_url, piguard, var_dir)
            try:
                yield running, app
            finally:
                running.close()
    finally:
        piguard.close()


@pytest.fixture
def api(served: tuple[Api, Any]) -> Api:
    return served[0]


def cli_verify(api: Api) -> subprocess.CompletedProcess[str]:
    """`piguard audit verify` on the server's files, in a process of its own."""
    api.piguard.audit.flush()
    env = {**os.environ, "PIGUARD_DEV": "1", "PIGUARD_VAR_DIR": str(api.var_dir)}
    return subprocess.run(
        [sys.executable, "-m", "piguard.cli.main", "audit", "verify", "--lang", "en"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_r1_subject_reads_every_own_category_and_the_record_holds_each_key(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    wanted = api.piguard.policy.purposes["self_service"]
    keys = wanted.required + wanted.optional
    assert len(keys) >= 37
    head = api.audit_head()

    read = api.as_subject(subject_id).read(subject_id, "self_service")

    assert read["decision"]["effect"] == "allow"
    assert {v["category"] for v in read["values"]} >= {NAME, PHONE}
    [record] = [r for r in api.records_since(head) if r["subject"] == subject_id]
    assert record["categories"].split(",") == list(keys)
    assert (record["action"], record["effect"], record["purpose"]) == (
        "read",
        "allow",
        "self_service",
    )
    assert person.phone not in str(record)


def test_s2_every_category_of_the_taxonomy_fits_one_record(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    every = list(api.piguard.policy.categories)
    assert len(every) == 64
    head = api.audit_head()

    with pytest.raises(PiguardApiError) as caught:  # no purpose may read them all: a denial
        api.as_role("customer_service_agent").read(subject_id, "customer_service", every)

    assert caught.value.status == 403
    [record] = [r for r in api.records_since(head) if r["subject"] == subject_id]
    assert record["categories"].split(",") == every
    assert record["effect"] == "deny"


def _attempts(me: PiguardClient, other: str) -> dict[str, Callable[[], object]]:
    """Every route that addresses a subject, aimed at `other` with `me`'s key."""
    return {
        "read": lambda: me.read(other, "self_service", [NAME, PHONE]),
        "collect": lambda: me.collect(other, "self_service", {EMAIL: "x@example.com"}),
        "update": lambda: me.update(other, "self_service", {EMAIL: "y@example.com"}),
        "erase_values": lambda: me.erase_values(other, "self_service", [EMAIL]),
        "erase": lambda: me.erase(other),
        "grant": lambda: me.grant_consent(other, "purpose:personalization"),
        "withdraw": lambda: me.withdraw_consent(other, "purpose:personalization"),
        "history": lambda: me.consents(other),
        "receipt": lambda: me.receipt(other, "evt_1"),
        "read_settings": lambda: me.settings(other),
        "change_settings": lambda: me.change_settings(other, {"marketing_sms": False}),
        "decide": lambda: me.decide("read", "self_service", [NAME], subject_id=other),
    }


def test_s2_another_subjects_key_gets_404_and_each_attempt_is_audited(api: Api) -> None:
    mine, theirs = new_person(), new_person()
    me_id, other = api.register(mine), api.register(theirs)
    me = api.as_subject(me_id)
    before = api.held_for(other)
    head = api.audit_head()

    answers = {}
    for route, attempt in _attempts(me, other).items():
        with pytest.raises(PiguardApiError) as caught:
            attempt()
        answers[route] = (caught.value.status, caught.value.code, caught.value.field)

    nobody = "sub_" + "0" * 32
    with pytest.raises(PiguardApiError) as missing:
        me.read(nobody, "self_service", [NAME])
    expected = (404, "not_found", "subject_id")
    assert set(answers.values()) == {expected}
    assert (missing.value.status, missing.value.code, missing.value.field) == expected
    assert api.held_for(other) == before  # nothing written, nothing erased

    records = api.records_since(head)
    label = records[0]["actor"]
    assert label.startswith("subject:subject:key_")
    attempted = {r["detail"]: r for r in records if r["subject"] == other}
    assert set(attempted) == {f"not_bound:{route}" for route in answers}
    for record in attempted.values():
        assert (record["actor"], record["effect"], record["clauses"]) == (label, "deny", "S2")
    read = attempted["not_bound:read"]
    assert (read["action"], read["purpose"], read["categories"]) == (
        "read",
        "self_service",
        f"{NAME},{PHONE}",
    )
    assert attempted["not_bound:erase"]["action"] == "erase"
    assert [r["detail"] for r in records if r["subject"] == nobody] == ["not_bound:read"]
    assert "x@example.com" not in str(records)
    verified = cli_verify(api)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_s2_staff_asking_for_a_subject_that_does_not_exist_is_audited(api: Api) -> None:
    head = api.audit_head()
    long_id = "sub_" + "9" * 60  # the longest id the route accepts; longer than any real one

    for subject_id in ("sub_" + "1" * 32, long_id):
        with pytest.raises(PiguardApiError) as caught:
            api.as_role("customer_service_agent").read(subject_id, "customer_service", [NAME])
        assert caught.value.status == 404

    records = api.records_since(head)
    assert [(r["detail"], r["action"], r["purpose"]) for r in records] == [
        ("not_found:read", "read", "customer_service")
    ] * 2
    assert records[0]["subject"] == "sub_" + "1" * 32
    assert records[1]["subject"] == long_id[:39] + "~"  # bounded to the subject column


def test_s2_unknown_category_keys_are_refused_by_the_schema_and_never_recorded(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    long_key = "user.x13800138000" + "a" * 300
    head = api.audit_head()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("customer_service_agent").read(subject_id, "customer_service", [NAME, long_key])

    assert caught.value.status == 422  # not one of the policy's categories (the schema's enum)
    assert long_key not in caught.value.message_en + caught.value.message_zh
    assert api.records_since(head) == []


def test_s2_unauthenticated_requests_are_recorded_in_aggregate(
    served: tuple[Api, Any], person: Person
) -> None:
    api, app = served
    subject_id = api.register(person)
    app.state.refusals.flush()  # what earlier tests left counted
    head = api.audit_head()
    token = "pgk_key_000000000000000000000000000000.secret-guess"

    with api.raw() as raw:
        for _ in range(30):
            answer = raw.get(
                f"/v1/subjects/{subject_id}",
                params={"purpose": "self_service"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 401
    app.state.refusals.flush()

    records = api.records_since(head)
    first = [r for r in records if r["detail"].startswith("unauthenticated:")]
    more = [
        int(r["detail"].split(":")[1]) for r in records if "unauthenticated_more" in r["detail"]
    ]
    assert 1 <= len(first) <= 2  # at most one window boundary in the loop
    assert len(first) + sum(more) == 30
    assert len(records) <= 4  # two records per window, not one per request
    assert {r["actor"] for r in records} == {"anonymous"}
    assert first[0]["subject"] == subject_id
    assert "secret-guess" not in str(records)
