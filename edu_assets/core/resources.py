"""The lake as a Dagster resource, so every asset writes where the deployment says (and tests can redirect it)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from edu_assets.core.catalog import Catalog
from edu_assets.core.lake import Lake
from edu_assets.core.lakepath import lake_root
from edu_assets.core.settings import LakeSettings


class LakeResource(dg.ConfigurableResource):
    """Parquet root, DuckDB catalog file and the work dir for raw downloads (defaults: ``data/...``)."""

    root: str
    catalog_path: str
    work_dir: str

    @classmethod
    def from_env(cls) -> LakeResource:
        s = LakeSettings.from_env()
        return cls(root=str(s.root), catalog_path=str(s.catalog_path), work_dir=str(s.work_dir))

    def settings(self) -> LakeSettings:
        return LakeSettings(lake_root(self.root), Path(self.catalog_path), Path(self.work_dir))  # type: ignore[arg-type]

    def lake(self) -> Lake:
        return Lake(self.settings())

    def catalog(self) -> Catalog:
        return Catalog(self.settings())
