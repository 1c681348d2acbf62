"""Views declared with their datasets (``views()`` in each vendor), made by landings and by ``edu catalog``.

End to end: real sandbox runs land one partition per vendor, the DuckDB catalog file is deleted, and the
``catalog`` command must bring back exactly the views the landings had made (``_latest``, ``_current``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from edu_assets.cli import main
from edu_assets.core.catalog import Catalog, Current, ViewSpec, view_for
from edu_assets.core.errors import Where
from edu_assets.core.lake import Lake
from edu_assets.core.partition import PartitionId
from edu_assets.core.settings import LakeSettings
from edu_assets.vendors import skillspass, stellic, webadmit, xporter
from edu_assets.vendors.webadmit.partitions import TEMPLATES
from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
from edu_assets_tests.helpers import materialize, query

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
SCHOOL = "3281101"
W = Where("testvendor", "things")


def _views(catalog: Path) -> dict[str, str]:
    """Every user view of the catalog file: ``schema.view`` -> its SQL."""
    rows = query(catalog, "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal")
    return {f"{schema}.{view}": sql for schema, view, sql in rows}


# ------------------------------------------------------------------------------------------ declarations


def test_a_datasets_own_declaration_wins_over_a_pattern():
    """WebAdMIT's register is named like its templates' datasets; it must not get their ``_latest``."""
    declared = webadmit.views()
    assert view_for(declared, "webadmit", "export_templates") == ViewSpec("webadmit", "export_templates")
    assert view_for(declared, "webadmit", "export_5001") == ViewSpec("webadmit", "export_5001", latest_by="snapshot_date")
    assert view_for(declared, "webadmit", "export_5003__programs").latest_by == "snapshot_date"


def test_undeclared_or_other_vendors_dataset_gets_a_plain_view():
    declared = [ViewSpec("a", "t*", latest_by="d")]
    assert view_for(declared, "b", "things") == ViewSpec("b", "things")
    assert view_for(declared, "a", "other") == ViewSpec("a", "other")


def test_every_vendor_declares_what_its_landings_used_to_hard_code():
    stellic_views = {v.dataset: v for v in stellic.views()}
    assert stellic_views["audit_data"].latest_by == "snapshot_date"
    assert stellic_views["partner_students_by_property"] == ViewSpec("stellic", "partner_students_by_property")
    users = view_for(skillspass.views(), "skillspass", "users")
    assert users.current == Current(("User ID",), "window_end")
    assert view_for(skillspass.views(), "skillspass", "learning_activity_interactions").current.order_by == "date"
    assert all(v.latest_by is None and v.current is None for v in xporter.views())
    assert all(v.vendor == name for name, m in [("stellic", stellic), ("xporter", xporter),
                                                ("skillspass", skillspass), ("webadmit", webadmit)]
               for v in m.views())


def test_rebuild_makes_declared_views_and_plain_ones_for_the_rest(lake_env, tmp_path):
    """Core alone: ``_latest`` and ``_current`` come from the declarations passed in, a pattern covers
    datasets it names, and an undeclared dataset still gets its own view."""
    settings = LakeSettings.from_env()
    lake = Lake(settings)
    for name, day, text in [("feed", "1", "id,v\n1,a\n2,b\n"), ("feed", "2", "id,v\n1,c\n"),
                            ("snap_7", "1", "x\n1\n"), ("snap_7", "2", "x\n2\n"), ("other", "1", "y\n5\n")]:
        src = tmp_path / f"{name}-{day}.csv"
        src.write_text(text)
        lake.land_csv(src, W, PartitionId.of("testvendor", name, {"d": day}))
    declared = [ViewSpec("testvendor", "feed", current=Current(("id",), "d")),
                ViewSpec("testvendor", "snap_*", latest_by="d")]
    made = Catalog(settings).rebuild(declared)
    assert made == ["testvendor.feed", "testvendor.feed_current", "testvendor.other",
                    "testvendor.snap_7", "testvendor.snap_7_latest"]
    assert sorted(_views(settings.catalog_path)) == made
    cat = settings.catalog_path
    assert query(cat, "SELECT id, v FROM testvendor.feed_current ORDER BY id") == [(1, "c"), (2, "b")]
    assert query(cat, "SELECT x FROM testvendor.snap_7_latest") == [(2,)]


def test_landing_fast_path_still_skips_the_catalog_for_declared_views(lake_env, tmp_path):
    """The ledger shortcut holds for declared ``_latest`` views (no catalog open once they exist)."""
    settings = LakeSettings.from_env()
    src = tmp_path / "a.csv"
    src.write_text("x\n1\n")
    Lake(settings).land_csv(src, W, PartitionId.of("testvendor", "snap_1", {"d": "1"}))
    declared = [ViewSpec("testvendor", "snap_*", latest_by="d")]
    assert Catalog(settings).ensure_view("testvendor", "snap_1", declared)
    again, opened = Catalog(settings), []
    again._open = lambda *a, **k: opened.append(1)  # type: ignore[method-assign]
    assert again.ensure_view("testvendor", "snap_1", declared) is True
    assert opened == []
    assert query(settings.catalog_path, "SELECT x FROM testvendor.snap_1_latest") == [(1,)]


# ------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def landed(defs: dg.Definitions, instance: dg.DagsterInstance, sandbox, lake_env: Path) -> Path:
    """One partition of each vendor landed through real runs against the sandbox; the catalog file's path."""
    sandbox.app("webadmit").set_knobs(ready_after=0.3, rows=40)
    sandbox.app("skillspass").set_knobs(ready_after=0.3)
    sandbox.app("xporter").set_knobs(rows=30)
    instance.add_dynamic_partitions(TEMPLATES.name, ["1001-5001"])
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [SCHOOL])
    for asset, partition in [("audit_data", TODAY), ("skillspass/users", "2026-11-02"),
                             ("webadmit/export_files", "1001-5001"), ("xporter/students", SCHOOL)]:
        assert materialize(defs, instance, asset, partition).success, asset
    return lake_env / "edu.duckdb"


def test_catalog_command_recreates_every_view_the_landings_made(landed: Path, capsys):
    made_by_landing = _views(landed)
    for view in ("webadmit.export_5001_latest", "skillspass.users_current", "stellic.audit_data_latest",
                 "xporter.students"):
        assert view in made_by_landing
    landed.unlink()

    assert main(["catalog"]) == 0
    assert _views(landed) == made_by_landing  # the same declarations: the same views, the same SQL
    assert capsys.readouterr().out.startswith(f"rebuilt {len(made_by_landing)} views: ")
    assert query(landed, "SELECT count(*) FROM webadmit.export_5001_latest")[0][0] == 40
    (n, distinct) = query(landed, "SELECT count(*), count(DISTINCT user_id) FROM skillspass.users_current")[0]
    assert n == distinct > 0
    assert query(landed, "SELECT count(*) FROM stellic.audit_data_latest")[0][0] > 0
    assert query(landed, f"SELECT count(*) FROM xporter.students WHERE estab = '{SCHOOL}'")[0][0] > 0
