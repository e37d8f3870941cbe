"""Clause coverage: which rules implement each clause and which tests prove it.

A clause is covered when some rule of the policy cites it or some test names it; a clause that is
only a statement (`notice_only`) is covered by the rendered notice, which shows every clause.
Test names start with clause IDs, lower case with dots as underscores: `test_c2_3_...`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass

from piguard.policy.model import Policy


@dataclass(frozen=True, slots=True)
class ClauseCoverage:
    """One row of the coverage table."""

    clause: str
    rules: tuple[str, ...]
    tests: tuple[str, ...]
    notice_only: bool

    @property
    def covered(self) -> bool:
        return bool(self.rules or self.tests or self.notice_only)


@dataclass(frozen=True, slots=True)
class CoverageReport:
    rows: tuple[ClauseCoverage, ...]

    @property
    def uncovered(self) -> tuple[str, ...]:
        return tuple(r.clause for r in self.rows if not r.covered)

    @property
    def untested(self) -> tuple[str, ...]:
        return tuple(r.clause for r in self.rows if not r.tests)


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


def coverage(policy: Policy, test_names: Iterable[str]) -> CoverageReport:
    """The coverage table of a policy against the names of the tests that exist."""
    rules = rules_by_clause(policy)
    tests: defaultdict[str, list[str]] = defaultdict(list)
    for name in test_names:
        for clause in clauses_named_by(name, policy.clauses):
            tests[clause].append(name)
    rows = tuple(
        ClauseCoverage(
            clause=cid,
            rules=rules.get(cid, ()),
            tests=tuple(sorted(set(tests.get(cid, ())))),
            notice_only=clause.notice_only,
        )
        for cid, clause in policy.clauses.items()
    )
    return CoverageReport(rows)
