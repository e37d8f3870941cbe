"""The privacy notice a subject reads, built from the policy in Chinese or English (V3, P3).

Every clause of the policy appears, in the order of its sections and after each section's
opening text; clauses marked prominent are highlighted (P3). Appendices name who we are and how
to reach us, each purpose with its categories, basis and retention, the recipients, and how to
use each right, with a deadline only where the policy promises one. The wording is the policy's
own: no term of later law (such as PIPL's 个人信息处理者) appears in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from piguard.kernel.text import Lang, LocalText
from piguard.policy.model import Basis, Policy

_BASIS = {
    Basis.CONSENT: LocalText("您的同意", "your consent"),
    Basis.CONTRACT: LocalText("履行与您的合同所必需", "necessary for our contract with you"),
    Basis.LEGAL_OBLIGATION: LocalText("法定义务", "legal obligation"),
    Basis.BUSINESS_PRACTICE: LocalText(
        "根据法律规定及合理商业习惯", "in line with the law and reasonable business practice"
    ),
    Basis.EXEMPTION: LocalText("法定例外情形", "a statutory exemption"),
}
_LABELS = {
    "key": LocalText("重要", "Key clause"),
    "version": LocalText("版本", "Version"),
    "effective": LocalText("生效日期", "In force from"),
    "controller": LocalText("我们是谁及如何联系我们", "Who we are and how to reach us"),
    "purposes": LocalText("附录一：使用目的", "Appendix 1: purposes"),
    "basis": LocalText("依据", "Basis"),
    "categories": LocalText("信息类别", "Categories"),
    "retention": LocalText("保存期限", "Retention"),
    "operator_default": LocalText(
        "（运营方默认设置，并非本政策承诺的期限）",
        " (a default set by the operator, not a period this policy promises)",
    ),
    "refusal": LocalText("拒绝的后果", "If you refuse"),
    "recipients": LocalText("附录二：关联公司及接收方", "Appendix 2: affiliates and recipients"),
    "rights": LocalText("附录三：如何行使您的权利", "Appendix 3: how to use your rights"),
    "deadline": LocalText(
        "验证您的身份和凭证资料后{working_days}个工作日内处理完成，"
        "特殊情形下最长在不超过{cap_days}天或法律法规规定期限内作出答复。",
        "handled within {working_days} working days after your identity and credentials are "
        "verified; in special cases answered within at most {cap_days} days or the period set "
        "by laws and regulations.",
    ),
    "optional": LocalText(
        "可选服务，拒绝不影响支付", "optional service; refusing never affects payment"
    ),
}


@dataclass(frozen=True, slots=True)
class NoticeItem:
    clause: str
    title: str
    text: str
    prominent: bool


@dataclass(frozen=True, slots=True)
class NoticeSection:
    key: str
    title: str
    items: tuple[NoticeItem, ...]
    intro: str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice in one language: sections of clauses, then the generated appendices as lines."""

    lang: Lang
    title: str
    version: str
    effective: str
    controller: str
    sections: tuple[NoticeSection, ...]
    appendices: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def clause_ids(self) -> tuple[str, ...]:
        return tuple(item.clause for s in self.sections for item in s.items)


def build_notice(policy: Policy, lang: Lang) -> Notice:
    """The whole notice of a policy in one language."""
    grouped: dict[str, list[NoticeItem]] = {key: [] for key in policy.sections}
    for clause in policy.clauses.values():
        grouped[clause.section].append(
            NoticeItem(clause.id, clause.title.in_(lang), clause.text.in_(lang), clause.prominent)
        )
    intros = policy.section_intros
    sections = tuple(
        NoticeSection(
            key,
            policy.sections[key].in_(lang),
            tuple(items),
            intros[key].in_(lang) if key in intros else None,
        )
        for key, items in grouped.items()
        if items
    )
    c = policy.controller
    return Notice(
        lang=lang,
        title=policy.title.in_(lang),
        version=policy.version,
        effective=policy.effective,
        controller=f"{c.name.in_(lang)} — {c.contact.in_(lang)}",
        sections=sections,
        appendices=(
            (_LABELS["purposes"].in_(lang), _purpose_lines(policy, lang)),
            (_LABELS["recipients"].in_(lang), _recipient_lines(policy, lang)),
            (_LABELS["rights"].in_(lang), _right_lines(policy, lang)),
        ),
    )


def _purpose_lines(policy: Policy, lang: Lang) -> tuple[str, ...]:
    lines = []
    for p in policy.purposes.values():
        cats = "、" if lang == "zh" else ", "
        names = cats.join(policy.categories[c].label.in_(lang) for c in p.required + p.optional)
        optional = f" ({_LABELS['optional'].in_(lang)})" if p.optional_service else ""
        retention = p.retention.label.in_(lang)
        if p.retention.operator_default:
            retention += _LABELS["operator_default"].in_(lang)
        lines.append(
            f"**{p.label.in_(lang)}**{optional}: {p.description.in_(lang)} "
            f"{_LABELS['basis'].in_(lang)}: {_BASIS[p.basis].in_(lang)}; "
            f"{_LABELS['categories'].in_(lang)}: {names or '-'}; "
            f"{_LABELS['retention'].in_(lang)}: {retention}; "
            f"{_LABELS['refusal'].in_(lang)}: {p.refusal.in_(lang)}"
        )
    return tuple(lines)


def _recipient_lines(policy: Policy, lang: Lang) -> tuple[str, ...]:
    return tuple(
        f"**{r.name.in_(lang)}** ({policy.recipient_types[r.type].label.in_(lang)}, "
        f"{policy.regions[r.region].label.in_(lang)})"
        for r in policy.recipients.values()
    )


def _right_lines(policy: Policy, lang: Lang) -> tuple[str, ...]:
    lines = []
    for r in policy.rights.values():
        line = f"**{r.label.in_(lang)}**: "
        if r.sla is not None:  # only where the policy promises a deadline (P1, R7)
            days = {"working_days": r.sla.working_days, "cap_days": r.sla.cap_days}
            line += _LABELS["deadline"].format(**days).in_(lang) + " "
        lines.append(line + r.closing.in_(lang))
    return tuple(lines)


def render_markdown(notice: Notice) -> str:
    """Markdown of a notice; prominent clauses are bold and flagged (P3)."""
    flag = _LABELS["key"].in_(notice.lang)
    out = [
        f"# {notice.title}",
        "",
        f"{_LABELS['version'].in_(notice.lang)}: {notice.version} · "
        f"{_LABELS['effective'].in_(notice.lang)}: {notice.effective}",
        "",
        f"{_LABELS['controller'].in_(notice.lang)}: {notice.controller}",
    ]
    for section in notice.sections:
        out += ["", f"## {section.title}"]
        if section.intro is not None:
            out += ["", section.intro]
        for item in section.items:
            if item.prominent:
                out += ["", f"### ⚠ [{item.clause}] {item.title} ({flag})", "", f"**{item.text}**"]
            else:
                out += ["", f"### [{item.clause}] {item.title}", "", item.text]
    for title, lines in notice.appendices:
        out += ["", f"## {title}", ""] + [f"- {line}" for line in lines]
    return "\n".join(out) + "\n"
