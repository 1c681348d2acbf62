"""Xporter partitions: schools (``estab``, discovered by a sensor) and school x month for date ranges.

Monthly, not daily, windows keep a trust within Dagster's comfort limit (~100,000 partitions per asset):
50 schools x 5 years x 12 months = 3,000 partitions, where daily would be 91,000.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from edu_assets.core.months import next_month
from edu_assets.core.settings import env

ESTAB_PARTITIONS = "xporter_estab"
ESTAB = dg.DynamicPartitionsDefinition(name=ESTAB_PARTITIONS)
START_MONTH = env("XPORTER_START_MONTH", "2021-09-01") or "2021-09-01"
MONTH = dg.MonthlyPartitionsDefinition(start_date=START_MONTH, end_offset=1)
ESTAB_MONTH = dg.MultiPartitionsDefinition({"estab": ESTAB, "month": MONTH})


SCHOOLS_PER_RUN = 25
"""Schools per run when many schools load at once (the daily schedule, newly discovered schools, a UI
backfill of snapshot endpoints). One run per school costs a run's fixed overhead (a process, a definitions
load, ~60 steps' events) per school; a run of a batch pays it once and lands its schools concurrently
within each step (``school_concurrency``)."""

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def school_batches(estabs: Sequence[str], size: int = SCHOOLS_PER_RUN) -> list[list[str]]:
    """``estabs`` (in the partitions' stored order) cut into consecutive batches of at most ``size``.

    A batch becomes one run over a partition range, and a range of dynamic partitions is resolved in their
    stored order, so the order must be the stored one (never sorted)."""
    return [list(estabs[i:i + size]) for i in range(0, len(estabs), max(1, size))]


def batch_tags(batch: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover the schools of ``batch`` (a partition range)."""
    return {RANGE_START: batch[0], RANGE_END: batch[-1]}


def dims(key: str | None) -> dict[str, str]:
    """A partition key as its dimensions: ``"3281101"`` or ``"3281101|2025-01-01"`` (estab sorts first)."""
    if not key:
        return {}
    if "|" in key:
        estab, month = key.split("|", 1)
        return {"estab": estab, "month": month}
    return {"estab": key}


def month_of(value: object) -> str | None:
    """The month partition (``YYYY-MM-01``) of a vendor date such as ``2025-01-15`` or ``15-01-2025``."""
    text = str(value or "")[:10]
    try:
        return dt.date.fromisoformat(text).replace(day=1).isoformat()
    except ValueError:
        pass
    try:
        return dt.datetime.strptime(text, "%d-%m-%Y").date().replace(day=1).isoformat()
    except ValueError:
        return None


def consecutive_windows(months: list[str], size: int) -> list[list[str]]:
    """Group sorted month keys into runs of consecutive months, each at most ``size`` long."""
    windows: list[list[str]] = []
    for month in sorted(set(months)):
        last = windows[-1] if windows else None
        if last and len(last) < size and next_month(dt.date.fromisoformat(last[-1])).isoformat() == month:
            last.append(month)
        else:
            windows.append([month])
    return windows
