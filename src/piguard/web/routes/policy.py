"""The privacy notice (V3) and the health probe: public, no key needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from piguard.kernel.errors import NotFound
from piguard.kernel.text import LocalText
from piguard.policy.notice import build_notice, render_markdown
from piguard.web.contract import errors
from piguard.web.deps import PiguardDep
from piguard.web.schemas import (
    AppendixOut,
    HealthOut,
    Lang,
    NoticeItemOut,
    NoticeOut,
    NoticeSectionOut,
)

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
    notice = build_notice(policy, lang)
    return NoticeOut(
        lang=notice.lang,
        title=notice.title,
        version=notice.version,
        policy_version=policy.key,
        effective=notice.effective,
        controller=notice.controller,
        sections=[
            NoticeSectionOut(
                key=s.key,
                title=s.title,
                items=[
                    NoticeItemOut(
                        clause=i.clause, title=i.title, text=i.text, prominent=i.prominent
                    )
                    for i in s.items
                ],
            )
            for s in notice.sections
        ],
        appendices=[AppendixOut(title=t, lines=list(lines)) for t, lines in notice.appendices],
        markdown=render_markdown(notice),
    )


@router.get("/healthz")
def healthz(piguard: PiguardDep) -> HealthOut:
    return HealthOut(status="ok", policy_version=piguard.policy.key)
