"""Stellic: bulk CSV exports (sync or async) and the partner API's exports and student reads."""

from __future__ import annotations

import dagster as dg

from edu_assets.vendors.stellic.assets import build_all, views
from edu_assets.vendors.stellic.automation import build_completion_sensor, build_snapshot_schedule, demo_plan
from edu_assets.vendors.stellic.catalog import check_export_params, load_catalog
from edu_assets.vendors.stellic.partner import build_partner_assets
from edu_assets.vendors.stellic.resources import EXPORT_PARAMS, stellic_resource_from_env

__all__ = ["definitions", "demo_plan", "views"]


def definitions() -> dg.Definitions:
    specs = load_catalog()
    check_export_params(EXPORT_PARAMS.get() or {}, specs)
    return dg.Definitions(
        assets=[*build_all(), *build_partner_assets()],
        sensors=[build_completion_sensor(specs)],
        schedules=[build_snapshot_schedule(specs)],
        resources={"stellic": stellic_resource_from_env()},
    )
