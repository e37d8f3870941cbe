"""Synthetic policies of a chosen size, built straight from the frozen model (no YAML round trip).

A "rule" is one grant entry (role, action, purpose) or one outbound rule (one action, one recipient
type, one purpose), so the rule count equals the engine's table entries and, within a few per
cent (one more statement per purpose that recipients query), the number of Cedar statements.
Every engine feature appears at every size: consent, separate consent, settings gates (whole
purpose, categories, withheld on read, on outbound actions), immutable and sensitive categories,
identifiers with their change purpose, case references, held data, a whole subject's erasure,
exemptions (by role and purpose, one needing the requesting authority) and outbound rules resting
on them, each consent scope kind, each requirement, cross-border business purposes.
The make-up is the same at every size too: the shares of lawful bases among purposes, of actor
kinds among grants (outbound ones included) and of recipient types among outbound rules do not
depend on the number of rules, so neither does the request mix's shape.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from piguard.kernel.periods import Period, PeriodUnit
from piguard.kernel.text import LocalText
from piguard.policy import model as m
from piguard.policy.model import Action, ActorKind, Basis, ConsentType, Requirement

HOME = "cn"
_CLAUSES = ("G1", "S2", "C4", "C7", "SH0", "SH1", "SH6", "T1", "D1", "S1", "M1", "R4")
_LOCAL = (Action.COLLECT, Action.READ, Action.READ, Action.UPDATE, Action.ERASE)
# one wanted grant in this many is the subject's erasure of its whole record under a purpose (R4),
# and one (half-way between) a service's update of identifiers under their change purpose (R1)
_EVERY = 40
IDENTIFIER_CHANGE = "identifier_change"
_IDENTIFIERS = ("cat_02", "cat_03")
_RETENTION = m.Retention(
    Period(PeriodUnit.YEARS, 1), m.RetentionTrigger.COLLECTION, LocalText("1y", "1y")
)
_N_CATEGORIES = 24
_GRANTS_PER_ROLE = 16
# recipient type -> (action, consent scope kind, its requirements)
_RTYPES: dict[str, tuple[Action, str, frozenset[Requirement]]] = {
    "affiliate": (Action.SHARE, "recipient", frozenset({Requirement.REGISTERED})),
    "partner": (Action.SHARE, "recipient_type", frozenset({Requirement.ASSESSMENT})),
    "credit_query": (Action.SHARE, "recipient", frozenset({Requirement.AUTHORISATION})),
    "authority": (Action.SHARE, "", frozenset({Requirement.CASE_REFERENCE})),
    "successor": (Action.TRANSFER, "transfer", frozenset({Requirement.SUCCESSOR_BOUND})),
    "public": (Action.DISCLOSE, "disclose", frozenset({Requirement.MASKED_ONLY})),
    "processor": (Action.SHARE, "purpose", frozenset({Requirement.AGREEMENT})),
}
# lawful bases in a cycle of ten (6 consent, 3 contract, 1 legal obligation), ordered so that the
# smallest policy's five purposes already hold each basis in about these shares
_BASES: tuple[Basis, ...] = (
    *(Basis.CONSENT, Basis.CONTRACT, Basis.CONSENT, Basis.LEGAL_OBLIGATION, Basis.CONSENT),
    *(Basis.CONTRACT, Basis.CONSENT, Basis.CONSENT, Basis.CONTRACT, Basis.CONSENT),
)
# the kind of each grant in turn (the subject's own grants aside): half service, a quarter each
_KINDS = (ActorKind.SERVICE, ActorKind.STAFF, ActorKind.SERVICE, ActorKind.AUTHORITY)


def _t(text: str) -> LocalText:
    return LocalText(text, text)


def synthetic_policy(rules: int, seed: int = 7) -> m.Policy:
    """A valid policy of exactly `rules` rules: a tenth outbound rules, the rest grant entries."""
    rng = random.Random(seed)
    n_out = max(len(_RTYPES), rules // 10)
    n_purposes = max(5, rules // 20)  # grows with the policy, so rules per table key stay flat
    categories = _categories()
    purposes = _purposes(rng, n_purposes, list(categories))
    ordinary = list(purposes)
    outbound = tuple(_outbound(rng, n_out, purposes))
    purposes[IDENTIFIER_CHANGE] = _identifier_change()
    roles = _roles(rng, rules - n_out, purposes, outbound)
    return m.Policy(
        id=f"synthetic-{rules}",
        version="1",
        profile="pipl",
        title=_t(f"synthetic policy, {rules} rules"),
        published="2024-01-01",
        effective="2024-01-01",
        controller=m.Controller(_t("controller"), _t("contact"), "95188"),
        sections={"general": _t("general")},
        clauses={c: m.Clause(c, _t(c), _t(c), "general") for c in _CLAUSES},
        categories=categories,
        purposes=purposes,
        services={},
        settings=_settings(ordinary, list(categories)),
        exemptions=_exemptions(purposes, roles, outbound),
        roles=roles,
        recipient_types={
            k: m.RecipientType(k, _t(k), needs, ("SH0",)) for k, (_, _, needs) in _RTYPES.items()
        },
        recipients=_recipients(rng),
        outbound=outbound,
        regions={r: m.Region(r, _t(r)) for r in (HOME, "hk", "sg")},
        cross_border=m.CrossBorder(
            HOME,
            _cross_border_purposes(outbound),
            ConsentType.SEPARATE,
            frozenset({Requirement.AGREEMENT}),
            frozenset(),
            ("S1",),
        ),
        rights={},
        refusal_grounds={},
        channels={},
        minors=m.Minors(14, False, True, ("M1",)),
        cookies={},
        incidents=m.Incidents(("what",), (), 100, True, ("G1",)),
        monitoring=m.Monitoring(1000, 100, 5, (0, 6), 60, ("S2",)),
        wind_down=m.WindDown(("notify",), ("G1",)),
        bindings=_bindings(next(iter(purposes)), next(iter(categories))),
    )


def _bindings(purpose: str, category: str) -> m.Bindings:
    """The engine never reads bindings; the services do, and no service runs here."""
    return m.Bindings(
        purpose, purpose, purpose, category, purpose, purpose, category, purpose, category
    )


def _categories() -> dict[str, m.Category]:
    """24 categories: a sensitive one in four; the first two immutable, the next two identifiers
    written only at registration or under their change purpose (R1)."""
    out: dict[str, m.Category] = {}
    for i in range(_N_CATEGORIES):
        key = f"cat_{i:02d}"
        spi = m.SpiClass.IDENTITY if i % 4 == 0 else None
        change = IDENTIFIER_CHANGE if key in _IDENTIFIERS else None
        out[key] = m.Category(
            key, _t(key), spi, "full", ("G1",), immutable=i < 2, change_purpose=change
        )
    return out


def _identifier_change() -> m.Purpose:
    """R1: the purpose under which identifiers change after a verification; it declares only
    them, and no random grant or rule draws it."""
    return m.Purpose(
        key=IDENTIFIER_CHANGE,
        label=_t(IDENTIFIER_CHANGE),
        description=_t(IDENTIFIER_CHANGE),
        basis=Basis.CONTRACT,
        required=(),
        optional=_IDENTIFIERS,
        refusal=_t("refusal"),
        retention=_RETENTION,
        clauses=("C4",),
    )


def _purposes(rng: random.Random, n: int, cats: list[str]) -> dict[str, m.Purpose]:
    out: dict[str, m.Purpose] = {}
    for i in range(n):
        key = f"purpose_{i:03d}"
        basis = _BASES[i % len(_BASES)]
        declared = rng.sample(cats, 8)
        separate = basis is Basis.CONSENT and i % 5 == 4
        out[key] = m.Purpose(
            key=key,
            label=_t(key),
            description=_t(key),
            basis=basis,
            required=tuple(declared[:5]),
            optional=tuple(declared[5:]),
            refusal=_t("refusal"),
            retention=_RETENTION,
            clauses=("C4",),
            consent_type=ConsentType.SEPARATE if separate else ConsentType.REGULAR,
            compatible=frozenset({f"purpose_{i - 1:03d}"}) if i % 3 == 1 else frozenset(),
        )
    return out


def _settings(purposes: list[str], cats: list[str]) -> dict[str, m.Setting]:
    specs = {
        "location_collection": _gate({Action.COLLECT}, [], cats[5:7]),
        "discoverable": _gate({Action.READ}, [], cats[8:10], withhold=True),
        "marketing": _gate({Action.COLLECT, Action.READ}, purposes[1::7], []),
        "third_party_sharing": _gate(set(m.OUTBOUND_ACTIONS), purposes[2::7], []),
        "share_contacts": _gate({Action.READ, Action.SHARE}, [], cats[11:13], withhold=True),
    }
    return {
        key: m.Setting(key, _t(key), True, (g,), ("C7",) if key == "marketing" else ("C4",))
        for key, g in specs.items()
    }


def _gate(
    actions: set[Action], purposes: list[str], cats: list[str], withhold: bool = False
) -> m.SettingGate:
    """A gate that applies while the setting is switched off."""
    return m.SettingGate(False, frozenset(actions), frozenset(purposes), frozenset(cats), withhold)


def _recipients(rng: random.Random) -> dict[str, m.Recipient]:
    out: dict[str, m.Recipient] = {}
    for rtype in _RTYPES:
        for i in range(4):
            key = f"{rtype}_{i}"
            region = HOME if i < 3 else rng.choice(("hk", "sg"))
            out[key] = m.Recipient(
                key, _t(key), rtype, region, ("SH0",), agreement=i != 1, assessed=i != 2
            )
    return out


def _outbound(
    rng: random.Random, n: int, purposes: dict[str, m.Purpose]
) -> Iterator[m.OutboundRule]:
    keys = list(purposes)
    rtypes = list(_RTYPES)
    for i in range(n):
        rtype = rtypes[i % len(rtypes)]
        action, scope, _ = _RTYPES[rtype]
        purpose = purposes[rng.choice(keys)]
        cats = rng.sample(sorted(purpose.categories), 5)
        consent = scope != "" and i % 4 != 3
        masked = rtype == "public" or i % 3 == 0
        yield m.OutboundRule(
            id=f"rule_{i:05d}",
            action=action,
            purposes=frozenset({purpose.key}),
            recipient_types=frozenset({rtype}),
            categories=frozenset(cats),
            basis=Basis.CONSENT if consent else _other_basis(i),
            requires=frozenset({Requirement.AGREEMENT}) if i % 5 == 0 else frozenset(),
            masks=dict.fromkeys(cats[: 4 if rtype == "public" else 2], "full") if masked else {},
            obligations=frozenset(),
            clauses=("SH1",),
            consent_scope=scope if consent else None,
            consent_type=ConsentType.SEPARATE if consent and i % 6 == 0 else ConsentType.REGULAR,
        )


def _other_basis(i: int) -> Basis:
    """The basis of a rule without consent: a law, an exemption (C8), or a contract."""
    if i % 8 == 3:
        return Basis.LEGAL_OBLIGATION
    return Basis.EXEMPTION if i % 24 == 7 else Basis.CONTRACT


def _cross_border_purposes(out: tuple[m.OutboundRule, ...]) -> frozenset[str]:
    """S1: a third of the purposes that data leaves for may also leave the home region."""
    return frozenset(sorted({p for r in out for p in r.purposes})[::3])


def _exemptions(
    purposes: dict[str, m.Purpose], roles: dict[str, m.Role], out: tuple[m.OutboundRule, ...]
) -> dict[str, m.Exemption]:
    """Two exemptions (C8): one for the purposes the law requires and those of the rules that
    rest on an exemption, invoked by the authorities and the roles that start those flows, with
    a case reference and the requesting authority; one for a third of the consent purposes,
    invoked by every other service role, needing neither."""
    legal = {k for k, p in purposes.items() if p.basis is Basis.LEGAL_OBLIGATION}
    exempt_flows = {(r.action, p) for r in out if r.basis is Basis.EXEMPTION for p in r.purposes}
    starters = {
        key
        for key, role in roles.items()
        for g in role.grants
        for action in g.actions
        if (action, g.purpose) in exempt_flows
    }
    authorities = {k for k, r in roles.items() if r.kind is ActorKind.AUTHORITY}
    consent = [k for k, p in purposes.items() if p.basis is Basis.CONSENT]
    services = [k for k, r in roles.items() if r.kind is ActorKind.SERVICE]
    return {
        "criminal_investigation": m.Exemption(
            "criminal_investigation",
            _t("c"),
            True,
            ("G1",),
            purposes=frozenset(legal | {p for _, p in exempt_flows}),
            roles=frozenset(authorities | starters),
            needs_authority=True,
        ),
        "public_health": m.Exemption(
            "public_health",
            _t("p"),
            False,
            ("G1",),
            purposes=frozenset(consent[::3]),
            roles=frozenset(services[::2]),
        ),
    }


def _roles(
    rng: random.Random,
    n_grants: int,
    purposes: dict[str, m.Purpose],
    out: tuple[m.OutboundRule, ...],
) -> dict[str, m.Role]:
    """Grants in turn go to the subject (one in ten, local ones, and every whole-record erasure)
    or to a role of the next kind of `_KINDS` (a service for an identifier change), 16 grants a
    role; the outbound rules' (action, purpose) come first."""
    kind_of: dict[str, ActorKind] = {"subject": ActorKind.SUBJECT}
    grants: dict[str, dict[tuple[Action, str], m.Grant]] = {"subject": {}}
    per_kind: dict[ActorKind, int] = dict.fromkeys(_KINDS, 0)
    total = 0
    for action, purpose in _wanted(rng, purposes, out):
        if total >= n_grants:
            break
        change = purpose == IDENTIFIER_CHANGE  # through a service, as the bundled account service
        if action is Action.ERASE_SUBJECT:
            key = "subject"  # erasing the whole record is the subject's own right (R4)
        elif (
            total % 10 == 9
            and action in _LOCAL
            and not change
            and (action, purpose) not in grants["subject"]
        ):
            key = "subject"
        else:
            kind = ActorKind.SERVICE if change else _KINDS[total % len(_KINDS)]
            key = f"{kind.value}_{per_kind[kind] // _GRANTS_PER_ROLE:04d}"
            kind_of.setdefault(key, kind)
        entries = grants.setdefault(key, {})
        if (action, purpose) in entries:
            continue  # a duplicate entry would overwrite a rule, not add one
        entries[(action, purpose)] = _grant(rng, kind_of[key], action, purposes[purpose])
        if key != "subject":
            per_kind[kind_of[key]] += 1
        total += 1
    return {
        k: m.Role(k, kind_of[k], _t(k), tuple(g.values()), ("S2",)) for k, g in grants.items() if g
    }


