"""Keep the school partitions in step with the vendor's register, the filter partitions in step with the
lookup endpoints' values, and schedule the daily loads."""

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import dagster as dg

from edu_assets.core.configured import skip_unless_configured
from edu_assets.core.demo_plan import DemoContext, Run, Say, Step, Tick, range_tags
from edu_assets.core.export_records import records_after
from edu_assets.core.months import last_months
from edu_assets.vendors.xporter.assets import asset_key
from edu_assets.vendors.xporter.catalog import Endpoint, load_catalog
from edu_assets.vendors.xporter.client import VENDOR
from edu_assets.vendors.xporter.filters import FILTER_VALUES
from edu_assets.vendors.xporter.monitoring import SCHOOLS
from edu_assets.vendors.xporter.partitions import (
    ESTAB,
    ESTAB_PARTITIONS,
    FILTER_PARTITIONS_PER_RUN,
    SCHOOLS_PER_RUN,
    Partitioning,
    batch_tags,
    estab_month,
    lookup_key,
    lookup_partitions,
    partitioning_for,
    school_batches,
    split_lookup_key,
)
from edu_assets.vendors.xporter.resources import XporterResource, xporter_mode

SNAPSHOT_JOB = "xporter_snapshots"
CURRENT_MONTH_JOB = "xporter_current_month"
REGISTER_JOB = "xporter_register"
FILTER_DISCOVERY = "xporter_filter_discovery"


def _scheduled(endpoint: Endpoint) -> bool:
    """Loaded by jobs and schedules: not the vendor's test endpoint, nor one whose filter a person chooses."""
    return not endpoint.diagnostic and not endpoint.needs_run_config


def by_partitioning() -> dict[str, tuple[Partitioning, list[Endpoint]]]:
    """The scheduled endpoints grouped by partition layout (its name -> the layout and its endpoints): one job each."""
    out: dict[str, tuple[Partitioning, list[Endpoint]]] = {}
    for e in load_catalog()[0]:
        if _scheduled(e):
            partitioning = partitioning_for(e)
            out.setdefault(partitioning.name, (partitioning, []))[1].append(e)
    return out


def _keys(partitioning: str) -> list[dg.AssetKey]:
    return [asset_key(e, t) for e in by_partitioning().get(partitioning, (None, []))[1] for t in e.tables]


@cache
def jobs() -> dict[str, Any]:
    """Every Xporter job by name, built once when the definitions load (never at import: the month and
    school-year partitions come from settings). One per partition layout: snapshots, the current month,
    the register, and a job per mandatory-filter layout."""
    built = {
        SNAPSHOT_JOB: dg.define_asset_job(
            SNAPSHOT_JOB, selection=dg.AssetSelection.assets(*_keys("estab")), partitions_def=ESTAB,
            tags={"edu/vendor": VENDOR},
            description="Every snapshot endpoint of one school (change sets where possible).",
        ),
        CURRENT_MONTH_JOB: dg.define_asset_job(
            CURRENT_MONTH_JOB, selection=dg.AssetSelection.assets(*_keys("estab_month")), partitions_def=estab_month(),
            tags={"edu/vendor": VENDOR}, description="Every date-range endpoint of one school for one month (the "
                                                     "per-student and per-staff ones fan out over its landed people).",
        ),
        REGISTER_JOB: dg.define_asset_job(REGISTER_JOB, selection=dg.AssetSelection.assets(SCHOOLS),
                                          tags={"edu/vendor": VENDOR}, description="The school register."),
    }
    return built | {filtered_job_name(partitioning): job for partitioning, job in _filtered_jobs().values()}


def filtered_job_name(partitioning: Partitioning) -> str:
    return f"xporter_{partitioning.name}"


