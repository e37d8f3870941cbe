"""Clause coverage: every clause has a rule or a test (V1, P3)."""

from pathlib import Path

from piguard.policy.coverage import clause_test_prefix, clauses_named_by, coverage, rules_by_clause
from piguard.policy.model import Policy

CATALOG = Path(__file__).resolve().parents[3] / "docs" / "policy-clauses.md"


def test_v1_test_names_map_to_clause_ids() -> None:
    known = ["C2", "C2.3", "SH6", "R2", "DEF2", "C1.1"]
    assert clause_test_prefix("C2.3") == "c2_3"
    assert clauses_named_by("test_c2_3_lookup", known) == ("C2.3",)
    assert clauses_named_by("test_sh6_r2_revocation", known) == ("SH6", "R2")
    assert clauses_named_by("test_def2", known) == ("DEF2",)
    assert clauses_named_by("test_c1_10_nothing", known) == ()
    assert clauses_named_by("test_unrelated", known) == ()


def test_v1_every_clause_of_the_bundled_policy_is_cited_by_a_rule(policy: Policy) -> None:
    cited = rules_by_clause(policy)
    missing = [c for c in policy.clauses if c not in cited and not policy.clauses[c].notice_only]
    assert missing == []


def test_v1_policy_clauses_match_the_catalog(policy: Policy) -> None:
    text = CATALOG.read_text(encoding="utf-8")
    catalog_part = text.split("## Appendix")[0]
    ids = {
        line.split("|")[1].strip() for line in catalog_part.splitlines() if line.startswith("| ")
    }
    ids -= {"id", "---"}
    assert ids == set(policy.clauses)


def test_v1_coverage_report_flags_uncovered(policy: Policy) -> None:
    report = coverage(policy, ["test_c4_location", "test_sh6_r2_scope"])
    rows = {r.clause: r for r in report.rows}
    assert rows["C4"].tests == ("test_c4_location",)
    assert rows["R2"].tests == ("test_sh6_r2_scope",)
    assert report.uncovered == ()
    assert "C1.1" in report.untested
