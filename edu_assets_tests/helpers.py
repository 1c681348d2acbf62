"""Small helpers for driving real Dagster runs in tests."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from edu_assets.definitions import selection_for
from edu_assets.sandbox import SandboxServer
from edu_assets.sandbox.jobs import Phase


def key(name: str) -> dg.AssetKey:
    """``"audit_data"`` (a Stellic export) or a full ``"xporter/students"`` key."""
    return dg.AssetKey.from_user_string(name) if "/" in name else dg.AssetKey(["stellic", name])


def materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    partition: str | None,
    *,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """Materialize one asset partition with its checks, as a real run on ``instance``."""
    k = key(name)
    selection = selection_for(defs, [k])
    op = next(a.node_def.name for a in selection if isinstance(a, dg.AssetsDefinition))
    run_config = {"ops": {op: {"config": dict(config)}}} if config else {}
    return dg.materialize(
        selection,
        partition_key=partition,
        instance=instance,
        resources=defs.resources,
        run_config=run_config,
        tags=dict(tags or {}),
        raise_on_error=raise_on_error,
    )


def sensor_tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, cursor: str | None = None) -> Any:
    """Evaluate one tick of a sensor from ``defs`` with its resources, as the daemon would."""
    sensor = defs.resolve_sensor_def(name)
    ctx = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources, cursor=cursor)
    return sensor(ctx)


def materializations(instance: dg.DagsterInstance, name: str, partition: str | None = None) -> list[Any]:
    filt = dg.AssetRecordsFilter(asset_key=key(name), asset_partitions=[partition] if partition else None)
    return [r.asset_materialization for r in instance.fetch_materializations(filt, limit=100).records]


def export_observations(instance: dg.DagsterInstance, name: str) -> list[dict[str, Any]]:
    recs = instance.fetch_observations(key(name), limit=100, ascending=True).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in recs]


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a step failure"
    err, messages = failures[0].step_failure_data.error, []
    while err is not None:  # Dagster wraps the user's exception: the vendor message is in the cause
        messages.append(err.message)
        err = err.cause
    return "\n".join(messages)


def query(catalog: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(catalog), read_only=True) as con:
        return con.execute(sql).fetchall()


def requests_to(server: Any, fragment: str) -> list[dict[str, Any]]:
    return [r for r in server.requests if fragment in r["path"]]


def wait_until_jobs_done(app: Any, timeout: float = 60.0) -> None:
    """Poll a sandbox vendor until every one of its export jobs is done (its file written).

    Tests order "the run deferred, then the job finished" with ``app.hold_jobs()`` / ``release_jobs()``,
    then wait here for the released jobs, with a deadline generous enough for a loaded machine.
    """
    deadline = time.monotonic() + timeout
    while any(j.phase() is not Phase.DONE for j in list(app.jobs._jobs.values())):
        assert time.monotonic() < deadline, f"{app.name} sandbox jobs did not finish within {timeout:.0f}s"
        time.sleep(0.05)


def age_job(app: Any, job_id: str, seconds: float) -> None:
    """Move a sandbox job ``seconds`` further into its life: its phases (queued, running, done) follow its
    age, so a test steps a job through them in order by setting its age, never by sleeping."""
    job = app.jobs.get(job_id)
    assert job is not None, f"{app.name} has no job {job_id!r}"
    job.created -= seconds


@contextmanager
def clean_sandbox(server: SandboxServer) -> Iterator[SandboxServer]:
    """A test's view of a shared sandbox: it starts with no faults, requests or jobs, and every app's
    knobs are put back as they were when it ends."""
    knobs = {name: copy.deepcopy(app.knobs()) for name, app in server.apps.items()}
    server.reset()
    try:
        yield server
    finally:
        for name, values in knobs.items():
            server.app(name).set_knobs(**values)
        server.reset()
