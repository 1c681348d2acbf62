"""Xporter on Demand (Groupcall): UK school MIS data, one Idaas token per school, change sets, paging."""

from __future__ import annotations

from functools import cache

import dagster as dg

from edu_assets.vendors.xporter.assets import build_all, views
from edu_assets.vendors.xporter.automation import (
    FILTERED_SCHEDULES,
    JOBS,
    demo_plan,
    xporter_current_month,
    xporter_daily_snapshots,
    xporter_filter_discovery,
    xporter_school_discovery,
)
from edu_assets.vendors.xporter.monitoring import build_monitoring
from edu_assets.vendors.xporter.resources import XporterResource

__all__ = ["definitions", "demo_plan", "views"]


@cache  # nothing here reads the environment at build time: build the ~200 assets once per process
def definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*build_all(), *build_monitoring()],
        jobs=JOBS,
        sensors=[xporter_school_discovery, xporter_filter_discovery],
        schedules=[xporter_daily_snapshots, xporter_current_month, *FILTERED_SCHEDULES],
        resources={"xporter": XporterResource()},
    )
