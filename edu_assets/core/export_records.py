"""Durable records of vendor export jobs, kept as asset observations in the Dagster instance.

An observation on the asset partition is written the moment a vendor job starts (``started``), when a
run hands it to the sensor (``deferred``) and when it ends badly (``failed``/``abandoned``). Because they
live in the instance (SQLite locally, PostgreSQL in production) they survive crashed runs and restarts,
they show up on the asset's page in the UI, and a later run of the same partition finds the job there
and resumes it instead of starting a second one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from edu_assets.core.exports import ExportHandle

STATE = "edu/export_state"
HANDLE = "edu/export_handle"
JOB_ID = "vendor_job_id"
HANDLE_TAG = "edu/export_handle"
PARTITION_RANGE = "partition_range"  # ExportHandle.details: [first, last] Dagster partition one job covers

STARTED, DEFERRED, FAILED, ABANDONED = "started", "deferred", "failed", "abandoned"
RESUMABLE = {STARTED, DEFERRED}


def record(context: dg.AssetExecutionContext, handle: ExportHandle, state: str, **extra: str | float) -> None:
    """Write one export-state observation on the handle's own partition (a run may cover several)."""
    metadata: dict[str, dg.RawMetadataValue] = {STATE: state, JOB_ID: handle.job_id, HANDLE: handle.to_json()}
    metadata.update(extra)
    context.log_event(
        dg.AssetObservation(
            asset_key=dg.AssetKey.from_user_string(handle.asset_key), partition=handle.partition_key, metadata=metadata
        )
    )


def tagged_handle(context: dg.AssetExecutionContext) -> ExportHandle | None:
    """The vendor job the completion sensor launched this run for, if it did."""
    tagged = context.run.tags.get(HANDLE_TAG)
    return ExportHandle.from_json(tagged) if tagged else None


def resumable_handle(
    context: dg.AssetExecutionContext, partition: str | None, span: list[str] | None = None
) -> ExportHandle | None:
    """The vendor job this run should resume for ``partition``, if any.

    The completion sensor passes the handle as a run tag. Otherwise the latest export observation of this
    partition is used when it is newer than the partition's latest materialization and the job did not
    end badly: a re-run after a crash or a deferral picks the job up again. ``span`` is the range of
    partitions a job must cover to be resumed (a job for another window is not this request's job).
    """
    def fits(handle: ExportHandle) -> bool:
        covered = handle.details.get(PARTITION_RANGE)
        covered = None if not covered or covered[0] == covered[-1] else list(covered)
        return handle.partition_key == partition and covered == span

    tagged = tagged_handle(context)
    if tagged is not None and fits(tagged):
        return tagged
    instance = context.instance
    filt = dg.AssetRecordsFilter(
        asset_key=context.asset_key, asset_partitions=[partition] if partition is not None else None
    )
    for rec in instance.fetch_observations(filt, limit=20).records:
        obs = rec.asset_observation
        if obs is None or STATE not in obs.metadata:
            continue
        state = obs.metadata[STATE].value
        if state not in RESUMABLE:
            return None
        mats = instance.fetch_materializations(filt, limit=1).records
        if mats and mats[0].storage_id > rec.storage_id:
            return None
        handle = ExportHandle.from_json(str(obs.metadata[HANDLE].value))
        return handle if fits(handle) else None
    return None


def records_after(
    fetch: Callable[..., Any], asset_key: dg.AssetKey, after_storage_id: int | None, page_size: int = 500,
) -> Iterator[Any]:
    """Every event record of one asset after a storage id, oldest first, read page by page.

    ``fetch`` is ``instance.fetch_materializations`` or ``instance.fetch_observations``. A sensor's cursor
    is the last storage id it saw: reading every page (not just the first) keeps it from skipping records
    when more than a page arrived between two ticks."""
    cursor: str | None = None
    while True:
        result = fetch(dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=after_storage_id),
                       limit=page_size, cursor=cursor, ascending=True)
        yield from result.records
        if not result.has_more:
            return
        cursor = result.cursor


def deferred_handles(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, after_storage_id: int
) -> Iterator[tuple[int, ExportHandle | None]]:
    """Observations of one asset after a storage id, oldest first, with the handle when it is a deferral."""
    for rec in records_after(instance.fetch_observations, asset_key, after_storage_id):
        obs = rec.asset_observation
        if obs is not None and obs.metadata.get(STATE) and obs.metadata[STATE].value == DEFERRED:
            yield rec.storage_id, ExportHandle.from_json(str(obs.metadata[HANDLE].value))
        else:
            yield rec.storage_id, None


def landed_job_ids(instance: dg.DagsterInstance, asset_key: dg.AssetKey, after_storage_id: int) -> tuple[int, set[str]]:
    """Vendor job ids landed by materializations after a storage id, and the newest storage id seen."""
    newest = after_storage_id
    ids: set[str] = set()
    for rec in records_after(instance.fetch_materializations, asset_key, after_storage_id):
        newest = max(newest, rec.storage_id)
        mat = rec.asset_materialization
        if mat is not None and JOB_ID in mat.metadata:
            ids.add(str(mat.metadata[JOB_ID].value))
    return newest, ids
