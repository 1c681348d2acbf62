"""Loads ``catalog.yaml`` into typed WebAdMIT declarations: its two assets, a template's dataset, the formats.

The templates themselves are the vendor's (users build them in WebAdMIT) and are discovered at run time;
what is fixed lives here, validated like every catalog (``core/catalog_model.py``): a misspelt key or an
unknown landing kind stops the code location from loading, naming the file, the entry and the key.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from edu_assets.core.catalog_model import CatalogModel, load_yaml_model
from edu_assets.vendors.webadmit.client import VENDOR

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")


class AssetEntry(CatalogModel):
    name: str
    description: str


class ExportsEntry(AssetEntry):
    dataset: str
    snapshot_dim: str

    @field_validator("dataset")
    @classmethod
    def _names_the_export(cls, value: str) -> str:
        if "{export_id}" not in value:
            raise ValueError("must contain {export_id}: each template lands in a dataset of its own")
        return value

    def dataset_for(self, export_id: int) -> str:
        return self.dataset.format(export_id=export_id)


class Formats(CatalogModel):
    landed: dict[str, Literal["csv", "zip"]]
    refused: dict[str, str]

    def kind(self, name: str) -> str | None:
        """``csv`` or ``zip`` when edu-assets lands this format (names compared case-insensitively)."""
        return {k.lower(): v for k, v in self.landed.items()}.get(name.strip().lower())

    def refusal(self, name: str) -> str:
        refused = {k.lower(): v for k, v in self.refused.items()}
        return refused.get(name.strip().lower(), "edu-assets does not know this format")


class WebAdmitCatalog(CatalogModel):
    templates: AssetEntry
    exports: ExportsEntry
    formats: Formats


@cache
def load_catalog(path: Path = CATALOG_PATH) -> WebAdmitCatalog:
    return load_yaml_model(path, WebAdmitCatalog, VENDOR)
