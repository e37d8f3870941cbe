"""Consent scopes: the keys under which the ledger records consents and the engine looks them up.

One module spells them so that the consent ledger and the decision engine can never disagree.
"""

from __future__ import annotations


def purpose_scope(purpose: str) -> str:
    return f"purpose:{purpose}"


def recipient_scope(recipient: str, purpose: str) -> str:
    return f"share:{recipient}:{purpose}"


def recipient_type_scope(recipient_type: str, purpose: str) -> str:
    return f"share_type:{recipient_type}:{purpose}"


def transfer_scope(recipient: str) -> str:
    return f"transfer:{recipient}"


def disclose_scope(purpose: str) -> str:
    return f"disclose:{purpose}"


def cross_border_scope(purpose: str) -> str:
    return f"cross_border:{purpose}"


# A guardian's consent to a minor's use of the service as a whole, registration included (M1).
SERVICE = "service:all"

SCOPE_KINDS = ("purpose", "share", "share_type", "transfer", "disclose", "cross_border", "service")


def scope_kind(scope: str) -> str:
    """The kind of a scope string, or raise ValueError if it is not one of ours."""
    kind, sep, rest = scope.partition(":")
    if not sep or not rest or kind not in SCOPE_KINDS:
        raise ValueError(f"not a consent scope: {scope!r}")
    return kind
