"""Runs as users launch them, under the real daemon and webserver with the shipped ``dagster.yaml``.

Every launch goes through the webserver's GraphQL API with the requests the UI sends (Materialize,
Launchpad config, Launch backfill, Add partition); the daemon queues, launches and monitors the runs. One
scenario, one webserver start and two daemon starts (each start costs 10-20 s):

1. *In flight when the host dies.* Three UI runs of ``stellic/audit_requirements`` (today, yesterday,
   today again) are queued on a fresh instance: the first two start and wait for their held Stellic jobs,
   filling the Stellic pool (limit 2), the third waits in the queue (even on the queue's very first pass,
   which is where Dagster alone would launch all three). A UI run of one SkillsPass day outlives its 1 s
   inline wait and defers its job. Then the daemon's process group is SIGKILLed: the daemon, its code
   server and both run workers, as an out-of-memory kill, a host or container restart or ``kill -9`` of
   ``./edu dev`` do. (A lone run worker killed under a living code server is failed by that server within
   a second; the runs stay STARTED forever only when the server dies with them.)
2. *Launched through the UI while it is down:* a 3-partition backfill of
   ``stellic/sections_counting_for_reqs`` (one run per partition) and a 3-day backfill of
   ``skillspass/elearning_enrollments`` (one run; its first day is the deferred one).
3. *The daemon restarts.* Run monitoring finds the dead workers and fails their runs, which frees the pool:
   the third run starts within ``poll_interval_seconds`` + 30 s (issue 13, item 5) and resumes the dead
   run's vendor job. At no time are more than 2 Stellic runs launched; the others wait QUEUED (item 4).
   The SkillsPass backfill's run keeps polling its held jobs past the inline wait instead of deferring
   them, and the backfill stays in progress with nothing failed (item 2). Released, everything lands: the
   backfills end COMPLETED_SUCCESS with one materialization per day from 3 vendor jobs in all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg
import pytest

from edu_assets.core.run_launcher import process_alive, run_worker
from edu_assets_tests.dagster_stack import DAEMON, FAST_QUEUE, WEBSERVER, DagsterStack
from edu_assets_tests.helpers import export_observations, materializations, requests_to

AUDIT = "stellic/audit_requirements"  # async snapshot, one run per partition
SECTIONS = "stellic/sections_counting_for_reqs"  # async, dynamic usem-id partitions, one run per partition
ENROLLMENTS = "skillspass/elearning_enrollments"  # one run per backfill (single-run policy), a job per day
TODAY = dt.datetime.now(dt.UTC).date()
SNAPSHOTS = [TODAY.isoformat(), (TODAY - dt.timedelta(days=1)).isoformat()]
DAYS = ["2026-10-01", "2026-10-02", "2026-10-03"]
TERMS = ["2434", "3435", "3436"]
INLINE_WAIT = 1.0
ENV = {
    "EDU_EXPORT_INLINE_WAIT_SECONDS": str(INLINE_WAIT),  # a plain run defers after 1 s
    "EDU_EXPORT_POLL_MAX_SECONDS": "1",  # released jobs are noticed within a second, however long a run waited
}
SKILLSPASS_EXPORTS = "/skillspass/tp-api/exports"  # POST creates a job, GET ?id= polls it
ACTIVE = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING}
T = TypeVar("T")


def waits(asset: str) -> dict[str, Any]:
    """Launchpad config that keeps a plain (non-backfill) run waiting for its vendor job instead of deferring."""
    op = "__".join(dg.AssetKey.from_user_string(asset).path)
    return {"ops": {op: {"config": {"inline_wait_seconds": 3600}}}}


class PoolWatch:
    """Samples the Stellic runs at every probe of a wait: the most launched at once, and whether runs were
    left QUEUED while the pool was full (so the limit was exercised, not merely never reached)."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self.most_active = 0
        self.queued_while_full = 0

    def sample(self) -> None:
        runs = stellic_runs(self.instance)
        active = sum(r.status in ACTIVE for r in runs)
        queued = sum(r.status is dg.DagsterRunStatus.QUEUED for r in runs)
        self.most_active = max(self.most_active, active)
        if active == 2:
            self.queued_while_full = max(self.queued_while_full, queued)

    def during(self, probe: Callable[[], T]) -> Callable[[], T]:
        def sampled() -> T:
            self.sample()
            return probe()

        return sampled


