"""The Xporter endpoint catalog (``catalog.yaml``) as typed objects: one ``Endpoint`` per read endpoint,
one ``Table`` per result set it returns (each table becomes an asset).

The objects are pydantic models (:mod:`edu_assets.core.catalog_model`): an unknown key anywhere (an
endpoint, a table, a filter, a lookup) or a value outside its enumeration stops the definitions from
loading with a message naming the file, the entry and the key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from edu_assets.core.catalog_model import CatalogModel, catalog_error, load_yaml_model
from edu_assets.core.naming import snake_case
from edu_assets.vendors.xporter.client import VENDOR

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
_SCOPE_SPLIT = re.compile(r"\s*[/,]\s*")

FilterKind = Literal["lookup", "people", "school_year", "values", "config"]
FILTER_KINDS: tuple[str, ...] = get_args(FilterKind)
PathConfidence = Literal["known_public_client", "known_public_client_doubtful", "guessed"]
_DATE_RANGES = ({"from", "to"}, {"between"})


def split_scopes(raw: str | None) -> frozenset[str]:
    """``"Student / StudentLite"`` -> {"Student", "StudentLite"}: a column needs ANY of them."""
    return frozenset(s for s in _SCOPE_SPLIT.split(raw or "") if s)


class Table(CatalogModel):
    name: str
    fields: dict[str, str | None] = Field(default_factory=dict)  # column -> consent scope(s)
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


class Lookup(CatalogModel):
    """Where a mandatory filter's values come from: a column of another endpoint's (a lookup endpoint's)
    landed table, optionally only the rows whose ``where`` columns hold the given values."""

    endpoint: str  # the lookup endpoint's catalog name, e.g. user_defined_fields
    table: str  # its result set, e.g. UDFs
    column: str  # the vendor column holding the filter's values, e.g. UDFName
    partitions: str  # the dynamic partitions (``xporter_<partitions>``) of the values, one per school and value
    where: tuple[tuple[str, str], ...] = ()  # (vendor column, value), matched case-insensitively

    @field_validator("where", mode="before")
    @classmethod
    def _where_pairs(cls, raw: Any) -> Any:
        """The catalog writes ``where`` as a mapping; pairs keep the model hashable."""
        return tuple(raw.items()) if isinstance(raw, Mapping) else raw


class Filter(CatalogModel):
    """A filter the document marks mandatory, and how its values are found (see ``FILTER_KINDS``):

    - ``lookup``: a value per partition, found by a sensor in a lookup endpoint's landed table;
    - ``people``: the landed student or staff list of the school, fanned out in one run (``per_request``
      ids a call: 1 for an ``Id`` filter, more for a CSV filter);
    - ``school_year``: the partition's school year (``yyyy``, the year it starts);
    - ``values``: one of a fixed list, a static partition dimension;
    - ``config``: chosen by whoever runs it, in run config (``params``: at least one must be set).

    The catalog writes a filter by the key of its kind (``lookup: {...}``, ``config: [...]``,
    ``school_year: true``) plus ``param``; the model keeps ``kind`` and ``params``.
    """

    catalog_keys: ClassVar[tuple[str, ...]] = (
        "param", *FILTER_KINDS, "dimension", "doc_line", "per_request", "note")

    kind: FilterKind
    params: tuple[str, ...]  # the vendor parameter; for ``config``, the ones of which at least one is needed
    doc_line: StrictInt | None = None
    dimension: str | None = None  # the partition dimension (lookup, school_year, values)
    lookup: Lookup | None = None
    people: Literal["students", "staff"] | None = None
    per_request: StrictInt = Field(1, ge=1)
    values: tuple[str, ...] = ()
    note: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_catalog(cls, raw: Any) -> Any:
        """``{param: X, lookup: {...}}`` -> ``{kind: lookup, params: (X,), lookup: {...}}``."""
        if not isinstance(raw, Mapping):
            return raw
        for key in ("kind", "params"):
            if key in raw:
                raise ValueError(f"unknown key {key!r} (a filter is written as one of: {', '.join(FILTER_KINDS)})")
        kinds = [k for k in FILTER_KINDS if k in raw]
        if len(kinds) != 1:
            raise ValueError(f"needs exactly one of {', '.join(FILTER_KINDS)}, got {', '.join(kinds) or 'none'}")
        kind = kinds[0]
        if kind == "config":
            return {**{k: v for k, v in raw.items() if k != "config"}, "kind": kind, "params": raw["config"]}
        if "param" not in raw:
            raise ValueError("missing key 'param' (the vendor parameter the filter fills)")
        if kind == "school_year" and raw["school_year"] is not True:
            raise ValueError(f"school_year must be true, got {raw['school_year']!r}")
        data = {k: v for k, v in raw.items() if k not in ("param", "school_year")}
        return {**data, "kind": kind, "params": (raw["param"],)}

    @model_validator(mode="after")
    def _kind_has_its_facts(self) -> Filter:
        if not self.params:
            raise ValueError("config needs at least one parameter")
        if self.kind in ("lookup", "school_year", "values") and not self.dimension:
            raise ValueError(f"a {self.kind} filter needs a dimension name")
        if self.kind == "values" and not self.values:
            raise ValueError("values needs at least one value")
        return self

    @property
    def param(self) -> str:
        return self.params[0]


class Endpoint(CatalogModel):
    name: str
    title: str
    group: str = ""
    path: str
    description: str = ""
    tables: tuple[Table, ...] = Field(min_length=1)
    date_range: dict[Literal["from", "to", "between"], str] | None = None
    updated_since: StrictBool = False
    options: tuple[str, ...] = ()
    path_confidence: PathConfidence = "known_public_client"
    other_result_sets: tuple[str, ...] = ()
    diagnostic: StrictBool = False
    filters: tuple[Filter, ...] = ()  # the mandatory filters the document names (see ``Filter``)

    @model_validator(mode="before")
    @classmethod
    def _title_defaults_to_name(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping) and "title" not in raw and "name" in raw:
            return {**raw, "title": raw["name"]}
        return raw

    @field_validator("date_range")
    @classmethod
    def _one_window_style(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """A window is sent either as two parameters (from, to) or as one (between); never a mix."""
        if value is not None and set(value) not in _DATE_RANGES:
            raise ValueError("must be {from: <param>, to: <param>} or {between: <param>}")
        return value

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


class ManagementEndpoint(CatalogModel):
    name: str
    title: str
    path: str
    description: str
    result_set: str | None  # None: the response object itself is the single row (TokenDetails)
    per_school: StrictBool = False  # partitioned by school: sends the school's estab as ``school_param``
    school_param: str | None = None  # the documented query parameter naming the school (Check Estab: Estab)
    path_confidence: PathConfidence = "known_public_client"

    @model_validator(mode="after")
    def _school_is_sent(self) -> ManagementEndpoint:
        if self.per_school and not self.school_param:
            raise ValueError("per_school needs the documented school_param")
        return self

    def params(self, estab: str | None) -> dict[str, str]:
        """The call's query parameters: only what the document lists for it (the school, where it takes one)."""
        return {self.school_param: estab} if self.per_school and self.school_param and estab else {}


class XporterCatalog(CatalogModel):
    endpoints: tuple[Endpoint, ...]
    management: tuple[ManagementEndpoint, ...] = ()


@cache
def load_catalog(path: Path = CATALOG_PATH) -> tuple[tuple[Endpoint, ...], tuple[ManagementEndpoint, ...]]:
    """The read and management endpoints, validated once per process (at definitions load)."""
    catalog = load_yaml_model(path, XporterCatalog, VENDOR)
    endpoints = catalog.endpoints
    names: set[str] = set()
    for e in endpoints:
        if e.name in names:
            raise catalog_error(path, VENDOR, f"endpoint {e.name!r}", "the name is used twice")
        names.add(e.name)
    _check_filters(path, endpoints)
    _check_result_sets(path, endpoints)
    return endpoints, catalog.management


def _check_filters(path: Path, endpoints: tuple[Endpoint, ...]) -> None:
    """A catalog mistake fails at load, not in a run: one partition dimension per endpoint, lookups that
    name a real table, and one definition per set of dynamic partitions."""
    by_name = {e.name: e for e in endpoints}
    lookups: dict[str, Lookup] = {}
    for e in endpoints:
        entry = f"endpoint {e.name!r}"
        dims = [f for f in e.filters if f.kind in ("lookup", "school_year", "values")]
        if len(dims) > 1 or (dims and dims[0].kind != "lookup" and e.partitioned_by_month):
            raise catalog_error(path, VENDOR, entry, "at most one partition dimension besides the school and month")
        for f in e.filters:
            if f.lookup is None:
                continue
            source = by_name.get(f.lookup.endpoint)
            if source is None or f.lookup.table not in {t.name for t in source.tables}:
                raise catalog_error(path, VENDOR, f"{entry} filter {f.param!r}",
                                    f"lookup {f.lookup.endpoint}.{f.lookup.table} is not in the catalog")
            if source.filters or source.partitioned_by_month:
                raise catalog_error(path, VENDOR, f"{entry} filter {f.param!r}",
                                    f"lookup endpoint {source.name} must be a plain per-school snapshot")
            if lookups.setdefault(f.lookup.partitions, f.lookup) != f.lookup:
                raise catalog_error(path, VENDOR, f"{entry} filter {f.param!r}",
                                    f"partitions {f.lookup.partitions} are defined twice, differently")


def _check_result_sets(path: Path, endpoints: tuple[Endpoint, ...]) -> None:
    """Each spelling routes to one table of its endpoint (case-insensitively), and asset names are unique."""
    assets: set[str] = set()
    for e in endpoints:
        seen: dict[str, str] = {}
        for t in e.tables:
            entry = f"endpoint {e.name!r} table {t.name!r}"
            for n in t.response_names:
                if seen.setdefault(n.lower(), t.name) != t.name:
                    raise catalog_error(path, VENDOR, entry,
                                        f"result set {n!r} would route to both {seen[n.lower()]} and {t.name}")
            asset = e.asset_name(t)
            if asset in assets:
                raise catalog_error(path, VENDOR, entry, f"asset name {asset} is used twice")
            assets.add(asset)
