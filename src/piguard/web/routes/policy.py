"""The privacy notice (V3) and the health probe: public, no key needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from piguard.kernel.errors import NotFound
from piguard.kernel.text import LocalText
from piguard.policy.notice import build_notice
from piguard.web.contract import errors
from piguard.web.deps import PiguardDep
from piguard.web.schemas import (
    HealthOut,
    Lang,
    NoticeOut,
)
from piguard.web.views import notice_out

router = APIRouter(tags=["policy"])


@router.get("/v1/policy", responses=errors(404, 422))
def policy_notice(
    piguard: PiguardDep,
    lang: Annotated[Lang, Query()] = "zh",
    version: Annotated[str | None, Query(max_length=120)] = None,
) -> NoticeOut:
    """The notice in force, as structured JSON and Markdown, in Chinese or English (V3, P3)."""
    policy = piguard.policy
    if version is not None and version not in (policy.version, policy.key):
        raise NotFound(
            LocalText("没有该版本的隐私政策", "no such policy version"),
            field="version",
            allowed=policy.key,
        )
    return notice_out(build_notice(policy, lang), policy.key)


@router.get("/healthz")
def healthz(piguard: PiguardDep) -> HealthOut:
    return HealthOut(status="ok", policy_version=piguard.policy.key)