# A daemon, a webserver and a dozen runs: minutes on a busy machine, bounded by its own waits, not the default.
@pytest.mark.timeout(900)
@pytest.mark.skipif(not (DAEMON.exists() and WEBSERVER.exists()), reason="dagster-daemon/-webserver not installed")
def test_ui_launches_respect_pools_survive_a_crash_and_backfills_end_green(tmp_path, sandbox, lake_env):
    stellic, skillspass = sandbox.app("stellic"), sandbox.app("skillspass")
    stellic.hold_jobs()
    skillspass.hold_jobs()
    # FAST_QUEUE: the run queue is read every second instead of every 5 (when runs leave it, not which may).
    with DagsterStack(tmp_path, attribute="exports", overrides=FAST_QUEUE, env=ENV) as stack:
        instance = stack.instance
        pool = PoolWatch(instance)
        stack.start_webserver()

        # -- 1. two Stellic runs in flight, a third queued, a deferred SkillsPass day; then the host process dies
        dead = [stack.launch_asset_run(AUDIT, day, waits(AUDIT)) for day in SNAPSHOTS]
        third = stack.launch_asset_run(AUDIT, SNAPSHOTS[0], waits(AUDIT))
        deferring = stack.launch_asset_run(ENROLLMENTS, DAYS[0])
        stack.start_daemon()  # all four are queued before the queue's first pass
        stack.wait_for(pool.during(lambda: _finished(instance, deferring)), 120, "the SkillsPass day's run to defer")
        stack.wait_for(pool.during(lambda: all(_status(instance, r) is dg.DagsterRunStatus.STARTED for r in dead)
                                   and len(_polled_stellic_jobs(sandbox)) == 2
                                   and (_status(instance, third) in ACTIVE or _held_back(stack, [third]))),
                       120, "two Stellic runs to poll their jobs and the third to be held back")
        assert _status(instance, third) is dg.DagsterRunStatus.QUEUED
        (deferred,) = [o for o in export_observations(instance, ENROLLMENTS) if o["edu/export_state"] == "deferred"]
        workers = {r: run_worker(instance, r) for r in dead}
        assert all(workers.values()), workers
        dead_job = _job_of(instance, AUDIT, SNAPSHOTS[0])  # today's, started by the first dead run
        first_daemon = _heartbeat(instance)
        assert first_daemon is not None
        stack.kill("daemon")
        stack.wait_for(lambda: not any(process_alive(pid) for pid, _ in workers.values()), 10,  # type: ignore[misc]
                       "the killed run workers to be gone")
        assert all(_status(instance, r) is dg.DagsterRunStatus.STARTED for r in dead)  # dead, and nobody knows

        # -- 2. launched through the UI while the daemon is down
        stack.add_dynamic_partitions("stellic_usem_id", TERMS)
        terms_backfill = stack.launch_asset_backfill(SECTIONS, TERMS)
        days_backfill = stack.launch_asset_backfill(ENROLLMENTS, DAYS)

        # -- 3. the daemon comes back: monitoring frees the pool within its poll interval (item 5)
        stack.start_daemon()
        stack.wait_for(pool.during(lambda: _heartbeat(instance, newer_than=first_daemon)), 120,
                       "the restarted daemon's first heartbeat")
        bound = instance.run_monitoring_poll_interval_seconds + 30  # + dequeue and run-worker start
        stack.wait_for(pool.during(lambda: _status(instance, third) in ACTIVE), bound,
                       "the third Stellic run to leave the queue once monitoring failed the dead runs")
        for run_id in dead:
            (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "Detected run worker status FAILED" in failure.message, failure.message
            assert f"run worker process {workers[run_id][0]} is gone" in failure.message  # type: ignore[index]

        # the queue admits 2 Stellic runs at once, whatever launched them; the rest wait (item 4)
        stack.wait_for(pool.during(lambda: _blocked(stack, instance, terms_backfill)), 90,
                       "the terms backfill's other runs to be held back by the full stellic pool")

        # the SkillsPass backfill's run outlives its inline wait without deferring; the backfill stays open (item 2)
        (days_run,) = stack.wait_for(pool.during(lambda: _launched(_backfill_runs(instance, days_backfill))), 90,
                                     "the days backfill's run to start")
        stack.wait_for(pool.during(lambda: _polled_past_inline_wait(sandbox)), 90,
                       "the days backfill's run to poll its held jobs past the inline wait")
        seen = stack.backfill_iterations(days_backfill)
        stack.wait_for(pool.during(lambda: stack.backfill_iterations(days_backfill) > seen
                                   or stack.backfill(days_backfill)["status"] != "REQUESTED"), 90,
                       "the backfill daemon to evaluate the days backfill once more")
        (counts,) = stack.backfill(days_backfill)["assetBackfillData"]["assetBackfillStatuses"]
        assert stack.backfill(days_backfill)["status"] == "REQUESTED", counts
        assert (counts["numPartitionsFailed"], counts["numPartitionsInProgress"]) == (0, 3), counts
        assert _status(instance, days_run.run_id) is dg.DagsterRunStatus.STARTED  # still waiting, not deferred

        # -- released, everything lands
        skillspass.release_jobs()
        stellic.release_jobs()
        stack.wait_for(pool.during(lambda: _all_succeeded(instance, [third], terms_backfill)), 120,
                       "every queued Stellic run to succeed")
        stack.wait_for(lambda: stack.backfill(days_backfill)["status"] != "REQUESTED", 90, "the days backfill to end")
        assert stack.backfill(days_backfill)["status"] == "COMPLETED_SUCCESS", stack.backfill(days_backfill)

        # item 5: the dead runs failed; the third resumed the dead run's vendor job instead of asking again
        assert all(_status(instance, r) is dg.DagsterRunStatus.FAILURE for r in dead)
        (landed,) = materializations(instance, AUDIT, SNAPSHOTS[0])
        assert landed.metadata["vendor_job_id"].value == dead_job
        assert len(requests_to(sandbox, "/exports/export_data/audit_requirements")) == 2

        # item 4: never more than the pool's 2 at once, sampled and from the runs' start/end times
        assert pool.most_active == 2 and pool.queued_while_full >= 2, vars(pool)
        assert _most_overlapping(instance) <= 2

        # item 2: one materialization per day, 3 vendor jobs in all (the deferred one resumed by the backfill)
        for day in DAYS:
            assert len(materializations(instance, ENROLLMENTS, day)) == 1, day
        assert materializations(instance, ENROLLMENTS, DAYS[0])[0].metadata["vendor_job_id"].value == \
            deferred["vendor_job_id"]
        assert len([r for r in requests_to(sandbox, SKILLSPASS_EXPORTS) if r["method"] == "POST"]) == 3
        assert not instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "skillspass_export_completion"}))


