"""Asset factory: every entry of ``catalog.yaml`` becomes one partitioned Stellic asset.

All assets share one body (:func:`edu_assets.core.export_asset.land_and_close`); the factory only
binds the entry's path, parameters and partitioning.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from edu_assets.core.catalog import ViewSpec
from edu_assets.core.checks import DatasetChecks, landing_asset
from edu_assets.core.errors import ConfigError
from edu_assets.core.export_asset import ExportRequest, land_and_close
from edu_assets.core.lake import Lake
from edu_assets.core.partition import PartitionId
from edu_assets.core.resources import LakeResource
from edu_assets.vendors.stellic.catalog import ExportSpec, build_query, load_catalog, load_partner_reads
from edu_assets.vendors.stellic.client import VENDOR, StellicClient
from edu_assets.vendors.stellic.partitions import PARTITIONINGS, check_snapshot_date
from edu_assets.vendors.stellic.resources import StellicResource

GROUP = "stellic"
POOL = "stellic"
CHANNELS = ("auto", "http_file", "s3")


class StellicExportConfig(dg.Config):
    """Run config of every Stellic export asset."""

    params: dict[str, Any] = {}
    delivery_channel: str = "auto"  # auto: let Stellic decide; http_file: force sync; s3: force async
    inline_wait_seconds: float | None = None  # how long to wait for an async export before deferring
    allow_past_snapshot: bool = False


def asset_key(spec: ExportSpec) -> dg.AssetKey:
    return dg.AssetKey([VENDOR, spec.name])


def partition_id(spec: ExportSpec, key: str | None) -> PartitionId:
    """The lake partition of an export's Dagster partition (one dimension, named by its partitioning)."""
    part = PARTITIONINGS[spec.partitioning]
    return PartitionId.from_key(VENDOR, spec.name, part.definition, key, dim=part.dim)


def build_export_asset(spec: ExportSpec) -> dg.AssetsDefinition:
    part = PARTITIONINGS[spec.partitioning]
    needs = ", ".join(p.name for p in spec.required_params)
    checks = build_checks(spec)

    @landing_asset(
        checks,
        name=f"{VENDOR}__{spec.name}",
        specs=[
            dg.AssetSpec(
                key=asset_key(spec),
                group_name=GROUP,
                partitions_def=part.definition,
                description=spec.description + (f"\n\nNeeds run-config params: {needs}." if needs else ""),
                kinds={"stellic", "parquet"},
                skippable=True,  # a deferred async export ends the run without a materialization
                tags={"edu/vendor": VENDOR, "edu/partitioning": spec.partitioning},
                metadata={
                    "vendor_path": spec.path,
                    "default_flow": spec.flow,
                    "partition_column": part.dim,
                    "duckdb_view": f"{VENDOR}.{spec.name}",
                    "category": spec.category,
                },
            )
        ],
        partitions_def=part.definition,
        pool=POOL,
    )
    def _export(
        context: dg.AssetExecutionContext,
        config: StellicExportConfig,
        stellic: StellicResource,
        lake: LakeResource,
    ):
        key = context.partition_key if context.has_partition_key else None
        pid = partition_id(spec, key)
        where = pid.where
        if config.delivery_channel not in CHANNELS:
            raise ConfigError(
                where, f"delivery_channel must be one of {CHANNELS}, got {config.delivery_channel!r}"
            )
        if part.snapshot and key is not None:
            check_snapshot_date(key, where, config.allow_past_snapshot)
        query = build_query(spec, config.params, where, stellic.params_for(spec.name)) + (
            part.to_params(key, where) if key is not None else []
        )
        if config.delivery_channel != "auto":
            query.append(("delivery_channel", config.delivery_channel))
        client = stellic.client(context.log)
        path = client.partner_path(spec.path) if spec.api == "partner" else spec.path
        request = export_request(context, client, pid, path, query, expected_columns=spec.columns,
                                 encoding=spec.encoding, checks=checks)
        yield from land_and_close(context, [request], client.http, lake, config.inline_wait_seconds)

    return _export


def export_request(context: dg.AssetExecutionContext, client: StellicClient, pid: PartitionId, path: str,
                   query: list[tuple[str, str]], **landing: Any) -> ExportRequest:
    """One Stellic export of one partition, bulk or partner: started with ``query`` on ``path`` (sync or
    async, as Stellic answers), its request recorded in the materialization's metadata. ``landing``: the
    request's remaining fields (expected columns, encoding, checks)."""
    key = str(context.partition_key) if context.has_partition_key else None
    start = client.starter(path, query, pid.where, asset_key=context.asset_key.to_user_string(), partition_key=key)
    return ExportRequest(
        pid, api=client, start=start, partition_key=key, views=views(),
        extra_metadata={"request_params": ", ".join(f"{k}={v}" for k, v in query), "request_path": path},
        **landing,
    )


def build_checks(spec: ExportSpec) -> DatasetChecks:
    part = PARTITIONINGS[spec.partitioning]

    def locate(lake: Lake, key: str | None) -> Path:
        return lake.data_file(partition_id(spec, key))

    return DatasetChecks(
        asset_key(spec),
        part.definition,
        keys=spec.keys,
        expect_rows=spec.expect_rows,
        expected_columns=spec.columns,
        locate=locate,
    )


def views() -> list[ViewSpec]:
    """Every Stellic dataset's DuckDB views, declared once for its landing and for ``edu catalog``: a
    snapshot export's ``_latest`` is its newest capture date; time-window and term exports have no newest
    partition to pick (their partitions are not versions of one another), and the partner reads have plain
    views only."""
    reads, _ = load_partner_reads()
    return [*(ViewSpec(VENDOR, s.name, latest_by=_snapshot_dim(s)) for s in load_catalog()),
            *(ViewSpec(VENDOR, r.name) for r in reads)]


def _snapshot_dim(spec: ExportSpec) -> str | None:
    part = PARTITIONINGS[spec.partitioning]
    return part.dim if part.snapshot else None


def build_all() -> list[dg.AssetsDefinition]:
    """Every export of the catalog as an asset (its checks are part of it)."""
    return [build_export_asset(s) for s in load_catalog()]
