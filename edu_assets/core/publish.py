"""Publishing landed partitions: views → metadata → result → checks, the same way for every asset.

Every landing ends the same way: the dataset's DuckDB views must exist (the vendor's ``views()``
declarations, :class:`~edu_assets.core.catalog.ViewSpec`), the materialization carries the landed file's
metadata (:func:`~edu_assets.core.metadata.landed_metadata`), the step reports an output (a single
partition, for downstream assets) or one event per partition it covers (several), and each landed
partition's checks are evaluated right after it (:mod:`edu_assets.core.checks`). Written once here, so an
export, a paged endpoint, a monitoring asset and a register publish alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from edu_assets.core.catalog import Catalog, ViewSpec
from edu_assets.core.checks import DatasetChecks
from edu_assets.core.http import Downloaded
from edu_assets.core.lake import Lake, Landed
from edu_assets.core.metadata import landed_metadata, markdown_table

Event = dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckEvaluation


@dataclass
class LandedTable:
    dataset: str  # dataset directory and DuckDB view name under the vendor's schema
    landed: Landed


@dataclass
class Publication:
    """One landing to report: its tables (the first is the asset's own: its metadata, its checks), the
    Dagster partitions it lands, and what the landing step knows besides the files."""

    tables: Sequence[LandedTable]
    partition_keys: Sequence[str | None] = (None,)  # every Dagster partition the landing covers
    output: bool = True  # the step's output (a single partition: downstream assets get it), else events
    asset_key: dg.AssetKey | None = None  # None: the step's own asset
    downloaded: Downloaded | None = None
    vendor_job_id: str | None = None
    waited_seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # the site's own metadata (wins over the landed file's)
    checks: DatasetChecks | None = None  # evaluated on the first table, for every partition it covers


def publish(
    context: dg.AssetExecutionContext,
    lake: Lake,
    catalog: Catalog,
    vendor: str,
    publications: Sequence[Publication],
    views: Sequence[ViewSpec],
) -> list[Event]:
    """The events of ``publications`` (results or materializations, each followed by its checks), after
    the views of every dataset they landed exist: declared in one catalog call, however many landings."""
    datasets = list(dict.fromkeys(t.dataset for p in publications for t in p.tables))
    if datasets:
        shortened = any(t.landed.full_key_columns for p in publications for t in p.tables)
        catalog.ensure_views(vendor, datasets, views, log=context.log, force=shortened)
    events: list[Event] = []
    for p in publications:
        events.extend(_events(context, lake, vendor, p))
    return events


def _events(context: dg.AssetExecutionContext, lake: Lake, vendor: str, p: Publication) -> list[Event]:
    first = p.tables[0].landed
    extra = dict(p.extra)
    if len(p.tables) > 1:  # one landing, several datasets (a zip of CSVs): each one's size at a glance
        extra["tables"] = dg.MetadataValue.md(markdown_table(
            ["table", "rows", "columns"],
            ([f"{vendor}.{t.dataset}", f"{t.landed.rows:,}", str(len(t.landed.columns))] for t in p.tables)))
    metadata = landed_metadata(first, downloaded=p.downloaded, vendor_job_id=p.vendor_job_id,
                               waited_seconds=p.waited_seconds, extra=extra)
    if len(p.tables) > 1:
        metadata["dagster/row_count"] = sum(t.landed.rows for t in p.tables)
    events: list[Event] = []
    if p.output:
        events.append(dg.MaterializeResult(asset_key=p.asset_key, metadata=metadata))
    else:
        asset_key = p.asset_key or context.asset_key
        events += [dg.AssetMaterialization(asset_key=asset_key, partition=key, metadata=metadata)
                   for key in p.partition_keys]
    if p.checks is not None:
        for key in p.partition_keys:
            events.extend(p.checks.evaluate(lake, first.path, key, context.selected_asset_check_keys))
    return events
