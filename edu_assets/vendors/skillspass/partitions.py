"""SkillsPass partitions: a UTC day for window exports, learning activity x day for interactions.

A day is "records created or modified that UTC day". Learning activities are dynamic partitions, added by
the activity discovery sensor (``automation.py``) from the landed learning activities. A backfill that
groups days into one vendor job lands a *window* (``window_start=…/window_end=…``) instead of a day.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import dagster as dg

from edu_assets.vendors.skillspass.resources import START_DATE as START_DATE_SETTING

ACTIVITIES = dg.DynamicPartitionsDefinition(name="skillspass_activity")
WINDOW_DIMS = ("window_start", "window_end")


def daily() -> dg.DailyPartitionsDefinition:
    """UTC days from SKILLSPASS_START_DATE: read when the definitions are built, never at import."""
    return _daily(START_DATE_SETTING.get())


def activity_by_day() -> dg.MultiPartitionsDefinition:
    """Learning activity x UTC day (interactions)."""
    return _activity_by_day(START_DATE_SETTING.get())


@cache  # one object per start date: every asset, job and schedule shares it
def _daily(start: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start)


@cache
def _activity_by_day(start: str) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"activity": ACTIVITIES, "date": _daily(start)})


def __getattr__(name: str) -> Any:
    """``START_DATE``, ``DAILY`` and ``ACTIVITY_BY_DAY`` for older importers, computed when asked for."""
    if name == "START_DATE":
        return START_DATE_SETTING.get()
    if name == "DAILY":
        return daily()
    if name == "ACTIVITY_BY_DAY":
        return activity_by_day()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
