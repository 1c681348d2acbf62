"""Loads ``catalog.yaml`` into typed SkillsPass export specs.

The specs are pydantic models (:mod:`edu_assets.core.catalog_model`): an unknown key or format stops the
definitions from loading with a message naming the file, the export and the key."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import StrictBool, field_validator

from edu_assets.core.catalog_model import CatalogModel, Columns, catalog_error, load_yaml_model
from edu_assets.vendors.skillspass.client import VENDOR

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
Format = Literal["CSV", "JSONL"]
FORMATS: tuple[str, ...] = get_args(Format)


class ExportSpec(CatalogModel):
    name: str
    export_type: str
    description: str = ""
    formats: tuple[Format, ...] = FORMATS
    keys: tuple[str, ...] = ()
    columns: Columns = None
    legacy_type: str | None = None
    per_activity: StrictBool = False

    @field_validator("description", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        """Folded YAML keeps line breaks and runs of spaces; the UI shows one line."""
        return " ".join(value.split()) if isinstance(value, str) else value

    @field_validator("formats", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        """The API spells formats in capitals; the catalog may not."""
        if isinstance(value, list | tuple):
            return tuple(v.upper() if isinstance(v, str) else v for v in value)
        return value

    @field_validator("formats")
    @classmethod
    def _some_format(cls, formats: tuple[str, ...]) -> tuple[str, ...]:
        if not formats:
            raise ValueError("needs at least one format (the first is the default)")
        return formats

    @property
    def default_format(self) -> str:
        return self.formats[0]


class SkillsPassCatalog(CatalogModel):
    exports: tuple[ExportSpec, ...]


@cache
def load_catalog(path: Path = CATALOG_PATH) -> tuple[ExportSpec, ...]:
    """The exports, validated once per process (at definitions load)."""
    specs = load_yaml_model(path, SkillsPassCatalog, VENDOR).exports
    names: set[str] = set()
    for s in specs:
        if s.name in names:
            raise catalog_error(path, VENDOR, f"export {s.name!r}", "the name is used twice (it names an asset)")
        names.add(s.name)
    return specs
