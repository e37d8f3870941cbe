"""Decision-engine benchmark: decisions per second on one core, against AWS Cedar (`cedarpy`).

Runs a realistic, seeded request mix (`request_mix`, `mix_population`) against the bundled policy
and against synthetic policies of 50, 1,000 and 10,000 rules (`synthetic_policy`); the engine's
passes over each mix are interleaved so that load from other processes hits every policy alike.
Then the same decisions as Cedar policies translated from the engine's compiled tables
(`cedar_translate`, `cedar_request`), with the policy set, the entities and every request's
context prepared before timing; every realistic outcome is cross-checked. The realistic rate is
given twice: warm (an engine that has decided the mix before) and cold (fresh engines on requests
they have never seen, `_cold`). Prints a table (`decide_report`), then one JSON line, last.

    .venv/bin/python bench/decide.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cedarpy
from rich.console import Console

from cedar_request import RequestTranslator
from cedar_translate import translate_policy
from decide_report import CedarRun, Run, print_report
from decide_timing import Rate, measure, measure_interleaved, rate
from piguard.kernel.errors import PiguardError
from piguard.policies import bundled_policy_path
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Decision, DecisionRequest, Effect
from piguard.policy.language import load_policy
from piguard.policy.model import Policy
from request_mix import build
from synthetic_policy import synthetic_policy

SIZES = (50, 1_000, 10_000)
progress = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to run: requests per mix, repetitions, and Cedar's sample per policy size."""

    requests: int
    subjects: int
    repeats: int
    cedar_sample: int
    synthetic_cedar: dict[int, int]
    cold_rounds: int


FULL = Plan(20_000, 2_000, 11, 2_000, {50: 2_000, 1_000: 500, 10_000: 60}, 5)
QUICK = Plan(4_000, 500, 3, 300, {50: 200, 1_000: 40, 10_000: 8}, 3)
COLD_SEEDS = 1_000  # the cold streams' seeds start here, far from the warm mix's (2024)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = QUICK if args.quick else FULL
    policy, name = _realistic_policy()
    cases = [_prepare(name, policy, plan, plan.cedar_sample, check_all=True)]
    cases += [
        _prepare(f"synthetic {n:,}", synthetic_policy(n), plan, plan.synthetic_cedar[n])
        for n in SIZES
    ]
    progress.print(f"[dim]timing the engine: {plan.repeats} interleaved passes per policy…[/]")
    ours = measure_interleaved([(c.engine.decide, c.requests) for c in cases], plan.repeats)
    runs = [_with_cedar(case, r) for case, r in zip(cases, ours, strict=True)]
    plain = measure(_plain_lookup(policy), cases[0].requests, plan.repeats)
    cold = _cold(policy, plan, cases[0])
    print(json.dumps(print_report(runs, plain, cold)))
    return 0


def _cold(policy: Policy, plan: Plan, warm: Case) -> tuple[float, float]:
    """Decisions per second of an engine on requests it has never seen (median of rounds), and
    its share of the warm rate, each round's cold pass beside a warm pass of `warm` so that
    load from other processes hits both alike.

    Why this is cold: each round builds a new `DecisionEngine` (empty caches: the finished
    decisions per grant, the denials, the outbound answers) and a new stream from another seed,
    drawn from one subject per request, so that consents, settings, ages, holds and
    authorisations vary from request to request. Each stream is decided once, in one timed
    pass; what the caches serve within it they learnt in that pass, as a freshly started process
    would. Building the engine (compiling the policy) and the requests is not timed.
    """
    rates: list[float] = []
    shares: list[float] = []
    for round_ in range(plan.cold_rounds):
        progress.print(f"[dim]cold round {round_ + 1}/{plan.cold_rounds}: new engine, new mix…[/]")
        requests = build(policy, plan.requests, plan.requests, seed=COLD_SEEDS + round_).requests
        engine = DecisionEngine(policy)
        [cold] = rate(engine.decide, requests, 1)
        [warm_rate] = rate(warm.engine.decide, warm.requests, 1)
        rates.append(cold)
        shares.append(cold / warm_rate)
    return statistics.median(rates), statistics.median(shares)


