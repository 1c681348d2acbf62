"""The code location loads, and every catalog entry is an asset with the platform's conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from edu_assets.vendors.stellic.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[1]


def test_every_catalog_entry_is_a_conventional_asset(defs):
    repo = defs.get_repository_def()
    specs = load_catalog()
    assert len(specs) == 23
    for spec in specs:
        a = repo.assets_defs_by_key[dg.AssetKey(["stellic", spec.name])]
        spec_def = next(iter(a.specs))
        assert spec_def.group_name == "stellic"
        assert a.partitions_def is not None
        assert spec_def.description and spec.description in spec_def.description
        assert {"stellic", "parquet"} <= set(spec_def.kinds)
        assert a.op.pool == "stellic"
    sensor = defs.resolve_sensor_def("stellic_export_completion")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("stellic_daily_snapshots_schedule")
    assert schedule.cron_schedule == "0 5 * * *"


def test_every_asset_runs_in_its_vendors_pool(defs):
    """The per-vendor run limit is a pool counted per run (dagster.yaml), so it holds for every launch path
    only if every asset declares its vendor's pool."""
    assets = [a for a in defs.get_repository_def().assets_defs_by_key.values() if a.is_executable]
    assert len(assets) > 200
    assert {(key.path[0], a.op.pool) for a in assets for key in a.keys} == {
        (vendor, vendor) for vendor in ("stellic", "xporter", "skillspass", "webadmit")}


def test_adding_an_export_is_one_catalog_entry(tmp_path):
    src = (ROOT / "edu_assets" / "vendors" / "stellic" / "catalog.yaml").read_text()
    extra = src + "\n  - name: brand_new_export\n    description: New.\n    partitioning: snapshot\n"
    path = tmp_path / "catalog.yaml"
    path.write_text(extra)
    from edu_assets.vendors.stellic.assets import build_export_asset
    from edu_assets.vendors.stellic.catalog import load_catalog as load

    specs = load(path)
    new = next(s for s in specs if s.name == "brand_new_export")
    assert new.path == "exports/export_data/brand_new_export"
    asset = build_export_asset(new)
    assert asset.key == dg.AssetKey(["stellic", "brand_new_export"])


def test_workspace_loads_with_the_dagster_cli(tmp_path):
    """What `dagster dev` does: load workspace.yaml in a fresh process with an empty environment."""
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)}
    validate = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert validate.returncode == 0, (validate.stdout + validate.stderr)[-2000:]
    listed = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "list", "-m", "edu_assets.definitions", "-a", "defs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "stellic/audit_data" in listed.stdout and "stellic/partner_engagement_score" in listed.stdout


def test_code_is_ruff_clean():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "edu_assets", "edu_assets_tests", "bench"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
