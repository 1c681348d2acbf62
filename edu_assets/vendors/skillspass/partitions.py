"""SkillsPass partitions: a UTC day for window exports, learning activity x day for interactions.

A day is "records created or modified that UTC day". Learning activities are dynamic partitions, added by
the activity discovery sensor (``automation.py``) from the landed learning activities. A backfill that
groups days into one vendor job lands a *window* (``window_start=…/window_end=…``) instead of a day.
"""

from __future__ import annotations

import dagster as dg

from edu_assets.core.settings import env

START_DATE = env("SKILLSPASS_START_DATE", "2025-01-01") or "2025-01-01"
DAILY = dg.DailyPartitionsDefinition(start_date=START_DATE)
ACTIVITIES = dg.DynamicPartitionsDefinition(name="skillspass_activity")
ACTIVITY_BY_DAY = dg.MultiPartitionsDefinition({"activity": ACTIVITIES, "date": DAILY})
WINDOW_DIMS = ("window_start", "window_end")
