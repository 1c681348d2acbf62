"""Mandatory filters: what each partition of a filtered endpoint sends, and where the values come from.

The document marks filters mandatory on 14 endpoints (see ``catalog.Filter`` and catalog.yaml ``filters``).
The factory turns each into one of:

- a partition dimension (school year, key stage, or a lookup's values: UDF names, document types, aspects,
  marksheets), so a partition *is* its filter value;
- a fan-out over the school's landed people list (``xporter/students``, ``xporter/staff__staff``): one
  partition lands in one run, ``people_concurrency`` requests at a time, ``people_per_request`` ids a call
  where the filter takes a CSV;
- a typed run-config field, where only a person can choose (Assessment Results: one of seven filters).

A partition whose filter has no value fails before any request is made, naming the filter and where to set
it (``MissingFilter``). Lookup endpoints publish the values they landed in their materialization metadata
(``filter_values_metadata``), where ``xporter_filter_discovery`` finds them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.lake import Lake, original_columns, read_table
from edu_assets.core.naming import snake_case
from edu_assets.core.paging import fetch_pages
from edu_assets.core.partition import PartitionId
from edu_assets.vendors.xporter.catalog import Endpoint, Filter, Lookup, load_catalog
from edu_assets.vendors.xporter.client import VENDOR, FetchSummary, XporterClient
from edu_assets.vendors.xporter.partitions import Partitioning, unusable_value

PEOPLE = {"students": ("students", "Students"), "staff": ("staff", "Staff")}  # people -> (endpoint, table)
FILTER_VALUES = "xporter/filter_values/"  # + lookup partitions name: the lookup's values, in materialization metadata
PERSON_COLUMN = {"students": "ForStudentId", "staff": "ForStaffId"}
"""Added to every row of a one-person-a-call fan-out (timetables), whose rows do not say whose they are."""


class MissingFilter(ConfigError):
    """A mandatory filter has no value for this partition; raised before any request is made."""


@dataclass(frozen=True)
class Slice:
    """One school's share of a run with one value of the endpoint's filter dimension (if any): the lake's
    partition dimensions (without the month), the partition key of each of its months ("" for an endpoint
    without months), and the filter parameters it sends."""

    estab: str
    dims: dict[str, str]
    keys: dict[str, str]  # month ("" without months) -> partition key
    params: dict[str, str] = field(default_factory=dict)
    people: tuple[str, ...] | None = None  # the fanned-out ids (None: no people filter)

    @property
    def months(self) -> list[str]:
        return list(self.keys)

    @property
    def key(self) -> str:
        """The partition key of an endpoint without months."""
        return self.keys[""]

    def month_key(self, month: str) -> str:
        return self.keys[month]

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k} {v}" for k, v in self.dims.items() if k != "estab")
        return f"school {self.estab}" + (f", {extra}" if extra else "")

    def pid(self, dataset: str, month: str | None = None) -> PartitionId:
        """The lake partition of one of the endpoint's datasets (a table) for this slice, or one of its months."""
        pid = PartitionId.of(VENDOR, dataset, self.dims, label=self.label)
        return pid if month is None else pid.with_dims({"month": month}, label=f"{self.label}, month {month[:7]}")


def slices(endpoint: Endpoint, partitioning: Partitioning, keys: Sequence[str]) -> list[Slice]:
    """The run's partition keys grouped into slices (school x filter value), each with its months."""
    dim = next((f for f in endpoint.filters if f.kind in ("lookup", "school_year", "values")), None)
    grouped: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for key in keys:
        parts = partitioning.parts(key)
        month = parts.pop("month", "")
        grouped.setdefault(tuple(parts.items()), {})[month] = key
    out = []
    for dims, by_month in grouped.items():
        parts = dict(dims)
        params = {dim.param: parts[str(dim.dimension)]} if dim is not None else {}
        out.append(Slice(parts["estab"], parts, dict(sorted(by_month.items())), params))
    return sorted(out, key=lambda s: tuple(s.dims.values()))


# ---------------------------------------------------------------------------------------------- run config
def config_fields(endpoint: Endpoint) -> dict[str, Any]:
    """Run-config fields the endpoint's filters add to ``XporterEndpointConfig`` (for ``pydantic.create_model``)."""
    out: dict[str, Any] = {}
    chosen = endpoint.filter_of("config")
    if chosen is not None:
        names = ", ".join(chosen.params)
        for param in chosen.params:
            out[snake_case(param)] = (list[str], Field(
                default=[], description=f"Ids sent as the vendor's `{param}` filter (CSV). The document (line "
                                        f"{chosen.doc_line}) needs at least one of: {names}. {chosen.note}".strip()))
    people = endpoint.filter_of("people")
    if people is not None:
        if people.per_request > 1:
            out["people_per_request"] = (int, Field(
                default=people.per_request, description=f"{people.people} ids sent in one `{people.param}` CSV"))
        out["people_concurrency"] = (int, Field(
            default=4, description=f"requests in flight at once while fanning out over the school's {people.people}"))
    return out