def _status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    return run.status


def _finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    status = _status(instance, run_id)
    assert status is not dg.DagsterRunStatus.FAILURE, f"run {run_id} failed"
    return status is dg.DagsterRunStatus.SUCCESS


def _heartbeat(instance: dg.DagsterInstance, newer_than: str | None = None) -> str | None:
    """The id of the daemon whose run-queue heartbeat is newest (once it is not ``newer_than``'s)."""
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat.daemon_id if beat is not None and beat.daemon_id != newer_than else None


def stellic_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if any(k.path[0] == "stellic" for k in r.asset_selection or ())]


def _backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def _launched(runs: list[dg.DagsterRun]) -> list[dg.DagsterRun]:
    """The runs once every one has left the queue (started, or already finished)."""
    waiting = {dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING}
    return runs if runs and not any(r.status in waiting for r in runs) else []


def _held_back(stack: DagsterStack, run_ids: list[str]) -> bool:
    """The daemon's run queue has reported each run blocked by a pool's limit."""
    log = stack.log("daemon")
    return all(f"Run {r} is blocked by global concurrency limits" in log for r in run_ids)


def _blocked(stack: DagsterStack, instance: dg.DagsterInstance, backfill_id: str) -> bool:
    """The backfill's 3 runs exist, the pool is full, and the run queue holds the rest back for the pool."""
    runs = _backfill_runs(instance, backfill_id)
    queued = [r.run_id for r in runs if r.status is dg.DagsterRunStatus.QUEUED]
    full = sum(r.status in ACTIVE for r in stellic_runs(instance)) == 2
    return len(runs) == 3 and full and bool(queued) and _held_back(stack, queued)


def _all_succeeded(instance: dg.DagsterInstance, run_ids: list[str], backfill_id: str) -> bool:
    runs = [instance.get_run_by_id(r) for r in run_ids] + _backfill_runs(instance, backfill_id)
    failed = [r.run_id for r in runs if r is not None and r.status is dg.DagsterRunStatus.FAILURE]
    assert not failed, f"runs failed: {failed}"
    return len(runs) == len(run_ids) + 3 and all(r is not None and r.status is dg.DagsterRunStatus.SUCCESS for r in runs)


def _job_of(instance: dg.DagsterInstance, asset: str, partition: str) -> str:
    """The vendor job id of the latest export record of one partition."""
    filt = dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_user_string(asset), asset_partitions=[partition])
    (rec,) = instance.fetch_observations(filt, limit=1).records
    return str(rec.asset_observation.metadata["vendor_job_id"].value)


def _polled_stellic_jobs(sandbox: Any) -> set[str]:
    return {r["query"]["file_name"][0] for r in requests_to(sandbox, "/stellic/partnerapi/v1/exports/get_export_url")}


def _polled_past_inline_wait(sandbox: Any) -> bool:
    """All 3 SkillsPass jobs exist and one was polled more than the inline wait (+1 s) after the last began."""
    calls = requests_to(sandbox, SKILLSPASS_EXPORTS)
    posts = [c["time"] for c in calls if c["method"] == "POST"]
    return len(posts) == 3 and any(c["method"] == "GET" and c["time"] > max(posts) + INLINE_WAIT + 1 for c in calls)


def _most_overlapping(instance: dg.DagsterInstance) -> int:
    """The most Stellic runs that were STARTED at the same moment, from their recorded start and end times."""
    edges: list[tuple[float, int]] = []
    for record in instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in stellic_runs(instance)])):
        if record.start_time is not None:
            edges += [(record.start_time, 1), (record.end_time or float("inf"), -1)]
    most = current = 0
    for _, step in sorted(edges):
        current += step
        most = max(most, current)
    return most
