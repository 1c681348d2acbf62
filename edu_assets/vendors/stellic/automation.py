"""Stellic's completion sensor and daily snapshot schedule."""

from __future__ import annotations

import dagster as dg

from edu_assets.core.configured import latest_partition_schedule
from edu_assets.core.export_sensor import build_export_completion_sensor
from edu_assets.core.settings import stellic_mode
from edu_assets.vendors.stellic.assets import asset_key
from edu_assets.vendors.stellic.catalog import ExportSpec, load_partner_reads
from edu_assets.vendors.stellic.partitions import PARTITIONINGS
from edu_assets.vendors.stellic.partner import read_key


def build_completion_sensor(specs: tuple[ExportSpec, ...]) -> dg.SensorDefinition:
    return build_export_completion_sensor(
        name="stellic_export_completion",
        vendor="stellic",
        # Stellic may run any export asynchronously, the partner API's bulk reads included
        asset_keys=[asset_key(s) for s in specs]
        + [read_key(r) for r in load_partner_reads()[0] if r.kind == "bulk"],
        resource_key="stellic",
        mode=stellic_mode,
    )


def build_snapshot_schedule(specs: tuple[ExportSpec, ...]) -> dg.ScheduleDefinition:
    """Every snapshot export that needs no user-chosen parameter, daily at 05:00 UTC (today's partition)."""
    keys = [asset_key(s) for s in specs if s.partitioning == "snapshot" and not s.required_params]
    job = dg.define_asset_job(
        "stellic_daily_snapshots",
        selection=dg.AssetSelection.assets(*keys),
        partitions_def=PARTITIONINGS["snapshot"].definition,
        tags={"edu/vendor": "stellic"},
        description="Today's snapshot of every Stellic export that needs no user-chosen parameter.",
    )
    return latest_partition_schedule(
        job,
        PARTITIONINGS["snapshot"].definition,
        name="stellic_daily_snapshots_schedule",
        mode=stellic_mode,
        hour_of_day=5,
    )
