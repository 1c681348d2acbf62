"""The body of every export asset: resume or start a vendor export, wait or defer, download, land, catalog.

Vendor factories build the request (path, parameters, partition → directory) and call
:func:`materialize_export`; nothing here knows any vendor.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from edu_assets.core import export_records as records
from edu_assets.core.catalog import Catalog
from edu_assets.core.errors import ExportDeadlineExceeded, VendorJobFailed, Where
from edu_assets.core.exports import AsyncExportAPI, ExportHandle, ExportLifecycle
from edu_assets.core.http import Downloaded
from edu_assets.core.lake import Lake
from edu_assets.core.metadata import landed_metadata
from edu_assets.core.naming import safe_name
from edu_assets.core.settings import ExportSettings


@dataclass
class ExportRequest:
    """One materialization's worth of export, as built by a vendor factory."""

    vendor: str
    asset: str
    where: Where
    partition: Mapping[str, str]
    api: AsyncExportAPI
    start: Callable[[Path], Downloaded | ExportHandle]
    encoding: str = "utf-8"
    expected_columns: Sequence[str] | None = None
    latest_by: str | None = None
    extra_metadata: dict[str, object] = field(default_factory=dict)


def materialize_export(
    context: dg.AssetExecutionContext,
    request: ExportRequest,
    *,
    lake: Lake,
    catalog: Catalog,
    inline_wait_seconds: float | None = None,
    settings: ExportSettings | None = None,
) -> Iterator[dg.MaterializeResult]:
    """Yield one materialization, or nothing when the vendor job is handed to the completion sensor."""
    log = context.log
    settings = settings or ExportSettings.from_env()
    where = request.where
    lifecycle = ExportLifecycle(request.api, where, log, settings)
    handle = records.resumable_handle(context)
    job_id: str | None = None
    waited: float | None = None
    t0 = time.monotonic()
    if handle is not None:
        log.info(f"{where}: resuming vendor job {handle.job_id} started {handle.age() / 60:.1f} min ago")
        downloaded_or_handle: Downloaded | ExportHandle = handle
    else:
        log.info(f"{where}: requesting export")
        downloaded_or_handle = request.start(lake.work_path(request.vendor, request.asset, request.partition, f"{uuid.uuid4().hex}.csv"))
        if isinstance(downloaded_or_handle, ExportHandle):
            handle = downloaded_or_handle
            records.record(context, handle, records.STARTED)
            log.info(f"{where}: vendor started asynchronous job {handle.job_id}")

    if isinstance(downloaded_or_handle, Downloaded):
        downloaded = downloaded_or_handle
    else:
        assert handle is not None
        job_id = handle.job_id
        try:
            outcome = lifecycle.wait(handle, inline_wait_seconds)
        except VendorJobFailed:
            records.record(context, handle, records.FAILED)
            raise
        except ExportDeadlineExceeded:
            records.record(context, handle, records.ABANDONED)
            raise
        if outcome.status is None:
            records.record(context, handle, records.DEFERRED, waited_seconds=round(outcome.waited_seconds, 2))
            log.warning(
                f"{where}: vendor job {handle.job_id} is still running; this run ends without a materialization "
                "and the completion sensor will launch a run for this partition when the export is ready"
            )
            return
        waited = handle.age()
        dest = lake.work_path(request.vendor, request.asset, request.partition, f"{safe_name(handle.job_id)}.csv")
        downloaded = lifecycle.fetch(handle, outcome.status, dest)

    log.info(f"{where}: downloaded {downloaded.bytes:,} bytes in {downloaded.seconds:.1f}s; landing as Parquet")
    land_started = time.monotonic()
    landed = lake.land_csv(
        downloaded.path,
        where,
        request.vendor,
        request.asset,
        request.partition,
        encoding=request.encoding,
        expected_columns=request.expected_columns,
    )
    land_seconds = round(time.monotonic() - land_started, 3)
    log.info(f"{where}: landed {landed.rows:,} rows, {len(landed.columns)} columns at {landed.path}")
    if landed.missing_columns or landed.unexpected_columns:
        log.warning(
            f"{where}: columns differ from the catalog (missing: {landed.missing_columns or '-'}, "
            f"unexpected: {landed.unexpected_columns or '-'}); landed as received"
        )
    catalog.ensure_view(request.vendor, request.asset, latest_by=request.latest_by, log=log)
    yield dg.MaterializeResult(
        metadata=landed_metadata(
            landed,
            downloaded=downloaded,
            vendor_job_id=job_id,
            waited_seconds=waited,
            extra={**request.extra_metadata, "land_seconds": land_seconds, "run_seconds": round(time.monotonic() - t0, 2)},
        )
    )
