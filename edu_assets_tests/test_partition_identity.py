"""One partition identity (issue #15): Dagster keys become dimensions through Dagster, a PartitionId names
its lake file, work files and error coordinates, and every vendor goes through them and the one publish path."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import dagster as dg
import pytest

from edu_assets.core.errors import Where
from edu_assets.core.lake import DATA_FILE, Lake
from edu_assets.core.naming import NAME_MAX
from edu_assets.core.partition import PartitionId, partition_dims
from edu_assets.core.settings import LakeSettings

W = Where("testvendor")
VENDORS = Path(__file__).resolve().parents[1] / "edu_assets" / "vendors"


def test_single_dimension_key_maps_to_its_dimension_name():
    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    assert partition_dims(daily, "2026-03-04", "snapshot_date") == {"snapshot_date": "2026-03-04"}
    assert partition_dims(daily, None, "snapshot_date") == {}
    assert partition_dims(None, None) == {}
    with pytest.raises(ValueError, match="needs the name of its dimension"):
        partition_dims(daily, "2026-03-04")


def test_multi_dimension_key_in_dagsters_own_form_and_order():
    multi = dg.MultiPartitionsDefinition({
        "view": dg.StaticPartitionsDefinition(["unmatched.planned", "progress.registered"]),
        "snapshot_date": dg.DailyPartitionsDefinition(start_date="2026-01-01"),
    })
    key = dg.MultiPartitionKey({"view": "unmatched.planned", "snapshot_date": "2026-03-04"})
    text = str(key)
    assert text == "2026-03-04|unmatched.planned"  # Dagster sorts the dimension names
    for given in (key, text):
        dims = partition_dims(multi, given)
        assert dims == {"snapshot_date": "2026-03-04", "view": "unmatched.planned"}
        assert list(dims) == ["snapshot_date", "view"]
    # the lake nests the view first: an explicit order, the user still sees Dagster's key
    pid = PartitionId.from_key("stellic", "partner_audit_output", multi, text, order=("view", "snapshot_date"))
    assert pid.dims == (("view", "unmatched.planned"), ("snapshot_date", "2026-03-04"))
    assert pid.key == text
    assert str(pid.where) == f"[stellic] partner_audit_output (partition {text})"


def test_dynamic_definitions_single_and_inside_a_multi():
    schools = dg.DynamicPartitionsDefinition(name="xporter_estab")
    assert partition_dims(schools, "3281101", "estab") == {"estab": "3281101"}
    estab_month = dg.MultiPartitionsDefinition(
        {"estab": schools, "month": dg.MonthlyPartitionsDefinition(start_date="2024-01-01")})
    assert partition_dims(estab_month, "3281101|2025-01-01") == {"estab": "3281101", "month": "2025-01-01"}
    # a lookup value's "<estab>:<value>" stays the vendor's: Dagster hands it over whole
    udfs = dg.MultiPartitionsDefinition(
        {"udf": dg.DynamicPartitionsDefinition(name="xporter_udf"),
         "month": dg.MonthlyPartitionsDefinition(start_date="2024-01-01")})
    assert partition_dims(udfs, "2025-01-01|3281101:Locker Number") == {
        "month": "2025-01-01", "udf": "3281101:Locker Number"}


@pytest.fixture
def lake(tmp_path, monkeypatch) -> Lake:
    monkeypatch.setenv("EDU_DATA_DIR", str(tmp_path / "data"))
    return Lake(LakeSettings.from_env())


def test_short_key_where_data_file_and_work_path(lake):
    pid = PartitionId.from_key("stellic", "audit_data", dg.DailyPartitionsDefinition(start_date="2026-01-01"),
                               "2026-03-04", dim="snapshot_date")
    assert str(pid.where) == "[stellic] audit_data (partition 2026-03-04)"
    assert lake.data_file(pid) == lake.root / "stellic" / "audit_data" / "snapshot_date=2026-03-04" / DATA_FILE
    work = lake.work_path(pid, "run.csv")
    assert work == lake.settings.work_dir / "stellic" / "audit_data" / "snapshot_date=2026-03-04" / "run.csv"
    assert work.parent.is_dir()
    assert lake.state(pid) == {} and lake.stored(pid) is None  # nothing landed yet
    # the older spelling names the same places
    assert lake.partition_dir("stellic", "audit_data", {"snapshot_date": "2026-03-04"}) / DATA_FILE == lake.data_file(pid)
    assert lake.work_path(PartitionId.of("stellic", "audit_data", {"snapshot_date": "2026-03-04"}), "run.csv") == work


def test_very_long_key_gets_bounded_names_and_keeps_its_text(lake, tmp_path):
    tag = "Needs follow-up: " + "é" * 300
    pid = PartitionId.of("stellic", "tagged_notes", {"note_tag": tag, "snapshot_date": "2026-03-04"},
                         label=f"{tag}|2026-03-04")
    assert pid.key == f"{tag}|2026-03-04" and tag in str(pid.where)
    data = lake.data_file(pid)
    assert data.name == DATA_FILE and data.parent.name == "snapshot_date=2026-03-04"
    tag_dir = data.parent.parent.name
    assert tag_dir.startswith("note_tag=") and len(tag_dir.encode()) <= NAME_MAX
    assert data.parent.parent.parent == lake.root / "stellic" / "tagged_notes"
    work = lake.work_path(pid, "run.csv")
    assert len(work.parent.name.encode()) <= NAME_MAX and work.parent.parent == lake.settings.work_dir / "stellic" / "tagged_notes"
    other = lake.work_path(PartitionId.of("stellic", "tagged_notes", {"note_tag": tag + "x", "snapshot_date": "2026-03-04"}),
                           "run.csv")
    assert other.parent != work.parent  # shortened names do not collide
    # landed, its state and footer come back through the same identity
    src = tmp_path / "notes.csv"
    src.write_text("Note ID,Text\n1,a\n2,b\n")
    landed = lake.land_csv(src, pid.where, pid)
    assert landed.path == data and data.exists()
    stored = lake.stored(pid)
    assert stored is not None and stored.rows == 2 and stored.original_columns == {"note_id": "Note ID", "text": "Text"}


def test_identity_ignores_the_label_and_narrows_by_dimension():
    a = PartitionId.of("xporter", "students", {"estab": "1"}, label="school 1")
    assert a == PartitionId.of("xporter", "students", {"estab": "1"}) and a.key == "school 1"
    month = a.with_dims({"month": "2025-01-01"})
    assert month.mapping == {"estab": "1", "month": "2025-01-01"} and month.value("month") == "2025-01-01"
    assert a.with_dataset("students__contacts").dims == a.dims
    assert PartitionId("xporter", "schools").key is None


def _vendor_sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in VENDORS.rglob("*.py")}


def test_vendors_never_split_keys_or_join_lake_paths_by_hand():
    pattern = re.compile(r'\.split\("\|"\)|partition\("\|"\)|partition_dir\(|work_path\(VENDOR')
    found = [f"{p.relative_to(VENDORS)}: {m.group(0)}" for p, text in _vendor_sources().items()
             for m in pattern.finditer(text)]
    assert not found, found


def test_vendors_publish_through_the_core():
    """Views, metadata and results come from core/publish.py at every landing site."""
    sources = _vendor_sources()
    assert not [p for p, text in sources.items() if "ensure_view" in text or "landed_metadata" in text]
    for site in ("xporter/assets.py", "xporter/monitoring.py", "webadmit/assets.py", "stellic/partner.py"):
        assert "publish(" in sources[VENDORS / site], site
    core = (VENDORS.parent / "core" / "export_asset.py").read_text(encoding="utf-8")
    assert "publish(" in core and "ensure_view" not in core and "landed_metadata" not in core


@pytest.mark.parametrize("method", ["work_dir", "work_path", "land_csv", "land_empty", "land_json", "merge_json"])
def test_the_lake_names_a_partition_only_by_its_identity(method, lake, tmp_path):
    """The lake's partition methods take a PartitionId and nothing else: no second spelling (vendor, dataset,
    dimensions) to drift from it. The old spelling is a TypeError before anything is written."""
    hints = typing.get_type_hints(getattr(Lake, method))
    assert hints["pid"] is PartitionId
    assert not {"vendor", "asset", "partition"} & set(hints)
    src = tmp_path / "a.csv"
    src.write_text("x\n1\n", encoding="utf-8")
    old_spelling = {
        "work_dir": lambda: lake.work_dir("v", "t", {"p": "1"}),
        "work_path": lambda: lake.work_path("v", "t", {"p": "1"}, "a.csv"),
        "land_csv": lambda: lake.land_csv(src, W, "v", "t", {"p": "1"}),
        "land_empty": lambda: lake.land_empty(W, "v", "t", {"p": "1"}, ["x"]),
        "land_json": lambda: lake.land_json(src, W, "v", "t", {"p": "1"}),
        "merge_json": lambda: lake.merge_json(src, [], "x", W, "v", "t", {"p": "1"}),
    }[method]
    with pytest.raises(TypeError):
        old_spelling()
    assert src.exists() and not lake.dataset_dir("v", "t").exists()
