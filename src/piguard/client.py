"""A small typed client for the piguard REST API, on httpx.

    with PiguardClient("http://127.0.0.1:8000", token) as api:
        subject_id = api.register({"user.name": "张三", ...})
        shown = api.read(subject_id, "customer_service", ["user.contact.phone_number"])

Every non-2xx answer raises `PiguardApiError` carrying the API's error JSON: status, code,
bilingual message, field and reasons (clause IDs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

__all__ = ["PiguardApiError", "PiguardClient"]

Json = dict[str, Any]
Lang = Literal["zh", "en"]


def _seg(value: str) -> str:
    """One path segment, percent-encoded: an id can never reach another route."""
    return quote(value, safe="")


class PiguardApiError(Exception):
    """An error answer from the API, in its one shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message_en: str,
        message_zh: str,
        field: str | None = None,
        reasons: tuple[str, ...] = (),
        allowed: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message_en}")
        self.status = status
        self.code = code
        self.message_en = message_en
        self.message_zh = message_zh
        self.field = field
        self.reasons = reasons
        self.allowed = allowed

    @classmethod
    def from_response(cls, response: httpx.Response) -> PiguardApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls(response.status_code, "http_error", response.reason_phrase, "请求失败")
        found = body.get("message")
        message: dict[str, Any] = found if isinstance(found, dict) else {}
        reasons = body.get("reasons")
        field, allowed = body.get("field"), body.get("allowed")
        return cls(
            response.status_code,
            str(body.get("code", "http_error")),
            str(message.get("en", "")),
            str(message.get("zh", "")),
            field if isinstance(field, str) else None,
            tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
            allowed if isinstance(allowed, str) else None,
        )


