"""Asset factory: every entry of ``catalog.yaml`` becomes one SkillsPass export asset.

Window exports (enrollments, learning activities, networks, users) are partitioned by day: a partition is
"records created or modified that UTC day", requested as ``startDate = <day>T00:00:00.000Z`` and
``endDate = <day>T23:59:59.999Z`` (both bounds are inclusive, so adjacent days never overlap).

A backfill runs as a single run. By default it starts one vendor job per day and waits for all of them
together; with ``days_per_job`` > 1 one job covers several consecutive days. The rows of such a job
cannot be split back into days (the documented columns carry no modification time), so the file is
landed as one *window* (``window_start=…/window_end=…``) that materializes every day it covers. Windows
never partially overlap: a request that touches a landed window is widened to cover it, and the windows
the new file covers are removed after it is in place (so a reader may briefly see both, never neither).

Interactions are one job per learning activity and day (JSONL only), partitioned by activity x day;
the activity partitions are discovered by a sensor from the landed learning activities.
"""

import warnings
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from edu_assets.core import export_records as records
from edu_assets.core.catalog import Current, ViewSpec
from edu_assets.core.checks import DatasetChecks, landing_asset
from edu_assets.core.errors import ConfigError, VendorHTTPError, Where
from edu_assets.core.export_asset import ExportRequest, LandedTable, Landing, land_and_close
from edu_assets.core.exports import ExportHandle
from edu_assets.core.lake import Lake
from edu_assets.core.partition import PartitionId, partition_dims
from edu_assets.core.resources import LakeResource
from edu_assets.vendors.skillspass.catalog import ExportSpec, load_catalog
from edu_assets.vendors.skillspass.client import VENDOR, SkillsPassClient, iso_instant
from edu_assets.vendors.skillspass.partitions import WINDOW_DIMS, activity_by_day, daily
from edu_assets.vendors.skillspass.resources import SkillsPassResource

GROUP = POOL = VENDOR


class SkillsPassExportConfig(dg.Config):
    """Run config of every SkillsPass export asset."""

    format: str | None = None  # CSV or JSONL; default: the resource's (SKILLSPASS_FORMAT), else the catalog's first
    days_per_job: int | None = (
        None  # days one vendor job covers in a backfill; default: the resource's (SKILLSPASS_DAYS_PER_JOB, 1)
    )
    inline_wait_seconds: float | None = None  # how long a run waits for its jobs before deferring them


def asset_key(spec: ExportSpec) -> dg.AssetKey:
    return dg.AssetKey([VENDOR, spec.name])


def _format(spec: ExportSpec, config: SkillsPassExportConfig, where: Where, default: str | None = None) -> str:
    """The run config's format, else the resource's default (``SKILLSPASS_FORMAT``), else the catalog's first."""
    chosen = (config.format or default or spec.default_format).upper()
    if chosen not in spec.formats:
        if config.format is None:
            return spec.default_format  # an environment-wide default that this export does not offer
        raise ConfigError(where, f"{spec.export_type} supports {', '.join(spec.formats)}, not {chosen}")
    return chosen


def _days_per_job(config: SkillsPassExportConfig, where: Where, default: int = 1) -> int:
    """The run config's days per job, else the resource's default (``SKILLSPASS_DAYS_PER_JOB``)."""
    value = config.days_per_job if config.days_per_job is not None else default
    if value < 1:
        raise ConfigError(where, f"days_per_job must be at least 1, got {value}")
    return value


def export_body(
    start: str, end: str, export_type: str, fmt: str, learning_activity_id: int | None = None
) -> dict[str, Any]:
    """The create request, field for field as the guide's examples (seed L21-26, L31-37): the four required
    fields, plus ``learningActivityId`` (a number) for interactions only."""
    body: dict[str, Any] = {"startDate": start, "endDate": end, "exportType": export_type, "format": fmt}
    if learning_activity_id is not None:
        body["learningActivityId"] = learning_activity_id
    return body


def day_window(first: str, last: str) -> tuple[str, str]:
    """The inclusive instants of whole UTC days ``first``..``last`` as SkillsPass wants them."""
    start = datetime.combine(date.fromisoformat(first), time.min)
    end = datetime.combine(date.fromisoformat(last), time.max)
    return iso_instant(start), iso_instant(end)


def _days(first: str, last: str) -> list[str]:
    d, end, out = date.fromisoformat(first), date.fromisoformat(last), []
    while d <= end:
        out.append(d.isoformat())
        d += timedelta(days=1)
    return out


def landed_windows(lake: Lake, spec: ExportSpec) -> list[tuple[str, str, Path]]:
    """(first day, last day, file) of every landed window of one export."""
    out = []
    for pid, path in lake.landed(VENDOR, spec.name):
        if set(WINDOW_DIMS) <= set(pid.mapping):
            out.append((pid.value("window_start"), pid.value("window_end"), path))
    return out


