"""The body of every export asset: resume or start vendor exports, wait or defer, download, land, catalog.

Vendor factories build one :class:`ExportRequest` per partition (its :class:`PartitionId`, path,
parameters, how to land the file) and call :func:`materialize_exports`; nothing here knows any vendor. A
landed partition is published (views, metadata, result, checks) by :func:`edu_assets.core.publish.publish`.

A run may cover several partitions (a single-run backfill): every partition's vendor job is started up
front, the jobs are polled together, each partition is landed the moment its file is ready (while its
download URL is fresh), jobs still running when the inline budget is spent are handed to the completion
sensor one partition at a time, and a failed job fails the run only after every other partition is safe.
A run of a backfill never defers: it waits for its jobs up to the export deadline (see ``_inline_budget``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from edu_assets.core import export_records as records
from edu_assets.core import workdir
from edu_assets.core.catalog import Catalog, ViewSpec
from edu_assets.core.checks import DatasetChecks
from edu_assets.core.errors import (
    EduAssetsError,
    ExportDeadlineExceeded,
    LandingError,
    VendorJobFailed,
    Where,
)
from edu_assets.core.exports import AsyncExportAPI, ExportHandle, ExportLifecycle, JobStatus
from edu_assets.core.http import Downloaded
from edu_assets.core.lake import Lake
from edu_assets.core.naming import safe_name
from edu_assets.core.partition import PartitionId
from edu_assets.core.publish import LandedTable, Publication, publish
from edu_assets.core.resources import LakeResource
from edu_assets.core.settings import ExportSettings

BACKFILL_TAG = "dagster/backfill"  # on every run a backfill launches


@dataclass
class Landing:
    """What a vendor's landing step receives."""

    request: ExportRequest
    lake: Lake
    downloaded: Downloaded | None  # None: the job finished with nothing to download (an empty export)
    status: JobStatus | None  # None for a synchronous export


Lander = Callable[[Landing], list[LandedTable]]


class Closeable(Protocol):
    def close(self) -> None: ...


def land_csv_file(landing: Landing) -> list[LandedTable]:
    """The default landing: the file is one CSV, landed as the request's own dataset and partition.

    An export that finished with no file lands an empty partition with the documented columns.
    """
    r = landing.request
    if landing.downloaded is None:
        return [LandedTable(r.pid.dataset, landing.lake.land_empty(r.where, r.pid, expected_columns=r.expected_columns))]
    landed = landing.lake.land_csv(
        landing.downloaded.path, r.where, r.pid, encoding=r.encoding, expected_columns=r.expected_columns,
    )
    return [LandedTable(r.pid.dataset, landed)]


@dataclass
class ExportRequest:
    """One partition's worth of export, as built by a vendor factory."""

    pid: PartitionId  # the lake partition it lands (vendor, dataset, dimensions), e.g. snapshot_date=2026-11-01
    api: AsyncExportAPI
    start: Callable[[Path], Downloaded | ExportHandle]
    where: Where = None  # type: ignore[assignment]  # how errors and logs name it; default: the pid's
    partition_key: str | None = None  # the Dagster partition its vendor job is recorded on
    covers: Sequence[str] = ()  # every Dagster partition it lands (a window of several days); default: partition_key
    encoding: str = "utf-8"
    expected_columns: Sequence[str] | None = None
    views: Sequence[ViewSpec] = ()  # the vendor's view declarations (its views()): each landed table gets its own
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    land: Lander = land_csv_file
    suffix: str = ".csv"  # of the staged raw download
    checks: DatasetChecks | None = None  # evaluated on the first landed table, for every partition it covers

    def __post_init__(self) -> None:
        if self.where is None:
            self.where = self.pid.where


@dataclass
class _Started:
    """A request after its start: a vendor job to wait for (``handle``) or, synchronous, its file."""

    request: ExportRequest
    handle: ExportHandle | None = None
    downloaded: Downloaded | None = None
    t0: float = field(default_factory=time.monotonic)


