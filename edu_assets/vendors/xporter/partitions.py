"""Xporter partitions: schools (``estab``, discovered by a sensor), school x month for date ranges, and a
dimension for each mandatory filter whose values can be enumerated (see ``catalog.Filter``):

- a school year (``3281101|2024``: the year 2024/25) or a fixed list (``3281101|KS4``) beside the school;
- values found in a lookup endpoint (UDF names, document types, aspects, marksheets): dynamic partitions of
  their own, one per school and value (``3281101:Locker Number``), because each school has its own values;
  crossed with the month where the endpoint also needs a date range.

Monthly, not daily, windows keep a trust within Dagster's comfort limit (~100,000 partitions per asset):
50 schools x 5 years x 12 months = 3,000 partitions, where daily would be 91,000.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import dagster as dg

from edu_assets.core.months import next_month
from edu_assets.core.partition import PartitionId, partition_dims
from edu_assets.vendors.xporter.catalog import Endpoint, Filter
from edu_assets.vendors.xporter.client import VENDOR
from edu_assets.vendors.xporter.resources import START_MONTH as START_MONTH_SETTING

ESTAB_PARTITIONS = "xporter_estab"
ESTAB = dg.DynamicPartitionsDefinition(name=ESTAB_PARTITIONS)
LOOKUP_SEPARATOR = ":"


def month() -> dg.MonthlyPartitionsDefinition:
    """Months from XPORTER_START_MONTH, read when the definitions are built (never at import)."""
    return _month(START_MONTH_SETTING.get())


def estab_month() -> dg.MultiPartitionsDefinition:
    """School x month."""
    return _estab_month(START_MONTH_SETTING.get())


def school_year() -> dg.TimeWindowPartitionsDefinition:
    """School years by the year they start (``2024`` = September 2024 to August 2025, the vendor's
    ``SchoolYear``), from XPORTER_START_MONTH's year up to the current one."""
    return _school_year(START_MONTH_SETTING.get()[:4])


@cache  # one object per start: every asset, job and schedule shares it
def _month(start: str) -> dg.MonthlyPartitionsDefinition:
    return dg.MonthlyPartitionsDefinition(start_date=start, end_offset=1)


@cache
def _estab_month(start: str) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"estab": ESTAB, "month": _month(start)})


@cache
def _school_year(year: str) -> dg.TimeWindowPartitionsDefinition:
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 1 9 *", start=year, fmt="%Y", end_offset=1, timezone="Europe/London",
    )


