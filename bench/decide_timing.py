"""Timing helpers: whole-list rates (median of repetitions) and per-call latency percentiles.

The machine is shared and noisy, so every figure is a median, the garbage collector is paused
while a loop is timed (as `timeit` does), and the timer's own cost is measured and subtracted.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Rate:
    """Decisions per second (median over repetitions) and per-decision latency in µs."""

    per_s: float
    runs: tuple[float, ...]
    p50_us: float
    p99_us: float


@contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def rate(call: Callable[[Any], object], items: Sequence[Any], repeats: int) -> tuple[float, ...]:
    """Items per second for each of `repeats` passes over the whole list."""
    runs = []
    with _no_gc():
        for _ in range(repeats):
            start = time.perf_counter()
            for item in items:
                call(item)
            runs.append(len(items) / (time.perf_counter() - start))
    return tuple(runs)


def latencies_ns(call: Callable[[Any], object], items: Sequence[Any]) -> list[float]:
    """Per-call times in ns, less the median cost of reading the clock around nothing."""
    clock = time.perf_counter_ns
    out = [0] * len(items)
    empty = [0] * len(items)
    with _no_gc():
        for i, item in enumerate(items):
            start = clock()
            call(item)
            out[i] = clock() - start
        for i in range(len(items)):
            start = clock()
            empty[i] = clock() - start
    overhead = statistics.median(empty)
    return sorted(max(t - overhead, 0.0) for t in out)


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


Job = tuple[Callable[[Any], object], Sequence[Any]]


def measure(call: Callable[[Any], object], items: Sequence[Any], repeats: int) -> Rate:
    """The median rate over `repeats` passes, then per-call percentiles."""
    return measure_interleaved([(call, items)], repeats)[0]


def measure_interleaved(jobs: Sequence[Job], repeats: int) -> list[Rate]:
    """Like `measure` for several jobs, one pass of each in turn per repetition, so that a burst
    of load from other processes hits every job alike and their ratios stay fair."""
    runs: list[list[float]] = [[] for _ in jobs]
    for _ in range(repeats):
        for i, (call, items) in enumerate(jobs):
            runs[i].extend(rate(call, items, 1))
    out = []
    for (call, items), job_runs in zip(jobs, runs, strict=True):
        ordered = latencies_ns(call, items)
        out.append(
            Rate(
                per_s=statistics.median(job_runs),
                runs=tuple(job_runs),
                p50_us=percentile(ordered, 0.50) / 1000,
                p99_us=percentile(ordered, 0.99) / 1000,
            )
        )
    return out
