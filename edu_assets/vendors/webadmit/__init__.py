"""WebAdMIT (Liaison): export templates run as background export files, downloaded from URLs that live <30 s."""

from __future__ import annotations

import dagster as dg

from edu_assets.vendors.webadmit.assets import build_all, views
from edu_assets.vendors.webadmit.automation import (
    build_completion_sensor,
    build_daily_schedule,
    build_discovery_sensor,
    demo_plan,
)
from edu_assets.vendors.webadmit.resources import webadmit_resource_from_env

__all__ = ["definitions", "demo_plan", "views"]


def definitions() -> dg.Definitions:
    assets, checks = build_all()
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        sensors=[build_completion_sensor(), build_discovery_sensor()],
        schedules=[build_daily_schedule()],
        resources={"webadmit": webadmit_resource_from_env()},
    )
