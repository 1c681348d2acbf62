"""SkillsPass sensors and schedule: job completion, learning-activity discovery, yesterday's windows daily."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg

from edu_assets.core.configured import latest_partition_schedule, skip_unless_configured
from edu_assets.core.demo_plan import DemoContext, Run, Say, Step, Tick, range_tags
from edu_assets.core.export_records import records_after
from edu_assets.core.export_sensor import build_export_completion_sensor
from edu_assets.core.lake import connect, parquet_file
from edu_assets.core.lakepath import lake_root
from edu_assets.vendors.skillspass.assets import asset_key
from edu_assets.vendors.skillspass.catalog import ExportSpec, load_catalog
from edu_assets.vendors.skillspass.client import VENDOR
from edu_assets.vendors.skillspass.partitions import ACTIVITIES, activity_by_day, daily
from edu_assets.vendors.skillspass.resources import skillspass_mode

ACTIVITY_COLUMN = "learning_activity_id"


def build_completion_sensor(specs: tuple[ExportSpec, ...]) -> dg.SensorDefinition:
    return build_export_completion_sensor(
        name="skillspass_export_completion",
        vendor=VENDOR,
        asset_keys=[asset_key(s) for s in specs],
        resource_key="skillspass",
        mode=skillspass_mode,
    )


def activity_ids(paths: set[str]) -> set[str]:
    """Distinct learning-activity ids in landed learning_activities files (missing files are skipped)."""
    import duckdb
    ids: set[str] = set()
    for path in sorted(paths):
        landed = lake_root(path)  # a local path, or s3://... in the object-store lake
        try:
            with connect(landed) as con:
                rows = con.execute(
                    f"SELECT DISTINCT CAST({ACTIVITY_COLUMN} AS VARCHAR) FROM {parquet_file(landed)}"
                    f" WHERE {ACTIVITY_COLUMN} IS NOT NULL"
                ).fetchall()
        except (duckdb.Error, FileNotFoundError):  # removed since (a wider window superseded it), or no such column
            continue
        ids.update(str(r[0]).strip() for r in rows if str(r[0]).strip())
    return ids


def build_activity_discovery_sensor(activities_key: dg.AssetKey) -> dg.SensorDefinition:
    """Adds a ``skillspass_activity`` partition for every learning activity seen in newly landed
    learning_activities data, so a new activity's interactions can be materialized without anyone typing
    its id. Reads only the files of materializations it has not seen (cursor = event storage id)."""

    @dg.sensor(
        name="skillspass_activity_discovery",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Discovers learning activities from landed skillspass/learning_activities and adds them "
        "as partitions of skillspass/learning_activity_interactions.",
    )
    @skip_unless_configured(skillspass_mode)
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = int(context.cursor or 0)
        newest, paths = after, set()
        for rec in records_after(context.instance.fetch_materializations, activities_key, after):
            newest = max(newest, rec.storage_id)
            md = rec.asset_materialization.metadata if rec.asset_materialization else {}
            if "path" in md:
                paths.add(str(md["path"].value))
        known = set(context.instance.get_dynamic_partitions(ACTIVITIES.name))
        new = sorted(activity_ids(paths) - known, key=lambda v: (len(v), v))
        if new:
            context.log.info(f"[skillspass] {len(new)} new learning activit{'y' if len(new) == 1 else 'ies'}: {', '.join(new[:20])}")
        return dg.SensorResult(
            dynamic_partitions_requests=[ACTIVITIES.build_add_request(new)] if new else [],
            cursor=str(newest),
        )

    return _sensor


def build_daily_schedules(specs: tuple[ExportSpec, ...]) -> list[dg.ScheduleDefinition]:
    """At 04:00 UTC: yesterday's window of every export; at 05:00, yesterday's interactions of every
    activity discovered by then. Stopped by default: a user turns them on in the UI."""
    window_keys = [asset_key(s) for s in specs if not s.per_activity]
    interaction_keys = [asset_key(s) for s in specs if s.per_activity]
    windows_job = dg.define_asset_job(
        "skillspass_daily_windows", selection=dg.AssetSelection.assets(*window_keys), partitions_def=daily(),
        tags={"edu/vendor": VENDOR}, description="Yesterday's changes of every SkillsPass window export.",
    )
    interactions_job = dg.define_asset_job(
        "skillspass_daily_interactions", selection=dg.AssetSelection.assets(*interaction_keys),
        partitions_def=activity_by_day(), tags={"edu/vendor": VENDOR},
        description="Yesterday's interactions of every discovered learning activity.",
    )

    @dg.schedule(cron_schedule="0 5 * * *", name="skillspass_daily_interactions_schedule", job=interactions_job,
                 execution_timezone="UTC")
    @skip_unless_configured(skillspass_mode)
    def interactions(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        day = daily().get_last_partition_key(current_time=context.scheduled_execution_time)
        if day is None:
            return []
        keys = [dg.MultiPartitionKey({"activity": a, "date": day})
                for a in context.instance.get_dynamic_partitions(ACTIVITIES.name)]
        return [dg.RunRequest(run_key=f"interactions-{k}", partition_key=k) for k in keys]

    windows = latest_partition_schedule(windows_job, daily(), name="skillspass_daily_windows_schedule",
                                        mode=skillspass_mode, hour_of_day=4)
    return [windows, interactions]


DEMO_DAYS = 7  # daily windows of every window export the demo loads


def demo_plan(ctx: DemoContext) -> Iterator[Step]:
    """The last ``DEMO_DAYS`` daily windows of every window export in one run (one vendor job per day,
    polled together), then the activity-discovery sensor, then the last day's interactions of every
    activity it found."""
    specs = load_catalog()
    window = daily().get_partition_keys()[-DEMO_DAYS:]
    yield Say(f"skillspass: {window[0]}..{window[-1]}")
    yield Run(f"skillspass window exports, {len(window)} days", tuple(asset_key(s) for s in specs if not s.per_activity),
              tags=range_tags(window[0], window[-1]), missing="deferred")
    yield Tick("skillspass_activity_discovery")
    interactions = tuple(asset_key(s) for s in specs if s.per_activity)
    for activity in ctx.instance.get_dynamic_partitions(ACTIVITIES.name):
        key = dg.MultiPartitionKey({"activity": activity, "date": window[-1]})
        yield Run(f"skillspass interactions, activity {activity}, {window[-1]}", interactions, str(key),
                  missing="deferred")
