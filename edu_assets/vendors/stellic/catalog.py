"""Loads ``catalog.yaml`` into typed specs (bulk exports, partner API reads) and turns run config into query
parameters."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.settings import env

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
PARAM_TYPES = {"str", "int", "bool", "list", "csv"}
APIS = ("bulk", "partner")
READ_KINDS = ("bulk", "per_student")


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "str"
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    example: Any = None


@dataclass(frozen=True)
class ExportSpec:
    name: str
    category: str
    description: str
    flow: str
    partitioning: str
    path: str  # under the tenant host (api bulk) or the partner API base (api partner)
    query: Mapping[str, str]
    params: tuple[Param, ...] = ()
    keys: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    expect_rows: bool = False
    encoding: str = "utf-8"
    extra: Mapping[str, Any] = field(default_factory=dict)
    api: str = "bulk"

    @property
    def required_params(self) -> list[Param]:
        return [p for p in self.params if p.required and p.default is None]


def _spec(raw: dict[str, Any]) -> ExportSpec:
    params = []
    for p in raw.get("params") or []:
        if p.get("type", "str") not in PARAM_TYPES:
            raise ValueError(f"stellic catalog: {raw['name']}.{p['name']} has unknown type {p.get('type')!r}")
        params.append(Param(**{**p, "choices": tuple(p.get("choices") or ())}))
    return ExportSpec(
        name=raw["name"],
        category=raw.get("category", ""),
        description=raw.get("description", ""),
        flow=raw.get("flow", "sync"),
        partitioning=raw["partitioning"],
        path=raw.get("path", f"exports/export_data/{raw['name']}"),
        query=raw.get("query", {"output_format": "csv"}),
        params=tuple(params),
        keys=tuple(raw.get("keys") or ()),
        columns=tuple(raw["columns"]) if raw.get("columns") else None,
        expect_rows=bool(raw.get("expect_rows", False)),
        encoding=raw.get("encoding", "utf-8"),
        api=_choice(raw, "api", APIS, "bulk"),
    )


def _choice(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise ValueError(f"stellic catalog: {raw['name']}.{key} must be one of {allowed}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class PartnerReadSpec:
    """A partner API read (``partner_reads`` in the catalog): one asset, partitioned by view x snapshot date."""

    name: str
    doc: str
    description: str
    kind: str  # bulk | per_student
    path: str  # template under the partner base
    axes: tuple[tuple[str, tuple[str, ...]], ...]  # path parameter -> documented values, in path order
    query: Mapping[str, str] = field(default_factory=dict)
    result_sets: Mapping[str, tuple[str, ...] | None] = field(
        default_factory=dict
    )  # property -> documented keys
    columns: tuple[str, ...] | None = None
    keys: tuple[str, ...] = ()
    expect_rows: bool = False
    demo: tuple[str, ...] = ()
    category: str = "Partner API"

    @property
    def dim(self) -> str:
        """The static partition dimension: ``property`` for one axis, ``view`` for a combination."""
        return self.axes[0][0] if len(self.axes) == 1 else "view"

    @property
    def views(self) -> list[str]:
        """Every combination of the axes' documented values, e.g. ``unmatched.planned``."""
        return [".".join(combo) for combo in itertools.product(*(values for _, values in self.axes))]

    def values(self, view: str) -> dict[str, str]:
        """``unmatched.planned`` -> ``{"property": "unmatched", "course_filter": "planned"}``."""
        return dict(zip((name for name, _ in self.axes), view.split("."), strict=True))

    def documented_sets(self, view: str) -> tuple[str, ...] | None:
        return self.result_sets.get(self.values(view).get("property", ""))

    def request_path(self, view: str, username: str | None = None) -> str:
        """The path under the partner base, every value percent-encoded as one path segment; without a
        username, its placeholder stays (``student/{student_username}/planner/planned/future``)."""
        fields = {k: quote(v, safe="") for k, v in self.values(view).items()}
        fields["student_username"] = (
            quote(username, safe="") if username is not None else "{student_username}"
        )
        return self.path.format(**fields)


@dataclass(frozen=True)
class StudentList:
    """Where per-student reads take their usernames: a column of a landed partner read's view."""

    read: str
    view: str
    column: str