@cache
def _filtered_jobs() -> dict[str, tuple[Partitioning, Any]]:
    """The job of each mandatory-filter layout, by the layout's name."""
    return {
        name: (partitioning, dg.define_asset_job(
            filtered_job_name(partitioning), selection=dg.AssetSelection.assets(*_keys(name)),
            partitions_def=partitioning.definition, tags={"edu/vendor": VENDOR},
            description=f"Endpoints partitioned by a mandatory filter ({partitioning.name}): "
                        + ", ".join(e.name for e in endpoints) + ".",
        ))
        for name, (partitioning, endpoints) in by_partitioning().items() if name not in ("estab", "estab_month")
    }


def build_school_discovery() -> dg.SensorDefinition:
    """The school discovery sensor (a builder: it targets jobs that are built when the definitions load)."""

    @dg.sensor(
        name="xporter_school_discovery",
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[jobs()[REGISTER_JOB], jobs()[SNAPSHOT_JOB]],
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

    return xporter_school_discovery


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
    common = {"edu/vendor": VENDOR, "edu/schools": str(len(batch)), **(tags or {})}
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


# ---------------------------------------------------------------------------------------------- filters
def _lookups() -> dict[str, dg.AssetKey]:
    """Each lookup's dynamic partitions name -> the asset whose landings carry its values."""
    endpoints = {e.name: e for e in load_catalog()[0]}
    out: dict[str, dg.AssetKey] = {}
    for e in endpoints.values():
        for f in e.filters:
            if f.lookup is not None:
                source = endpoints[f.lookup.endpoint]
                table = next(t for t in source.tables if t.name == f.lookup.table)
                out[f.lookup.partitions] = asset_key(source, table)
    return out


def current_value(partitioning: Partitioning, moment: dt.datetime) -> tuple[str, str] | None:
    """The partitions of the filter's second dimension a daily load asks for: (first, last) of a range."""
    if partitioning.monthly:
        month = moment.date().replace(day=1).isoformat()
        return month, month
    if partitioning.dimension == "school_year":  # September starts the next school year
        year = str(moment.year if moment.month >= 9 else moment.year - 1)
        return year, year
    if isinstance(partitioning.definition, dg.MultiPartitionsDefinition):
        values = next(d.partitions_def for d in partitioning.definition.partitions_defs
                      if d.name == partitioning.dimension).get_partition_keys()
        return values[0], values[-1]
    return None


def _multi_key(partitioning: Partitioning, first: str, second: str) -> str:
    """A two-dimension key from the dynamic dimension's key and the other's, spelt as Dagster spells it."""
    definition = partitioning.definition
    assert isinstance(definition, dg.MultiPartitionsDefinition)
    names = [d.name for d in definition.partitions_defs]
    dynamic = str(partitioning.dimension) if partitioning.per_school_values else "estab"
    other = next(n for n in names if n != dynamic)
    return str(dg.MultiPartitionKey({dynamic: first, other: second}))


def filtered_requests(partitioning: Partitioning, keys: list[str], moment: dt.datetime, run_key: str,
                      tags: dict[str, str] | None = None) -> list[dg.RunRequest]:
    """Runs of ``keys`` (schools, or lookup-value partitions, in their stored order) for a filtered job: batches
    of consecutive keys, crossed with the second dimension's current value(s) (month, school year, key stages)."""
    size = FILTER_PARTITIONS_PER_RUN if partitioning.per_school_values else SCHOOLS_PER_RUN
    job = filtered_job_name(partitioning)
    second = current_value(partitioning, moment)
    out = []
    for batch in school_batches(keys, size):
        common = {"edu/vendor": VENDOR, **(tags or {})}
        key = f"{run_key}-{batch[0]}-{batch[-1]}"
        if second is None:
            if len(batch) == 1:
                out.append(dg.RunRequest(run_key=key, job_name=job, partition_key=batch[0], tags=common))
            else:
                out.append(dg.RunRequest(run_key=key, job_name=job, tags={**common, **batch_tags(batch)}))
            continue
        start, end = _multi_key(partitioning, batch[0], second[0]), _multi_key(partitioning, batch[-1], second[1])
        if start == end:
            out.append(dg.RunRequest(run_key=key, job_name=job, partition_key=start, tags=common))
        else:
            out.append(dg.RunRequest(run_key=key, job_name=job, tags={**common, **batch_tags([start, end])}))
    return out


def _published(record: object, name: str) -> list[str] | None:
    """The values a lookup landing published for ``name`` (None: it published none)."""
    entry = record.asset_materialization.metadata.get(FILTER_VALUES + name)  # type: ignore[attr-defined]
    value = getattr(entry, "value", None)
    return [str(v) for v in value] if isinstance(value, list) else None


def build_filter_discovery() -> dg.SensorDefinition:
    """The filter discovery sensor (a builder: it targets jobs that are built when the definitions load)."""

    @dg.sensor(
        name=FILTER_DISCOVERY,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[job for _, job in _filtered_jobs().values()] or None,
        description="Keeps the partitions of mandatory filters found in lookup endpoints (UDF names from "
                    "UserDefinedFields, document types from LinkedDocumentTypes, aspects and marksheets from "
                    "assessmentstructure) in step with what those endpoints last landed for each school, and "
                    "loads the new partitions at once. Reads Dagster's event log only: no vendor request.",
    )
    @skip_unless_configured(xporter_mode)
    def xporter_filter_discovery(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        layouts = by_partitioning()
        moment = dt.datetime.now(dt.UTC)
        requests: list[dg.RunRequest] = []
        dynamic: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        for name, source in sorted(_lookups().items()):
            records = list(records_after(context.instance.fetch_materializations, source, cursor.get(name)))
            if not records:
                continue
            cursor[name] = records[-1].storage_id
            latest: dict[str, list[str]] = {}
            for record in records:  # the last landing of each school wins
                values = _published(record, name)
                if values is not None and record.partition_key:
                    latest[record.partition_key] = values
            definition = lookup_partitions(name)
            existing = context.instance.get_dynamic_partitions(definition.name)
            added: list[str] = []
            removed: list[str] = []
            for estab, values in latest.items():
                current = {k for k in existing if split_lookup_key(k)[0] == estab}
                wanted = [lookup_key(estab, v) for v in values]
                added += [k for k in wanted if k not in current]
                removed += sorted(current - set(wanted))
                context.log.info(f"[xporter] {name}: school {estab} has {len(values)} value(s) in {source.to_user_string()}"
                                 f"; {sum(k not in current for k in wanted)} new, {len(current - set(wanted))} gone")
            if added:
                dynamic.append(definition.build_add_request(added))
                # appended in this order: each batch is a contiguous range of the new partitions
                for partitioning, _ in layouts.values():
                    if partitioning.lookup == name:
                        requests += filtered_requests(partitioning, added, moment, f"new-{partitioning.name}-{moment:%Y%m%d%H%M}",
                                                      {"edu/trigger": FILTER_DISCOVERY})
            if removed:
                context.log.info(f"[xporter] {name}: {len(removed)} value(s) gone from their lookup: no longer "
                                 "scheduled; their landed data is kept")
                dynamic.append(definition.build_delete_request(removed))
        return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=dynamic, cursor=json.dumps(cursor))

    return xporter_filter_discovery


def _daily_filtered(partitioning: Partitioning, hour: int) -> dg.ScheduleDefinition:
    """Every partition of a filtered job, daily: all lookup-value partitions, or every school for the current
    month, school year or key stages; in batches."""
    dynamic = partitioning.dynamic_name

    @dg.schedule(name=f"xporter_daily_{partitioning.name}", job=_filtered_jobs()[partitioning.name][1],
                 cron_schedule=f"0 {hour} * * *", execution_timezone="Europe/London",
                 default_status=dg.DefaultScheduleStatus.STOPPED,
                 description=f"Every partition of {filtered_job_name(partitioning)} daily (the current month, school "
                             "year or key stages), in batches.")
    @skip_unless_configured(xporter_mode)
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        moment = context.scheduled_execution_time
        keys = list(context.instance.get_dynamic_partitions(dynamic))
        return filtered_requests(partitioning, keys, moment, f"{moment:%Y-%m-%d}")

    return _schedule


def filtered_schedules() -> list[dg.ScheduleDefinition]:
    """Daily schedules of every mandatory-filter job (stopped by default)."""
    return [_daily_filtered(partitioning, 7) for partitioning, _ in _filtered_jobs().values()]


DEMO_MONTHS = 2  # months of every date-range endpoint the demo loads per school


def demo_plan(ctx: DemoContext) -> Iterator[Step]:
    """Discover schools as the sensor would, then per school: every snapshot endpoint in one run and the last
    ``DEMO_MONTHS`` months of every date-range endpoint in one run (the per-student and per-staff ones fan
    out over the people the snapshots landed); then, as the filter-discovery sensor would, the lookups'
    values become partitions and each filtered job lands one partition per school (its first value, the
    current school year, the key stages); plus the register and management assets. Assessment Results,
    whose filter a person chooses in run config, is left out (as the schedules leave it out)."""
    schools = [s.estab for s in ctx.resource("xporter").schools() if s.status == "authorised"]
    ctx.instance.add_dynamic_partitions(ESTAB_PARTITIONS, schools)
    grouped = by_partitioning()  # scheduled endpoints only: no test endpoint, no run-config filter
    monitoring = [k for k in ctx.defs.get_repository_def().assets_defs_by_key
                  if k.path[0] == VENDOR and (k == SCHOOLS or k.path[1].startswith("management_"))]
    unpartitioned = tuple(k for k in monitoring if ctx.defs.get_assets_def(k).partitions_def is None)
    per_school = tuple(k for k in monitoring if k not in unpartitioned)
    snapshot, monthly = tuple(_keys("estab")), tuple(_keys("estab_month"))
    window = last_months(DEMO_MONTHS)
    first, this_month = window[0], window[-1]
    unauthorised = "not authorised for this school (see the asset's observations)"
    yield Say(f"xporter: {len(schools)} authorised school(s): {', '.join(schools)}")
    yield Run("xporter register and management endpoints", unpartitioned, missing_detail=unauthorised)
    for estab in schools:
        yield Run(f"xporter snapshot endpoints, school {estab}", snapshot, estab, missing_detail=unauthorised)
        yield Run(f"xporter management endpoints, school {estab}", per_school, estab, missing_detail=unauthorised)
        yield Run(f"xporter date-range endpoints, school {estab}, {first:%Y-%m}..{this_month:%Y-%m}", monthly,
                  tags=range_tags(f"{estab}|{first.isoformat()}", f"{estab}|{this_month.isoformat()}"),
                  missing_detail=unauthorised)
    yield Tick(FILTER_DISCOVERY)  # the lookups the snapshots landed become partitions
    moment = dt.datetime.now(dt.UTC)
    for name, (partitioning, _) in sorted(grouped.items()):
        if name in ("estab", "estab_month"):
            continue
        for estab in schools:
            partition = _demo_partition(ctx, partitioning, estab, this_month, moment)
            if partition is None:
                yield Say(f"  skip xporter {name}, school {estab}: its lookup published no values")
                continue
            yield Run(f"xporter endpoints by {name}, school {estab}", tuple(_keys(name)), partition,
                      missing_detail=unauthorised)


def _demo_partition(ctx: DemoContext, partitioning: Partitioning, estab: str, month: dt.date,
                    moment: dt.datetime) -> str | None:
    """The school's first discovered value (with this month where the endpoint also needs one), or the
    current value of a fixed dimension (school year, key stage); None when the lookup found none."""
    if partitioning.per_school_values:
        values = [k for k in ctx.instance.get_dynamic_partitions(partitioning.dynamic_name) if k.startswith(f"{estab}:")]
        if not values:
            return None
        if partitioning.monthly:
            return str(dg.MultiPartitionKey({str(partitioning.dimension): values[0], "month": month.isoformat()}))
        return values[0]
    second = current_value(partitioning, moment)
    assert second is not None, partitioning.name
    return str(dg.MultiPartitionKey({"estab": estab, str(partitioning.dimension): second[0]}))
