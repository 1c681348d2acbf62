"""Loads ``catalog.yaml`` into typed SkillsPass export specs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
FORMATS = ("CSV", "JSONL")


@dataclass(frozen=True)
class ExportSpec:
    name: str
    export_type: str
    description: str
    formats: tuple[str, ...]
    keys: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    legacy_type: str | None = None
    per_activity: bool = False

    @property
    def default_format(self) -> str:
        return self.formats[0]


@cache
def load_catalog(path: Path = CATALOG_PATH) -> tuple[ExportSpec, ...]:
    raw = yaml.safe_load(path.read_text())["exports"]
    specs = []
    for entry in raw:
        formats = tuple(f.upper() for f in entry.get("formats") or FORMATS)
        unknown = set(formats) - set(FORMATS)
        if unknown:
            raise ValueError(f"skillspass catalog: {entry['name']} has unknown formats {sorted(unknown)}")
        specs.append(
            ExportSpec(
                name=entry["name"],
                export_type=entry["export_type"],
                description=" ".join(str(entry.get("description", "")).split()),
                formats=formats,
                keys=tuple(entry.get("keys") or ()),
                columns=tuple(entry["columns"]) if entry.get("columns") else None,
                legacy_type=entry.get("legacy_type"),
                per_activity=bool(entry.get("per_activity", False)),
            )
        )
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise ValueError("skillspass catalog: duplicate export names")
    return tuple(specs)
