"""How each kind of Stellic export is partitioned, and how a partition key becomes request parameters.

* ``snapshot``: exports with no filter return the vendor's current state, so they are daily snapshots
  (the partition is the capture date; materializing a past date would mislabel today's data, so it is
  refused unless asked for).
* time windows: ``month`` (appointments' ``start``/``end``) and ``updated_since`` (graduation applications).
* terms: ``usem_term`` (Stellic unique-semester ids), ``year_semester`` (``2026-fall``), ``year``,
  ``graduation_term``.
* user-chosen values as dynamic partitions a user adds in the UI: ``workflow``, ``note_tag``,
  ``dynamic_group``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import dagster as dg

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.months import last_months, month_end
from edu_assets.vendors.stellic.resources import SNAPSHOT_START_DATE, WINDOW_START_DATE

_YEAR_SEMESTER = re.compile(r"^([0-9]{4})-([a-z]+)$")  # ASCII digits: str.isdigit and \d take "२३"


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class Partitioning:
    kind: str
    dim: str
    make: Callable[[], dg.PartitionsDefinition]  # called when definitions are built: dates come from settings
    to_params: Callable[[str, Where], list[tuple[str, str]]]
    demo_keys: Callable[[], list[str]]
    snapshot: bool = False

    @property
    def definition(self) -> dg.PartitionsDefinition:
        """The Dagster partitions, the same object for the same settings (so jobs and assets agree)."""
        return self.make()

    @property
    def dynamic_name(self) -> str | None:
        return self.definition.name if isinstance(self.definition, dg.DynamicPartitionsDefinition) else None


def _month_params(key: str, where: Where) -> list[tuple[str, str]]:
    return [("start", dt.date.fromisoformat(key).isoformat()), ("end", month_end(key))]


def _year_semester(key: str, where: Where) -> list[tuple[str, str]]:
    m = _YEAR_SEMESTER.match(key.strip().lower())
    if not m:
        raise ConfigError(
            where,
            f"term partition {key!r} is not of the form YEAR-SEMESTER (e.g. 2026-fall)",
            hint="delete that partition and add one like 2026-fall in the UI",
        )
    return [("year", m.group(1)), ("semester", m.group(2))]


def _int_key(param: str) -> Callable[[str, Where], list[tuple[str, str]]]:
    def to_params(key: str, where: Where) -> list[tuple[str, str]]:
        if not re.fullmatch(r"[0-9]+", key.strip()):  # ASCII only: str.isdigit() accepts '२३'
            raise ConfigError(
                where,
                f"partition {key!r} must be a number ({param})",
                hint=f"add the {param} as the partition key in the UI, e.g. 2434",
            )
        return [(param, key.strip())]

    return to_params


def _str_key(param: str) -> Callable[[str, Where], list[tuple[str, str]]]:
    return lambda key, where: [(param, key)]


def _months_back(n: int) -> list[str]:
    """The last ``n`` complete months."""
    return [m.isoformat() for m in last_months(n + 1, today())[:-1]]


def _years() -> list[str]:
    return [str(y) for y in range(2018, today().year + 2)]


@cache
def _daily(start: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start, end_offset=1)


@cache
def _monthly(start: str) -> dg.MonthlyPartitionsDefinition:
    return dg.MonthlyPartitionsDefinition(start_date=start, end_offset=1)


def _fixed(definition: dg.PartitionsDefinition) -> Callable[[], dg.PartitionsDefinition]:
    return lambda: definition


def __getattr__(name: str) -> Any:
    """``SNAPSHOT_START`` and ``WINDOW_START`` for older importers: read from the settings when asked for,
    never at import (a bad value then fails the code location's load with the other bad ones)."""
    if name == "SNAPSHOT_START":
        return SNAPSHOT_START_DATE.get()
    if name == "WINDOW_START":
        return WINDOW_START_DATE.get()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PARTITIONINGS: dict[str, Partitioning] = {
    "snapshot": Partitioning(
        "snapshot",
        "snapshot_date",
        lambda: _daily(SNAPSHOT_START_DATE.get()),
        lambda key, where: [],
        lambda: [today().isoformat()],
        snapshot=True,
    ),
    "month": Partitioning(
        "month",
        "month",
        lambda: _monthly(WINDOW_START_DATE.get()),
        _month_params,
        lambda: _months_back(3),
    ),
    "updated_since": Partitioning(
        "updated_since",
        "updated_date",
        lambda: _daily(WINDOW_START_DATE.get()),
        lambda key, where: [("updated_since", f"{key}T00:00:00+00:00")],
        lambda: [(today() - dt.timedelta(days=1)).isoformat()],
    ),
    "year": Partitioning(
        "year",
        "year",
        _fixed(dg.StaticPartitionsDefinition(_years())),
        lambda key, where: [("years", key)],
        lambda: [str(today().year)],
    ),
    "year_semester": Partitioning(
        "year_semester",
        "term",
        _fixed(dg.DynamicPartitionsDefinition(name="stellic_term")),
        _year_semester,
        lambda: [f"{today().year}-fall"],
    ),
    "usem_term": Partitioning(
        "usem_term",
        "usem_id",
        _fixed(dg.DynamicPartitionsDefinition(name="stellic_usem_id")),
        _int_key("usem_ids"),
        lambda: ["2434", "3435"],
    ),
    "graduation_term": Partitioning(
        "graduation_term",
        "graduation_term",
        _fixed(dg.DynamicPartitionsDefinition(name="stellic_graduation_term")),
        _int_key("expected_graduation_term"),
        lambda: ["2258"],
    ),
    "workflow": Partitioning(
        "workflow",
        "workflow_id",
        _fixed(dg.DynamicPartitionsDefinition(name="stellic_workflow")),
        _int_key("workflow_id"),
        lambda: ["23"],
    ),
    "note_tag": Partitioning(
        "note_tag",
        "tag",
        _fixed(dg.DynamicPartitionsDefinition(name="stellic_note_tag")),
        _str_key("tag"),
        lambda: ["2023FANeverAttended"],
    ),
    "dynamic_group": Partitioning(
        "dynamic_group",
        "dynamic_group",
        _fixed(dg.DynamicPartitionsDefinition(name="stellic_dynamic_group")),
        _str_key("dynamic_group"),
        lambda: ["Engineering Students"],
    ),
}


def check_snapshot_date(key: str, where: Where, allow_past: bool) -> None:
    """Snapshots capture the vendor's current state: refuse to file it under a past or future date."""
    day = dt.date.fromisoformat(key)
    now = today()
    if day > now:
        raise ConfigError(
            where,
            f"snapshot partition {key} is in the future (today is {now} UTC)",
            hint="materialize today's partition",
        )
    if day < now - dt.timedelta(days=1) and not allow_past:
        raise ConfigError(
            where,
            f"this export returns the vendor's current state, so it cannot be captured for the past date {key} "
            f"(today is {now} UTC)",
            hint="materialize today's partition, or set allow_past_snapshot: true to file current data under that date",
        )