def plan_windows(
    days: list[str], days_per_job: int, landed: list[tuple[str, str, Path]]
) -> list[tuple[str, str]]:
    """Group the run's days into windows of up to ``days_per_job`` consecutive days, widened so that no
    window partially overlaps a landed one, and merged where widening made two windows meet."""
    chunks: list[list[str]] = []
    for day in sorted(days):
        if (
            chunks
            and len(chunks[-1]) < days_per_job
            and date.fromisoformat(day) - date.fromisoformat(chunks[-1][-1]) == timedelta(days=1)
        ):
            chunks[-1].append(day)
        else:
            chunks.append([day])
    windows = []
    for chunk in chunks:
        first, last = chunk[0], chunk[-1]
        changed = True
        while changed:
            changed = False
            for s, e, _ in landed:
                if s <= last and e >= first and (s < first or e > last):
                    first, last, changed = min(first, s), max(last, e), True
        windows.append((first, last))
    merged: list[tuple[str, str]] = []
    for first, last in sorted(windows):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _land_file(spec: ExportSpec, fmt: str, supersede: bool):
    """The landing step: CSV or JSONL into the request's partition; then drop the windows it covers."""

    def land(landing: Landing) -> list[LandedTable]:
        r, lake, got = landing.request, landing.lake, landing.downloaded
        # A window with no changes is a header-only CSV or an empty JSONL file (zero records). A CSV of 0 bytes
        # has not even its header: that is not "no rows", so land_csv refuses it rather than land it empty.
        if got is None or (got.bytes == 0 and fmt != "CSV"):
            landed = lake.land_empty(r.where, r.pid, expected_columns=spec.columns if fmt == "CSV" else None)
            if got is not None:
                got.path.unlink(missing_ok=True)
        elif fmt == "CSV":
            landed = lake.land_csv(got.path, r.where, r.pid, expected_columns=spec.columns)
        else:
            landed = lake.land_json(got.path, r.where, r.pid)
            got.path.unlink(missing_ok=True)
        if supersede:
            first, last = r.pid.value("window_start"), r.pid.value("window_end")
            for s, e, path in landed_windows(lake, spec):
                if first <= s and e <= last and (s, e) != (first, last):
                    path.unlink(missing_ok=True)  # its changes are in the new, wider window
        return [LandedTable(spec.name, landed)]

    return land


def _start(client: SkillsPassClient, body: dict, where: Where, key: str, partition_key: str, span: list[str]):
    def start(_dest: Path) -> ExportHandle:
        try:
            return client.start(
                body,
                where,
                asset_key=key,
                partition_key=partition_key,
                details={records.PARTITION_RANGE: span},
            )
        except VendorHTTPError as exc:
            if exc.status == 400 and "exporttype" in str(exc).lower().replace(" ", ""):
                raise VendorHTTPError(
                    where,
                    f"SkillsPass rejected exportType {body['exportType']}: {exc.what}",
                    hint="this tenant may run the older export API; set SKILLSPASS_LEGACY_TYPES=1 and re-run",
                    status=400,
                ) from None
            raise

    return start


def _asset_args(
    spec: ExportSpec,
    partitions_def: dg.PartitionsDefinition,
    partitioning: str,
    per: str,
) -> dict:
    """What every SkillsPass export asset declares; only its partitions differ."""
    return {
        "name": f"{VENDOR}__{spec.name}",
        "specs": [
            dg.AssetSpec(
                key=asset_key(spec),
                group_name=GROUP,
                partitions_def=partitions_def,
                description=f"{spec.description}\n\nexportType `{spec.export_type}`; one partition per {per}.",
                kinds={"skillspass", "parquet"},
                skippable=True,  # a deferred job ends the run without a materialization
                tags={"edu/vendor": VENDOR, "edu/partitioning": partitioning},
                metadata={
                    "export_type": spec.export_type,
                    "formats": ", ".join(spec.formats),
                    "duckdb_view": f"{VENDOR}.{spec.name}",
                    "keys": ", ".join(spec.keys),
                },
            )
        ],
        "partitions_def": partitions_def,
        "pool": POOL,
    }