def config_values(endpoint: Endpoint, config: Any, where: Where) -> dict[str, str]:
    """The run-config filter parameters to send; a run that sets none fails before any request."""
    chosen = endpoint.filter_of("config")
    if chosen is None:
        return {}
    sent = {p: ",".join(str(v).strip() for v in getattr(config, snake_case(p)) if str(v).strip())
            for p in chosen.params}
    sent = {p: v for p, v in sent.items() if v}
    if not sent:
        op = f"xporter__{endpoint.name}"
        raise MissingFilter(
            where, f"{endpoint.title} needs at least one of the mandatory filters {', '.join(chosen.params)} "
                   f"(document line {chosen.doc_line}); none was set, so nothing was requested",
            hint=f"set one in the run config: ops: {{{op}: {{config: {{{snake_case(chosen.params[0])}: ['<id>', ...]}}}}}} "
                 f"(Launchpad: {', '.join(snake_case(p) for p in chosen.params)})")
    return sent


# ---------------------------------------------------------------------------------------------- people fan-out
def people_pid(people: str, estab: str) -> PartitionId:
    """The school's partition of its landed people list (``xporter/students``, ``xporter/staff__staff``)."""
    endpoint_name, table_name = PEOPLE[people]
    endpoint = next(e for e in load_catalog()[0] if e.name == endpoint_name)
    table = next(t for t in endpoint.tables if t.name == table_name)
    return PartitionId.of(VENDOR, endpoint.asset_name(table), {"estab": estab})


def people_asset(people: str) -> str:
    endpoint_name, table_name = PEOPLE[people]
    endpoint = next(e for e in load_catalog()[0] if e.name == endpoint_name)
    return f"{VENDOR}/{endpoint.asset_name(next(t for t in endpoint.tables if t.name == table_name))}"


def people_ids(lake: Lake, endpoint: Endpoint, f: Filter, estab: str, where: Where) -> tuple[str, ...]:
    """The ``Id`` of every person in the school's landed people list, in landed order, without repeats."""
    stored = lake.stored(people_pid(str(f.people), estab))
    asset = people_asset(str(f.people))
    if stored is None:
        raise MissingFilter(
            where, f"{endpoint.title} needs the mandatory filter {f.param} (document line {f.doc_line}): the "
                   f"{f.people} of school {estab}, taken from the landed {asset}, which has not landed for this "
                   "school; nothing was requested",
            hint=f"materialize {asset} for partition {estab} first (the daily xporter_snapshots job does), "
                 "then re-run this partition")
    column = next((snake for snake, original in stored.original_columns.items() if original.lower() == "id"),
                  None)
    if column is None:
        raise MissingFilter(
            where, f"{endpoint.title} needs {f.param} from the Id column of {asset} (school {estab}), and the "
                   "landed file has none (landed with a `select` that left Id out?); nothing was requested",
            hint=f"re-materialize {asset} for partition {estab} with Id among its columns")
    values = read_table(stored.path, columns=[column]).column(0).to_pylist()
    return tuple(dict.fromkeys(str(v) for v in values if v is not None and str(v).strip()))


def with_people(part: Slice, f: Filter, ids: tuple[str, ...], per_request: int) -> Slice:
    """``part`` with its fanned-out ids; its params carry the first call's value (for the readiness probe)."""
    first = ",".join(ids[:per_request]) if per_request > 1 else (ids[0] if ids else "")
    params = {**part.params, **({f.param: first} if first else {})}
    return Slice(part.estab, part.dims, part.keys, params, ids)


