"""The recipient registry (SH0): the facts a share is decided on come from piguard, never from
the caller. Today the registry holds the policy's pre-registered recipients (DEF1); an id it does
not know is an unregistered recipient, which every outbound rule refuses."""

from __future__ import annotations

from piguard.policy.decision import RecipientView
from piguard.policy.model import Policy


class RecipientRegistry:
    """Recipient facts by id: type, region, assessment, agreement, status, risk flag."""

    def __init__(self, policy: Policy) -> None:
        self._views = {
            key: RecipientView(
                id=key,
                type=rec.type,
                region=rec.region,
                registered=True,
                assessed=rec.assessed,
                agreement=rec.agreement,
                active=True,
                risk_flag=rec.risk_flag,
            )
            for key, rec in policy.recipients.items()
        }

    def view(self, recipient_id: str) -> RecipientView:
        found = self._views.get(recipient_id)
        if found is not None:
            return found
        return RecipientView(recipient_id, type="", region="", registered=False)