def _materialize(
    context: dg.AssetExecutionContext,
    client: SkillsPassClient,
    requests: list[ExportRequest],
    config: SkillsPassExportConfig,
    lake: LakeResource,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
    yield from land_and_close(context, requests, client.http, lake, config.inline_wait_seconds)


def build_window_asset(spec: ExportSpec) -> dg.AssetsDefinition:
    key = asset_key(spec)

    checks = build_checks(spec)

    @landing_asset(
        checks,
        backfill_policy=dg.BackfillPolicy.single_run(),
        **_asset_args(spec, daily(), "daily_window", "UTC day"),
    )
    def _export(
        context: dg.AssetExecutionContext,
        config: SkillsPassExportConfig,
        skillspass: SkillsPassResource,
        lake: LakeResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
        the_lake = lake.lake()
        where = Where(VENDOR, spec.name)
        fmt = _format(spec, config, where, skillspass.default_format)
        tagged = records.tagged_handle(context)
        span = tagged.details.get(records.PARTITION_RANGE) if tagged else None
        if span:  # relaunched by the completion sensor: resume exactly that job's window
            windows = [(span[0], span[-1])]
        else:
            windows = plan_windows(
                list(context.partition_keys), _days_per_job(config, where, skillspass.days_per_job),
                landed_windows(the_lake, spec),
            )
        export_type = spec.legacy_type if skillspass.legacy_types and spec.legacy_type else spec.export_type
        client = skillspass.client(context.log)
        requests = []
        for first, last in windows:
            label = first if first == last else f"{first}..{last}"
            pid = PartitionId.of(VENDOR, spec.name, {"window_start": first, "window_end": last}, label=label)
            w = pid.where
            start, end = day_window(first, last)
            body = export_body(start, end, export_type, fmt)
            requests.append(
                ExportRequest(
                    pid,
                    partition_key=first,
                    covers=_days(first, last),
                    api=client,
                    start=_start(client, body, w, key.to_user_string(), first, [first, last]),
                    expected_columns=spec.columns if fmt == "CSV" else None,
                    views=views(),
                    land=_land_file(spec, fmt, supersede=True),
                    suffix=f".{fmt.lower()}",
                    checks=checks if fmt == "CSV" else None,
                    extra_metadata={"window": label, "startDate": start, "endDate": end, "format": fmt},
                )
            )
        if len(windows) > 1 or windows[0][0] != windows[0][1]:
            context.log.info(
                f"[skillspass] {spec.name}: {len(context.partition_keys)} day(s) as {len(windows)} vendor job(s)"
            )
        yield from _materialize(context, client, requests, config, lake)

    return _export


def build_interactions_asset(spec: ExportSpec) -> dg.AssetsDefinition:
    key = asset_key(spec)

    @landing_asset(**_asset_args(spec, activity_by_day(), "activity_x_day", "activity and UTC day"))
    def _export(
        context: dg.AssetExecutionContext,
        config: SkillsPassExportConfig,
        skillspass: SkillsPassResource,
        lake: LakeResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
        pkey = context.partition_key
        dims = partition_dims(activity_by_day(), pkey)
        activity, day = dims["activity"], dims["date"]
        pid = PartitionId.of(VENDOR, spec.name, {"activity": activity, "date": day},
                             label=f"activity {activity}, {day}")
        where = pid.where
        if not (activity.isascii() and activity.isdigit()):  # str.isdigit alone takes "२३"
            raise ConfigError(
                where,
                f"learning activity ids are numbers; partition has {activity!r}",
                hint="delete that partition of skillspass_activity",
            )
        fmt = _format(spec, config, where, skillspass.default_format)
        start, end = day_window(day, day)
        body = export_body(start, end, spec.export_type, fmt, int(activity))
        client = skillspass.client(context.log)
        request = ExportRequest(
            pid,
            partition_key=str(pkey),
            api=client,
            start=_start(client, body, where, key.to_user_string(), str(pkey), [str(pkey), str(pkey)]),
            land=_land_file(spec, fmt, supersede=False),
            suffix=".jsonl",
            views=views(),
            extra_metadata={"learning_activity_id": int(activity), "startDate": start, "endDate": end},
        )
        yield from _materialize(context, client, [request], config, lake)

    return _export


def build_checks(spec: ExportSpec) -> DatasetChecks | None:
    """Schema drift on the CSV exports (a window can legitimately be empty, and a change feed may repeat a
    key within a window, so no non-empty or uniqueness checks)."""
    if spec.per_activity or not spec.columns:
        return None

    def locate(lake: Lake, day: str | None) -> Path | None:
        """The landed window file that holds ``day`` (a day is landed alone or inside a wider window)."""
        return next(
            (
                path
                for first, last, path in landed_windows(lake, spec)
                if day is not None and first <= day <= last
            ),
            None,
        )

    return DatasetChecks(asset_key(spec), daily(), expected_columns=spec.columns, locate=locate)


def views() -> list[ViewSpec]:
    """Every SkillsPass dataset's DuckDB views, declared once for its landing and for ``edu catalog``: an
    export with keys is a change feed, so it also gets ``_current``, each key's row from the newest window
    (``window_end``), or the newest day for the per-activity interactions (``date``)."""
    return [ViewSpec(VENDOR, s.name, current=_current(s)) for s in load_catalog()]


def _current(spec: ExportSpec) -> Current | None:
    return Current(spec.keys, "date" if spec.per_activity else "window_end") if spec.keys else None


def build_all() -> list[dg.AssetsDefinition]:
    """Every export type as an asset (its checks are part of it)."""
    specs = load_catalog()
    with warnings.catch_warnings():  # single-run backfills are a deliberate choice; don't warn on every load
        warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
        return [build_interactions_asset(s) if s.per_activity else build_window_asset(s) for s in specs]