def __getattr__(name: str) -> Any:
    """The former module constants (``START_MONTH``, ``MONTH``, ``ESTAB_MONTH``, ``SCHOOL_YEAR``,
    ``ESTAB_MONTH_PARTITIONING``) for older importers, computed from the settings when asked for."""
    lazy = {"START_MONTH": START_MONTH_SETTING.get, "MONTH": month, "ESTAB_MONTH": estab_month,
            "SCHOOL_YEAR": school_year, "ESTAB_MONTH_PARTITIONING": estab_month_partitioning}
    if name in lazy:
        return lazy[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SCHOOLS_PER_RUN = 25
"""Schools per run when many schools load at once (the daily schedule, newly discovered schools, a UI
backfill of snapshot endpoints). One run per school costs a run's fixed overhead (a process, a definitions
load, ~60 steps' events) per school; a run of a batch pays it once and lands its schools concurrently
within each step (``school_concurrency``)."""

FILTER_PARTITIONS_PER_RUN = 100
"""Lookup-value partitions (one school's UDF, aspect, marksheet...) per run in a backfill or a schedule:
each is one small call, so a run lands many, ``school_concurrency`` at a time."""

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def school_batches(estabs: Sequence[str], size: int = SCHOOLS_PER_RUN) -> list[list[str]]:
    """``estabs`` (in the partitions' stored order) cut into consecutive batches of at most ``size``.

    A batch becomes one run over a partition range, and a range of dynamic partitions is resolved in their
    stored order, so the order must be the stored one (never sorted)."""
    return [list(estabs[i:i + size]) for i in range(0, len(estabs), max(1, size))]


def batch_tags(batch: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover the schools of ``batch`` (a partition range)."""
    return {RANGE_START: batch[0], RANGE_END: batch[-1]}


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


# ---------------------------------------------------------------------------------------------- filters
def lookup_key(estab: str, value: str) -> str:
    """The partition key of one school's lookup value: ``3281101:Locker Number``."""
    return f"{estab}{LOOKUP_SEPARATOR}{value}"


def split_lookup_key(key: str) -> tuple[str, str]:
    """``3281101:Locker Number`` -> (estab, value); the estab never holds the separator, the value may."""
    estab, _, value = key.partition(LOOKUP_SEPARATOR)
    return estab, value


def unusable_value(value: str) -> str | None:
    """Why a lookup value cannot be a partition key (None: it can): Dagster splits multi-dimension keys on
    ``|`` and refuses a few substrings; a lake directory name has a length limit."""
    if not value.strip():
        return "empty"
    if "|" in value:
        return "contains '|'"
    if any(bad in value for bad in ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")):
        return "contains '...' or a control character"
    if len(value) > 200:
        return "longer than 200 characters"
    return None


@cache
def lookup_partitions(name: str) -> dg.DynamicPartitionsDefinition:
    """The dynamic partitions of one lookup's values (``xporter_<name>``), kept by ``xporter_filter_discovery``."""
    return dg.DynamicPartitionsDefinition(name=f"xporter_{name}")


@dataclass(frozen=True)
class Partitioning:
    """How an endpoint's partitions are laid out: the Dagster definition, and how a key maps to the lake's
    dimensions (``estab`` first, then the filter's dimension, then ``month``)."""

    name: str  # the ``edu/partitioning`` tag and the job suffix: estab, estab_month, estab_school_year, aspect ...
    definition: dg.PartitionsDefinition
    dimension: str | None = None  # the filter's dimension: udf, document_type, aspect, school_year, key_stage ...
    monthly: bool = False
    per_school_values: bool = False  # keys ``<estab>:<value>`` of a lookup's dynamic partitions...
    lookup: str | None = None  # ...named ``xporter_<lookup>``

    @property
    def dynamic_name(self) -> str:
        """The dynamic partitions its keys (or its school dimension) come from."""
        return lookup_partitions(self.lookup).name if self.lookup else ESTAB_PARTITIONS

    def parts(self, key: str) -> dict[str, str]:
        """A partition key as its dimensions in lake order: ``{"estab": ..., [dimension: ...], ["month": ...]}``
        (Dagster reads the key; a lookup value's ``<estab>:<value>`` is this vendor's own, read here)."""
        by_dim = partition_dims(self.definition, key, self.dimension or "estab")
        out: dict[str, str] = {}
        if self.per_school_values:
            estab, value = split_lookup_key(by_dim[self.dimension or ""])
            out = {"estab": estab, str(self.dimension): value}
        else:
            out["estab"] = by_dim["estab"]
            if self.dimension:
                out[self.dimension] = by_dim[self.dimension]
        if self.monthly:
            out["month"] = by_dim["month"]
        return out

    def pid(self, dataset: str, key: str) -> PartitionId:
        """The lake partition of one of the endpoint's datasets (a table) for a partition key."""
        return PartitionId.of(VENDOR, dataset, self.parts(key), label=key)


ESTAB_PARTITIONING = Partitioning("estab", ESTAB)


def estab_month_partitioning() -> Partitioning:
    return _estab_month_partitioning(estab_month())


@cache
def _estab_month_partitioning(definition: dg.MultiPartitionsDefinition) -> Partitioning:
    return Partitioning("estab_month", definition, monthly=True)


@cache
def _partitioning(kind: str, dimension: str | None, partitions: str | None, values: tuple[str, ...],
                  monthly: bool, start: str) -> Partitioning:
    """Cached by every input, the start month included, so one layout is one object per settings."""
    if kind == "lookup":
        dynamic = lookup_partitions(str(partitions))
        if monthly:
            return Partitioning(f"{partitions}_month", dg.MultiPartitionsDefinition({str(dimension): dynamic, "month": _month(start)}),
                                dimension, monthly=True, per_school_values=True, lookup=partitions)
        return Partitioning(str(partitions), dynamic, dimension, per_school_values=True, lookup=partitions)
    second = _school_year(start[:4]) if kind == "school_year" else dg.StaticPartitionsDefinition(list(values))
    return Partitioning(f"estab_{dimension}", dg.MultiPartitionsDefinition({"estab": ESTAB, str(dimension): second}),
                        dimension)


def partitioning_for(endpoint: Endpoint) -> Partitioning:
    """The endpoint's partitions: by school (and month), plus its enumerable mandatory filter's dimension."""
    dim: Filter | None = next((f for f in endpoint.filters if f.kind in ("lookup", "school_year", "values")), None)
    if dim is None:
        return estab_month_partitioning() if endpoint.partitioned_by_month else ESTAB_PARTITIONING
    return _partitioning(dim.kind, dim.dimension, dim.lookup.partitions if dim.lookup else None, dim.values,
                         endpoint.partitioned_by_month, START_MONTH_SETTING.get())
