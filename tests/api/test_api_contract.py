"""The OpenAPI contract is exact: the schema names the loaded policy's vocabulary, every operation
declares every error it gives in the one error body, and schemathesis finds nothing against it.

Schemathesis erases, revokes and writes what it likes: it gets its own throwaway server here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from api_support import Api, new_person, running_api
from contract_formats import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piguard.policy import scopes
from piguard.policy.model import Policy
from piguard.vault.validators import VALIDATORS, validate
from piguard.web.contract import component
from piguard.web.value_schemas import FORMATS, SAMPLES, VALUE_SCHEMAS

# A short run per operation; `make contract` runs 40.
EXAMPLES = os.environ.get("PIGUARD_CONTRACT_EXAMPLES", "4")
# Schemathesis learns the schema's own formats (check digits, dates up to today) from these hooks.
HOOKS = "contract_formats"
# Revoking a key: run alone, last, since schemathesis revokes the key it runs with (it finds the
# id in `GET /v1/keys`), and every later request would be a 401.
REVOKE = "DELETE /v1/keys/{key_id}"


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("contract")) as running:
        yield running


@pytest.fixture(scope="module")
def schema(throwaway: Api) -> dict[str, Any]:
    with throwaway.raw() as raw:
        found: dict[str, Any] = raw.get("/openapi.json").raise_for_status().json()
    return found


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_u2_the_schema_lists_the_policys_purposes_categories_settings_and_roles(
    throwaway: Api, schema: dict[str, Any]
) -> None:
    policy = throwaway.piguard.policy
    parts = schema["components"]["schemas"]

    decide = parts["DecideIn"]["properties"]
    settings = parts["SettingsIn"]["properties"]["changes"]
    assert decide["purpose"]["enum"] == list(policy.purposes)
    assert decide["categories"]["items"]["enum"] == list(policy.categories)
    lookups = [k for k, c in policy.categories.items() if "lookup" in c.tags]
    assert parts["LookupIn"]["properties"]["category"]["enum"] == lookups
    assert settings["propertyNames"]["enum"] == list(policy.settings)
    assert parts["ActorOut"]["properties"]["role"]["enum"] == list(policy.roles)
    read = schema["paths"]["/v1/subjects/{subject_id}"]["get"]["parameters"]
    purpose = next(p for p in read if p["name"] == "purpose")
    assert purpose["schema"]["enum"] == list(policy.purposes)


def _values_of(schema: dict[str, Any], model: str) -> dict[str, Any]:
    found: dict[str, Any] = schema["components"]["schemas"][model]["properties"]["values"]
    return found


def _component_of(prop: dict[str, Any]) -> str:
    return str(prop["$ref"]).rsplit("/", 1)[1]


def test_c1_1_the_schema_gives_each_category_the_format_of_its_validator(
    throwaway: Api, schema: dict[str, Any]
) -> None:
    policy = throwaway.piguard.policy
    parts = schema["components"]["schemas"]

    collect = _values_of(schema, "CollectIn")
    assert list(collect["properties"]) == list(policy.categories)
    assert collect["additionalProperties"] is False
    for key, prop in collect["properties"].items():
        validator = policy.categories[key].validator or "text"
        assert _component_of(prop) == component(validator), key
        assert parts[component(validator)]["examples"] == [SAMPLES[validator]]
    assert parts["NameValue"]["maxLength"] == 100
    assert parts["CnResidentIdValue"]["format"] == "cn-resident-id"
    assert "pattern" not in parts["CnResidentIdValue"]  # a check digit: a format, no pattern


def test_c1_1_registration_requires_the_registration_purposes_required_categories(
    throwaway: Api, schema: dict[str, Any]
) -> None:
    policy = throwaway.piguard.policy
    b = policy.bindings
    purpose = policy.purposes[b.registration_purpose]

    register = _values_of(schema, "RegisterIn")
    ward = _values_of(schema, "WardIn")
    assert register["required"] == list(purpose.required) == ward["required"]
    assert set(register["properties"]) == set(purpose.categories) - {b.birth_date}
    assert _component_of(ward["properties"][b.age_from]) == "CnResidentIdMinorValue"
    changed = _values_of(schema, "IdentifierChangeIn")["properties"]
    assert set(changed) == {k for k, c in policy.categories.items() if c.change_purpose}


def test_c5_the_scope_pattern_takes_every_scope_the_ledger_takes(
    throwaway: Api, schema: dict[str, Any]
) -> None:
    policy = throwaway.piguard.policy
    scope = schema["components"]["schemas"]["GrantIn"]["properties"]["scope"]
    check = jsonschema_rs.validator_for(scope)
    recipient = next(iter(policy.recipients))
    kind = next(iter(policy.recipient_types))
    for purpose in policy.purposes:
        for made in (
            scopes.purpose_scope(purpose),
            scopes.recipient_scope(recipient, purpose),
            scopes.recipient_type_scope(kind, purpose),
            scopes.disclose_scope(purpose),
            scopes.cross_border_scope(purpose),
        ):
            assert check.is_valid(made), made
    assert check.is_valid(scopes.transfer_scope(recipient))
    assert check.is_valid(scopes.SERVICE)
    for wrong in ("purpose:telepathy", "service:some", "unknown:x", "purpose:"):
        assert not check.is_valid(wrong), wrong


def _drawn(schema: dict[str, Any], formats: dict[str, st.SearchStrategy[str]]) -> Any:
    """Values of a value schema: its enum, pattern (within its lengths) or format."""
    if "anyOf" in schema:
        drawable = [s for s in schema["anyOf"] if "format" not in s or s["format"] in formats]
        return st.one_of([_drawn(s, formats) for s in drawable])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "format" in schema:
        return formats[schema["format"]]
    low, high = schema.get("minLength", 0), schema.get("maxLength", 10**6)
    return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high)


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
def test_r1_every_value_a_value_schema_allows_passes_its_validator(validator: str) -> None:
    now = datetime.now(UTC)
    formats = dict(strategies(now.date()))
    formats["ipv4"] = st.ip_addresses(v=4).map(str)
    formats["ipv6"] = st.ip_addresses(v=6).map(str)
    value_schema = VALUE_SCHEMAS[validator]
    assert validate(validator, SAMPLES[validator], "field", now)
    assert jsonschema_rs.validator_for(value_schema).is_valid(SAMPLES[validator])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_drawn(value_schema, formats))
    def accepted(value: str) -> None:
        validate(validator, value, "field", now)  # InvalidInput fails the test

    accepted()


def test_r1_a_minors_id_format_gives_minors_only(policy: Policy) -> None:
    today = datetime.now(UTC).date()
    ids = strategies(today)["cn-resident-id-minor"]

    @settings(max_examples=60, deadline=None)
    @given(ids)
    def minor(number: str) -> None:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        assert policy.minors.is_minor(age)

    minor()
    assert set(strategies(today)) == set(FORMATS)


def _schema_at(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of `schema`, its references resolved in `document`."""
    return jsonschema_rs.validator_for({**schema, "components": document["components"]})


