"""Asynchronous export jobs whose progress is a function of elapsed time.

Several vendors (Stellic s3 exports, SkillsPass export jobs, WebAdMIT export files) follow
the same pattern: start a job, poll its status, download a file. `JobStore` models that once:
a job is "queued" for the first third of its `ready_after` delay, "running" until the delay has
passed *and* its file has been produced in the background, then "done" (or "failed"). Each
vendor maps these phases to its own status words. Outcomes can be forced by faults so
connectors can be tested against jobs that fail or never finish.

Tests that need an order ("the run has given up waiting, *then* the job finishes") never rely on the
delay: `JobStore.hold()` keeps every job of the store from finishing (it stays "running") until
`release()`, whatever the clock says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Job", "JobStore", "Outcome", "Phase"]

log = logging.getLogger(__name__)


class Phase(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Outcome(StrEnum):
    SUCCEED = "succeed"
    FAIL = "fail"  # becomes FAILED once it would have completed
    HANG = "hang"  # stays RUNNING forever


@dataclass
class Job:
    id: str
    ready_after: float
    outcome: Outcome = Outcome.SUCCEED
    error: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    created_wall: float = field(default_factory=time.time)
    future: Future[Any] | None = None
    released: threading.Event | None = None  # the store's gate: while it is clear, the job cannot finish

    def phase(self, now: float | None = None) -> Phase:
        elapsed = (time.monotonic() if now is None else now) - self.created
        if elapsed < self.ready_after / 3:
            return Phase.QUEUED
        if self.outcome is Outcome.HANG or elapsed < self.ready_after:
            return Phase.RUNNING
        if self.released is not None and not self.released.is_set():
            return Phase.RUNNING
        if self.outcome is Outcome.FAIL:
            return Phase.FAILED
        if self.future is not None:
            if not self.future.done():
                return Phase.RUNNING
            if self.future.exception() is not None:
                return Phase.FAILED
        return Phase.DONE

    @property
    def result(self) -> Any:
        """What the background work produced (e.g. the file to serve); only valid when DONE."""
        return self.future.result() if self.future is not None else None


class JobStore:
    """Thread-safe registry of jobs; work functions run on a small background pool."""

    def __init__(self, workers: int = 2) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-job")
        self._released = threading.Event()
        self._released.set()

    def hold(self) -> None:
        """Keep every job, existing or new, from finishing until :meth:`release` (tests order events with it)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    def create(
        self,
        job_id: str,
        work: Callable[[], Any] | None,
        ready_after: float,
        outcome: Outcome = Outcome.SUCCEED,
        error: str = "",
        **meta: Any,
    ) -> Job:
        job = Job(job_id, ready_after, outcome, error, dict(meta), released=self._released)
        with self._lock:
            if job_id in self._jobs:
                raise ValueError(f"duplicate job id {job_id!r}")
            self._jobs[job_id] = job
        if work is not None and outcome is Outcome.SUCCEED:
            job.future = self._pool.submit(_logged, job_id, work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._jobs

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()
        self.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _logged(job_id: str, work: Callable[[], Any]) -> Any:
    try:
        return work()
    except Exception:
        log.exception("sandbox job %s failed", job_id)
        raise
