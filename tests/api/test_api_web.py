"""The service's surface: security headers, docs, the public notice (V3), health, error shape for
unknown routes, and audit verification (S2) behind the engine."""

from __future__ import annotations

import logging

import httpx
import pytest
from api_support import NAME, Api, new_person, serve

from piguard.client import PiguardApiError
from piguard.web.app import create_app


def test_s2_security_headers_everywhere_and_no_store_on_v1(api: Api) -> None:
    with api.raw() as raw:
        health, notice = raw.get("/healthz"), raw.get("/v1/policy")
        missing, docs = raw.get("/v1/nothing"), raw.get("/docs")

    for answer in (health, notice, missing, docs):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert health.headers["content-security-policy"].startswith("default-src 'none'")
    assert notice.headers["cache-control"] == "no-store"
    assert missing.headers["cache-control"] == "no-store"
    assert "cache-control" not in health.headers
    assert "unsafe-inline" not in docs.headers["content-security-policy"]


def test_v3_openapi_and_docs_are_served(api: Api) -> None:
    with api.raw() as raw:
        schema, docs = raw.get("/openapi.json").json(), raw.get("/docs")

    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    paths = set(schema["paths"])
    assert {
        "/v1/subjects",
        "/v1/subjects/{subject_id}",
        "/v1/subjects/{subject_id}/values",
        "/v1/lookup",
        "/v1/subjects/{subject_id}/consents",
        "/v1/subjects/{subject_id}/consents/withdraw",
        "/v1/subjects/{subject_id}/consents/{event_id}/receipt",
        "/v1/subjects/{subject_id}/settings",
        "/v1/decide",
        "/v1/policy",
        "/v1/audit/verify",
        "/healthz",
    } <= paths
    assert "ApiKey" in schema["components"]["securitySchemes"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_v3_p3_notice_is_public_in_both_languages(api: Api, lang: str) -> None:
    notice = api.client(None).policy(lang)  # type: ignore[arg-type]

    assert notice["lang"] == lang
    assert notice["policy_version"] == api.piguard.policy.key
    clause_ids = {item["clause"] for s in notice["sections"] for item in s["items"]}
    assert {"C2.3", "C4", "S2", "R1", "V3", "DEF2"} <= clause_ids
    assert "⚠" in notice["markdown"]
    assert len(notice["appendices"]) == 3


def test_v3_unknown_notice_version_and_language(api: Api) -> None:
    with api.raw() as raw:
        version = raw.get("/v1/policy", params={"version": "1999-01-01"})
        lang = raw.get("/v1/policy", params={"lang": "fr"})

    assert (version.status_code, version.json()["field"]) == (404, "version")
    assert (lang.status_code, lang.json()["field"]) == (422, "query.lang")


def test_healthz(api: Api) -> None:
    assert api.client(None).health() == {
        "status": "ok",
        "policy_version": api.piguard.policy.key,
    }


def test_s2_unknown_routes_and_methods_use_the_error_shape(api: Api) -> None:
    with api.raw() as raw:
        missing = raw.get("/v2/anything")
        wrong_method = raw.put("/healthz")

    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert set(missing.json()["message"]) == {"zh", "en"}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "GET"


@pytest.mark.parametrize("role", ["auditor", "privacy_officer"])
def test_s2_audit_verify_for_oversight_roles(api: Api, role: str) -> None:
    subject_id = api.register(new_person())
    api.as_role("customer_service_agent").read(subject_id, "customer_service", [NAME])
    api.piguard.audit.flush()

    report = api.as_role(role).audit_verify()

    assert report["ok"] is True
    assert report["problems"] == []
    assert report["records_checked"] >= 1
    assert report["head_seq"] == report["records_checked"]


@pytest.mark.parametrize("role", ["customer_service_agent", "marketing_service", "account_service"])
def test_s2_audit_verify_refused_to_other_roles(api: Api, role: str) -> None:
    with pytest.raises(PiguardApiError) as caught:
        api.as_role(role).audit_verify()

    assert caught.value.status == 403
    assert any(r.startswith("S2:no_grant") for r in caught.value.reasons)


def test_s2_an_unexpected_error_is_a_bare_500_without_personal_data(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    secret = new_person()

    def broken() -> None:
        raise RuntimeError(f"leaked {secret.phone} {secret.id_number}")

    app = create_app(api.piguard)
    app.add_api_route("/v1/broken", broken)
    with caplog.at_level(logging.INFO), serve(app) as base_url, httpx.Client() as raw:
        answer = raw.get(f"{base_url}/v1/broken")

    assert answer.status_code == 500
    assert answer.json() == {
        "code": "internal_error",
        "message": {"zh": "服务内部错误，已记录", "en": "internal error; it has been logged"},
    }
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "RuntimeError" in logged
    assert "/v1/broken" in logged
    assert secret.phone not in logged
    assert secret.id_number not in logged
