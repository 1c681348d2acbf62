"""Monitoring assets: the school register, the management endpoints, and data freshness from Health.

These run with the management token (never a school's). The freshness check reads each school's landed
``xporter/health`` partition, right after the Health endpoint lands it.
"""

import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from edu_assets.core.checks import FileCheck
from edu_assets.core.errors import Where
from edu_assets.core.metadata import landed_metadata
from edu_assets.core.resources import LakeResource
from edu_assets.core.settings import env_float
from edu_assets.core.staging import staging
from edu_assets.vendors.xporter.catalog import ManagementEndpoint, load_catalog
from edu_assets.vendors.xporter.partitions import ESTAB
from edu_assets.vendors.xporter.resources import XporterResource

VENDOR = "xporter"
SCHOOLS = dg.AssetKey([VENDOR, "schools"])
HEALTH = dg.AssetKey([VENDOR, "health"])


def _land(lake: LakeResource, name: str, partition: dict[str, str], rows: list[dict[str, Any]], where: Where,
          log: Any) -> dg.MaterializeResult:
    with staging(lake.lake().settings.work_dir / VENDOR / name / uuid.uuid4().hex[:8]) as stage:
        stage.write(name, rows)
        landed = lake.lake().land_json(stage.finish(name), where, VENDOR, name, partition)
    lake.catalog().ensure_view(VENDOR, name, log=log)
    return dg.MaterializeResult(metadata=landed_metadata(landed))


@dg.asset(key=SCHOOLS, group_name="xporter", kinds={"xporter", "parquet"}, pool=VENDOR,
          description="The school register from GetXodSchools: authorised, pending and revoked schools with the "
                      "consent scopes each authorised.", tags={"edu/vendor": VENDOR})
def xporter_schools(context: dg.AssetExecutionContext, xporter: XporterResource, lake: LakeResource) -> dg.MaterializeResult:
    schools = xporter.schools(context.log, max_age_seconds=0)
    rows = [{"estab": s.estab, "school_name": s.name, "status": s.status, "since": s.since,
             "scopes": ",".join(sorted(s.scopes))} for s in schools]
    return _land(lake, "schools", {}, rows, Where(VENDOR, "schools"), context.log)


def build_management_asset(m: ManagementEndpoint) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([VENDOR, f"management_{m.name}"]),
        group_name="xporter",
        kinds={"xporter", "parquet"},
        partitions_def=ESTAB if m.per_school else None,
        pool=VENDOR,
        description=f"{m.description} (management API `{m.path}`, management token).",
        tags={"edu/vendor": VENDOR},
    )
    def _asset(context: dg.AssetExecutionContext, xporter: XporterResource, lake: LakeResource) -> dg.MaterializeResult:
        estab = context.partition_key if m.per_school else None
        where = Where(VENDOR, f"management_{m.name}", f"school {estab}" if estab else None)
        client = xporter.management(context.log)
        try:
            body = client.get(m.path.lstrip("/"), {"estab": estab} if estab else {}, where)
        finally:
            client.close()
        if m.result_set is None:
            rows = [{k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in (body or {}).items()}]
        else:
            rows = [r for r in (body or {}).get(m.result_set) or [] if isinstance(r, dict)]
        return _land(lake, f"management_{m.name}", {"estab": estab} if estab else {}, rows, where, context.log)

    return _asset


def _school_data_fresh(path: Path) -> tuple[bool, dict, str | None]:
    limit = env_float("XPORTER_MAX_DATA_AGE_DAYS", 2.0)
    rows = pq.read_table(path).to_pylist()
    ages = [r.get("school_data_age_days") for r in rows if r.get("school_data_age_days") is not None]
    age = max((float(a) for a in ages), default=None)
    status = rows[0].get("xod_status") if rows else None
    fresh = age is not None and age <= limit
    return fresh, {"school_data_age_days": age if age is not None else -1, "limit_days": limit,
                   "xod_status": str(status)}, \
        None if fresh else f"the vendor's cached data is {age} days old (limit {limit}); the school's MIS agent may be down"


SCHOOL_DATA_FRESH = FileCheck(
    "school_data_fresh", "The vendor's cache of the school's data is recent (Health: SchoolDataAgeDays).",
    _school_data_fresh,
)
"""Evaluated on each landed ``xporter/health`` partition by the step that lands it (see ``assets.build_checks``)."""


def build_monitoring() -> list[dg.AssetsDefinition]:
    _, management = load_catalog()
    return [xporter_schools, *(build_management_asset(m) for m in management)]
