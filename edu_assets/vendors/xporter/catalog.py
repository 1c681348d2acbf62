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

    @property
    def response_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def date_field(self) -> str | None:
        """The column that places a row in a month (first documented column named like a date)."""
        return next((f for f in self.fields if "Date" in f), None)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset().union(*(split_scopes(s) for s in self.fields.values()))


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

    @property
    def partitioned_by_month(self) -> bool:
        return bool(self.date_range)

    @property
    def scopes(self) -> frozenset[str]:
        """Consent scopes any of this endpoint's columns need (empty = no scope information)."""
        return frozenset().union(*(t.scopes for t in self.tables))

    def asset_name(self, table: Table) -> str:
        """``xporter/<endpoint>`` for a single-table endpoint, ``xporter/<endpoint>__<table>`` otherwise."""
        return self.name if len(self.tables) == 1 else f"{self.name}__{snake_case(table.name)}"

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
    per_school: bool = False  # takes ?estab= and is partitioned by school


def _table(raw: dict[str, Any]) -> Table:
    return Table(
        name=raw["name"],
        fields=dict(raw.get("fields") or {}),
        aliases=tuple(raw.get("aliases") or ()),
        key=raw.get("key"),
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
        )
        for e in raw["endpoints"]
    )
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate endpoint names")
    management = tuple(ManagementEndpoint(**m) for m in raw.get("management") or ())
    return endpoints, management
