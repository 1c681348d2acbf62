"""Calendar-month arithmetic for month partitions (keys are the first day: ``YYYY-MM-01``)."""

from __future__ import annotations

import datetime as dt


def next_month(month: dt.date) -> dt.date:
    """The first day of the month after ``month``'s."""
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def month_end(month: str | dt.date) -> str:
    """The last day (ISO) of the month that starts at ``month``."""
    first = dt.date.fromisoformat(month) if isinstance(month, str) else month
    return (next_month(first) - dt.timedelta(days=1)).isoformat()


def last_months(count: int, today: dt.date | None = None) -> list[dt.date]:
    """The first days of the last ``count`` months, oldest first, ending with the current month."""
    first = (today or dt.date.today()).replace(day=1)
    out = [first]
    for _ in range(count - 1):
        out.insert(0, (out[0] - dt.timedelta(days=1)).replace(day=1))
    return out
