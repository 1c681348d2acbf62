"""Stellic's completion sensor, daily snapshot schedule and demo plan."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import dagster as dg

from edu_assets.core.configured import latest_partition_schedule
from edu_assets.core.demo_plan import AddPartitions, DemoContext, Run, Say, Skip, Step
from edu_assets.core.export_sensor import build_export_completion_sensor
from edu_assets.vendors.stellic.assets import asset_key
from edu_assets.vendors.stellic.catalog import ExportSpec, load_catalog, load_partner_reads
from edu_assets.vendors.stellic.client import VENDOR
from edu_assets.vendors.stellic.partitions import PARTITIONINGS, today
from edu_assets.vendors.stellic.partner import partition_key, read_key
from edu_assets.vendors.stellic.resources import stellic_mode


def build_completion_sensor(specs: tuple[ExportSpec, ...]) -> dg.SensorDefinition:
    return build_export_completion_sensor(
        name="stellic_export_completion",
        vendor=VENDOR,
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
        tags={"edu/vendor": VENDOR},
        description="Today's snapshot of every Stellic export that needs no user-chosen parameter.",
    )
    return latest_partition_schedule(
        job,
        PARTITIONINGS["snapshot"].definition,
        name="stellic_daily_snapshots_schedule",
        mode=stellic_mode,
        hour_of_day=5,
    )


DEMO_STUDENTS = 20  # students each per-student partner read covers in the demo


def _demo_params(spec: ExportSpec, sandboxed: bool, preset: dict) -> dict | None:
    """Params for the demo run, or None when a required value is unknown (live vendor, not configured)."""
    params: dict = {}
    for p in spec.required_params:
        if p.name in preset:
            continue
        if not sandboxed:
            return None
        params[p.name] = p.example
    return params


def demo_plan(ctx: DemoContext) -> Iterator[Step]:
    """Every bulk export for its partitioning's demo keys, one run per partition (exports that need a value
    only a user can choose get the catalog's example in the sandbox, and are skipped against the live
    vendor unless STELLIC_EXPORT_PARAMS has it); then the partner API reads, the student list before the
    per-student reads over its first students."""
    sandboxed = not stellic_mode().live
    yield Say(f"stellic ({'sandbox' if sandboxed else 'live'})")
    groups: dict[tuple[str, str], list[ExportSpec]] = defaultdict(list)
    for spec in load_catalog():
        part = PARTITIONINGS[spec.partitioning]
        for key in part.demo_keys():
            groups[(spec.partitioning, key)].append(spec)
        if part.dynamic_name:
            yield AddPartitions(part.dynamic_name, tuple(part.demo_keys()))
    for (kind, partition), group in groups.items():
        keys, config = [], {}
        for spec in group:
            params = _demo_params(spec, sandboxed, ctx.resource("stellic").params_for(spec.name))
            if params is None:
                yield Skip(asset_key(spec), partition, "needs user-chosen params (STELLIC_EXPORT_PARAMS)")
                continue
            keys.append(asset_key(spec))
            if params:
                config[asset_key(spec)] = {"params": params}
        if keys:
            yield Run(f"stellic exports by {kind}={partition}", tuple(keys), partition, config=config,
                      missing="deferred")
    for spec in sorted(load_partner_reads()[0], key=lambda r: r.kind != "bulk"):  # the list before its readers
        config = {read_key(spec): {"max_students": DEMO_STUDENTS}} if spec.kind == "per_student" else {}
        for view in spec.demo:
            partition = str(partition_key(spec, view, today().isoformat()))
            yield Run(f"stellic partner read {spec.name} ({view})", (read_key(spec),), partition, config=config,
                      missing="deferred")
