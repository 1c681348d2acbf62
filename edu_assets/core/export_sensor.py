"""The completion sensor: notices when deferred vendor exports finish and launches exactly their partition.

A tick does bounded work, because Dagster ends slow ticks at about 60 s: it reads new deferral records
and new materializations (to forget jobs that have landed), then polls pending jobs round-robin until a
time or count budget is spent, keeping the rest for the next tick. A job that is ready, failed or past
its deadline gets one run request whose run key is the vendor job id (Dagster never repeats a run key,
so a vendor job is launched once per deferral); the run resumes that job via the handle in its tags. If
that run defers the same job again (the vendor said "ready", then "running" once more), the new deferral
gets its own run key, ``<job id>@<record>``, so the job is relaunched rather than dropped as a repeat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from edu_assets.core.configured import skip_unless_configured
from edu_assets.core.errors import EduAssetsError, Where
from edu_assets.core.export_records import (
    HANDLE_TAG,
    JOB_ID,
    PARTITION_RANGE,
    STARTED,
    STATE,
    deferred_handles,
    landed_job_ids,
)
from edu_assets.core.exports import AsyncExportAPI, ExportHandle, JobState
from edu_assets.core.redact import redact
from edu_assets.core.settings import ExportSettings, VendorMode

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
LAUNCHED_MEMORY = 5000  # launched jobs remembered for relaunch keys; a landed job is forgotten at once


@dataclass
class SensorState:
    """The sensor cursor: storage-id watermarks per asset, pending handles, round-robin offset."""

    observed: dict[str, int] = field(default_factory=dict)
    materialized: dict[str, int] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    offset: int = 0
    # job id -> storage id of its newest deferral record; kept after launch (until the job lands) so a
    # second deferral of the same job gets a run key of its own
    deferred_at: dict[str, int] = field(default_factory=dict)
    launched: dict[str, int] = field(default_factory=dict)

    def run_key(self, job_id: str) -> str:
        """The vendor job id for its first launch; ``<job id>@<deferral record>`` for a relaunch."""
        record = self.deferred_at.get(job_id, 0)
        previous = self.launched.get(job_id)
        self.launched[job_id] = record
        if len(self.launched) > LAUNCHED_MEMORY:  # oldest first (dicts keep insertion order)
            del self.launched[next(iter(self.launched))]
        return job_id if previous is None else f"{job_id}@{record}"

    def forget(self, job_id: str) -> None:
        for book in (self.pending, self.deferred_at, self.launched):
            book.pop(job_id, None)

    @classmethod
    def load(cls, cursor: str | None) -> SensorState:
        return cls(**json.loads(cursor)) if cursor else cls()

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def build_export_completion_sensor(
    *,
    name: str,
    vendor: str,
    asset_keys: Sequence[dg.AssetKey],
    resource_key: str,
    mode: Callable[[], VendorMode],
    api_factory: Callable[[dg.SensorEvaluationContext], AsyncExportAPI] | None = None,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """Build the completion sensor for one vendor's async-export assets.

    The vendor's API comes from ``api_factory(context)``, by default ``<resource>.client(context.log)`` of the
    resource named ``resource_key``. The per-tick budget (seconds and polls) comes from ``ExportSettings``
    at tick time. While ``mode()`` says the vendor cannot be used, ticks skip (see ``core/configured.py``).
    """
    if api_factory is None:
        def api_factory(context: dg.SensorEvaluationContext) -> AsyncExportAPI:
            return getattr(context.resources, resource_key).client(context.log)

    @dg.sensor(
        name=name,
        asset_selection=list(asset_keys),
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={resource_key},
        default_status=default_status,
        description=(
            f"Polls {vendor} export jobs that outlived their run's inline wait and launches a run for exactly "
            "that partition when the job is ready (run key = vendor job id, so a job lands once)."
        ),
    )
    @skip_unless_configured(mode)
    def _sensor(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult:
        # Direct invocation passes required resources as keywords; the factory reads them from context.
        state = SensorState.load(context.cursor)
        for key in asset_keys:
            skey = key.to_user_string()
            for storage_id, handle in deferred_handles(context.instance, key, state.observed.get(skey, 0)):
                state.observed[skey] = storage_id
                if handle is not None:
                    state.pending[handle.job_id] = handle.to_json()
                    state.deferred_at[handle.job_id] = storage_id
            newest, landed = landed_job_ids(context.instance, key, state.materialized.get(skey, 0))
            state.materialized[skey] = newest
            for job_id in landed:
                state.forget(job_id)

        settings = ExportSettings.from_env()
        api = api_factory(context) if state.pending else None
        order = sorted(state.pending)
        if order:
            start = state.offset % len(order)
            order = order[start:] + order[:start]
        started = time.monotonic()
        requests: list[dg.RunRequest] = []
        polls = 0
        for job_id in order:
            if polls >= settings.sensor_max_polls_per_tick or (
                time.monotonic() - started > settings.sensor_tick_budget_seconds
            ):
                context.log.info(f"{vendor}: tick budget spent; {len(order) - polls} job(s) left for the next tick")
                break
            handle = ExportHandle.from_json(state.pending[job_id])
            where = Where(vendor, handle.asset_key, handle.partition_key)
            polls += 1
            if handle.age() > settings.deadline_seconds:
                outcome = "past its deadline"
            else:
                try:
                    status = api.poll(handle, where)  # type: ignore[union-attr]
                except EduAssetsError as exc:
                    context.log.warning(f"{where}: could not poll job {job_id} ({exc}); will retry next tick")
                    continue
                except Exception as exc:  # network trouble must not kill the tick
                    context.log.warning(f"{where}: could not poll job {job_id} ({redact(exc)}); will retry next tick")
                    continue
                if status.state is JobState.PENDING:
                    continue
                outcome = status.state.value
            owner = _live_owner(context.instance, handle)
            if owner is not None:  # e.g. a backfill's run resumed it: it lands the job; stays pending meanwhile
                context.log.info(f"{where}: vendor job {job_id} is {outcome}; run {owner} is waiting on it")
                continue
            context.log.info(f"{where}: vendor job {job_id} is {outcome}; launching a run for that partition")
            tags = {HANDLE_TAG: handle.to_json(), "edu/vendor": vendor, "edu/trigger": name}
            partition_key = handle.partition_key
            span = handle.details.get(PARTITION_RANGE)
            if span and span[0] != span[1]:  # one job covering several partitions: relaunch them as one range
                tags.update({RANGE_START_TAG: span[0], RANGE_END_TAG: span[1]})
                partition_key = None
            requests.append(
                dg.RunRequest(
                    run_key=state.run_key(job_id),
                    asset_selection=[dg.AssetKey.from_user_string(handle.asset_key)],
                    partition_key=partition_key,
                    tags=tags,
                )
            )
            del state.pending[job_id]
            state.deferred_at.pop(job_id, None)
        state.offset += polls
        return dg.SensorResult(run_requests=requests, cursor=state.dump())

    return _sensor


def _live_owner(instance: dg.DagsterInstance, handle: ExportHandle) -> str | None:
    """The unfinished run that last picked up this vendor job, if any.

    A run that resumes a deferred job records it as ``started`` again; while that run is alive a second run
    for the job would land it twice, so the sensor launches none (it does once the run has ended without
    landing the job, e.g. deferred it again).
    """
    filt = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey.from_user_string(handle.asset_key),
        asset_partitions=[handle.partition_key] if handle.partition_key is not None else None,
    )
    for rec in instance.fetch_observations(filt, limit=20).records:  # newest first
        obs = rec.asset_observation
        if obs is None or JOB_ID not in obs.metadata or str(obs.metadata[JOB_ID].value) != handle.job_id:
            continue
        if obs.metadata[STATE].value != STARTED:
            return None
        run = instance.get_run_by_id(rec.run_id)
        return rec.run_id if run is not None and not run.is_finished else None
    return None