def test_u2_every_operation_has_a_request_and_a_success_example_that_fit_its_schema(
    schema: dict[str, Any],
) -> None:
    for path, method, operation in _operations(schema):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert "example" in body, (method, path)
            assert _schema_at(schema, body["schema"]).is_valid(body["example"]), (method, path)
        for param in operation.get("parameters", []):
            assert "example" in param, (method, path, param["name"])
            fits = _schema_at(schema, param["schema"]).is_valid(param["example"])
            assert fits, (method, path, param["name"])
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, (method, path)
        for status, answer in successes.items():
            content = answer.get("content", {}).get("application/json")
            if content is None:  # 204: nothing to show
                assert status == "204", (method, path)
                continue
            assert "example" in content, (method, path, status)
            fits = _schema_at(schema, content["schema"]).is_valid(content["example"])
            assert fits, (method, path, status)


def test_s2_every_operation_declares_its_errors_in_the_one_error_body(
    schema: dict[str, Any],
) -> None:
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        errors = {s: r for s, r in responses.items() if s.startswith(("4", "5"))}
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"] == error, (path, status)
        if operation.get("security"):
            assert {"401", "403", "503"} <= set(errors), (path, method)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= set(errors), (path, method)
        if "{subject_id}" in path:
            assert "404" in errors, (path, method)
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {
        "code", "message", "field", "allowed", "reasons",
    }  # fmt: skip


def test_u2_a_purpose_outside_the_policy_is_a_422_a_known_one_not_granted_a_403(
    throwaway: Api,
) -> None:
    subject = throwaway.piguard.api_keys.create("account_service", "contract").token
    person = throwaway.register(new_person())
    head = throwaway.audit_head()

    with httpx.Client(base_url=throwaway.base_url, timeout=10) as raw:
        auth = {"Authorization": f"Bearer {subject}"}
        unknown = raw.get(f"/v1/subjects/{person}", params={"purpose": "telepathy"}, headers=auth)
        not_granted = raw.get(
            f"/v1/subjects/{person}", params={"purpose": "marketing_sms"}, headers=auth
        )

    assert unknown.status_code == 422
    assert unknown.json()["field"] == "query.purpose"
    assert "telepathy" not in unknown.text
    assert not_granted.status_code == 403
    assert not_granted.json()["code"] == "denied"
    assert [e for _, _, e, _ in throwaway.audit_since(head)] == ["deny"]  # the engine's, alone


def test_s2_a_405_names_every_method_of_the_path(throwaway: Api) -> None:
    with throwaway.raw() as raw:
        answer = raw.request("OPTIONS", "/v1/subjects/sub_1")

    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, GET, PATCH"


def schemathesis(
    base_url: str, *, token: str | None, examples: str, operations: list[str]
) -> list[str]:
    """The command line of a schemathesis run against `base_url`, with every check."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base_url}/openapi.json",
        *operations,
        "--checks",
        "all",
        "--max-examples",
        examples,
        "--generation-codec",
        "ascii",
        "--no-color",
        "--seed",
        "1",
    ]
    return command + (["-H", f"Authorization: Bearer {token}"] if token else [])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("role", "operations"),
    [
        ("privacy_officer", ["--exclude-name", REVOKE]),
        ("account_service", ["--exclude-name", REVOKE]),  # registers: values reach the vault
        (None, []),
        ("privacy_officer", ["--include-name", REVOKE]),
    ],
    ids=["privacy_officer", "account_service", "unauthenticated", "privacy_officer-revoke"],
)
def test_s2_schemathesis_finds_no_failures(
    throwaway: Api, role: str | None, operations: list[str]
) -> None:
    token = throwaway.token(role) if role else None
    here = str(Path(__file__).parent)
    env = os.environ | {
        "SCHEMATHESIS_HOOKS": HOOKS,
        "PYTHONPATH": os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH")))),
    }
    run = subprocess.run(  # noqa: S603 - our own venv's schemathesis, fixed arguments
        schemathesis(throwaway.base_url, token=token, examples=EXAMPLES, operations=operations),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
