"""The loop batcher (S2: the audit commit and the reads of the API run through it): jobs of one
loop turn run as one batch on one thread, each waiter gets its own result or error, and every
bound holds: a full queue and a closed batcher refuse at once, a waiter never waits past the
bound, and what its waiter gave up before the thread took it never runs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from piguard.batching import LoopBatcher


class Refused(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Worker:
    """A batch function that records what it ran, and can be held at the start of a batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()

    def run(self, jobs: list[int]) -> list[object]:
        self.started.set()
        self.hold.wait(10)
        self.batches.append(list(jobs))
        if -1 in jobs:
            raise RuntimeError("the database went away")
        return [ValueError(f"odd {j}") if j % 2 else j * 10 for j in jobs]


def _batcher(worker: Worker, **bounds: float) -> LoopBatcher[int, int]:
    return LoopBatcher("test-batcher", worker.run, Refused, **bounds)  # type: ignore[arg-type]


def test_s2_jobs_of_one_loop_turn_run_as_one_batch_each_with_its_own_outcome() -> None:
    worker = Worker()
    batcher = _batcher(worker)

    async def ask() -> list[object]:
        return await asyncio.gather(*(batcher.submit(j) for j in range(6)), return_exceptions=True)

    outcomes = asyncio.run(ask())
    batcher.close()

    assert worker.batches == [[0, 1, 2, 3, 4, 5]]
    assert outcomes[::2] == [0, 20, 40]
    assert [str(o) for o in outcomes[1::2]] == ["odd 1", "odd 3", "odd 5"]


def test_s2_a_failed_batch_refuses_each_of_its_jobs() -> None:
    worker = Worker()
    batcher = _batcher(worker)

    async def ask() -> list[object]:
        return await asyncio.gather(batcher.submit(2), batcher.submit(-1), return_exceptions=True)

    outcomes = asyncio.run(ask())
    batcher.close()

    assert [o.why for o in outcomes if isinstance(o, Refused)] == ["failed", "failed"]


def test_s2_a_full_queue_and_a_closed_batcher_refuse_at_once() -> None:
    worker = Worker()
    batcher = _batcher(worker, max_weight=3)

    async def ask() -> list[object]:
        return await asyncio.gather(
            *(batcher.submit(j) for j in (0, 2, 4, 6)), return_exceptions=True
        )

    outcomes = asyncio.run(ask())
    batcher.close()
    with pytest.raises(Refused) as closed:
        asyncio.run(batcher.submit(8))

    assert outcomes[:3] == [0, 20, 40]
    assert isinstance(outcomes[3], Refused)
    assert outcomes[3].why == "full"
    assert closed.value.why == "closed"


def test_s2_a_waiter_never_waits_past_the_bound_and_what_it_gave_up_never_runs() -> None:
    worker = Worker()
    worker.hold.clear()  # the first batch is stuck until released
    batcher = _batcher(worker, wait_seconds=0.2)

    async def ask() -> list[object]:
        stuck = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)
        assert worker.started.wait(2)
        behind = asyncio.ensure_future(batcher.submit(2))
        return await asyncio.gather(stuck, behind, return_exceptions=True)

    started = time.monotonic()
    outcomes = asyncio.run(ask())
    waited = time.monotonic() - started
    worker.hold.set()
    batcher.close()

    assert [o.why for o in outcomes if isinstance(o, Refused)] == ["timeout", "timeout"]
    assert waited < 2
    assert worker.batches == [[0]]  # the stuck batch ran; the one given up behind it did not


def test_s2_a_job_whose_client_left_before_it_was_taken_never_runs() -> None:
    worker = Worker()
    worker.hold.clear()
    batcher = _batcher(worker)

    async def ask() -> None:
        stuck = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)
        assert worker.started.wait(2)
        left = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0.05)
        left.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await left  # the cancellation is delivered: the job is given up
        worker.hold.set()
        assert await stuck == 0

    asyncio.run(ask())
    batcher.close()

    assert worker.batches == [[0]]
