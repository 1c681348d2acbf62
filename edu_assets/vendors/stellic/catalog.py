"""Loads ``catalog.yaml`` into typed specs (bulk exports, partner API reads) and turns run config into query
parameters.

The specs are pydantic models (:mod:`edu_assets.core.catalog_model`): a misspelt key or an unknown value
stops the definitions from loading with a message naming the file, the entry and the key. Parameter values
(run config, ``STELLIC_EXPORT_PARAMS``, catalog defaults) are checked against the declared type before any
request, so ``"maybe"`` is never sent as ``false``."""

from __future__ import annotations

import difflib
import itertools
import json
import string
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

from pydantic import Field, StrictBool, field_validator, model_validator

from edu_assets.core.catalog_model import CatalogModel, Columns, catalog_error, load_yaml_model
from edu_assets.core.errors import ConfigError, Where
from edu_assets.vendors.stellic.client import VENDOR
from edu_assets.vendors.stellic.partitions import PARTITIONINGS
from edu_assets.vendors.stellic.resources import ENV_PARAMS

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

ParamType = Literal["str", "int", "bool", "list", "csv"]
Api = Literal["bulk", "partner"]
ReadKind = Literal["bulk", "per_student"]
Flow = Literal["sync", "async", "async_if_large"]
PartitioningKind = Literal[tuple(PARTITIONINGS)]  # type: ignore[valid-type]  # one per partitions.py kind
PARAM_TYPES = set(get_args(ParamType))
APIS: tuple[str, ...] = get_args(Api)
READ_KINDS: tuple[str, ...] = get_args(ReadKind)


# ------------------------------------------------------------------------------ parameter values


class BadValue(ValueError):
    """A parameter value the vendor would misread; the message says what was expected."""


_BOOL_TEXT = {"true": "true", "1": "true", "false": "false", "0": "false"}
EXPECTED = {
    "bool": "true or false",
    "int": "a whole number",
    "list": "a string or a list of strings",
    "csv": "a string or a list of strings",
    "str": "a string",
}


def _as_bool(value: Any) -> str:
    """Only a real boolean or its spelling: ``"maybe"`` or ``["no"]`` must not become a silent true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise BadValue(f"must be {EXPECTED['bool']}")


def _as_int(value: Any) -> str:
    """An int or ASCII digits (``str.isdigit`` alone accepts "२३"); a bool is not a number here."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return str(int(value))
    raise BadValue(f"must be {EXPECTED['int']}")


def _as_text(value: Any, expected: str) -> str:
    """A string, or a number written as one; anything else (a dict's repr) is refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise BadValue(f"must be {expected}")


def _as_items(value: Any, expected: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [_as_text(v, expected) for v in value]
    raise BadValue(f"must be {expected}")


def encode_param(param: Param, value: Any) -> list[tuple[str, str]]:
    """``value`` as query pairs for ``param``'s declared type; :class:`BadValue` when it does not fit."""
    expected = EXPECTED[param.type]
    if param.type == "bool":
        return [(param.name, _as_bool(value))]
    if param.type == "int":
        return [(param.name, _as_int(value))]
    if param.type == "list":
        return [(param.name, v) for v in _as_items(value, expected)]
    if param.type == "csv":
        return [(param.name, ",".join(_as_items(value, expected)))]
    text = _as_text(value, expected)
    if param.choices and text not in param.choices:
        raise BadValue(f"must be one of {list(param.choices)}")
    return [(param.name, text)]


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple) and len(value) == 0)


# ------------------------------------------------------------------------------ catalog models


class Param(CatalogModel):
    """A query parameter that is not the partition; ``type`` says which values it takes and how they are sent."""

    name: str
    type: ParamType = "str"
    required: StrictBool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    example: Any = None

    @model_validator(mode="after")
    def _samples_fit_the_type(self) -> Param:
        """A default or example the type refuses would fail every run (or the demo): refuse it at load."""
        for label, value in (("default", self.default), ("example", self.example)):
            if not _is_empty(value):
                try:
                    encode_param(self, value)
                except BadValue as exc:
                    raise ValueError(f"{label} {exc} ({self.type}), got {value!r}") from None
        return self


