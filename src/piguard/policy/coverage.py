"""Clause coverage: which rules implement each clause and which tests prove it.

A clause is implemented when some rule of the policy cites it, or when it is only a statement
(`notice_only`) that the rendered notice shows. It is covered when, besides, a test named for it
was measured reaching piguard through one of its entry points (the decision engine, a service,
the audit log, notice rendering, masking, the SLA clock, the HTTP app: `Evidence`, written by the
test run). A test that only reads the policy file (pins a YAML value) proves nothing about the
mechanism and does not count. Without evidence, tests are not measured and only the rules count.
Test names start with clause IDs, lower case with dots as underscores: `test_c2_3_...`.

A list of known gaps (clause → why) lets a gate pass while some clauses are knowingly uncovered;
a known gap that is covered, or names no clause, fails it, so the list only shrinks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass

from piguard.policy.model import Policy


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a test run measured: each test that passed, by function name, with the entry points
    its body reached (none for a test that only reads the policy file)."""

    reached: Mapping[str, frozenset[str]]

    @property
    def proving(self) -> frozenset[str]:
        return frozenset(name for name, entries in self.reached.items() if entries)


EVIDENCE_FORMAT = "piguard-clause-evidence/1"


def evidence_from_document(document: object) -> Evidence:
    """Evidence from the parsed JSON the test run wrote; ValueError when it is not that shape.
    Parametrised runs of one test function are merged."""
    if not isinstance(document, dict) or document.get("format") != EVIDENCE_FORMAT:
        raise ValueError(f"not clause evidence: the format must be {EVIDENCE_FORMAT!r}")
    tests = document.get("tests")
    if not isinstance(tests, dict):
        raise ValueError("not clause evidence: 'tests' must map test ids to their entries")
    reached: defaultdict[str, set[str]] = defaultdict(set)
    for test_id, entry in tests.items():
        name = entry.get("name") if isinstance(entry, dict) else None
        entries = entry.get("reached") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(entries, list):
            raise ValueError(f"not clause evidence: bad entry for {test_id!r}")
        reached[name].update(str(e) for e in entries)
    return Evidence({name: frozenset(entries) for name, entries in reached.items()})


@dataclass(frozen=True, slots=True)
class ClauseCoverage:
    """One row of the coverage table. `proving` is None when tests were not measured."""

    clause: str
    rules: tuple[str, ...]
    tests: tuple[str, ...]
    notice_only: bool
    proving: tuple[str, ...] | None = None

    @property
    def implemented(self) -> bool:
        return bool(self.rules or self.notice_only)

    @property
    def covered(self) -> bool:
        return self.implemented and (self.proving is None or bool(self.proving))


@dataclass(frozen=True, slots=True)
class CoverageReport:
    rows: tuple[ClauseCoverage, ...]
    measured: bool = False

    @property
    def uncovered(self) -> tuple[str, ...]:
        return tuple(r.clause for r in self.rows if not r.covered)

    @property
    def untested(self) -> tuple[str, ...]:
        return tuple(r.clause for r in self.rows if not r.tests)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A coverage report against the known gaps: what fails the gate, what a known gap excuses,
    and known gaps that no longer hold (covered now, or naming no clause): those fail it too."""

    failing: tuple[str, ...]
    excused: tuple[str, ...]
    stale: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not (self.failing or self.stale)


def judge(report: CoverageReport, known_gaps: Iterable[str] = ()) -> Verdict:
    """The gate's verdict on a report, given the clauses known to be uncovered."""
    gaps = set(known_gaps)
    uncovered = report.uncovered
    clauses = {r.clause for r in report.rows}
    return Verdict(
        failing=tuple(c for c in uncovered if c not in gaps),
        excused=tuple(c for c in uncovered if c in gaps),
        stale=tuple(sorted((gaps - set(uncovered)) | (gaps - clauses))),
    )


def parse_known_gaps(text: str) -> dict[str, str]:
    """`CLAUSE  why` per line; blank lines and `#` comments are skipped."""
    gaps: dict[str, str] = {}
    for line in text.splitlines():
        content = line.split("#", 1)[0].strip()
        if content:
            clause, _, why = content.partition(" ")
            gaps[clause] = why.strip()
    return gaps


def clause_test_prefix(clause: str) -> str:
    """`C2.3` → `c2_3`: how a clause ID starts a test name."""
    return clause.lower().replace(".", "_")


def clauses_named_by(test_name: str, known: Iterable[str]) -> tuple[str, ...]:
    """The clause IDs a test name starts with: `test_sh6_r2_x` → (SH6, R2)."""
    by_prefix = {clause_test_prefix(c): c for c in known}
    rest = test_name.removeprefix("test_")
    found: list[str] = []
    while rest:
        match = max(
            (p for p in by_prefix if rest == p or rest.startswith(p + "_")), key=len, default=None
        )
        if match is None:
            break
        found.append(by_prefix[match])
        rest = rest[len(match) + 1 :]
    return tuple(found)


def rules_by_clause(policy: Policy) -> Mapping[str, tuple[str, ...]]:
    """Every rule of the policy (by its path) under each clause it cites."""
    cited: defaultdict[str, list[str]] = defaultdict(list)
    for path, clauses in _citations(policy):
        for clause in clauses:
            cited[clause].append(path)
    return {k: tuple(dict.fromkeys(v)) for k, v in cited.items()}


def _citations(policy: Policy) -> Iterator[tuple[str, tuple[str, ...]]]:
    for f in fields(policy):
        if f.name == "clauses":
            continue
        yield from _walk(getattr(policy, f.name), f.name)


def _walk(node: object, path: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    if is_dataclass(node) and not isinstance(node, type):
        for f in fields(node):
            value = getattr(node, f.name)
            if f.name == "clauses":
                yield path, tuple(value)
            else:
                yield from _walk(value, f"{path}.{f.name}")
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, tuple):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def coverage(
    policy: Policy, test_names: Iterable[str], evidence: Evidence | None = None
) -> CoverageReport:
    """The coverage table of a policy against the names of the tests that exist and, when given,
    the evidence of a test run (which of them reached piguard's entry points)."""
    rules = rules_by_clause(policy)
    names = set(test_names) | set(evidence.reached if evidence is not None else ())
    tests: defaultdict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        for clause in clauses_named_by(name, policy.clauses):
            tests[clause].append(name)
    proving = evidence.proving if evidence is not None else None
    rows = tuple(
        ClauseCoverage(
            clause=cid,
            rules=rules.get(cid, ()),
            tests=tuple(tests.get(cid, ())),
            notice_only=clause.notice_only,
            proving=None if proving is None else tuple(t for t in tests[cid] if t in proving),
        )
        for cid, clause in policy.clauses.items()
    )
    return CoverageReport(rows, measured=evidence is not None)