def _read_spec(raw: dict[str, Any]) -> PartnerReadSpec:
    axes = tuple((str(k), tuple(str(v) for v in values)) for k, values in (raw.get("axes") or {}).items())
    if not axes or any("." in v or "|" in v for _, values in axes for v in values):
        raise ValueError(f"stellic catalog: {raw['name']} needs axes whose values contain no '.' or '|'")
    sets = {str(k): (tuple(v) if v is not None else None) for k, v in (raw.get("result_sets") or {}).items()}
    return PartnerReadSpec(
        name=raw["name"],
        doc=raw.get("doc", ""),
        description=raw.get("description", ""),
        kind=_choice(raw, "kind", READ_KINDS, "per_student"),
        path=raw["path"],
        axes=axes,
        query=dict(raw.get("query") or {}),
        result_sets=sets,
        columns=tuple(raw["columns"]) if raw.get("columns") else None,
        keys=tuple(raw.get("keys") or ()),
        expect_rows=bool(raw.get("expect_rows", False)),
        demo=tuple(raw.get("demo") or ()),
    )


@cache
def _load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


@cache
def load_catalog(path: Path = CATALOG_PATH) -> tuple[ExportSpec, ...]:
    specs = tuple(_spec(e) for e in _load(path)["exports"])
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise ValueError(f"stellic catalog: duplicate export names in {path}")
    return specs


@cache
def load_partner_reads(path: Path = CATALOG_PATH) -> tuple[tuple[PartnerReadSpec, ...], StudentList]:
    """The partner API reads and where per-student reads find their student list."""
    raw = _load(path)
    reads = tuple(_read_spec(r) for r in raw.get("partner_reads") or [])
    names = [r.name for r in reads] + [s.name for s in load_catalog(path)]
    if len(names) != len(set(names)):
        raise ValueError(f"stellic catalog: duplicate asset names in {path}")
    students = StudentList(**raw["student_list"])
    source = next((r for r in reads if r.name == students.read), None)
    if source is None or source.kind != "bulk" or students.view not in source.views:
        raise ValueError(
            f"stellic catalog: student_list must name a view of a bulk partner read, got {students}"
        )
    for r in reads:
        unknown = [d for d in r.demo if d not in r.views]
        if unknown:
            raise ValueError(f"stellic catalog: {r.name} demo partitions {unknown} are not among {r.views}")
    return reads, students


def env_params(export: str) -> dict[str, Any]:
    """Per-export parameter values from ``STELLIC_EXPORT_PARAMS`` (JSON ``{export: {param: value}}``)."""
    text = env("STELLIC_EXPORT_PARAMS")
    if not text:
        return {}
    try:
        mapping = json.loads(text)
    except ValueError as exc:
        raise ConfigError(Where("stellic"), f"STELLIC_EXPORT_PARAMS is not valid JSON ({exc})") from None
    return dict(mapping.get(export) or {})


def _encode(param: Param, value: Any, where: Where) -> list[tuple[str, str]]:
    if param.type == "bool":
        if isinstance(value, str):
            value = value.strip().lower() in {"1", "true", "yes"}
        return [(param.name, "true" if value else "false")]
    if param.type == "list":
        values = value if isinstance(value, list | tuple) else [value]
        return [(param.name, str(v)) for v in values]
    if param.type == "csv":
        return [
            (param.name, ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value))
        ]
    if param.type == "int":
        try:
            return [(param.name, str(int(value)))]
        except (TypeError, ValueError):
            raise ConfigError(where, f"parameter {param.name} must be an integer, got {value!r}") from None
    if param.choices and str(value) not in param.choices:
        raise ConfigError(
            where, f"parameter {param.name} must be one of {list(param.choices)}, got {value!r}"
        )
    return [(param.name, str(value))]


def build_query(spec: ExportSpec, config_params: Mapping[str, Any], where: Where) -> list[tuple[str, str]]:
    """Query parameters for one request: catalog fixed query, then params from config/env/defaults."""
    unknown = set(config_params) - {p.name for p in spec.params}
    if unknown:
        raise ConfigError(
            where,
            f"unknown parameter(s) {sorted(unknown)} for {spec.name}; it accepts {[p.name for p in spec.params] or 'none'}",
        )
    values = {**env_params(spec.name), **config_params}
    query: list[tuple[str, str]] = list(spec.query.items())
    for param in spec.params:
        value = values.get(param.name, param.default)
        if value is None or value == [] or value == "":
            if param.required:
                example = f" e.g. {json.dumps(param.example)}" if param.example is not None else ""
                raise ConfigError(
                    where,
                    f"{spec.name} needs the parameter {param.name!r} ({param.type}), which only you can choose",
                    hint=(
                        f"set it in the run config (ops → {spec.name} → config → params → {param.name}{example}) "
                        f"or in STELLIC_EXPORT_PARAMS, then re-run"
                    ),
                )
            continue
        query += _encode(param, value, where)
    return query