class PiguardClient:
    """One API key, one connection pool. Close it, or use it as a context manager."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 10) -> None:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> PiguardClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- subjects and values ----------------------------------------------------------------------

    def register(self, values: Mapping[str, str], source: str | None = None) -> str:
        body: Json = {"values": dict(values)}
        if source is not None:
            body["source"] = source
        return str(self._call("POST", "/v1/subjects", json=body)["subject_id"])

    def read(
        self,
        subject_id: str,
        purpose: str,
        categories: Iterable[str] | None = None,
        *,
        case_reference: str | None = None,
        authority: str | None = None,
    ) -> Json:
        params = {"purpose": purpose}
        if categories is not None:
            params["categories"] = ",".join(categories)
        if case_reference is not None:
            params["case_reference"] = case_reference
        if authority is not None:
            params["authority"] = authority
        return self._call("GET", f"/v1/subjects/{_seg(subject_id)}", params=params)

    def collect(
        self, subject_id: str, purpose: str, values: Mapping[str, str], source: str = "subject"
    ) -> Json:
        body = {"purpose": purpose, "values": dict(values), "source": source}
        return self._call("POST", f"/v1/subjects/{_seg(subject_id)}/values", json=body)

    def update(self, subject_id: str, purpose: str, values: Mapping[str, str]) -> Json:
        body = {"purpose": purpose, "values": dict(values)}
        return self._call("PATCH", f"/v1/subjects/{_seg(subject_id)}", json=body)

    def erase(self, subject_id: str, purpose: str | None = None) -> None:
        """Erase the whole subject (R4, R5); only roles granted `erase_subject` may."""
        params = {"purpose": purpose} if purpose is not None else {}
        self._call("DELETE", f"/v1/subjects/{_seg(subject_id)}", params=params)

    def change_identifiers(self, subject_id: str, values: Mapping[str, str], evidence: str) -> Json:
        body = {"values": dict(values), "evidence": evidence}
        return self._call("PUT", f"/v1/subjects/{_seg(subject_id)}/identifiers", json=body)

    def register_ward(
        self, guardian_id: str, values: Mapping[str, str], relation: str, evidence: str
    ) -> str:
        """As a guardian (M1), register a minor linked to yourself."""
        body = {"values": dict(values), "relation": relation, "evidence": evidence}
        path = f"/v1/subjects/{_seg(guardian_id)}/wards"
        return str(self._call("POST", path, json=body)["subject_id"])

    def grant_for_ward(
        self, guardian_id: str, minor_id: str, scope: str, consent_type: str = "regular"
    ) -> Json:
        path = f"/v1/subjects/{_seg(guardian_id)}/wards/{_seg(minor_id)}/consents"
        return self._call("POST", path, json={"scope": scope, "consent_type": consent_type})

    def withdraw_for_ward(self, guardian_id: str, minor_id: str, scope: str) -> Json:
        path = f"/v1/subjects/{_seg(guardian_id)}/wards/{_seg(minor_id)}/consents/withdraw"
        return self._call("POST", path, json={"scope": scope})

    def erase_values(self, subject_id: str, purpose: str, categories: Iterable[str]) -> int:
        params = {"purpose": purpose, "categories": ",".join(categories)}
        return int(
            self._call("DELETE", f"/v1/subjects/{_seg(subject_id)}/values", params=params)[
                "deleted"
            ]
        )

    def lookup(self, category: str, value: str) -> Json:
        return self._call("POST", "/v1/lookup", json={"category": category, "value": value})

    # -- consents and settings --------------------------------------------------------------------

    def grant_consent(
        self,
        subject_id: str,
        scope: str,
        *,
        consent_type: str = "regular",
        channel: str = "api",
        method: str = "api",
        evidence: str = "",
    ) -> Json:
        body = {
            "scope": scope,
            "consent_type": consent_type,
            "channel": channel,
            "method": method,
            "evidence": evidence,
        }
        return self._call("POST", f"/v1/subjects/{_seg(subject_id)}/consents", json=body)

    def withdraw_consent(
        self,
        subject_id: str,
        scope: str,
        *,
        channel: str = "api",
        method: str = "api",
        evidence: str = "",
    ) -> Json:
        body = {"scope": scope, "channel": channel, "method": method, "evidence": evidence}
        return self._call("POST", f"/v1/subjects/{_seg(subject_id)}/consents/withdraw", json=body)

    def consents(self, subject_id: str) -> Json:
        return self._call("GET", f"/v1/subjects/{_seg(subject_id)}/consents")

    def receipt(self, subject_id: str, event_id: str, lang: Lang = "zh") -> Json:
        path = f"/v1/subjects/{_seg(subject_id)}/consents/{_seg(event_id)}/receipt"
        return self._call("GET", path, params={"lang": lang})

    def settings(self, subject_id: str) -> dict[str, bool]:
        found = self._call("GET", f"/v1/subjects/{_seg(subject_id)}/settings")["settings"]
        return {str(k): bool(v) for k, v in found.items()}

    def change_settings(
        self, subject_id: str, changes: Mapping[str, bool], channel: str = "api"
    ) -> dict[str, bool]:
        body = {"changes": dict(changes), "channel": channel}
        found = self._call("PATCH", f"/v1/subjects/{_seg(subject_id)}/settings", json=body)[
            "settings"
        ]
        return {str(k): bool(v) for k, v in found.items()}

    # -- decisions, policy, audit -----------------------------------------------------------------

    def decide(
        self,
        action: str,
        purpose: str,
        categories: Iterable[str] = (),
        *,
        subject_id: str | None = None,
        recipient: str | None = None,
        region: str | None = None,
        exemption: str | None = None,
        case_reference: str | None = None,
        authority: str | None = None,
    ) -> Json:
        body: Json = {"action": action, "purpose": purpose, "categories": list(categories)}
        optional = {
            "subject_id": subject_id,
            "recipient": recipient,
            "region": region,
            "exemption": exemption,
            "case_reference": case_reference,
            "authority": authority,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._call("POST", "/v1/decide", json=body)

    def decide_batch(self, requests: list[Json]) -> list[Json]:
        """`decide` for 1..1000 request bodies at once: the answers, in request order."""
        answers = self._call("POST", "/v1/decide/batch", json={"requests": requests})["answers"]
        return list(answers)

    def policy(self, lang: Lang = "zh") -> Json:
        return self._call("GET", "/v1/policy", params={"lang": lang})

    def audit_verify(self) -> Json:
        return self._call("GET", "/v1/audit/verify")

    def health(self) -> Json:
        return self._call("GET", "/healthz")

    # -- transport --------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Json | None = None,
    ) -> Json:
        response = self._http.request(method, path, params=params, json=json)
        if response.is_error:
            raise PiguardApiError.from_response(response)
        if response.status_code == 204 or not response.content:
            return {}
        body = response.json()
        if not isinstance(body, dict):
            raise PiguardApiError(
                response.status_code, "unexpected_answer", "not a JSON object", "不是 JSON 对象"
            )
        return body
