"""What a run costs and checks, whatever launched it: one process per run, batches of schools, checks
evaluated for every landed partition (single partition, range, check-only runs)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import dagster as dg
from dagster._core.storage.event_log.base import PartitionKeyFilter

from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS, batch_tags
from edu_assets_tests.helpers import failure_message, key, materializations, materialize, requests_to

ROOT = Path(__file__).resolve().parents[1]
A, B, C = "3281101", "3281102", "3281104"  # the sandbox register's authorised schools
ENDPOINTS = ["students", "school_info", "agencies_and_agents"]  # snapshot endpoints, one keyed table each
TODAY = dt.datetime.now(dt.UTC).date().isoformat()


def xporter_requests(sandbox) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for r in sandbox.requests:
        if r["path"].startswith("/xporter"):
            path = r["path"]
            probe = "onlyGetDBStatus" in r.get("query", {})  # Xporter's readiness probe before a full load
            kinds["token" if "/idaas/" in path else "register" if "GetXodSchools" in path
                  else "probe" if probe else "data"] += 1
    return kinds


def check_history(instance: dg.DagsterInstance, asset: str, check: str, partition: str | None) -> list:
    return list(instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key(asset), check), limit=10, partition_filter=PartitionKeyFilter(key=partition)))


LAUNCHED = textwrap.dedent("""\
    import json, sys
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
    estab, assets = sys.argv[1], [dg.AssetKey(["xporter", name]) for name in sys.argv[2:]]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ESTAB_PARTITIONS, [estab])
        job = ReconstructableRepository.for_module("edu_assets.definitions", "defs").get_reconstructable_job(
            "xporter_snapshots").get_subset(asset_selection=set(assets))
        result = dg.execute_job(job, instance, tags={"dagster/partition": estab})
        pids = {e.pid for e in result.all_events if e.is_step_start}
        print(json.dumps({"success": result.success, "step_pids": len(pids),
                          "steps": sum(e.is_step_success for e in result.all_events)}))
""")


def test_a_launched_run_runs_its_steps_in_one_process_with_one_token_and_one_register_read(sandbox, lake_env):
    """The real launch path (a reconstructable job through ``execute_job``, in a new process, as a run worker
    does) runs every step in its own process: one token per school, one register read, whatever the step count.
    Dagster's default (a process per step) made a token, a management token and a register read per step."""
    out = subprocess.run([sys.executable, "-c", LAUNCHED, A, *ENDPOINTS], cwd=ROOT, env=os.environ.copy(),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"success": True, "step_pids": 1, "steps": len(ENDPOINTS)}
    # one school token + the management token (for the register), one register read, one request per endpoint
    # (no onlyGetDBStatus probe: the school's data was ready at the first attempt)
    assert xporter_requests(sandbox) == {"token": 2, "register": 1, "data": len(ENDPOINTS)}


def test_a_batch_of_schools_lands_every_school_and_checks_every_partition(defs, instance, sandbox, lake_env):
    sandbox.app("xporter").set_knobs(rows=30)
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [A, B, C])
    selection = [key(f"xporter/{name}") for name in ENDPOINTS]
    from edu_assets.definitions import selection_for

    result = dg.materialize(selection_for(defs, selection), instance=instance, resources=defs.resources,
                            tags=batch_tags([A, B, C]))
    assert result.success
    for name in ENDPOINTS:
        for estab in (A, B, C):
            (mat,) = materializations(instance, f"xporter/{name}", estab)
            assert mat.metadata["dagster/row_count"].value > 0
            # each table's checks are evaluated once per school, in the run that landed it
            for check in ("unique_key", "schema_drift"):
                (execution,) = check_history(instance, f"xporter/{name}", check, estab)
                assert execution.run_id == result.run_id
    assert xporter_requests(sandbox) == {"token": 4, "register": 1, "data": 3 * len(ENDPOINTS)}
    # one summary line per endpoint in the run's log, not one line per school and endpoint
    summaries = [e.user_message for e in instance.all_logs(result.run_id) if "schools landed" in e.user_message]
    assert len(summaries) == len(ENDPOINTS) and all("3 of 3 schools landed" in m for m in summaries)


def test_a_school_that_fails_does_not_stop_the_others_in_its_batch(defs, instance, sandbox, lake_env, monkeypatch):
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "1")
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [A, B, C])
    sandbox.faults.add("server_error", vendor="xporter", match=f"/School/{B}/Students", times=None)
    from edu_assets.definitions import selection_for

    result = dg.materialize(selection_for(defs, [key("xporter/students")]), instance=instance,
                            resources=defs.resources, tags=batch_tags([A, B, C]), raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert f"school {B}" in message and A not in message and C not in message
    assert [bool(materializations(instance, "xporter/students", e)) for e in (A, B, C)] == [True, False, True]


def test_a_range_backfill_in_one_run_checks_every_day(defs, instance, sandbox, lake_env):
    """A single-run backfill yields a materialization per day, not an output: standalone checks were skipped
    ("skipped dependencies"); checks evaluated by the landing step are not."""
    days = ["2026-01-05", "2026-01-06", "2026-01-07"]
    from edu_assets.definitions import selection_for

    result = dg.materialize(selection_for(defs, [key("skillspass/elearning_enrollments")]), instance=instance,
                            resources=defs.resources,
                            tags={"dagster/asset_partition_range_start": days[0],
                                  "dagster/asset_partition_range_end": days[-1]})
    assert result.success
    for day in days:
        (execution,) = check_history(instance, "skillspass/elearning_enrollments", "schema_drift", day)
        assert execution.run_id == result.run_id and execution.status.value == "SUCCEEDED"


def test_a_check_only_run_checks_the_landed_file_without_asking_the_vendor(defs, instance, sandbox, lake_env):
    """The UI's *Execute check* selects a check and not its asset: the landed partition is checked as it is."""
    assert materialize(defs, instance, "audit_data", TODAY).success
    before = len(requests_to(sandbox, "/stellic"))
    from edu_assets.definitions import selection_for

    checks = dg.AssetSelection.checks(dg.AssetCheckKey(key("audit_data"), "non_empty"))
    result = dg.materialize(selection_for(defs, [key("audit_data")]), instance=instance, resources=defs.resources,
                            tags={"dagster/partition": TODAY}, selection=checks)
    assert result.success
    assert materializations(instance, "audit_data", TODAY).__len__() == 1  # nothing landed again
    assert len(requests_to(sandbox, "/stellic")) == before  # and the vendor was not asked
    history = check_history(instance, "audit_data", "non_empty", TODAY)
    landed = instance.fetch_materializations(key("audit_data"), limit=1).records[0].run_id
    assert [h.run_id for h in history] == [result.run_id, landed]


def test_every_job_and_asset_run_executes_in_one_process(defs):
    """Jobs, schedules, sensors and UI launches all use the code location's executor."""
    jobs = list(defs.resolve_all_job_defs())
    assert len(jobs) > 5
    assert {j.name: j.executor_def for j in jobs} == {j.name: dg.in_process_executor for j in jobs}