def _wanted(
    rng: random.Random, purposes: dict[str, m.Purpose], out: tuple[m.OutboundRule, ...]
) -> Iterator[tuple[Action, str]]:
    yield from dict.fromkeys((r.action, p) for r in out for p in sorted(r.purposes))
    keys = [k for k in purposes if k != IDENTIFIER_CHANGE]
    for i in itertools.count(1):
        if i % _EVERY == _EVERY // 2:
            yield Action.UPDATE, IDENTIFIER_CHANGE
            continue
        action = Action.ERASE_SUBJECT if i % _EVERY == 0 else rng.choice(_LOCAL)
        yield action, rng.choice(keys)


def _grant(rng: random.Random, kind: ActorKind, action: Action, purpose: m.Purpose) -> m.Grant:
    cats = sorted(purpose.categories)
    chosen = cats if kind is ActorKind.SUBJECT else rng.sample(cats, min(6, len(cats)))
    return m.Grant(
        purpose=purpose.key,
        actions=frozenset({action}),
        categories=frozenset(chosen),
        masks={chosen[0]: "keep_ends(1,1)"} if kind is ActorKind.STAFF else {},
        clauses=("S2",),
        needs_case_reference=kind is ActorKind.AUTHORITY,
        reads_held_data=kind is ActorKind.AUTHORITY and action is Action.READ,
    )