@dataclass(frozen=True, slots=True)
class Case:
    """One policy with its request mix and a warmed-up engine."""

    name: str
    policy: Policy
    requests: list[DecisionRequest]
    engine: DecisionEngine
    cedar_sample: int
    check_all: bool


def _prepare(name: str, policy: Policy, plan: Plan, sample: int, check_all: bool = False) -> Case:
    progress.print(f"[dim]{name}: building {plan.requests:,} requests…[/]")
    requests = build(policy, plan.requests, plan.subjects).requests
    engine = DecisionEngine(policy)
    for req in requests:
        engine.decide(req)  # warm-up: the engine caches finished decisions
    return Case(name, policy, requests, engine, sample, check_all)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    return parser


def _realistic_policy() -> tuple[Policy, str]:
    """The bundled policy; a synthetic stand-in (flagged in the output) if it does not load."""
    try:
        return load_policy(bundled_policy_path()), "bundled alipay-2017"
    except (PiguardError, OSError) as exc:
        progress.print(f"[yellow]bundled policy unavailable ({exc}); using a synthetic one[/]")
        return synthetic_policy(60), "synthetic stand-in"


def _with_cedar(case: Case, ours: Rate) -> Run:
    checked = case.requests if case.check_all else case.requests[: case.cedar_sample]
    progress.print(
        f"[dim]{case.name}: Cedar, {len(checked):,} cross-checked, {case.cedar_sample:,} timed…[/]"
    )
    decisions = [case.engine.decide(r) for r in case.requests]
    allowed = sum(d.effect is Effect.ALLOW for d in decisions) / len(decisions)
    cedar = _cedar(case.policy, checked, decisions[: len(checked)], case.cedar_sample)
    return Run(case.name, _rules(case.policy), allowed, ours, cedar)


def _rules(policy: Policy) -> int:
    """Grant entries (role × action × purpose) plus outbound rules."""
    grants = sum(len(g.actions) for r in policy.roles.values() for g in r.grants)
    return grants + len(policy.outbound)


def _cedar(
    policy: Policy, requests: list[DecisionRequest], decisions: list[Decision], sample: int
) -> CedarRun:
    """Cross-check every request, then time `is_authorized` and `is_authorized_batch`."""
    cedar = translate_policy(policy)
    translator = RequestTranslator()
    prepared = [translator.prepared(r) for r in requests]
    entities = cedar.entity_set(translator.subject_entities())
    results = cedarpy.is_authorized_batch(prepared, cedar.policy_set, entities)
    mismatches = [
        (req, d, c)
        for req, d, c in zip(requests, decisions, results, strict=True)
        if (d.effect is Effect.ALLOW) != c.allowed
    ]
    for req, d, c in mismatches[:5]:
        progress.print(f"[red]mismatch[/] {req} engine={d.effect} {d.reasons} cedar={c.decision}")
    timed = prepared[:sample]
    single = measure(lambda r: cedarpy.is_authorized(r, cedar.policy_set, entities), timed, 3)
    batch = _batch_rate(
        lambda rs: cedarpy.is_authorized_batch(rs, cedar.policy_set, entities), timed, 3
    )
    return CedarRun(single, batch, cedar.statements, len(mismatches), len(requests))


def _batch_rate(call: Callable[[list[Any]], object], items: list[Any], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(items)
        runs.append(len(items) / (time.perf_counter() - start))
    return statistics.median(runs)


def _plain_lookup(policy: Policy) -> Callable[[DecisionRequest], bool]:
    """The floor: one dict lookup and a subset test per request, nothing else."""
    grants = {
        (role.key, action, g.purpose): g.categories
        for role in policy.roles.values()
        for g in role.grants
        for action in g.actions
    }

    def allowed(req: DecisionRequest) -> bool:
        cats = grants.get((req.actor.role, req.action, req.purpose))
        return cats is not None and cats.issuperset(req.categories)

    return allowed


if __name__ == "__main__":
    sys.exit(main())
