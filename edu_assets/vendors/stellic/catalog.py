"""Loads ``catalog.yaml`` into typed export specs and turns run config into query parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.settings import env

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
PARAM_TYPES = {"str", "int", "bool", "list", "csv"}


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
    path: str
    query: Mapping[str, str]
    params: tuple[Param, ...] = ()
    keys: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    expect_rows: bool = False
    encoding: str = "utf-8"
    extra: Mapping[str, Any] = field(default_factory=dict)

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
    )


@cache
def load_catalog(path: Path = CATALOG_PATH) -> tuple[ExportSpec, ...]:
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    specs = tuple(_spec(e) for e in raw["exports"])
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise ValueError(f"stellic catalog: duplicate export names in {path}")
    return specs


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
        return [(param.name, ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value))]
    if param.type == "int":
        try:
            return [(param.name, str(int(value)))]
        except (TypeError, ValueError):
            raise ConfigError(where, f"parameter {param.name} must be an integer, got {value!r}") from None
    if param.choices and str(value) not in param.choices:
        raise ConfigError(where, f"parameter {param.name} must be one of {list(param.choices)}, got {value!r}")
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
