"""The notice says what the original policy says (issue 7): no promise dropped or strengthened,
no term of later law, a deadline only where promised, bold only where the original is bold."""

import re

import pytest

from piguard.kernel.text import Lang
from piguard.policy.model import Policy
from piguard.policy.notice import Notice, build_notice, render_markdown

# The clauses of which the original (seed 000_3226667c4fe727cf) sets some of the clause's own text
# in bold, read clause by clause from the seed; the evidence for each is listed at the top of the
# `clauses:` section of alipay-2017.yaml. Bold headings alone (（一）共享, （二）转让) do not count.
ORIGINAL_BOLD = frozenset(
    {
        *("P3", "C1.1", "C1.2", "C2.1", "C2.2", "C2.3", "C2.4", "C2.5", "C2.6"),
        *("C3", "C4", "C5", "C6", "C7", "C8", "K2", "K3", "S3", "U1", "U2", "U3"),
        *("SH2", "SH3", "D1", "R1", "R4", "R7", "R8", "TP1", "M1", "V1", "V2", "V3", "DEF2"),
    }
)
# Where the original promises "三个工作日内处理完成": P1 (questions, complaints) and, in R7, for the
# demands of R5 (deletion) and R6 (correction). Other rights cite R7 only for its escalation routes.
DEADLINE_CLAUSES = frozenset({"P1", "R5", "R6"})
LATER_LAW = {
    "zh": ("个人信息处理者", "处理者", "单独同意", "敏感个人信息", "《个人信息保护法》", "可携带"),
    "en": ("handler", "processor", "separate consent", "sensitive personal", "PIPL", "portab"),
}
LANGS: tuple[Lang, ...] = ("zh", "en")


def _notices(policy: Policy) -> dict[Lang, Notice]:
    return {lang: build_notice(policy, lang) for lang in LANGS}


def _says(policy: Policy, clause: str, zh: str, en: str) -> None:
    """The clause's notice text, as built and as rendered, holds the phrase in each language."""
    for lang, phrase in (("zh", zh), ("en", en)):
        notice = build_notice(policy, lang)  # type: ignore[arg-type]
        item = next(i for s in notice.sections for i in s.items if i.clause == clause)
        assert phrase in item.text, (clause, lang)
        assert item.text in render_markdown(notice)


def test_v1_the_notice_opens_with_what_the_policy_covers(policy: Policy) -> None:
    for lang, phrase in (
        ("zh", "尊重并保护您的隐私"),
        ("en", "respects and protects your privacy"),
    ):
        notice = build_notice(policy, lang)  # type: ignore[arg-type]
        first = notice.sections[0]
        assert first.key == "preamble"
        assert first.intro is not None
        assert phrase in first.intro
        text = render_markdown(notice)
        assert text.index(first.intro) < text.index(first.items[0].text)


def test_p2_names_product_development(policy: Policy) -> None:
    _says(policy, "P2", "支持我们开发新产品或完善已有产品功能", "developing new products")


def test_c2_6_refers_to_the_fingerprint_payment_agreement(policy: Policy) -> None:
    _says(
        policy,
        "C2.6",
        "具体请详见您开通指纹支付时的《指纹支付协议》",
        "Fingerprint Payment Agreement",
    )


def test_c4_switching_location_off_stops_its_collection(policy: Policy) -> None:
    _says(
        policy,
        "C4",
        "这样我们会停止对您的位置信息的收集",
        "we then stop collecting your location information",
    )


def test_k3_third_party_services_come_without_a_guarantee(policy: Policy) -> None:
    _says(
        policy,
        "K3",
        "我们无法保证这些第三方主体会按照我们的要求采取保护措施",
        "we cannot guarantee that these third parties will take protective measures",
    )


def test_s2_promises_a_reasonable_security_level(policy: Policy) -> None:
    _says(
        policy,
        "S2",
        "我们承诺我们将使信息安全保护达到合理的安全水平",
        "to a reasonable security level",
    )


def test_sh0_third_parties_are_checked_with_commercially_reasonable_efforts(
    policy: Policy,
) -> None:
    _says(
        policy,
        "SH0",
        "我们会尽商业上的合理努力对该第三方的安全能力进行检测",
        "we make commercially reasonable efforts to test its security capability",
    )
    _says(
        policy, "SH0", "尽商业上的合理努力督促第三方", "commercially reasonable efforts to urge it"
    )


def test_sh7_warns_that_the_recipients_law_may_differ(policy: Policy) -> None:
    _says(
        policy,
        "SH7",
        "该相关第三方所在地区可能有不同的个人信息保护法",
        "may have different personal-information protection laws",
    )


def test_tp1_tells_the_subject_to_contact_third_parties_directly(policy: Policy) -> None:
    _says(
        policy,
        "TP1",
        "请您与他们直接联系以获得关于他们的隐私权政策的详细情况",
        "please contact them directly",
    )


@pytest.mark.parametrize("lang", LANGS)
def test_v3_the_notice_uses_no_term_of_later_law(policy: Policy, lang: Lang) -> None:
    text = render_markdown(build_notice(policy, lang))
    for term in LATER_LAW[lang]:
        assert re.search(re.escape(term), text, re.IGNORECASE) is None, term


def test_p1_r5_r6_r7_the_three_day_deadline_only_where_the_policy_promises_it(
    policy: Policy,
) -> None:
    promised = {
        r.label.en for r in policy.rights.values() if DEADLINE_CLAUSES.intersection(r.clauses)
    }
    assert {r.label.en for r in policy.rights.values() if r.sla is not None} == promised
    for lang, marks in (("zh", ("工作日", "三个工作日")), ("en", ("working day",))):
        notice = build_notice(policy, lang)  # type: ignore[arg-type]
        saying = {i.clause for s in notice.sections for i in s.items if _has(i.text, marks)}
        assert saying == {"P1", "R7"}
        purposes, _, rights = (lines for _, lines in notice.appendices)
        assert not [line for line in purposes if _has(line, marks)]
        labels = {r.label.in_(lang): r.label.en for r in policy.rights.values()}
        with_deadline = {labels[line.split("**")[1]] for line in rights if _has(line, marks)}
        assert with_deadline == promised
    assert {"Question", "Complaint or opinion"} < promised


def _has(text: str, marks: tuple[str, ...]) -> bool:
    return any(m in text for m in marks)


def test_p3_prominent_clauses_are_those_the_original_sets_in_bold(policy: Policy) -> None:
    for lang, notice in _notices(policy).items():
        flagged = {i.clause for s in notice.sections for i in s.items if i.prominent}
        assert flagged == ORIGINAL_BOLD, lang
        text = render_markdown(notice)
        assert set(re.findall(r"^### ⚠ \[([A-Z0-9.]+)\]", text, re.M)) == ORIGINAL_BOLD