class ExportSpec(CatalogModel):
    """A bulk (or partner API) export: one asset, partitioned as ``partitioning`` says."""

    name: str
    category: str = ""
    description: str = ""
    flow: Flow = "sync"
    partitioning: PartitioningKind
    path: str  # under the tenant host (api bulk) or the partner API base (api partner)
    query: Mapping[str, str] = Field(default_factory=lambda: {"output_format": "csv"})
    params: tuple[Param, ...] = ()
    keys: tuple[str, ...] = ()
    columns: Columns = None
    expect_rows: StrictBool = False
    encoding: str = "utf-8"
    extra: Mapping[str, Any] = Field(default_factory=dict)
    api: Api = "bulk"

    @model_validator(mode="before")
    @classmethod
    def _default_path(cls, raw: Any) -> Any:
        """The bulk export guide's URL for the export, unless the entry names another."""
        if isinstance(raw, Mapping) and "path" not in raw and isinstance(raw.get("name"), str):
            return {**raw, "path": f"exports/export_data/{raw['name']}"}
        return raw

    @field_validator("params")
    @classmethod
    def _unique_params(cls, params: tuple[Param, ...]) -> tuple[Param, ...]:
        names = [p.name for p in params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"parameter(s) {twice} declared twice")
        return params

    @property
    def required_params(self) -> list[Param]:
        return [p for p in self.params if p.required and p.default is None]


