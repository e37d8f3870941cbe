"""Clause coverage: every clause has a rule, and a test that reaches piguard proves it (V1, P3)."""

from pathlib import Path

import pytest

from piguard.policy.coverage import (
    ClauseCoverage,
    Evidence,
    clause_test_prefix,
    clauses_named_by,
    coverage,
    evidence_from_document,
    judge,
    parse_known_gaps,
    rules_by_clause,
)
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


def _measured(policy: Policy, reached: dict[str, frozenset[str]]) -> dict[str, ClauseCoverage]:
    report = coverage(policy, ["test_r6_pins_the_sla"], Evidence(reached))
    assert report.measured
    return {r.clause: r for r in report.rows}


def test_v1_a_clause_with_only_pinning_tests_is_uncovered(policy: Policy) -> None:
    rows = _measured(
        policy,
        {
            "test_r6_pins_the_sla": frozenset(),  # ran and passed, reached nothing
            "test_c4_location": frozenset({"DecisionEngine.decide"}),
        },
    )
    assert rows["R6"].tests == ("test_r6_pins_the_sla",)
    assert rows["R6"].proving == ()
    assert not rows["R6"].covered
    assert rows["C4"].proving == ("test_c4_location",)
    assert rows["C4"].covered
    assert not rows["C1.1"].covered  # no test at all, measured


def test_v1_without_evidence_only_rules_count(policy: Policy) -> None:
    report = coverage(policy, ["test_r6_pins_the_sla"])
    assert not report.measured
    assert report.uncovered == ()
    assert {r.proving for r in report.rows} == {None}


def test_v1_known_gaps_excuse_uncovered_clauses_and_must_not_outlive_them(policy: Policy) -> None:
    report = coverage(policy, [], Evidence({"test_c4_location": frozenset({"VaultService.read"})}))
    uncovered = set(report.uncovered)
    assert "C4" not in uncovered
    assert judge(report, uncovered).passed
    assert judge(report, uncovered - {"R6"}).failing == ("R6",)
    stale = judge(report, uncovered | {"C4", "X9"})
    assert (stale.stale, stale.failing, stale.passed) == (("C4", "X9"), (), False)


def test_v1_evidence_documents_are_read_strictly_and_merge_parameters() -> None:
    document = {
        "format": "piguard-clause-evidence/1",
        "tests": {
            "t.py::test_r6_x[sqlite]": {"name": "test_r6_x", "reached": ["VaultService.update"]},
            "t.py::test_r6_x[postgresql]": {"name": "test_r6_x", "reached": ["sla.deadline"]},
            "t.py::test_r7_y": {"name": "test_r7_y", "reached": []},
        },
    }
    evidence = evidence_from_document(document)
    assert evidence.reached["test_r6_x"] == {"VaultService.update", "sla.deadline"}
    assert evidence.proving == {"test_r6_x"}
    for bad in ({}, {"format": "other", "tests": {}}, {**document, "tests": {"t": {"name": 1}}}):
        with pytest.raises(ValueError, match="not clause evidence"):
            evidence_from_document(bad)


def test_v1_known_gaps_file_lines() -> None:
    text = "# a comment\n\nR5    erasure is changing  # trailing note\nK1 no mechanism\n"
    assert parse_known_gaps(text) == {"R5": "erasure is changing", "K1": "no mechanism"}
