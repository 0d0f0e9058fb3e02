"""Batching across requests: queries that arrive together run as one batch, on the thread that calls
:meth:`Batcher.run_once` (the server's main thread), never on the network event loop.

A request submits ``(key, item)`` (:meth:`Batcher.submit`) and gets a ``concurrent.futures.Future`` (an event
loop awaits it through ``asyncio.wrap_future``).  The worker takes the oldest job and waits at most ``max_wait`` seconds from
its arrival for more: not at all when the server is idle (the last batch was a single query and no other waits;
``wait_when_idle`` makes it wait always), no longer once ``max_batch`` jobs of its key are there.  It runs
``run(key, items)`` once for the jobs of that key, in arrival order; jobs of other keys wait for the next round,
oldest first.  A full queue refuses a job at once (:class:`Overloaded`, a 503 with ``Retry-After``); a job whose
caller gave up (timeout, a dropped connection) is skipped if it has not started.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Hashable, List, Sequence

logger = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The queue is full (or the server is stopping): come back later."""


@dataclass
class _Job:
    key: Hashable
    item: Any
    arrived: float
    future: Future = field(default_factory=Future)


class Batcher:
    """``run(key, items) -> results`` (one result per item, in order; an Exception instance fails that item) over
    batches of at most ``max_batch`` jobs of one key, formed within ``max_wait`` seconds of the oldest job's
    arrival; at most ``max_queue`` jobs wait."""

    def __init__(self, run: Callable[[Hashable, Sequence[Any]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait: float = 0.002, max_queue: int = 256, wait_when_idle: bool = False):
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be positive, max_wait non-negative")
        self.run = run
        self.max_batch, self.max_wait, self.max_queue = int(max_batch), float(max_wait), int(max_queue)
        self.wait_when_idle = bool(wait_when_idle)
        self._jobs: Deque[_Job] = deque()
        self._cond = threading.Condition()
        self.closed = False
        self.in_flight = 0
        self.batches = self.queries = self.largest = 0
        self._last = 0   # size of the last batch

    # -- the callers' side (any thread) ----------------------------------------------------------------------
    def submit(self, key: Hashable, item: Any) -> Future:
        with self._cond:
            if self.closed:
                raise Overloaded("the server is shutting down")
            if len(self._jobs) >= self.max_queue:
                raise Overloaded(f"the queue is full ({self.max_queue} queries waiting)")
            job = _Job(key, item, time.monotonic())
            self._jobs.append(job)
            self._cond.notify()
        return job.future

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def close(self) -> None:
        """Refuse new jobs from now on; those queued still run."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # -- the worker's side (one thread) ----------------------------------------------------------------------
    def _take(self, timeout: float) -> List[_Job]:
        """The next batch (empty when nothing came within ``timeout``)."""
        with self._cond:
            if not self._jobs and not self._cond.wait_for(lambda: self._jobs, timeout):
                return []
            key = self._jobs[0].key
            # an idle server (the last batch was one query, nothing else waits) runs a lone query at once; under
            # load the oldest waits up to max_wait for batch mates
            busy = self.wait_when_idle or self._last > 1 or len(self._jobs) > 1
            wait = self.max_wait if busy else 0.0
            deadline = self._jobs[0].arrived + wait
            while True:
                same = sum(1 for job in self._jobs if job.key == key)
                left = deadline - time.monotonic()
                if same >= self.max_batch or left <= 0 or self.closed:
                    break
                self._cond.wait(left)
            batch: List[_Job] = []
            rest: Deque[_Job] = deque()
            for job in self._jobs:
                (batch if job.key == key and len(batch) < self.max_batch else rest).append(job)
            self._jobs = rest
            return batch

    def run_once(self, timeout: float = 0.05) -> int:
        """Run one batch if a job comes within ``timeout`` seconds; the number of jobs it ran."""
        jobs = [job for job in self._take(timeout) if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return 0
        self.in_flight = len(jobs)
        try:
            results = list(self.run(jobs[0].key, [job.item for job in jobs]))
            if len(results) != len(jobs):
                raise RuntimeError(f"batch of {len(jobs)} gave {len(results)} results")
        except BaseException as exc:   # the batch's callers get the error; the worker goes on
            if not isinstance(exc, Exception):
                for job in jobs:
                    job.future.set_exception(RuntimeError("the worker stopped"))
                raise
            logger.debug("batch of %d failed: %s", len(jobs), exc)
            for job in jobs:
                job.future.set_exception(exc)
        else:
            for job, result in zip(jobs, results):
                if isinstance(result, Exception):   # this item alone failed
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
        finally:
            self.in_flight = 0
        self.batches += 1
        self._last = len(jobs)
        self.queries += len(jobs)
        self.largest = max(self.largest, len(jobs))
        return len(jobs)

    def stats(self) -> dict:
        return {"queued": self.queued, "in_flight": self.in_flight, "batches": self.batches, "queries": self.queries,
                "mean_batch": round(self.queries / self.batches, 2) if self.batches else 0.0,
                "max_batch": self.max_batch, "max_queue": self.max_queue}