def fan_out(
    client: XporterClient,
    endpoint: Endpoint,
    params: Mapping[str, Any],
    where: Where,
    on_rows: Callable[[str, list[dict[str, Any]]], None],
    ids: Sequence[str],
    *,
    per_request: int,
    concurrency: int,
    fetch_kwargs: Mapping[str, Any],
) -> FetchSummary:
    """One paged fetch per id (``per_request`` 1) or per CSV of up to ``per_request`` ids, at most
    ``concurrency`` at a time, all routed into the same tables; the first failure stops the rest and is raised.

    Each call is a full load (no ``changedRows``: a token would cover one call's ids only). Rows of a
    one-person call get that person's id (``PERSON_COLUMN``): a timetable's lessons do not carry it."""
    f = endpoint.filter_of("people")
    assert f is not None
    size = max(1, per_request if f.per_request > 1 else 1)
    chunks = [list(ids[i:i + size]) for i in range(0, len(ids), size)]
    lock = threading.Lock()
    person = PERSON_COLUMN[str(f.people)] if size == 1 else None
    base = {k: v for k, v in params.items() if k != "changedRows"}

    def one(index: int) -> FetchSummary:
        chunk = chunks[index]

        def routed(name: str, rows: list[dict[str, Any]]) -> None:
            if person is not None:
                rows = [{**row, person: chunk[0]} for row in rows]
            with lock:  # the router writes one staging file per table: one writer at a time
                on_rows(name, rows)

        return client.fetch(endpoint.path, {**base, f.param: ",".join(chunk)}, where, routed, **fetch_kwargs)

    summaries: list[FetchSummary] = []
    fetch_pages(range(len(chunks)), one, lambda _i, s: summaries.append(s), concurrency=max(1, concurrency))
    return merge_summaries(summaries)


def merge_summaries(summaries: Sequence[FetchSummary]) -> FetchSummary:
    """One summary of a fan-out's calls: counts added, lists joined, anything else from the first call."""
    merged = FetchSummary()
    if not summaries:
        return merged
    for spec in fields(FetchSummary):
        values = [getattr(s, spec.name) for s in summaries]
        first = values[0]
        if spec.name == "seconds":
            value: Any = max(values)  # the calls overlap: the fan-out's wall time is at least the longest
        elif spec.name == "reported_rows":
            value = None if any(v is None for v in values) else sum(values)
        elif isinstance(first, bool) or first is None:
            value = next((v for v in values if v), first)
        elif isinstance(first, int | float):
            value = sum(values)
        elif isinstance(first, dict):
            value = {}
            for v in values:
                for k, item in v.items():
                    if isinstance(item, list):
                        value.setdefault(k, []).extend(item)
                    elif isinstance(item, int | float) and not isinstance(item, bool):
                        value[k] = value.get(k, 0) + item
                    else:
                        value.setdefault(k, item)
        elif isinstance(first, list):
            value = [x for v in values for x in v]
        else:
            value = first
        setattr(merged, spec.name, value)
    merged.next_token = None
    return merged


# ---------------------------------------------------------------------------------------------- lookups
def lookups_from(endpoint: Endpoint) -> dict[str, list[Lookup]]:
    """The lookups other endpoints take from this one's tables: table name -> lookups."""
    out: dict[str, list[Lookup]] = {}
    seen: set[str] = set()
    for other in load_catalog()[0]:
        for f in other.filters:
            if f.lookup and f.lookup.endpoint == endpoint.name and f.lookup.partitions not in seen:
                seen.add(f.lookup.partitions)
                out.setdefault(f.lookup.table, []).append(f.lookup)
    return out


def lookup_values(path: Path, lookup: Lookup) -> tuple[list[str], dict[str, str]]:
    """The distinct values of ``lookup.column`` in a landed lookup table (rows matching ``where``), in
    landed order, and the values that cannot be partition keys with the reason."""
    originals = {o.lower(): snake for snake, o in original_columns(path).items()}
    wanted = [lookup.column, *(c for c, _ in lookup.where)]
    missing = [c for c in wanted if c.lower() not in originals]
    if missing:
        raise ValueError(f"the landed lookup table has no column {', '.join(missing)}")
    table = read_table(path, columns=[originals[c.lower()] for c in dict.fromkeys(wanted)])
    rows = table.to_pylist()
    matches = [r for r in rows if all(str(r.get(originals[c.lower()]) or "").strip().lower() == v.lower()
                                      for c, v in lookup.where)]
    values = dict.fromkeys(str(r[originals[lookup.column.lower()]]).strip() for r in matches
                           if r.get(originals[lookup.column.lower()]) is not None)
    refused = {v: why for v in values if (why := unusable_value(v))}
    return [v for v in values if v not in refused], refused


def filter_values_metadata(endpoint: Endpoint, table_name: str, path: Path, log: Any) -> dict[str, Any]:
    """Materialization metadata of a landed lookup table: the values each dependent filter may take."""
    md: dict[str, Any] = {}
    for lookup in lookups_from(endpoint).get(table_name, []):
        try:
            values, refused = lookup_values(path, lookup)
        except ValueError as exc:
            log.warning(f"[xporter] {endpoint.name}: {exc}: no values published for {lookup.partitions}")
            continue
        for value, why in refused.items():
            log.warning(f"[xporter] {endpoint.name}: {lookup.column} {value!r} cannot be a partition ({why}): skipped")
        md[FILTER_VALUES + lookup.partitions] = dg.MetadataValue.json(values)
    return md