def materialize_export(
    context: dg.AssetExecutionContext,
    request: ExportRequest,
    *,
    lake: Lake,
    catalog: Catalog,
    inline_wait_seconds: float | None = None,
    settings: ExportSettings | None = None,
) -> Iterator[dg.MaterializeResult]:
    """One partition (or an unpartitioned asset): yield its materialization, or nothing when deferred."""
    yield from materialize_exports(  # type: ignore[misc]
        context, [request], lake=lake, catalog=catalog, inline_wait_seconds=inline_wait_seconds, settings=settings
    )


def land_and_close(
    context: dg.AssetExecutionContext,
    requests: Sequence[ExportRequest],
    session: Closeable,
    lake: LakeResource,
    inline_wait_seconds: float | None,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
    """The last step of every export asset's body: land ``requests`` into the resource's lake and catalog,
    then close the vendor session the requests were made with, whether the landing succeeded or not."""
    try:
        yield from materialize_exports(
            context, requests, lake=lake.lake(), catalog=lake.catalog(), inline_wait_seconds=inline_wait_seconds
        )
    finally:
        session.close()


def materialize_exports(
    context: dg.AssetExecutionContext,
    requests: Sequence[ExportRequest],
    *,
    lake: Lake,
    catalog: Catalog,
    inline_wait_seconds: float | None = None,
    settings: ExportSettings | None = None,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
    """Land every request's partition; a single request yields a ``MaterializeResult`` (the asset's output,
    for downstream assets), several yield one ``AssetMaterialization`` per partition. Either way each
    landed partition's checks are evaluated right after it lands."""
    log = context.log
    settings = settings or ExportSettings.from_env()
    lifecycle = ExportLifecycle(requests[0].api, log, settings) if requests else None
    single = sum(len(_covered(r)) for r in requests) <= 1  # one partition: an output, for downstream assets
    started: dict[str, _Started] = {}
    failures: list[EduAssetsError] = []
    workdir.for_run(lake.settings, context).sweep_all()  # at most hourly: the work directory stays bounded

    for request in requests:
        s = _start(context, request, lake)
        if s.downloaded is not None:
            yield from _land(context, s, s.downloaded, None, lake, catalog, single)
        else:
            assert s.handle is not None
            started[s.handle.job_id] = s
    if not started:
        return
    assert lifecycle is not None
    if len(started) > 1:
        log.info(f"{requests[0].pid.vendor}: waiting for {len(started)} vendor jobs together")
    budget = _inline_budget(context, requests[0].pid.vendor, len(started), inline_wait_seconds, settings)
    for waited in lifecycle.wait_all([(s.handle, s.request.where) for s in started.values()], budget):
        s = started[waited.handle.job_id]
        if waited.error is not None:
            state = records.ABANDONED if isinstance(waited.error, ExportDeadlineExceeded) else records.FAILED
            records.record(context, waited.handle, state)
            failures.append(waited.error)
            continue
        if waited.status is None:
            records.record(context, waited.handle, records.DEFERRED, waited_seconds=round(waited.waited_seconds, 2))
            log.warning(
                f"{waited.where}: vendor job {waited.handle.job_id} is still running; no materialization for this "
                "partition now: the completion sensor will launch a run for it when the export is ready"
            )
            continue
        downloaded: Downloaded | None = None
        if waited.status.has_file:
            dest = lake.work_path(s.request.pid, workdir.attempt_name(context.run_id, s.request.suffix,
                                                                      safe_name(waited.handle.job_id)))
            downloaded = lifecycle.fetch(waited.handle, waited.status, dest, waited.where)
        else:
            log.info(f"{waited.where}: vendor job {waited.handle.job_id} finished with nothing to export "
                     f"({waited.status.vendor_status!r}); landing an empty partition")
        yield from _land(context, s, downloaded, waited.status, lake, catalog, single)

    if failures:
        if len(failures) == 1:
            raise failures[0]
        raise VendorJobFailed(
            Where(requests[0].pid.vendor, requests[0].pid.dataset),
            f"{len(failures)} of {len(requests)} partitions failed (the others landed): "
            + "; ".join(str(f) for f in failures[:5]),
        )


def _inline_budget(
    context: dg.AssetExecutionContext, vendor: str, jobs: int, inline_wait_seconds: float | None,
    settings: ExportSettings,
) -> float | None:
    """How long this run waits for its vendor jobs before deferring the rest to the completion sensor.

    A run of a backfill (tag ``dagster/backfill``) never defers: Dagster counts a backfill's partitions only
    from materializations by the backfill's own runs, and fails the backfill once none of its runs is
    unfinished, so a partition landed later by a sensor-launched run would leave it red forever. It polls
    (same capped backoff) until its jobs finish or pass the export deadline.
    """
    backfill = context.run.tags.get(BACKFILL_TAG)
    if not backfill:
        return inline_wait_seconds
    inline = settings.inline_wait_seconds if inline_wait_seconds is None else inline_wait_seconds
    context.log.info(
        f"[{vendor}] this run belongs to backfill {backfill}: it waits for its {jobs} vendor job(s) beyond the "
        f"{inline:g}s inline wait, up to the export deadline ({settings.deadline_seconds / 3600:g} h), instead of "
        "deferring them: a backfill counts only the partitions its own runs land"
    )
    return math.inf


def _start(context: dg.AssetExecutionContext, request: ExportRequest, lake: Lake) -> _Started:
    """Resume this partition's vendor job if one is on record, else ask the vendor for a new one."""
    log, where = context.log, request.where
    workdir.for_run(lake.settings, context).sweep(lake.work_dir(request.pid))
    covers = list(request.covers)
    span = [covers[0], covers[-1]] if len(covers) > 1 else None
    handle = records.resumable_handle(context, request.partition_key, span)
    if handle is not None:
        log.info(f"{where}: resuming vendor job {handle.job_id} started {handle.age() / 60:.1f} min ago")
        records.record(context, handle, records.STARTED)  # this run waits on it now: the sensor leaves it alone
        return _Started(request, handle=handle)
    log.info(f"{where}: requesting export")
    got = request.start(lake.work_path(request.pid, workdir.attempt_name(context.run_id, request.suffix)))
    if isinstance(got, ExportHandle):
        records.record(context, got, records.STARTED)
        log.info(f"{where}: vendor started asynchronous job {got.job_id}")
        return _Started(request, handle=got)
    return _Started(request, downloaded=got)


def _land(
    context: dg.AssetExecutionContext,
    s: _Started,
    downloaded: Downloaded | None,
    status: JobStatus | None,
    lake: Lake,
    catalog: Catalog,
    single: bool,
) -> Iterator[Any]:
    request, log, where = s.request, context.log, s.request.where
    if downloaded is not None:
        log.info(f"{where}: downloaded {downloaded.bytes:,} bytes in {downloaded.seconds:.1f}s; landing as Parquet")
    land_started = time.monotonic()
    try:
        tables = request.land(Landing(request, lake, downloaded, status))
    except LandingError as exc:  # its raw file is kept for inspection, for the work retention
        raise workdir.kept_for_inspection(exc, lake.settings).with_traceback(exc.__traceback__) from None
    land_seconds = round(time.monotonic() - land_started, 3)
    for t in tables:
        log.info(f"{where}: landed {t.landed.rows:,} rows, {len(t.landed.columns)} columns at {t.landed.path}")
        if t.landed.missing_columns or t.landed.unexpected_columns:
            log.warning(
                f"{where}: {t.dataset} columns differ from the catalog (missing: {t.landed.missing_columns or '-'}, "
                f"unexpected: {t.landed.unexpected_columns or '-'}); landed as received"
            )
    extra: dict[str, Any] = {**request.extra_metadata, "land_seconds": land_seconds,
                             "run_seconds": round(time.monotonic() - s.t0, 2)}
    if status is not None:  # the vendor's own word for the finished job (which spelling was seen)
        extra.setdefault("vendor_status", status.vendor_status)
    if status is not None and status.warnings:
        extra["vendor_warnings"] = dg.MetadataValue.text("\n".join(status.warnings))
    yield from publish(context, lake, catalog, request.pid.vendor, [Publication(
        tables, _covered(request), output=single, downloaded=downloaded,
        vendor_job_id=s.handle.job_id if s.handle else None,
        waited_seconds=s.handle.age() if s.handle else None, extra=extra, checks=request.checks,
    )], request.views)


def _covered(request: ExportRequest) -> list[str | None]:
    return list(request.covers) or [request.partition_key]
