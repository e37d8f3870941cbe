"""A subject's privacy settings (C2.3, C4, C7(2), U1)."""

from __future__ import annotations

from fastapi import APIRouter

from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import CallerDep, PiguardDep, SubjectDep
from piguard.web.schemas import SettingsIn, SettingsOut

router = APIRouter(prefix="/v1/subjects/{subject_id}/settings", tags=["settings"])


@router.get("", responses=errors(*CALLER, 404, 422))
def read_settings(subject: SubjectDep, caller: CallerDep, piguard: PiguardDep) -> SettingsOut:
    return SettingsOut(
        subject_id=subject, settings=piguard.consents.settings(caller.actor, subject)
    )


@router.patch("", responses=errors(*CALLER, *WRITE, 404))
def change_settings(
    subject: SubjectDep, body: SettingsIn, caller: CallerDep, piguard: PiguardDep
) -> SettingsOut:
    """Change some settings at once; all or nothing."""
    state = piguard.consents.change_settings(
        caller.actor, subject, dict(body.changes), body.channel
    )
    return SettingsOut(subject_id=subject, settings=state)