class PartnerReadSpec(CatalogModel):
    """A partner API read (``partner_reads`` in the catalog): one asset, partitioned by view x snapshot date."""

    name: str
    doc: str = ""
    description: str = ""
    kind: ReadKind = "per_student"
    path: str  # template under the partner base
    axes: tuple[tuple[str, tuple[str, ...]], ...]  # path parameter -> documented values, in path order
    query: Mapping[str, str] = Field(default_factory=dict)
    result_sets: Mapping[str, tuple[str, ...] | None] = Field(default_factory=dict)  # property -> documented keys
    columns: Columns = None
    keys: tuple[str, ...] = ()
    expect_rows: StrictBool = False
    demo: tuple[str, ...] = ()
    category: str = "Partner API"

    @field_validator("axes", mode="before")
    @classmethod
    def _axes_in_path_order(cls, raw: Any) -> Any:
        """The catalog writes axes as a mapping; its order is the path's."""
        return tuple(raw.items()) if isinstance(raw, Mapping) else raw

    @field_validator("axes")
    @classmethod
    def _axes_make_partition_keys(
        cls, axes: tuple[tuple[str, tuple[str, ...]], ...]
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Values are joined by '.' into a view and by '|' into a partition key: they may hold neither."""
        if not axes or any(not values or "." in v or "|" in v for _, values in axes for v in values or ("",)):
            raise ValueError("needs axes (path parameter -> values) whose values contain no '.' or '|'")
        return axes

    @model_validator(mode="after")
    def _path_names_the_axes(self) -> PartnerReadSpec:
        """A placeholder no axis fills would fail every request; an axis the path ignores, every view."""
        placeholders = {f for _, f, _, _ in string.Formatter().parse(self.path) if f}
        axes = {name for name, _ in self.axes}
        if placeholders - axes - {"student_username"} or axes - placeholders:
            raise ValueError(f"path {self.path!r} must use exactly the axes {sorted(axes)} (and {{student_username}})")
        return self

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
        fields["student_username"] = quote(username, safe="") if username is not None else "{student_username}"
        return self.path.format(**fields)


class StudentList(CatalogModel):
    """Where per-student reads take their usernames: a column of a landed partner read's view."""

    read: str
    view: str
    column: str


class StellicCatalog(CatalogModel):
    """The whole file: bulk exports, partner reads and the per-student reads' student list."""

    exports: tuple[ExportSpec, ...]
    partner_reads: tuple[PartnerReadSpec, ...] = ()
    student_list: StudentList | None = None


@cache
def _load(path: Path) -> StellicCatalog:
    return load_yaml_model(path, StellicCatalog, VENDOR)


def _first_duplicate(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


@cache
def load_catalog(path: Path = CATALOG_PATH) -> tuple[ExportSpec, ...]:
    """The bulk exports, validated once per process (at definitions load)."""
    specs = _load(path).exports
    twice = _first_duplicate([s.name for s in specs])
    if twice:
        raise catalog_error(path, VENDOR, f"export {twice!r}", "the name is used twice (it names an asset)")
    return specs


@cache
def load_partner_reads(path: Path = CATALOG_PATH) -> tuple[tuple[PartnerReadSpec, ...], StudentList]:
    """The partner API reads and where per-student reads find their student list."""
    catalog = _load(path)
    reads = catalog.partner_reads
    twice = _first_duplicate([r.name for r in reads] + [s.name for s in load_catalog(path)])
    if twice:
        raise catalog_error(path, VENDOR, f"partner read {twice!r}", "the name is used twice (it names an asset)")
    students = catalog.student_list
    if students is None:
        raise catalog_error(path, VENDOR, "student_list", "missing: per-student reads need one (read, view, column)")
    source = next((r for r in reads if r.name == students.read), None)
    if source is None or source.kind != "bulk" or students.view not in source.views:
        raise catalog_error(path, VENDOR, "student_list",
                            f"must name a view of a bulk partner read, got read {students.read!r} view {students.view!r}")
    for r in reads:
        unknown = [d for d in r.demo if d not in r.views]
        if unknown:
            raise catalog_error(path, VENDOR, f"partner read {r.name!r}",
                                f"demo partitions {unknown} are not among its views {r.views}")
    return reads, students


# ------------------------------------------------------------------------------ run config -> query


def _encode(spec: ExportSpec, param: Param, value: Any, source: str, where: Where) -> list[tuple[str, str]]:
    """The pairs for one value, or a ConfigError naming export, parameter, type, value and where it came from."""
    try:
        return encode_param(param, value)
    except BadValue as exc:
        raise ConfigError(
            where,
            f"{spec.name}: parameter {param.name!r} ({param.type}) {exc}, got {value!r} from {source}",
            hint=f"correct it in the run config (ops → {spec.name} → config → params) or in {ENV_PARAMS}, then re-run",
        ) from None


def _missing(spec: ExportSpec, param: Param, where: Where) -> ConfigError:
    example = f" e.g. {json.dumps(param.example)}" if param.example is not None else ""
    return ConfigError(
        where,
        f"{spec.name} needs the parameter {param.name!r} ({param.type}), which only you can choose",
        hint=(
            f"set it in the run config (ops → {spec.name} → config → params → {param.name}{example}) "
            f"or in {ENV_PARAMS}, then re-run"
        ),
    )


def build_query(spec: ExportSpec, config_params: Mapping[str, Any], where: Where,
                preset: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Query parameters for one request: the catalog's fixed query, then each parameter from the run config,
    else ``preset`` (the resource's values for this export, from STELLIC_EXPORT_PARAMS), else its default."""
    unknown = set(config_params) - {p.name for p in spec.params}
    if unknown:
        raise ConfigError(
            where,
            f"unknown parameter(s) {sorted(unknown)} for {spec.name}; it accepts {[p.name for p in spec.params] or 'none'}",
        )
    from_env = dict(preset or {})
    values = {**from_env, **config_params}
    query: list[tuple[str, str]] = list(spec.query.items())
    for param in spec.params:
        value = values.get(param.name, param.default)
        if _is_empty(value):
            if param.required:
                raise _missing(spec, param, where)
            continue
        source = "the run config" if param.name in config_params else (
            ENV_PARAMS if param.name in from_env else "the catalog default")
        query += _encode(spec, param, value, source, where)
    return query


def check_export_params(params: Mapping[str, Mapping[str, Any]], specs: tuple[ExportSpec, ...]) -> None:
    """``STELLIC_EXPORT_PARAMS`` against the catalog when the definitions load: every export and parameter it
    names exists, and every value has its parameter's declared type. A misspelt export name would otherwise
    be ignored until a run needed the value; every mistake is named at once."""
    by_name = {s.name: s for s in specs}
    problems: list[str] = []
    for export, values in params.items():
        spec = by_name.get(export)
        if spec is None:
            close = difflib.get_close_matches(export, by_name, n=1)
            problems.append(f"{export!r} is not a Stellic export" + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        declared = {p.name: p for p in spec.params}
        for name, value in values.items():
            param = declared.get(name)
            if param is None:
                problems.append(f"{export}: {name!r} is not one of its parameters ({', '.join(declared) or 'none'})")
                continue
            try:
                encode_param(param, value)
            except BadValue as exc:
                problems.append(f"{export}: parameter {name!r} ({param.type}) {exc}, got {value!r}")
    if problems:
        raise ConfigError(Where(VENDOR), f"{ENV_PARAMS}: {'; '.join(problems)}",
                          hint=f"correct {ENV_PARAMS} (the exports and their parameters are in the Stellic catalog), "
                               "then reload the code location")
