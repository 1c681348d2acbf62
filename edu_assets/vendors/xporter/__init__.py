"""Xporter on Demand (Groupcall): UK school MIS data, one Idaas token per school, change sets, paging."""

from __future__ import annotations

from functools import cache

import dagster as dg

from edu_assets.vendors.xporter.assets import build_all, views
from edu_assets.vendors.xporter.automation import (
    build_filter_discovery,
    build_school_discovery,
    demo_plan,
    filtered_schedules,
    jobs,
    xporter_current_month,
    xporter_daily_snapshots,
)
from edu_assets.vendors.xporter.monitoring import build_monitoring
from edu_assets.vendors.xporter.resources import xporter_resource_from_env

__all__ = ["definitions", "demo_plan", "views"]


@cache  # the ~200 assets and their jobs are built once per process, from the settings of the first build
def _built() -> dg.Definitions:
    return dg.Definitions(
        assets=[*build_all(), *build_monitoring()],
        jobs=list(jobs().values()),
        sensors=[build_school_discovery(), build_filter_discovery()],
        schedules=[xporter_daily_snapshots, xporter_current_month, *filtered_schedules()],
    )


def definitions() -> dg.Definitions:
    """The assets, jobs, sensors and schedules (built once), and the resource as this load configures it."""
    return dg.Definitions.merge(_built(), dg.Definitions(resources={"xporter": xporter_resource_from_env()}))
