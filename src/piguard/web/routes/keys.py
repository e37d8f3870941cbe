"""API keys for whoever the engine allows to manage access (S2): list them (never a secret or its
hash) and revoke one at once. Whether the caller may is the engine's question, under the policy's
`bindings.keys_purpose`: read to list, update to revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from piguard.policy.decision import DecisionRequest
from piguard.policy.model import Action
from piguard.web.contract import CALLER, errors
from piguard.web.deps import CallerDep, PiguardDep
from piguard.web.schemas import ApiKeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"])

KeyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,40}$", description="The key's id")]


@router.get("", responses=errors(*CALLER))
def list_keys(caller: CallerDep, piguard: PiguardDep) -> list[ApiKeyOut]:
    """Every API key: id, role, subject, label, created, expires, revoked."""
    b = piguard.policy.bindings
    piguard.enforcer.require(
        DecisionRequest(Action.READ, caller.actor, b.keys_purpose, (b.keys_category,)),
        subject="",
        detail="keys_list",
    )
    now = piguard.clock.now()
    return [
        ApiKeyOut(
            id=k.key_id,
            role=k.role,
            subject_id=k.subject_id,
            label=k.label,
            created_at=k.created_at,
            expires_at=k.expires_at,
            revoked_at=k.revoked_at,
            live=k.live(now),
        )
        for k in piguard.api_keys.list_keys()
    ]


@router.delete("/{key_id}", status_code=204, responses=errors(*CALLER, 404, 422))
def revoke_key(key_id: KeyId, caller: CallerDep, piguard: PiguardDep) -> Response:
    """Revoke a key: refused from its next request on. Revoking a revoked key changes nothing."""
    b = piguard.policy.bindings
    piguard.enforcer.require(
        DecisionRequest(Action.UPDATE, caller.actor, b.keys_purpose, (b.keys_category,)),
        subject="",
        detail="keys_revoke",
    )
    piguard.api_keys.revoke(key_id, actor=caller.actor.label)
    return Response(status_code=204)
