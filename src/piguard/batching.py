"""Blocking work for an event loop, done by one thread in batches.

Each job asked during one turn of an event loop is handed to the worker thread with the others of
that turn, under one lock and with one timer for their wait bound; the thread runs what is
waiting as one batch (one transaction, say) and wakes each loop once per batch. Per job that is a
future and a list append: no thread hop of its own, which costs more than the work it carries.

Bounded: jobs past `max_weight`, or not done within `wait_seconds`, fail with the error `refuse`
makes; a job whose waiter gave up (timed out, or the client left) before the thread took it is
dropped, so an overload never piles up work nobody will read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_logger = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")

Run = Callable[[list[J]], Sequence[object]]
"""Runs a batch of jobs; for each, in order, its result or the exception it failed with. May
raise: then every job of the batch fails with `refuse("failed")`."""
Refuse = Callable[[str], Exception]
"""The error for a job not done: `full`, `closed`, `timeout` or `failed`."""


@dataclass(slots=True, eq=False)
class _Job(Generic[J]):
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[object]
    job: J
    weight: int
    result: object = None
    error: BaseException | None = None
    given_up: bool = field(default=False)


class LoopBatcher(Generic[J, R]):
    """Invariant: every job asked is answered (result, its error, or a refusal) no later than
    `wait_seconds` after it was asked, and run at most once."""

    def __init__(
        self,
        name: str,
        run: Run[J],
        refuse: Refuse,
        *,
        weight: Callable[[J], int] = lambda _: 1,
        max_weight: int = 20_000,
        batch_weight: int = 5_000,
        wait_seconds: float = 2.0,
        stopped: Callable[[], None] | None = None,
    ) -> None:
        """`stopped` runs in the thread as it stops (after `close`): it lets go of what the
        thread held, a connection say."""
        self._name = name
        self._stopped = stopped
        self._run_batch = run
        self._refuse = refuse
        self._weight = weight
        self._max_weight = max_weight
        self._batch_weight = batch_weight
        self.wait_seconds = wait_seconds
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[_Job[J]] = []  # handed to the thread, oldest first
        self._weighed = 0  # weight asked and not yet taken by the thread
        self._forming: dict[asyncio.AbstractEventLoop, list[_Job[J]]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    async def submit(self, job: J) -> R:
        """The job's result, once the thread has run the batch holding it."""
        weight = self._weight(job)
        if self._pid != os.getpid():
            with self._cond:
                self._reset()  # a forked child: the parent's thread and waiters are not ours
        with self._cond:
            if self._closed:
                raise self._refuse("closed")
            if self._weighed + weight > self._max_weight:
                raise self._refuse("full")
            self._weighed += weight
        loop = asyncio.get_running_loop()
        asked = _Job(loop, loop.create_future(), job, weight)
        forming = self._forming.get(loop)
        if forming is None:
            forming = self._forming[loop] = []
            loop.call_soon(self._hand_over, loop)
        forming.append(asked)
        try:
            result: R = await asked.future  # type: ignore[assignment]  # what `run` gave for it
        except asyncio.CancelledError:  # the client left: its job need not be run
            self._give_up([asked])
            raise
        return result

    def close(self) -> None:
        """Run what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(self.wait_seconds + 5.0)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the end of a loop turn: what it asked goes to the thread, with one timer."""
        formed = self._forming.pop(loop)
        loop.call_later(self.wait_seconds, self._expire, formed)
        with self._cond:
            self._pending.extend(formed)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closed:
                        self._cond.wait()
                    if not self._pending:
                        return
                    batch = self._take()
                if batch:
                    self._run(batch)
                    _settle(batch)
        finally:
            if self._stopped is not None:
                self._stopped()

    def _take(self) -> list[_Job[J]]:
        """The oldest jobs still waited for, up to `batch_weight` (at least one job)."""
        count = taken = dropped = 0
        batch = []
        for asked in self._pending:
            if count and taken + asked.weight > self._batch_weight:
                break
            count += 1
            if asked.given_up:
                dropped += asked.weight
                continue
            taken += asked.weight
            batch.append(asked)
        self._pending = self._pending[count:]
        self._weighed -= taken + dropped
        return batch

    def _run(self, batch: list[_Job[J]]) -> None:
        try:
            outcomes = self._run_batch([asked.job for asked in batch])
        except Exception as exc:  # every waiter hears it, none hangs
            _logger.warning(
                "%s: a batch of %d failed: %s", self._name, len(batch), type(exc).__name__
            )
            outcomes = [self._refuse("failed")] * len(batch)
        for asked, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                asked.error = outcome
            else:
                asked.result = outcome

    def _expire(self, waiters: list[_Job[J]]) -> None:
        """The wait bound passed (on the waiters' loop): who still waits hears it, and what the
        thread has not taken yet is dropped (what it took still runs)."""
        late = [asked for asked in waiters if not asked.future.done()]
        self._give_up(late)
        for asked in late:
            asked.future.set_exception(self._refuse("timeout"))

    def _give_up(self, waiters: list[_Job[J]]) -> None:
        with self._cond:
            for asked in waiters:
                asked.given_up = True


def _settle(batch: list[_Job[J]]) -> None:
    """Wake the waiters: one call into each event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job[J]]] = {}
    for asked in batch:
        by_loop.setdefault(asked.loop, []).append(asked)
    for loop, waiters in by_loop.items():
        try:
            loop.call_soon_threadsafe(_wake, waiters)
        except RuntimeError:  # that loop is closed: nobody waits any more
            continue


def _wake(waiters: list[_Job[J]]) -> None:
    for asked in waiters:
        if asked.future.done():  # timed out or cancelled meanwhile
            continue
        if asked.error is not None:
            asked.future.set_exception(asked.error)
        else:
            asked.future.set_result(asked.result)
