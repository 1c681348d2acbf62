"""Vendor catalogs (``catalog.yaml``) as pydantic models that refuse what they do not know.

A catalog entry is configuration a person types: a misspelt key (``expect_row``) or value
(``partitioning: snapshott``) must stop the code location from loading, with a message that names the
file, the entry and the key, rather than silently turning a check off or failing later with a bare
``KeyError``. Every catalog model derives from :class:`CatalogModel` (unknown keys refused, frozen) and is
read by :func:`load_yaml_model`, which turns a ``ValidationError`` into a short :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from edu_assets.core.errors import ConfigError, Where

HINT = "correct the catalog entry (the comments at the top of the file list its keys), then reload the code location"
_ENTRY_NAME_KEYS = ("name", "param")  # what a list entry is called by, in messages
_SHOWN_ERRORS = 3
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogModel(BaseModel):
    """An entry of a catalog: unknown keys are refused and the loaded value is immutable.

    A model whose file keys differ from its fields (it reshapes the entry in a ``before`` validator) lists
    the file's keys in ``catalog_keys``, for the "allowed:" part of error messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)

Columns = Annotated[tuple[str, ...] | None, BeforeValidator(lambda value: value or None)]
"""Documented columns of an export; an empty list means "not documented", like leaving the key out."""


def shown_path(path: Path) -> str:
    """The file as a person finds it: relative to the project for the shipped catalogs."""
    try:
        return str(Path(path).resolve().relative_to(_PROJECT_ROOT))
    except ValueError:
        return str(path)


def catalog_error(path: Path, vendor: str, entry: str, what: str) -> ConfigError:
    """A mistake spanning entries (a duplicate name, a lookup naming no table), found after validation."""
    return ConfigError(Where(vendor), f"{shown_path(path)}: {entry}: {what}", hint=HINT)


def read_yaml(path: Path, vendor: str) -> Any:
    """The parsed file; a YAML syntax error is a ConfigError too (it names the file and the line).

    libyaml's loader when PyYAML has it: the same safe schema, ~10x faster (the largest catalog takes
    ~30 ms instead of ~250 ms of every definitions load)."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_SAFE_LOADER)  # a safe loader: CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        what = " ".join(str(exc).split())
        raise ConfigError(Where(vendor), f"{shown_path(path)} is not valid YAML ({what})", hint=HINT) from None


def load_yaml_model(path: Path, model_type: type[M], vendor: str) -> M:
    """``path`` validated as ``model_type``; any mistake is a ConfigError naming file, entry and key."""
    raw = read_yaml(path, vendor)
    try:
        return model_type.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(Where(vendor), describe(path, raw, model_type, exc), hint=HINT) from None


def describe(path: Path, raw: Any, model_type: type[BaseModel], exc: ValidationError) -> str:
    """The first few errors, one per clause: ``<file>: export 'x': unknown key 'y' (did you mean 'z'?)``."""
    errors = exc.errors(include_url=False)
    lines = [_describe_one(raw, model_type, e) for e in errors[:_SHOWN_ERRORS]]
    more = f" (and {len(errors) - _SHOWN_ERRORS} more)" if len(errors) > _SHOWN_ERRORS else ""
    return f"{shown_path(path)}: " + "; ".join(lines) + more


def _describe_one(raw: Any, model_type: type[BaseModel], error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    entries, keys = _locate(raw, loc)
    model = _model_at(model_type, loc[:-1])
    problem = _problem(error, keys, model)
    return f"{' '.join(entries)}: {problem}" if entries else problem


def _locate(raw: Any, loc: tuple[Any, ...]) -> tuple[list[str], list[str]]:
    """The entries along ``loc`` (``endpoint 'x'``, ``table 'y'``) and the keys after the innermost one.

    A list of mappings holds entries; an item of a list of scalars is a key (``formats[0]``). Steps the
    data does not have (pydantic's union and validator tags) are skipped, except a last step: that is
    the key a ``missing`` error is about."""
    entries: list[str] = []
    keys: list[str] = []
    node, parent_key = raw, ""
    for i, step in enumerate(loc):
        if isinstance(node, Mapping) and step in node:
            keys.append(str(step))
            node, parent_key = node[step], str(step)
        elif isinstance(node, Sequence) and not isinstance(node, str) and isinstance(step, int) and step < len(node):
            node = node[step]
            if isinstance(node, Mapping):
                entries.append(f"{_singular(parent_key)} {_entry_name(node, step)}")
                keys = []
            else:
                keys.append(f"[{step}]")
        elif i == len(loc) - 1 and isinstance(step, str) and step != "[key]":
            keys.append(step)
    return entries, keys


def _dotted(keys: Sequence[str]) -> str:
    return ".".join(keys).replace(".[", "[")


def _singular(key: str) -> str:
    """``exports`` -> ``export``, ``partner_reads`` -> ``partner read``: how one entry of a list is called."""
    word = key.replace("_", " ") or "entry"
    return word[:-1] if word.endswith("s") else word


def _entry_name(entry: Any, index: int) -> str:
    if isinstance(entry, Mapping):
        for key in _ENTRY_NAME_KEYS:
            if isinstance(entry.get(key), str | int):
                return repr(entry[key])
    return f"#{index + 1}"


def _problem(error: Mapping[str, Any], keys: list[str], model: type[BaseModel] | None) -> str:
    """One error in words, for a person editing the file."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = list(getattr(model, "catalog_keys", None) or model.model_fields) if model else []
        inside = f" in {_dotted(keys[:-1])}" if len(keys) > 1 else ""
        return f"unknown key {keys[-1]!r}{inside}{_suggest(keys[-1], allowed)}"
    if kind == "missing":
        return f"missing key {_dotted(keys)!r}"
    if kind == "literal_error":
        allowed = re.findall(r"'((?:[^'\\]|\\.)*)'", str(error.get("ctx", {}).get("expected", "")))
        return f"{_subject(error, keys)} is not allowed{_suggest(str(value), allowed)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    got = "" if kind.startswith("value_error") or isinstance(value, Mapping) else f" (got {value!r})"
    return f"{_dotted(keys)}: {message}{got}" if keys else f"{message}{got}"


def _subject(error: Mapping[str, Any], keys: list[str]) -> str:
    """``partitioning: 'snapshott'``, or ``key 'until' in date_range`` when a mapping's key is wrong."""
    value = error.get("input")
    if error["loc"][-1] == "[key]":
        return f"key {value!r} in {_dotted(keys[:-1])}" if len(keys) > 1 else f"key {value!r}"
    return f"{_dotted(keys)}: {value!r}" if keys else repr(value)


def _suggest(word: str, allowed: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else what is allowed."""
    close = difflib.get_close_matches(word, allowed, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (allowed: {', '.join(allowed)})" if allowed else ""


def _model_at(model_type: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose keys apply at ``loc``: field steps descend, indexes and dict keys stay put."""
    model: type[BaseModel] | None = model_type
    for step in loc:
        if model is not None and isinstance(step, str) and step in model.model_fields:
            model = _model_in(model.model_fields[step].annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first model inside a field's type: ``tuple[Param, ...] | None`` -> ``Param``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
