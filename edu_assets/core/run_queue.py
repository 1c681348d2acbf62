"""Dagster's run queue, with each run's pools registered when the run is queued.

Every asset declares its vendor's pool, and ``dagster.yaml`` limits pools per run. Dagster's queue daemon,
however, learns a pool's limit only while dequeuing: each pass first reads the pools it knows, then
registers new ones at the default limit, so the first pass that meets a pool (a fresh instance, a newly
added vendor) treats it as unlimited and launches every queued run of it, up to ``max_concurrent_runs``
(seen: 4 Stellic runs at once with a limit of 2). Registering a run's pools when it is submitted, which
every launch path does (UI, sensors, schedules, backfills), closes that window.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import sqlalchemy.exc
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext


class PoolRegisteringRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator`` that registers the submitted run's pools at the instance's default limit
    (a no-op for a pool that already has a limit, default or set in the UI)."""

    def submit_run(self, context: SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        storage = self._instance.event_log_storage
        if (run.run_op_concurrency and storage.supports_global_concurrency_limits
                and self._instance.global_op_concurrency_default_limit is not None):
            for pool in sorted(run.run_op_concurrency.all_pools or ()):
                _register(storage, pool)
        return super().submit_run(context)


def _register(storage: Any, pool: str) -> None:
    """Register ``pool`` at the default limit. Runs are submitted concurrently (a sensor's runs, a
    backfill's), and the storage checks then inserts: on PostgreSQL the loser of that race gets a
    unique-key violation (or the aborted transaction it leaves) for a pool that now exists, which is the
    outcome wanted, not a failed launch."""
    for attempt in range(3):
        try:
            storage.initialize_concurrency_limit_to_default(pool)
            return
        except sqlalchemy.exc.DBAPIError:  # unique-key violation, or the transaction it aborted
            if pool in storage.get_concurrency_keys():
                return
            if attempt == 2:
                raise
