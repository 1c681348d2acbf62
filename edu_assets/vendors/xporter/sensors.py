"""Keep the school partitions in step with the vendor's register, and schedule the daily loads."""

import datetime as dt
import hashlib
import json

import dagster as dg

from edu_assets.core.configured import skip_unless_configured
from edu_assets.core.settings import xporter_mode
from edu_assets.vendors.xporter.assets import asset_key
from edu_assets.vendors.xporter.catalog import load_catalog
from edu_assets.vendors.xporter.monitoring import SCHOOLS
from edu_assets.vendors.xporter.partitions import (
    ESTAB,
    ESTAB_MONTH,
    ESTAB_PARTITIONS,
    SCHOOLS_PER_RUN,
    batch_tags,
    school_batches,
)
from edu_assets.vendors.xporter.resources import XporterResource

SNAPSHOT_JOB = "xporter_snapshots"
CURRENT_MONTH_JOB = "xporter_current_month"
REGISTER_JOB = "xporter_register"


def _keys(month: bool) -> list[dg.AssetKey]:
    endpoints, _ = load_catalog()
    return [asset_key(e, t) for e in endpoints
            if e.partitioned_by_month == month and not e.diagnostic for t in e.tables]


snapshots_job = dg.define_asset_job(
    SNAPSHOT_JOB, selection=dg.AssetSelection.assets(*_keys(False)), partitions_def=ESTAB,
    tags={"edu/vendor": "xporter"}, description="Every snapshot endpoint of one school (change sets where possible).",
)
current_month_job = dg.define_asset_job(
    CURRENT_MONTH_JOB, selection=dg.AssetSelection.assets(*_keys(True)), partitions_def=ESTAB_MONTH,
    tags={"edu/vendor": "xporter"}, description="Every date-range endpoint of one school for one month.",
)
register_job = dg.define_asset_job(REGISTER_JOB, selection=dg.AssetSelection.assets(SCHOOLS),
                                   tags={"edu/vendor": "xporter"}, description="The school register.")
JOBS = [snapshots_job, current_month_job, register_job]


@dg.sensor(
    name="xporter_school_discovery",
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    jobs=[register_job, snapshots_job],
    description="Reads the school register with the management token: adds authorised schools as `estab` "
                "partitions (and loads them at once), removes revoked ones (their landed data stays), and "
                "refreshes xporter/schools when the register changes.",
)
@skip_unless_configured(xporter_mode)
def xporter_school_discovery(context: dg.SensorEvaluationContext, xporter: XporterResource) -> dg.SensorResult:
    schools = xporter.schools(context.log, max_age_seconds=0)
    current = set(context.instance.get_dynamic_partitions(ESTAB_PARTITIONS))
    authorised = {s.estab for s in schools if s.status == "authorised"}
    revoked = {s.estab for s in schools if s.status == "revoked"}
    added = sorted(authorised - current)
    removed = sorted(revoked & current)
    fingerprint = hashlib.sha256(
        json.dumps(sorted((s.estab, s.status, sorted(s.scopes)) for s in schools)).encode()
    ).hexdigest()[:16]
    requests: list[dg.RunRequest] = []
    if fingerprint != context.cursor:
        requests.append(dg.RunRequest(run_key=f"register-{fingerprint}", job_name=REGISTER_JOB))
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for estab in added:
        context.log.info(f"[xporter] new authorised school {estab}: adding its partitions and loading its snapshots")
    # the new partitions are appended in this order, so each batch is a contiguous range of them
    for batch in school_batches(added):
        requests.append(_snapshot_request(f"new-schools-{batch[0]}-{batch[-1]}-{today}", batch,
                                          {"edu/trigger": "school_discovery"}))
    for estab in removed:
        context.log.info(f"[xporter] school {estab} revoked access: no longer scheduled; its landed data is kept")
    dynamic: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        dynamic.append(ESTAB.build_add_request(added))
    if removed:
        dynamic.append(ESTAB.build_delete_request(removed))
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=dynamic, cursor=fingerprint)


@dg.schedule(job_name=SNAPSHOT_JOB, cron_schedule="0 6 * * *", execution_timezone="Europe/London",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Every school's snapshot endpoints, daily after the vendor's nightly refresh, in runs of "
                         f"up to {SCHOOLS_PER_RUN} schools each.")
@skip_unless_configured(xporter_mode)
def xporter_daily_snapshots(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.date().isoformat()
    return [_snapshot_request(f"{day}-{batch[0]}-{batch[-1]}", batch)
            for batch in school_batches(context.instance.get_dynamic_partitions(ESTAB_PARTITIONS))]


def _snapshot_request(run_key: str, batch: list[str], tags: dict[str, str] | None = None) -> dg.RunRequest:
    """One snapshot run for a batch of schools: a single school is its partition, several a range."""
    common = {"edu/vendor": "xporter", "edu/schools": str(len(batch)), **(tags or {})}
    if len(batch) == 1:
        return dg.RunRequest(run_key=run_key, job_name=SNAPSHOT_JOB, partition_key=batch[0], tags=common)
    return dg.RunRequest(run_key=run_key, job_name=SNAPSHOT_JOB, tags={**common, **batch_tags(batch)})


@dg.schedule(job_name=CURRENT_MONTH_JOB, cron_schedule="30 6 * * *", execution_timezone="Europe/London",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Every school's date-range endpoints for the current month, daily.")
@skip_unless_configured(xporter_mode)
def xporter_current_month(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    moment = context.scheduled_execution_time
    day, month = moment.date().isoformat(), moment.date().replace(day=1).isoformat()
    return [dg.RunRequest(run_key=f"{day}-{estab}", partition_key=f"{estab}|{month}")
            for estab in sorted(context.instance.get_dynamic_partitions(ESTAB_PARTITIONS))]
