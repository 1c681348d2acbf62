"""SkillsPass: export-data jobs by date window (CSV/JSONL), polled until COMPLETED."""

from __future__ import annotations

import dagster as dg

from edu_assets.vendors.skillspass.assets import asset_key, build_all, views
from edu_assets.vendors.skillspass.automation import (
    build_activity_discovery_sensor,
    build_completion_sensor,
    build_daily_schedules,
    demo_plan,
)
from edu_assets.vendors.skillspass.catalog import load_catalog
from edu_assets.vendors.skillspass.resources import skillspass_resource_from_env

__all__ = ["definitions", "demo_plan", "views"]


def definitions() -> dg.Definitions:
    specs = load_catalog()
    activities = next(s for s in specs if s.name == "learning_activities")
    return dg.Definitions(
        assets=build_all(),
        sensors=[build_completion_sensor(specs), build_activity_discovery_sensor(asset_key(activities))],
        schedules=build_daily_schedules(specs),
        resources={"skillspass": skillspass_resource_from_env()},
    )
