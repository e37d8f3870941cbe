"""Hostile input never produces a 500: a bounded, seeded fuzz over the main endpoints.

Bodies are valid templates mutated one step (a field replaced by random JSON, a key added or
dropped, values of the wrong type or shape), whole random JSON values, or raw bytes. Every answer
must be below 500, and every error must come in the one error shape.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import NAME, PHONE, Api, new_person

SEED = 2017
ROUNDS = 240
STRINGS = [
    "",
    " ",
    "a",
    "x" * 5000,
    "\x00",
    '"',
    "\\",
    "../../etc",
    "<script>alert(1)</script>",
    "１３８００１３８０００",
    "%00",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "purpose:personalization",
    "kyc_aml",
    "self_service",
    "telepathy",
    "read",
    "share",
    "user.name",
    "user.contact.phone_number",
    "user.government_id.national_identification_number",
    "user.location.precise",
    "13800138000",
    "+86 138 0013 8000",
    "a@example.com",
    "discoverable_by_phone_email",
    "CN",
    "sub_00000000000000000000000000000000",
]


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**70, -(2**64)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e-308])
    if kind in (4, 5):
        return rng.choice(STRINGS)
    if kind == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(STRINGS): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _templates(subject_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    who = new_person()
    return [
        ("POST", "/v1/subjects", {"values": who.values, "source": "app"}),
        (
            "POST",
            f"/v1/subjects/{subject_id}/values",
            {"purpose": "risk_control", "values": {"user.device.ip_address": "192.0.2.1"}},
        ),
        ("PATCH", f"/v1/subjects/{subject_id}", {"purpose": "self_service", "values": {NAME: "x"}}),
        ("POST", "/v1/lookup", {"category": PHONE, "value": who.phone}),
        (
            "POST",
            f"/v1/subjects/{subject_id}/consents",
            {"scope": "purpose:personalization", "channel": "app", "method": "checkbox"},
        ),
        (
            "POST",
            f"/v1/subjects/{subject_id}/consents/withdraw",
            {"scope": "purpose:personalization"},
        ),
        (
            "PATCH",
            f"/v1/subjects/{subject_id}/settings",
            {"changes": {"location_collection": True}},
        ),
        (
            "POST",
            "/v1/decide",
            {
                "action": "share",
                "purpose": "quick_pay",
                "categories": [NAME],
                "subject_id": subject_id,
                "recipient": {"id": "b", "type": "financial_institution", "region": "CN"},
            },
        ),
    ]


def _mutate(rng: random.Random, body: dict[str, Any]) -> Any:
    step = rng.randrange(6)
    out = json.loads(json.dumps(body))
    keys = list(out)
    if step == 0:
        return _random_json(rng)
    if step == 1 and keys:
        out[rng.choice(keys)] = _random_json(rng)
    elif step == 2:
        out[rng.choice(STRINGS)] = _random_json(rng)
    elif step == 3 and keys:
        del out[rng.choice(keys)]
    elif step == 4:
        for key in keys:
            if isinstance(out[key], dict):
                out[key] = {rng.choice(STRINGS): _random_json(rng) for _ in range(3)}
    else:
        for key in keys:
            if isinstance(out[key], str) and rng.random() < 0.5:
                out[key] = rng.choice(STRINGS)
    return out


@pytest.fixture(scope="module")
def tokens(api: Api) -> list[str]:
    return [api.token(role) for role in ("account_service", "payment_service", "auditor")]


@pytest.fixture
def raw(api: Api) -> Iterator[httpx.Client]:
    with api.raw() as client:
        yield client


def _check(answer: httpx.Response, what: str) -> None:
    assert answer.status_code < 500, what
    if answer.status_code >= 400:
        body = answer.json()
        assert isinstance(body["code"], str), what
        assert set(body["message"]) == {"zh", "en"}, what


def test_s2_fuzzed_bodies_never_cause_a_500(api: Api, raw: httpx.Client, tokens: list[str]) -> None:
    rng = random.Random(SEED)
    subject_id = api.register(new_person())
    templates = _templates(subject_id)
    tokens = [*tokens, api.piguard.api_keys.create("subject", "fuzz", subject_id).token]
    statuses: set[int] = set()

    for n in range(ROUNDS):
        method, path, template = rng.choice(templates)
        headers = {"Authorization": f"Bearer {rng.choice(tokens)}"}
        if n % 10 == 9:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            headers["content-type"] = "application/json"
            answer = raw.request(method, path, content=payload, headers=headers)
        else:
            body = _mutate(rng, template)
            answer = raw.request(method, path, json=body, headers=headers)
        statuses.add(answer.status_code)
        _check(answer, f"round {n}: {method} {path}")

    assert statuses & {400, 422}
    assert statuses & {200, 201, 403, 404, 409}


def test_s2_fuzzed_queries_never_cause_a_500(
    api: Api, raw: httpx.Client, tokens: list[str]
) -> None:
    rng = random.Random(SEED + 1)
    subject_id = api.register(new_person())
    paths = [f"/v1/subjects/{subject_id}", f"/v1/subjects/{subject_id}/values"]

    for n in range(60):
        params = {
            rng.choice(["purpose", "categories", "lang", "x"]): str(_random_json(rng))[:3000]
            for _ in range(rng.randrange(1, 4))
        }
        method = rng.choice(["GET", "DELETE"])
        path = rng.choice(paths) if method == "DELETE" else paths[0]
        headers = {"Authorization": f"Bearer {rng.choice(tokens)}"}
        _check(raw.request(method, path, params=params, headers=headers), f"round {n}")
    for odd in ("%00", "..", "sub_" + "a" * 300, "ü"):
        _check(raw.get(f"/v1/subjects/{odd}", params={"purpose": "kyc_aml"}), odd)
