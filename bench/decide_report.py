"""The benchmark's table, its verdict against the targets, and the figures of the JSON line."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from decide_timing import Rate

TARGET_RATE = 500_000
TARGET_COLD_RATE = 150_000
TARGET_RATIO = 50
TARGET_CHECKED = 2_000
TARGET_SLOWDOWN = 2.0


@dataclass(frozen=True, slots=True)
class CedarRun:
    """Cedar on one policy: per call (with latencies), batched, and the cross-check."""

    per_call: Rate
    batch_per_s: float
    statements: int
    mismatches: int
    checked: int

    @property
    def best(self) -> tuple[float, str]:
        """The faster per-decision rate, and which call gave it (fair to Cedar)."""
        if self.batch_per_s > self.per_call.per_s:
            return self.batch_per_s, "is_authorized_batch"
        return self.per_call.per_s, "is_authorized"


@dataclass(frozen=True, slots=True)
class Run:
    """One policy's figures: ours and Cedar's."""

    name: str
    rules: int
    allowed: float  # share of the mix the engine allows
    ours: Rate
    cedar: CedarRun

    @property
    def ratio(self) -> float:
        return self.ours.per_s / self.cedar.best[0]


def print_report(runs: list[Run], plain: Rate, cold: tuple[float, float]) -> dict[str, float | int]:
    """Print the table and verdict; return the figures for the JSON line. `cold` is the rate of
    fresh engines on requests they have never seen, and its share of the warm rate."""
    cold_rate, cold_share = cold
    console = Console(width=160)
    console.print(_table(runs))
    main, by_size = runs[0], {r.rules: r for r in runs[1:]}
    smallest, largest = min(by_size), max(by_size)
    slowdown = by_size[smallest].ours.per_s / by_size[largest].ours.per_s
    mismatches = sum(r.cedar.mismatches for r in runs)
    cedar_rate, mode = main.cedar.best
    console.print(
        f"plain indexed lookup on the same requests: {plain.per_s:,.0f}/s "
        f"(p50 {plain.p50_us:.2f} µs)\nCedar figure used: {mode} "
        f"(per call {main.cedar.per_call.per_s:,.0f}/s, batched {main.cedar.batch_per_s:,.0f}/s);"
        f" Cedar's cost per statement ≈ {_per_statement_us(runs[1:]):.2f} µs\n"
        f"cold (fresh engine, requests never seen): {cold_rate:,.0f}/s, "
        f"{cold_share:.0%} of the warm rate measured beside it"
    )
    verdicts = [
        (f"≥ {TARGET_RATE:,} decisions/s", main.ours.per_s >= TARGET_RATE),
        (f"≥ {TARGET_COLD_RATE:,}/s cold", cold_rate >= TARGET_COLD_RATE),
        (f"≥ {TARGET_RATIO}× cedarpy", main.ratio >= TARGET_RATIO),
        (
            f"0 mismatches on ≥ {TARGET_CHECKED:,}",
            mismatches == 0 and main.cedar.checked >= TARGET_CHECKED,
        ),
        (
            f"≤ {TARGET_SLOWDOWN}× slowdown {smallest}→{largest:,} rules",
            slowdown <= TARGET_SLOWDOWN,
        ),
    ]
    console.print("targets: " + "; ".join(f"{t} {'✓' if ok else '✗'}" for t, ok in verdicts))
    return {
        "decisions_per_s": round(main.ours.per_s),
        "decisions_cold_per_s": round(cold_rate),
        "cold_share_of_warm": round(cold_share, 2),
        "cedarpy_per_s": round(cedar_rate, 1),
        "ratio_vs_cedarpy": round(main.ratio, 1),
        "mismatches": mismatches,
        "slowdown_50_to_10000_rules": round(slowdown, 2),
    }


def _table(runs: list[Run]) -> Table:
    table = Table(title="piguard decision engine vs AWS Cedar (cedarpy), one core")
    for header in (
        "policy",
        "rules",
        "Cedar stmts",
        "allowed",
        "piguard /s",
        "p50 µs",
        "p99 µs",
        "cedarpy /s",
        "Cedar p50 µs",
        "Cedar p99 µs",
        "ratio",
        "mismatches",
    ):
        table.add_column(header, justify="left" if header == "policy" else "right", no_wrap=True)
    for r in runs:
        table.add_row(
            r.name,
            f"{r.rules:,}",
            f"{r.cedar.statements:,}",
            f"{r.allowed:.0%}",
            f"{r.ours.per_s:,.0f}",
            f"{r.ours.p50_us:.2f}",
            f"{r.ours.p99_us:.2f}",
            f"{r.cedar.best[0]:,.0f}",
            f"{r.cedar.per_call.p50_us:,.0f}",
            f"{r.cedar.per_call.p99_us:,.0f}",
            f"{r.ratio:,.0f}×",
            f"{r.cedar.mismatches} / {r.cedar.checked:,}",
        )
    return table


def _per_statement_us(sized: list[Run]) -> float:
    """Cedar's marginal cost of one more statement, from the two largest synthetic policies."""
    a, b = sorted((r.cedar for r in sized), key=lambda c: c.statements)[-2:]
    extra = 1e6 / b.per_call.per_s - 1e6 / a.per_call.per_s
    return extra / (b.statements - a.statements)
