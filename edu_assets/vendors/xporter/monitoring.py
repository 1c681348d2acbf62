"""Monitoring assets: the school register, the management endpoints, and data freshness from Health.

These run with the management token (never a school's). The freshness check reads each school's landed
``xporter/health`` partition, right after the Health endpoint lands it.
"""

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import dagster as dg

from edu_assets.core.checks import FileCheck
from edu_assets.core.errors import Where
from edu_assets.core.lake import read_state, read_table
from edu_assets.core.partition import PartitionId
from edu_assets.core.publish import LandedTable, Publication, publish
from edu_assets.core.resources import LakeResource
from edu_assets.core.staging import staging
from edu_assets.vendors.xporter.catalog import ManagementEndpoint, load_catalog
from edu_assets.vendors.xporter.client import VENDOR, MissingResultSets, lookup, parse_time
from edu_assets.vendors.xporter.partitions import ESTAB
from edu_assets.vendors.xporter.resources import MAX_DATA_AGE_DAYS, XporterResource

SCHOOLS = dg.AssetKey([VENDOR, "schools"])
HEALTH = dg.AssetKey([VENDOR, "health"])


def _land(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    pid: PartitionId,
    rows: list[dict[str, Any]],
) -> dg.MaterializeResult:
    """Land ``rows`` as the partition ``pid`` and publish it (views, metadata, result)."""
    the_lake = lake.lake()
    with staging(the_lake.settings.work_dir / VENDOR / pid.dataset / uuid.uuid4().hex[:8]) as stage:
        stage.write(pid.dataset, rows)
        landed = the_lake.land_json(stage.finish(pid.dataset), pid.where, pid)
    from edu_assets.vendors.xporter.assets import views  # assets imports this module

    [result] = publish(context, the_lake, lake.catalog(), VENDOR, [Publication([LandedTable(pid.dataset, landed)])],
                       views())
    return result  # type: ignore[return-value]  # one publication with no checks: its result


@dg.asset(
    key=SCHOOLS,
    group_name="xporter",
    kinds={"xporter", "parquet"},
    pool=VENDOR,
    description="The school register from GetXodSchools: authorised, pending and revoked schools with the "
    "consent scopes each authorised.",
    tags={"edu/vendor": VENDOR},
)
def xporter_schools(
    context: dg.AssetExecutionContext, xporter: XporterResource, lake: LakeResource
) -> dg.MaterializeResult:
    schools = xporter.schools(context.log, max_age_seconds=0)
    rows = [
        {
            "estab": s.estab,
            "school_name": s.name,
            "status": s.status,
            "since": s.since,
            "scopes": ",".join(sorted(s.scopes)),
        }
        for s in schools
    ]
    return _land(context, lake, PartitionId(VENDOR, "schools"), rows)


def build_management_asset(m: ManagementEndpoint) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([VENDOR, f"management_{m.name}"]),
        group_name="xporter",
        kinds={"xporter", "parquet"},
        partitions_def=ESTAB if m.per_school else None,
        pool=VENDOR,
        description=f"{m.description} (management API `{m.path}`, management token"
        + ("; path guessed: the document gives none, verify on a live tenant" if m.path_confidence == "guessed" else "")
        + ").",
        tags={"edu/vendor": VENDOR},
    )
    def _asset(
        context: dg.AssetExecutionContext, xporter: XporterResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        estab = context.partition_key if m.per_school else None
        pid = PartitionId.of(VENDOR, f"management_{m.name}", {"estab": estab} if estab else {},
                             label=f"school {estab}" if estab else None)
        where = pid.where
        client = xporter.management(context.log)
        try:
            body = client.get(m.path.lstrip("/"), m.params(estab), where, status_codes=False)
        finally:
            client.close()
        if m.result_set is None:
            rows = [
                {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in (body or {}).items()}
            ]
        else:
            rows = management_rows(body, m, where)
        return _land(context, lake, pid, rows)

    return _asset


def management_rows(body: Any, m: ManagementEndpoint, where: Where) -> list[dict[str, Any]]:
    """The rows of a management response's data array (its name matched case-insensitively). A response
    without the array is refused rather than landed as zero rows; an explicit empty array is zero rows."""
    _, value = lookup(body if isinstance(body, dict) else {}, m.result_set or "")
    if not isinstance(value, list):
        sent = ", ".join(body) if isinstance(body, dict) and body else "none"
        raise MissingResultSets(
            where,
            f"the response has no {m.result_set} array; the vendor sent the keys: {sent}",
            hint="nothing was landed and the previous data is kept; re-run the partition, and if the vendor "
            "renamed the array, update result_set in edu_assets/vendors/xporter/catalog.yaml",
        )
    return [r for r in value if isinstance(r, dict)]


def _school_data_fresh(path: Path) -> tuple[bool, dict, str | None]:
    """Fresh when Health's SchoolDataAgeDays and the ``meta`` result set's last-updated time (L5375, kept in
    the landed file's state) are both within XPORTER_MAX_DATA_AGE_DAYS; either one alone decides if the
    other is missing, and with neither the check fails (freshness unknown)."""
    limit = MAX_DATA_AGE_DAYS.get()
    rows = read_table(path).to_pylist()
    ages = [r.get("school_data_age_days") for r in rows if r.get("school_data_age_days") is not None]
    age = max((float(a) for a in ages), default=None)
    status = rows[0].get("xod_status") if rows else None
    updated = parse_time(read_state(path).get("vendor_data_updated"))
    meta_age = (
        None if updated is None else round((dt.datetime.now(dt.UTC) - updated).total_seconds() / 86400, 2)
    )
    known = [a for a in (age, meta_age) if a is not None]
    fresh = bool(known) and max(known) <= limit
    md = {
        "school_data_age_days": age if age is not None else -1,
        "limit_days": limit,
        "xod_status": str(status),
        "meta_last_updated": updated.isoformat() if updated else "not reported",
        "meta_age_days": meta_age if meta_age is not None else -1,
    }
    if fresh:
        return True, md, None
    if not known:
        return False, md, "neither Health's SchoolDataAgeDays nor the meta result set gave the data's age"
    return (
        False,
        md,
        (
            f"the vendor's cached data is {max(known)} days old (limit {limit}; SchoolDataAgeDays "
            f"{age}, meta last updated {updated.isoformat() if updated else 'not reported'}); "
            "the school's MIS agent may be down"
        ),
    )


SCHOOL_DATA_FRESH = FileCheck(
    "school_data_fresh",
    "The vendor's cache of the school's data is recent (Health: SchoolDataAgeDays; meta: last updated).",
    _school_data_fresh,
)
"""Evaluated on each landed ``xporter/health`` partition by the step that lands it (see ``assets.build_checks``)."""


def build_monitoring() -> list[dg.AssetsDefinition]:
    _, management = load_catalog()
    return [xporter_schools, *(build_management_asset(m) for m in management)]
