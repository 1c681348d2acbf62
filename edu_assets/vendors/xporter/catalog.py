"""The Xporter endpoint catalog (``catalog.yaml``) as typed objects: one ``Endpoint`` per read endpoint,
one ``Table`` per result set it returns (each table becomes an asset)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from edu_assets.core.naming import snake_case

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
_SCOPE_SPLIT = re.compile(r"\s*[/,]\s*")


def split_scopes(raw: str | None) -> frozenset[str]:
    """``"Student / StudentLite"`` -> {"Student", "StudentLite"}: a column needs ANY of them."""
    return frozenset(s for s in _SCOPE_SPLIT.split(raw or "") if s)


@dataclass(frozen=True)
class Table:
    name: str
    fields: dict[str, str | None] = field(default_factory=dict)  # column -> consent scope(s)
    aliases: tuple[str, ...] = ()
    key: str | None = None
    # where the document names a result set it documents no fields for ("sample L2207", "prose L7735"): an
    # extra table of the endpoint, which never renames the endpoint's main asset (see Endpoint.asset_name)
    seen_in: str | None = None

    @property
    def response_names(self) -> tuple[str, ...]:
        """Every spelling the vendor may use for this result set; matched case-insensitively."""
        return (self.name, *self.aliases)

    @property
    def date_field(self) -> str | None:
        """The column that places a row in a month (first documented column named like a date)."""
        return next((f for f in self.fields if "Date" in f), None)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset().union(*(split_scopes(s) for s in self.fields.values()))


FILTER_KINDS = ("lookup", "people", "school_year", "values", "config")


@dataclass(frozen=True)
class Lookup:
    """Where a mandatory filter's values come from: a column of another endpoint's (a lookup endpoint's)
    landed table, optionally only the rows whose ``where`` columns hold the given values."""

    endpoint: str  # the lookup endpoint's catalog name, e.g. user_defined_fields
    table: str  # its result set, e.g. UDFs
    column: str  # the vendor column holding the filter's values, e.g. UDFName
    partitions: str  # the dynamic partitions (``xporter_<partitions>``) of the values, one per school and value
    where: tuple[tuple[str, str], ...] = ()  # (vendor column, value), matched case-insensitively


@dataclass(frozen=True)
class Filter:
    """A filter the document marks mandatory, and how its values are found (see ``FILTER_KINDS``):

    - ``lookup``: a value per partition, found by a sensor in a lookup endpoint's landed table;
    - ``people``: the landed student or staff list of the school, fanned out in one run (``per_request``
      ids a call: 1 for an ``Id`` filter, more for a CSV filter);
    - ``school_year``: the partition's school year (``yyyy``, the year it starts);
    - ``values``: one of a fixed list, a static partition dimension;
    - ``config``: chosen by whoever runs it, in run config (``params``: at least one must be set).
    """

    kind: str
    params: tuple[str, ...]  # the vendor parameter; for ``config``, the ones of which at least one is needed
    doc_line: int | None = None
    dimension: str | None = None  # the partition dimension (lookup, school_year, values)
    lookup: Lookup | None = None
    people: str | None = None  # students | staff
    per_request: int = 1
    values: tuple[str, ...] = ()
    note: str = ""

    @property
    def param(self) -> str:
        return self.params[0]


@dataclass(frozen=True)
class Endpoint:
    name: str
    title: str
    group: str
    path: str
    description: str
    tables: tuple[Table, ...]
    date_range: dict[str, str] | None = None
    updated_since: bool = False
    options: tuple[str, ...] = ()
    path_confidence: str = "known_public_client"
    other_result_sets: tuple[str, ...] = ()
    diagnostic: bool = False
    filters: tuple[Filter, ...] = ()  # the mandatory filters the document names (see ``Filter``)

    @property
    def partitioned_by_month(self) -> bool:
        return bool(self.date_range)

    def filter_of(self, kind: str) -> Filter | None:
        return next((f for f in self.filters if f.kind == kind), None)

    @property
    def needs_run_config(self) -> bool:
        """A mandatory filter only a person can choose: left out of schedules, run from the Launchpad."""
        return self.filter_of("config") is not None

    @property
    def scopes(self) -> frozenset[str]:
        """Consent scopes any of this endpoint's columns need (empty = no scope information)."""
        return frozenset().union(*(t.scopes for t in self.tables))

    def asset_name(self, table: Table) -> str:
        """``xporter/<endpoint>`` for an endpoint's only main table, ``xporter/<endpoint>__<table>`` otherwise.

        Extra result sets (``seen_in``) do not count: naming one later must not rename the main asset."""
        main = [t for t in self.tables if not t.seen_in]
        return self.name if main == [table] else f"{self.name}__{snake_case(table.name)}"

    @property
    def result_set_names(self) -> tuple[str, ...]:
        """Every result-set spelling the catalog routes for this endpoint (table names and aliases)."""
        return tuple(n for t in self.tables for n in t.response_names)

    def table_for(self, result_set: str) -> Table | None:
        """The table a result set the vendor sent lands in, matched case-insensitively (None: unknown)."""
        wanted = result_set.lower()
        return next((t for t in self.tables if wanted in (n.lower() for n in t.response_names)), None)

    def range_params(self, start: str, end: str) -> dict[str, str]:
        """The endpoint's own names for a date window (they vary: DateFrom, ResultDateFrom, startDate...)."""
        if not self.date_range:
            return {}
        if "between" in self.date_range:
            return {self.date_range["between"]: f"{start}|{end}"}
        return {self.date_range["from"]: start, self.date_range["to"]: end}


@dataclass(frozen=True)
class ManagementEndpoint:
    name: str
    title: str
    path: str
    description: str
    result_set: str | None  # None: the response object itself is the single row (TokenDetails)
    per_school: bool = False  # partitioned by school: sends the school's estab as ``school_param``
    school_param: str | None = None  # the documented query parameter naming the school (Check Estab: Estab)
    path_confidence: str = "known_public_client"

    def params(self, estab: str | None) -> dict[str, str]:
        """The call's query parameters: only what the document lists for it (the school, where it takes one)."""
        return {self.school_param: estab} if self.per_school and self.school_param and estab else {}


def _table(raw: dict[str, Any]) -> Table:
    return Table(
        name=raw["name"],
        fields=dict(raw.get("fields") or {}),
        aliases=tuple(raw.get("aliases") or ()),
        key=raw.get("key"),
        seen_in=raw.get("seen_in"),
    )


@cache
def load_catalog(path: Path = CATALOG_PATH) -> tuple[tuple[Endpoint, ...], tuple[ManagementEndpoint, ...]]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    endpoints = tuple(
        Endpoint(
            name=e["name"],
            title=e.get("title", e["name"]),
            group=e.get("group", ""),
            path=e["path"],
            description=e.get("description", ""),
            tables=tuple(_table(t) for t in e["tables"]),
            date_range=e.get("date_range"),
            updated_since=bool(e.get("updated_since")),
            options=tuple(e.get("options") or ()),
            path_confidence=e.get("path_confidence", "known_public_client"),
            other_result_sets=tuple(e.get("other_result_sets") or ()),
            diagnostic=bool(e.get("diagnostic")),
            filters=tuple(_filter(e["name"], f) for f in e.get("filters") or ()),
        )
        for e in raw["endpoints"]
    )
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate endpoint names")
    _check_filters(path, endpoints)
    _check_result_sets(path, endpoints)
    management = tuple(ManagementEndpoint(**m) for m in raw.get("management") or ())
    for m in management:
        if m.per_school and not m.school_param:
            raise ValueError(f"{path}: management {m.name} is per school but names no documented school_param")
    return endpoints, management


def _filter(endpoint: str, raw: dict[str, Any]) -> Filter:
    kinds = [k for k in FILTER_KINDS if k in raw]
    if len(kinds) != 1:
        raise ValueError(f"xporter catalog: {endpoint}: a filter needs exactly one of {FILTER_KINDS}, got {raw}")
    kind = kinds[0]
    params = tuple(raw[kind]) if kind == "config" else (raw["param"],)
    lookup = None
    if kind == "lookup":
        spec = raw["lookup"]
        lookup = Lookup(endpoint=spec["endpoint"], table=spec["table"], column=spec["column"],
                        partitions=spec["partitions"], where=tuple((spec.get("where") or {}).items()))
    return Filter(
        kind=kind,
        params=params,
        doc_line=raw.get("doc_line"),
        dimension=raw.get("dimension"),
        lookup=lookup,
        people=raw["people"] if kind == "people" else None,
        per_request=int(raw.get("per_request", 1)),
        values=tuple(raw["values"]) if kind == "values" else (),
        note=raw.get("note", ""),
    )


def _check_filters(path: Path, endpoints: tuple[Endpoint, ...]) -> None:
    """A catalog mistake fails at load, not in a run: one partition dimension per endpoint, lookups that
    name a real table, and one definition per set of dynamic partitions."""
    by_name = {e.name: e for e in endpoints}
    lookups: dict[str, Lookup] = {}
    for e in endpoints:
        dims = [f for f in e.filters if f.kind in ("lookup", "school_year", "values")]
        if len(dims) > 1 or (dims and dims[0].kind != "lookup" and e.partitioned_by_month):
            raise ValueError(f"{path}: {e.name}: at most one partition dimension besides the school and month")
        for f in e.filters:
            if f.kind in ("lookup", "school_year", "values") and not f.dimension:
                raise ValueError(f"{path}: {e.name}: filter {f.param} needs a dimension name")
            if f.kind == "people" and f.people not in ("students", "staff"):
                raise ValueError(f"{path}: {e.name}: filter {f.param} fans out over students or staff")
            if f.lookup is None:
                continue
            source = by_name.get(f.lookup.endpoint)
            if source is None or f.lookup.table not in {t.name for t in source.tables}:
                raise ValueError(f"{path}: {e.name}: lookup {f.lookup.endpoint}.{f.lookup.table} is not in the catalog")
            if source.filters or source.partitioned_by_month:
                raise ValueError(f"{path}: {e.name}: lookup endpoint {source.name} must be a plain per-school snapshot")
            if lookups.setdefault(f.lookup.partitions, f.lookup) != f.lookup:
                raise ValueError(f"{path}: partitions {f.lookup.partitions} are defined twice, differently")


def _check_result_sets(path: Path, endpoints: tuple[Endpoint, ...]) -> None:
    """Each spelling routes to one table of its endpoint (case-insensitively), and asset names are unique."""
    assets: set[str] = set()
    for e in endpoints:
        seen: dict[str, str] = {}
        for t in e.tables:
            for n in t.response_names:
                if seen.setdefault(n.lower(), t.name) != t.name:
                    raise ValueError(f"{path}: {e.name}: result set {n!r} would route to both {seen[n.lower()]} and {t.name}")
            asset = e.asset_name(t)
            if asset in assets:
                raise ValueError(f"{path}: {e.name}: asset name {asset} is used twice")
            assets.add(asset)
