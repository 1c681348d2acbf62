"""Sensors under the real ``dagster-daemon``, not ``build_sensor_context``.

The daemon runs the code location in its own gRPC server process, ticks the sensors on its own schedule,
queues what they request through the run coordinator, and launches each run in yet another process. That
is the path a deferred export takes in production, so it is tested end to end once here:

* a Stellic export deferred by an in-process run is finished by the completion sensor: the daemon
  launches a run that resumes the vendor job (never a second one) and lands the partition;
* the Xporter discovery sensor adds the authorised schools as ``estab`` partitions and queues snapshot
  runs covering exactly them (held in the queue by a tag limit, so the test does not load 60 endpoints).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
from edu_assets_tests.dagster_stack import DAEMON, DagsterStack
from edu_assets_tests.helpers import export_observations, materializations, materialize, requests_to

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
AUTHORISED = ["3281101", "3281102", "3281104"]  # the sandbox register's authorised schools
# The shipped dagster.yaml plus one limit: Xporter's runs stay queued (the test does not load 60 endpoints).
HOLD_XPORTER = {"concurrency": {"runs": {"tag_concurrency_limits": [
    {"key": "edu/vendor", "value": "xporter", "limit": 0},
]}}}


@pytest.mark.timeout(900)  # a daemon and its runs: its own waits bound it
@pytest.mark.skipif(not DAEMON.exists(), reason="dagster-daemon is not installed next to this interpreter")
def test_daemon_finishes_a_deferred_export_and_discovers_schools(tmp_path, sandbox, lake_env):
    from edu_assets_tests.daemon_location import defs

    sandbox.app("stellic").hold_jobs()  # the run must defer, however slow the machine
    with DagsterStack(tmp_path, attribute="defs", overrides=HOLD_XPORTER) as stack:
        instance = stack.instance
        assert materialize(defs, instance, "audit_requirements", TODAY, config={"inline_wait_seconds": 0.2}).success
        assert materializations(instance, "audit_requirements") == []  # deferred: the vendor job is running
        job_id = export_observations(instance, "audit_requirements")[-1]["vendor_job_id"]
        sandbox.app("stellic").release_jobs()  # the job finishes while the daemon's completion sensor polls it

        stack.start_daemon()
        (run,) = stack.wait_for(
            lambda: [r for r in _sensor_runs(instance, "stellic_export_completion") if r.is_finished], 150,
            "the completion sensor's run to finish")
        snapshots = stack.wait_for(lambda: _submitted(instance, _runs(instance, "xporter_snapshots"), AUTHORISED), 180,
                                   "the discovery sensor to queue the schools' snapshot runs")  # a loaded machine's ticks

        # the completion sensor's run resumed the deferred vendor job: one job, one materialization
        (mat,) = materializations(instance, "audit_requirements")
        assert mat.metadata["vendor_job_id"].value == job_id
        assert len(requests_to(sandbox, "/exports/export_data/audit_requirements")) == 1
        assert len(_sensor_runs(instance, "stellic_export_completion")) == 1
        assert run.status == dg.DagsterRunStatus.SUCCESS, _failure(instance, run.run_id)
        assert run.tags["dagster/run_key"] == job_id and run.tags["dagster/partition"] == TODAY
        assert (lake_env / "lake" / "stellic" / "audit_requirements" / f"snapshot_date={TODAY}" / "data.parquet").exists()

        # the discovery sensor added the authorised schools and queued one snapshot run for each
        assert sorted(instance.get_dynamic_partitions(ESTAB_PARTITIONS)) == AUTHORISED
        assert {r.status for r in snapshots} == {dg.DagsterRunStatus.QUEUED}  # held by the test's tag limit


def _failure(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(str(e.user_message)[:600] for e in instance.all_logs(run_id)
                     if (e.dagster_event is not None and e.dagster_event.is_failure) or e.level >= 40)


def _sensor_runs(instance: dg.DagsterInstance, sensor: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": sensor})))


def _submitted(instance: dg.DagsterInstance, runs: list[dg.DagsterRun], schools: list[str]) -> list[dg.DagsterRun]:
    """The runs once they cover exactly ``schools`` and have left NOT_STARTED (the sensor daemon creates a
    run, then submits it to the queue). A run covers one school (its partition) or a range of them."""
    order = instance.get_dynamic_partitions(ESTAB_PARTITIONS)
    covered = []
    for run in runs:
        first = run.tags.get("dagster/asset_partition_range_start", run.tags.get("dagster/partition"))
        last = run.tags.get("dagster/asset_partition_range_end", first)
        covered += order[order.index(first):order.index(last) + 1] if first in order and last in order else [first]
    done = sorted(covered) == schools and all(r.status != dg.DagsterRunStatus.NOT_STARTED for r in runs)
    return runs if done else []


def _runs(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=job)))
