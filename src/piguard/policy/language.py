"""Policy files → the frozen model, with errors that say where and what is allowed.

`parse_policy(text, name)` is pure; `load_policy(path)` reads the file. Every problem raises
`PolicyFileError` naming the file, the path inside it (`purposes.kyc_aml.required[2]`), what is
wrong and, where it helps, what is allowed. Never a traceback.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from piguard.kernel.errors import PolicyFileError
from piguard.kernel.periods import Period, PeriodUnit
from piguard.kernel.text import LocalText
from piguard.policy import document as d
from piguard.policy import model as m
from piguard.policy.masking import MaskSpecError, check_spec

# The validators the vault implements (`vault.validators.VALIDATORS`, a test keeps the two equal);
# a category may name only these.
VALIDATOR_NAMES = frozenset((
    "text", "line", "name", "token", "blob_reference", "account_number", "gender",
    "verification_result", "country", "birth_date", "document_expiry", "past_time", "amount",
    "count", "credit_score", "geo_point", "ip_address", "cn_resident_id", "cn_mobile", "cn_phone",
    "bank_card", "email", "login_name",
))  # fmt: skip


def load_policy(path: Path) -> m.Policy:
    """Read and parse a policy file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(str(path), "", f"cannot read the file: {exc}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, name: str) -> m.Policy:
    """Parse policy text; `name` is used in error messages."""
    data = _parse_yaml(text, name)
    try:
        doc = d.PolicyDoc.model_validate(data)
    except ValidationError as exc:
        raise _shape_error(exc, name) from None
    problems = list(_reference_problems(doc))
    if problems:
        path, problem, allowed = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PolicyFileError(name, path, problem + more, allowed=allowed)
    return _build(doc)


def _parse_yaml(text: str, name: str) -> object:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise PolicyFileError(name, where, f"YAML syntax: {problem}") from None
    if not isinstance(data, dict):
        raise PolicyFileError(name, "", "the file must hold a mapping at the top level")
    return data


def format_path(loc: Sequence[int | str]) -> str:
    """('purposes', 'kyc_aml', 'required', 2) → 'purposes.kyc_aml.required[2]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shape_error(exc: ValidationError, name: str) -> PolicyFileError:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    allowed = None
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(_fields_at(loc[:-1])))
        problem = f"unknown key {loc[-1]!r}"
    elif first["type"] == "missing":
        problem = "required key is missing"
    else:
        problem = first["msg"]
        expected = first.get("ctx", {}).get("expected")
        allowed = str(expected) if expected else None
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return PolicyFileError(name, format_path(loc), problem + more, allowed=allowed)


def _fields_at(loc: Sequence[int | str]) -> list[str]:
    """The keys allowed in the mapping at `loc`, found by walking the document schema."""
    node: object = d.PolicyDoc
    for part in loc:
        node = _step(node, part)
    model = _model_in(node)
    return list(model.model_fields) if model else []


def _step(node: object, part: int | str) -> object:
    model = _model_in(node)
    if model is not None and isinstance(part, str) and part in model.model_fields:
        return model.model_fields[part].annotation
    args = typing.get_args(_unwrap(node))
    return args[-1] if args else node


def _model_in(node: object) -> type[BaseModel] | None:
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return node
    if isinstance(node, types.UnionType) or typing.get_origin(node) is typing.Union:
        for arg in typing.get_args(node):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _unwrap(node: object) -> object:
    while typing.get_origin(node) is typing.Annotated:
        node = typing.get_args(node)[0]
    return node


Problem = tuple[str, str, str | None]


def _reference_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    yield from _clause_problems(doc)
    yield from _category_problems(doc)
    yield from _purpose_problems(doc)
    yield from _setting_problems(doc)
    yield from _role_problems(doc)
    yield from _recipient_problems(doc)
    yield from _outbound_problems(doc)
    yield from _exemption_problems(doc)
    yield from _binding_problems(doc)
    if doc.cross_border.home not in doc.regions:
        yield "cross_border.home", f"unknown region {doc.cross_border.home!r}", _keys(doc.regions)
    for i, p in enumerate(doc.cross_border.purposes):
        if p not in doc.purposes:
            yield _unknown(f"cross_border.purposes[{i}]", "purpose", p, doc.purposes)


def _binding_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    b = doc.bindings
    for field in ("registration_purpose", "self_service_purpose", "consent_purpose"):
        yield from _binding(field, getattr(b, field), doc.purposes, "purpose")
    for field in ("lookup_purpose", "audit_purpose", "keys_purpose"):
        yield from _binding(field, getattr(b, field), doc.purposes, "purpose")
    for field in ("consent_category", "audit_category", "keys_category"):
        yield from _binding(field, getattr(b, field), doc.categories, "category")
    if b.consent_purpose in doc.purposes and b.consent_category not in _declared(
        doc, b.consent_purpose
    ):
        yield "bindings.consent_category", "must be declared by the consent purpose", None
    if b.keys_purpose in doc.purposes and b.keys_category not in _declared(doc, b.keys_purpose):
        yield "bindings.keys_category", "must be declared by the keys purpose", None
    if b.age_from is not None:
        yield from _binding("age_from", b.age_from, doc.categories, "category")
        cat = doc.categories.get(b.age_from)
        if cat is not None and not (cat.immutable and cat.validator in _AGE_VALIDATORS):
            allowed = f"an immutable category validated by {' or '.join(_AGE_VALIDATORS)}"
            yield "bindings.age_from", "age must come from a verified, immutable value", allowed
    if b.birth_date is not None:
        yield from _binding("birth_date", b.birth_date, doc.categories, "category")
        if b.age_from is None:
            yield "bindings.birth_date", "is filled from age_from, which is missing", None
    if b.guardian_role is not None:
        yield from _binding("guardian_role", b.guardian_role, doc.roles, "role")


# Validators whose normal form carries a birth date piguard can read (M1).
_AGE_VALIDATORS = ("cn_resident_id",)


def _binding(field: str, value: str, known: Mapping[str, object], what: str) -> Iterator[Problem]:
    if value not in known:
        yield _unknown(f"bindings.{field}", what, value, known)


def _exemption_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    for key, ex in doc.exemptions.items():
        base = f"exemptions.{key}"
        for i, p in enumerate(ex.purposes):
            if p not in doc.purposes:
                yield _unknown(f"{base}.purposes[{i}]", "purpose", p, doc.purposes)
        for i, r in enumerate(ex.roles):
            if r not in doc.roles:
                yield _unknown(f"{base}.roles[{i}]", "role", r, doc.roles)
        if ex.needs_authority and not ex.needs_case_reference:
            yield f"{base}.needs_case_reference", "an authority's request needs a case", "true"


def _keys(mapping: Mapping[str, object]) -> str:
    return ", ".join(sorted(mapping))


def _unknown(path: str, what: str, value: str, known: Mapping[str, object]) -> Problem:
    return path, f"unknown {what} {value!r}", _keys(known)


def _cited(node: object, path: str) -> Iterator[tuple[str, str]]:
    """Every clause id cited anywhere in the document, with where it is cited."""
    if isinstance(node, BaseModel):
        for key in type(node).model_fields:
            value = getattr(node, key)
            sub = f"{path}.{key}" if path else key
            if key == "clauses" and isinstance(value, list):
                yield from ((f"{sub}[{i}]", c) for i, c in enumerate(value))
            elif key != "clauses":
                yield from _cited(value, sub)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _cited(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _cited(value, f"{path}[{i}]")


def _clause_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    for key, entry in doc.clauses.items():
        if entry.section not in doc.sections:
            yield _unknown(f"clauses.{key}.section", "section", entry.section, doc.sections)
    for where, clause in _cited(doc, ""):
        if clause not in doc.clauses:
            yield where, f"cites clause {clause!r}, which the clauses section lacks", None


def _category_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    for key, cat in doc.categories.items():
        yield from _mask_problem(f"categories.{key}.mask", cat.mask)
        if cat.change_purpose is not None and cat.change_purpose not in doc.purposes:
            path = f"categories.{key}.change_purpose"
            yield _unknown(path, "purpose", cat.change_purpose, doc.purposes)
        if cat.validator is not None and cat.validator not in VALIDATOR_NAMES:
            allowed = ", ".join(sorted(VALIDATOR_NAMES))
            yield f"categories.{key}.validator", f"unknown validator {cat.validator!r}", allowed


def _mask_problem(path: str, spec: str) -> Iterator[Problem]:
    try:
        check_spec(spec)
    except MaskSpecError as exc:
        yield path, str(exc), "clear, withheld, name, email, login, full, date_year, keep_ends(h,t)"


def _purpose_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    for key, purpose in doc.purposes.items():
        base = f"purposes.{key}"
        for field in ("required", "optional"):
            for i, cat in enumerate(getattr(purpose, field)):
                if cat not in doc.categories:
                    yield _unknown(f"{base}.{field}[{i}]", "category", cat, doc.categories)
        for i, other in enumerate(purpose.compatible):
            if other not in doc.purposes:
                yield _unknown(f"{base}.compatible[{i}]", "purpose", other, doc.purposes)
        if (purpose.basis == m.Basis.EXEMPTION) != (purpose.exemption is not None):
            yield f"{base}.exemption", "an exemption code goes with basis 'exemption' only", None
        if purpose.exemption is not None and purpose.exemption not in doc.exemptions:
            yield _unknown(f"{base}.exemption", "exemption", purpose.exemption, doc.exemptions)
        if purpose.optional_service and purpose.basis != m.Basis.CONSENT:
            yield f"{base}.basis", "an optional service (C7) must rest on consent", "consent"
        yield from _retention_problems(f"{base}.retention", purpose.retention)
    for key, service in doc.services.items():
        if service.purpose not in doc.purposes:
            yield _unknown(f"services.{key}.purpose", "purpose", service.purpose, doc.purposes)
        elif not doc.purposes[service.purpose].optional_service:
            yield f"services.{key}.purpose", "the purpose must be marked optional_service", None


def _retention_problems(path: str, retention: d.RetentionDoc) -> Iterator[Problem]:
    if retention.period is not None:
        return
    if retention.after is m.RetentionTrigger.COLLECTION:
        yield f"{path}.period", "a retention counted from collection needs a period", None
    if retention.operator_default:
        yield f"{path}.operator_default", "only a period can be an operator default", None


def _setting_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    for key, setting in doc.settings.items():
        for i, gate in enumerate(setting.gates):
            base = f"settings.{key}.gates[{i}]"
            if not gate.purposes and not gate.categories:
                yield base, "a gate names purposes, categories or both", None
            for j, p in enumerate(gate.purposes):
                if p not in doc.purposes:
                    yield _unknown(f"{base}.purposes[{j}]", "purpose", p, doc.purposes)
            for j, c in enumerate(gate.categories):
                if c not in doc.categories:
                    yield _unknown(f"{base}.categories[{j}]", "category", c, doc.categories)


def _role_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    for key, role in doc.roles.items():
        for i, grant in enumerate(role.grants):
            base = f"roles.{key}.grants[{i}]"
            if grant.purpose != "*" and grant.purpose not in doc.purposes:
                yield _unknown(f"{base}.purpose", "purpose", grant.purpose, doc.purposes)
                continue
            declared = _declared(doc, grant.purpose)
            if grant.categories != "*":
                for j, cat in enumerate(grant.categories):
                    if cat not in declared:
                        yield (
                            f"{base}.categories[{j}]",
                            f"{cat!r} is not declared by the purpose",
                            None,
                        )
            for cat, spec in grant.masks.items():
                if cat not in doc.categories:
                    yield _unknown(f"{base}.masks.{cat}", "category", cat, doc.categories)
                yield from _mask_problem(f"{base}.masks.{cat}", spec)
            yield from _erase_problems(doc, base, grant)


def _erased(doc: d.PolicyDoc, purpose: str, erases: list[str] | str) -> frozenset[str]:
    """The purposes whose copies an erase removes; "*" is every purpose the law does not keep."""
    if erases == "*":
        kept = m.Basis.LEGAL_OBLIGATION
        return frozenset(k for k, p in doc.purposes.items() if p.basis != kept)
    return frozenset(erases or [purpose])


def _erase_problems(doc: d.PolicyDoc, base: str, grant: d.GrantDoc) -> Iterator[Problem]:
    """An erase removes copies of its own purposes only, never what the law makes us keep (R4)."""
    if grant.erases and m.Action.ERASE not in grant.actions:
        yield f"{base}.erases", "erases goes with the action 'erase' only", None
    if grant.erases == "*":
        return
    erased = grant.erases or ([grant.purpose] if m.Action.ERASE in grant.actions else [])
    for i, p in enumerate(erased):
        where = f"{base}.erases[{i}]" if grant.erases else f"{base}.purpose"
        if p not in doc.purposes:
            yield _unknown(where, "purpose", p, doc.purposes)
        elif doc.purposes[p].basis == m.Basis.LEGAL_OBLIGATION:
            yield where, f"{p!r} is kept by law: an erase cannot remove it", "erases: [...]"


def _declared(doc: d.PolicyDoc, purpose: str) -> set[str]:
    if purpose == "*":
        return set(doc.categories)
    p = doc.purposes[purpose]
    return set(p.required) | set(p.optional)


def _recipient_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    for key, rec in doc.recipients.items():
        if rec.type not in doc.recipient_types:
            yield _unknown(
                f"recipients.{key}.type", "recipient type", rec.type, doc.recipient_types
            )
        if rec.region not in doc.regions:
            yield _unknown(f"recipients.{key}.region", "region", rec.region, doc.regions)


def _outbound_problems(doc: d.PolicyDoc) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, rule in enumerate(doc.outbound):
        base = f"outbound[{i}]"
        if rule.id in seen:
            yield f"{base}.id", f"duplicate rule id {rule.id!r}", None
        seen.add(rule.id)
        if rule.purposes != "*":
            for j, p in enumerate(rule.purposes):
                if p not in doc.purposes:
                    yield _unknown(f"{base}.purposes[{j}]", "purpose", p, doc.purposes)
        for j, t in enumerate(rule.recipient_types):
            if t not in doc.recipient_types:
                yield _unknown(
                    f"{base}.recipient_types[{j}]", "recipient type", t, doc.recipient_types
                )
        if rule.categories != "*":
            for j, c in enumerate(rule.categories):
                if c not in doc.categories:
                    yield _unknown(f"{base}.categories[{j}]", "category", c, doc.categories)
        for cat, spec in rule.masks.items():
            yield from _mask_problem(f"{base}.masks.{cat}", spec)
        if (rule.basis == m.Basis.CONSENT) != (rule.consent_scope is not None):
            yield f"{base}.consent_scope", "a consent scope goes with basis 'consent' only", None


def _text(t: d.TextDoc) -> LocalText:
    return LocalText(t.zh, t.en)


def _build(doc: d.PolicyDoc) -> m.Policy:
    return m.Policy(
        id=doc.id,
        version=doc.version,
        profile=doc.profile,
        title=_text(doc.title),
        published=doc.published,
        effective=doc.effective,
        controller=m.Controller(
            _text(doc.controller.name), _text(doc.controller.contact), doc.controller.hotline
        ),
        sections={k: _text(sec.title) for k, sec in doc.sections.items()},
        clauses={k: _clause(k, c) for k, c in doc.clauses.items()},
        categories={k: _category(k, c) for k, c in doc.categories.items()},
        purposes={k: _purpose(k, p) for k, p in doc.purposes.items()},
        services={
            k: m.Service(k, _text(s.label), _text(s.description), s.purpose, tuple(s.clauses))
            for k, s in doc.services.items()
        },
        settings={k: _setting(k, s) for k, s in doc.settings.items()},
        exemptions={k: _exemption(k, e) for k, e in doc.exemptions.items()},
        roles={k: _role(doc, k, r) for k, r in doc.roles.items()},
        recipient_types={
            k: m.RecipientType(k, _text(t.label), frozenset(t.requires), tuple(t.clauses))
            for k, t in doc.recipient_types.items()
        },
        recipients={k: _recipient(k, r) for k, r in doc.recipients.items()},
        outbound=tuple(_outbound(doc, r) for r in doc.outbound),
        regions={k: m.Region(k, _text(r.label)) for k, r in doc.regions.items()},
        cross_border=m.CrossBorder(
            doc.cross_border.home,
            frozenset(doc.cross_border.purposes),
            doc.cross_border.consent_type,
            frozenset(doc.cross_border.requires),
            frozenset(doc.cross_border.obligations),
            tuple(doc.cross_border.clauses),
        ),
        rights={k: _right(k, r) for k, r in doc.rights.items()},
        refusal_grounds={
            k: m.RefusalGround(k, _text(g.label), tuple(g.clauses))
            for k, g in doc.refusal_grounds.items()
        },
        channels={
            k: m.Channel(k, _text(c.label), c.public, tuple(c.clauses))
            for k, c in doc.channels.items()
        },
        minors=m.Minors(
            doc.minors.age_threshold,
            doc.minors.inclusive,
            doc.minors.all_sensitive,
            tuple(doc.minors.clauses),
        ),
        cookies={
            k: m.CookieCategory(k, _text(c.label), c.necessary, tuple(c.clauses))
            for k, c in doc.cookies.items()
        },
        incidents=m.Incidents(
            tuple(doc.incidents.notice_parts),
            tuple(doc.incidents.record_fields),
            doc.incidents.public_announcement_threshold,
            doc.incidents.regulator_report,
            tuple(doc.incidents.clauses),
        ),
        monitoring=m.Monitoring(
            doc.monitoring.bulk_read_records,
            doc.monitoring.subjects_per_hour,
            doc.monitoring.repeated_denials,
            doc.monitoring.off_hours,
            doc.monitoring.recipient_queries_per_minute,
            tuple(doc.monitoring.clauses),
        ),
        wind_down=m.WindDown(tuple(doc.wind_down.steps), tuple(doc.wind_down.clauses)),
        bindings=m.Bindings(**doc.bindings.model_dump()),
        section_intros={
            k: _text(sec.intro) for k, sec in doc.sections.items() if sec.intro is not None
        },
    )


def _clause(key: str, c: d.ClauseDoc) -> m.Clause:
    return m.Clause(key, _text(c.title), _text(c.text), c.section, c.prominent, c.notice_only)


def _category(key: str, c: d.CategoryDoc) -> m.Category:
    return m.Category(
        key=key,
        label=_text(c.label),
        spi=c.spi,
        mask=c.mask,
        clauses=tuple(c.clauses),
        immutable=c.immutable,
        validator=c.validator,
        tags=frozenset(c.tags),
        change_purpose=c.change_purpose,
    )


def _purpose(key: str, p: d.PurposeDoc) -> m.Purpose:
    return m.Purpose(
        key=key,
        label=_text(p.label),
        description=_text(p.description),
        basis=p.basis,
        required=tuple(p.required),
        optional=tuple(p.optional),
        refusal=_text(p.refusal),
        retention=_retention(p.retention),
        clauses=tuple(p.clauses),
        exemption=p.exemption,
        consent_type=p.consent_type,
        compatible=frozenset(p.compatible),
        optional_service=p.optional_service,
        prominent=p.prominent,
        obligations=frozenset(p.obligations),
    )


def _retention(r: d.RetentionDoc) -> m.Retention:
    period = None
    if r.period is not None:
        unit, count = next((u, v) for u in PeriodUnit if (v := getattr(r.period, u.value)))
        period = Period(unit, count)
    return m.Retention(period, r.after, _text(r.label), r.operator_default)


def _setting(key: str, s: d.SettingDoc) -> m.Setting:
    gates = tuple(
        m.SettingGate(
            g.when, frozenset(g.actions), frozenset(g.purposes), frozenset(g.categories), g.withhold
        )
        for g in s.gates
    )
    return m.Setting(key, _text(s.label), s.default, gates, tuple(s.clauses))


def _role(doc: d.PolicyDoc, key: str, r: d.RoleDoc) -> m.Role:
    grants: list[m.Grant] = []
    for g in r.grants:
        purposes = list(doc.purposes) if g.purpose == "*" else [g.purpose]
        for purpose in purposes:
            declared = _declared(doc, purpose)
            cats = declared if g.categories == "*" else set(g.categories)
            grants.append(
                m.Grant(
                    purpose=purpose,
                    actions=frozenset(g.actions),
                    categories=frozenset(cats),
                    masks=dict(g.masks),
                    clauses=tuple(g.clauses),
                    needs_case_reference=g.needs_case_reference,
                    reads_held_data=g.reads_held_data,
                    erases=_erased(doc, purpose, g.erases),
                )
            )
    return m.Role(key, r.kind, _text(r.label), tuple(grants), tuple(r.clauses))


def _exemption(key: str, e: d.ExemptionDoc) -> m.Exemption:
    return m.Exemption(
        key,
        _text(e.label),
        e.needs_case_reference,
        tuple(e.clauses),
        frozenset(e.purposes),
        frozenset(e.roles),
        e.needs_authority,
    )


def _recipient(key: str, r: d.RecipientDoc) -> m.Recipient:
    return m.Recipient(
        key, _text(r.name), r.type, r.region, tuple(r.clauses), r.agreement, r.assessed, r.risk_flag
    )


def _outbound(doc: d.PolicyDoc, r: d.OutboundDoc) -> m.OutboundRule:
    purposes = frozenset(doc.purposes) if r.purposes == "*" else frozenset(r.purposes)
    categories = frozenset(doc.categories) if r.categories == "*" else frozenset(r.categories)
    return m.OutboundRule(
        id=r.id,
        action=m.Action(r.action),
        purposes=purposes,
        recipient_types=frozenset(r.recipient_types),
        categories=categories,
        basis=r.basis,
        requires=frozenset(r.requires),
        masks=dict(r.masks),
        obligations=frozenset(r.obligations),
        clauses=tuple(r.clauses),
        consent_scope=r.consent_scope,
        consent_type=r.consent_type,
    )


def _right(key: str, r: d.RightDoc) -> m.Right:
    sla = None if r.sla is None else m.Sla(r.sla.working_days, r.sla.cap_days, tuple(r.sla.clauses))
    return m.Right(key, _text(r.label), sla, r.verification, tuple(r.clauses), _text(r.closing))
