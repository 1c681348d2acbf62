"""Sensors under the real ``dagster-daemon``, not ``build_sensor_context``.

The daemon runs the code location in its own gRPC server process, ticks the sensors on its own schedule,
queues what they request through the run coordinator, and launches each run in yet another process. That
is the path a deferred export takes in production, so it is tested end to end once here:

* a Stellic export deferred by an in-process run is finished by the completion sensor: the daemon
  launches a run that resumes the vendor job (never a second one) and lands the partition;
* the Xporter discovery sensor adds the authorised schools as ``estab`` partitions and queues one
  snapshot run per school (held in the queue by a tag limit, so the test does not load 60 endpoints).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
from edu_assets_tests.helpers import export_observations, materializations, materialize, requests_to

ROOT = Path(__file__).resolve().parents[1]
TODAY = dt.datetime.now(dt.UTC).date().isoformat()
DAEMON = Path(sys.executable).with_name("dagster-daemon")
AUTHORISED = ["3281101", "3281102", "3281104"]  # the sandbox register's authorised schools


@pytest.fixture
def daemon_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(textwrap.dedent("""\
        concurrency:
          runs:
            max_concurrent_runs: 2
            tag_concurrency_limits:
              - key: edu/vendor
                value: xporter
                limit: 0
        telemetry:
          enabled: false
    """))
    (tmp_path / "workspace.yaml").write_text(textwrap.dedent(f"""\
        load_from:
          - python_module:
              module_name: edu_assets_tests.daemon_location
              attribute: defs
              location_name: edu_assets_daemon_test
              working_directory: {ROOT}
    """))
    return home


@pytest.mark.skipif(not DAEMON.exists(), reason="dagster-daemon is not installed next to this interpreter")
def test_daemon_finishes_a_deferred_export_and_discovers_schools(daemon_home, sandbox, lake_env):
    from edu_assets_tests.daemon_location import defs

    sandbox.app("stellic").set_knobs(async_ready_after=2.0)
    instance = dg.DagsterInstance.from_config(str(daemon_home))
    try:
        assert materialize(defs, instance, "audit_requirements", TODAY, config={"inline_wait_seconds": 0.2}).success
        assert materializations(instance, "audit_requirements") == []  # deferred: the vendor job is running
        job_id = export_observations(instance, "audit_requirements")[-1]["vendor_job_id"]

        log = open(daemon_home / "daemon.log", "w")  # noqa: SIM115 - closed below
        daemon = subprocess.Popen(
            [str(DAEMON), "run", "-w", str(daemon_home.parent / "workspace.yaml")],
            cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(daemon_home)}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            (run,) = _wait_for(lambda: [r for r in _sensor_runs(instance, "stellic_export_completion") if r.is_finished],
                               150, daemon_home)
            snapshots = _wait_for(lambda: _submitted(_runs(instance, "xporter_snapshots"), len(AUTHORISED)),
                                  60, daemon_home)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
            log.close()

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
        assert sorted(r.tags["dagster/partition"] for r in snapshots) == AUTHORISED
        assert {r.status for r in snapshots} == {dg.DagsterRunStatus.QUEUED}  # held by the test's tag limit
    finally:
        instance.dispose()


def _failure(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(str(e.user_message)[:600] for e in instance.all_logs(run_id)
                     if (e.dagster_event is not None and e.dagster_event.is_failure) or e.level >= 40)


def _sensor_runs(instance: dg.DagsterInstance, sensor: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": sensor})))


def _submitted(runs: list[dg.DagsterRun], expected: int) -> list[dg.DagsterRun]:
    """The runs once all ``expected`` of them exist and have left NOT_STARTED (the sensor daemon creates a
    run, then submits it to the queue)."""
    done = len(runs) >= expected and all(r.status != dg.DagsterRunStatus.NOT_STARTED for r in runs)
    return runs if done else []


def _runs(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=job)))


def _wait_for(probe, timeout: float, home: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(1.0)
    log = (home / "daemon.log").read_text()[-4000:] if (home / "daemon.log").exists() else ""
    raise AssertionError(f"the daemon did not get there within {timeout:.0f}s; its log ends:\n{log}")
