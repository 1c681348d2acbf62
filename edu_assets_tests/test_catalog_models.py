"""The vendor catalogs refuse bad input when definitions load, and Stellic parameters are checked by type.

Each case writes a copy of a shipped ``catalog.yaml`` with one mistake and expects a ConfigError naming
the file, the entry and the key; before issue #15 these loaded silently (or failed later with a KeyError)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edu_assets.core.errors import ConfigError, Where
from edu_assets.vendors.skillspass import catalog as skillspass
from edu_assets.vendors.stellic import catalog as stellic
from edu_assets.vendors.xporter import catalog as xporter

WHERE = Where("stellic", "test")


def broken_copy(tmp_path: Path, shipped: Path, old: str, new: str) -> Path:
    """The shipped catalog with the first ``old`` replaced by ``new`` (which must occur: a guard against
    a catalog edit making the case test nothing)."""
    text = shipped.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {shipped.name}"
    path = tmp_path / "catalog.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def refusal(load: Callable[[Path], Any], path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return str(caught.value)


def test_the_shipped_catalogs_load():
    exports = stellic.load_catalog()
    reads, students = stellic.load_partner_reads()
    endpoints, management = xporter.load_catalog()
    assert exports and reads and students.read in {r.name for r in reads}
    assert endpoints and management and any(e.filters for e in endpoints)
    assert skillspass.load_catalog()


def test_a_stellic_partitioning_is_one_partitions_py_knows():
    from edu_assets.vendors.stellic.partitions import PARTITIONINGS

    assert {s.partitioning for s in stellic.load_catalog()} <= set(PARTITIONINGS)
    assert set(stellic.PartitioningKind.__args__) == set(PARTITIONINGS)


# ------------------------------------------------------------------------------ Stellic catalog

EXPORT_AUDIT_DATA = "  - name: audit_data\n    category: Audit & Requirements\n    description: Data of all audits.\n"


@pytest.mark.parametrize(
    ("old", "new", "entry", "key", "suggestion"),
    [
        (EXPORT_AUDIT_DATA + "    flow: sync\n    partitioning: snapshot\n    expect_rows: true",
         EXPORT_AUDIT_DATA + "    flow: sync\n    partitioning: snapshot\n    expect_row: true",
         "export 'audit_data'", "'expect_row'", "did you mean 'expect_rows'?"),
        (EXPORT_AUDIT_DATA + "    flow: sync\n    partitioning: snapshot",
         EXPORT_AUDIT_DATA + "    flow: sync\n    partitioning: snapshott",
         "export 'audit_data'", "partitioning", "did you mean 'snapshot'?"),
        ("{name: reset_cache, type: bool}", "{name: reset_cache, type: boolean}",
         "export 'audit_requirements' param 'reset_cache'", "type", "did you mean 'bool'?"),
        ("{name: reset_cache, type: bool}", "{name: reset_cache, typ: bool}",
         "export 'audit_requirements' param 'reset_cache'", "'typ'", "did you mean 'type'?"),
        ("{name: reset_cache, type: bool}", "{name: reset_cache, type: bool, default: maybe}",
         "export 'audit_requirements' param 'reset_cache'", "default", "'maybe'"),
        ("    kind: bulk\n", "    kind: bulky\n", "partner read 'partner_students_by_property'", "kind", "'bulk'"),
        ("  column: Username\n", "  column: Username\n  colum: ID\n", "student_list", "'colum'", "did you mean"),
    ],
)
def test_a_stellic_mistake_names_file_entry_and_key(tmp_path, old, new, entry, key, suggestion):
    path = broken_copy(tmp_path, stellic.CATALOG_PATH, old, new)
    message = refusal(stellic.load_partner_reads, path)
    for part in (str(path), entry, key, suggestion):
        assert part in message, (part, message)


def test_a_duplicate_stellic_export_names_file_and_entry(tmp_path):
    path = broken_copy(tmp_path, stellic.CATALOG_PATH, "  - name: audit_requirements\n", "  - name: audit_data\n")
    message = refusal(stellic.load_catalog, path)
    assert str(path) in message and "export 'audit_data'" in message and "twice" in message


def test_a_demo_partition_outside_the_views_names_the_read(tmp_path):
    path = broken_copy(tmp_path, stellic.CATALOG_PATH, "demo: [unmatched.planned]", "demo: [unmatched.planed]")
    message = refusal(stellic.load_partner_reads, path)
    assert "partner read 'partner_audit_output'" in message and "unmatched.planed" in message


def test_the_shipped_catalog_is_named_relative_to_the_project():
    message = str(stellic.catalog_error(stellic.CATALOG_PATH, "stellic", "export 'x'", "wrong"))
    assert "edu_assets/vendors/stellic/catalog.yaml: export 'x': wrong" in message


# ------------------------------------------------------------------------------ Xporter catalog


@pytest.mark.parametrize(
    ("old", "new", "entry", "key"),
    [
        ("    aliases: [achievementfordaterange]\n    key: Id\n",
         "    aliases: [achievementfordaterange]\n    key: Id\n    primary_key: Id\n",
         "endpoint 'achievement_for_date_range' table 'Achievements'", "'primary_key'"),
        ("  updated_since: true\n", "  updated_sinse: true\n", "endpoint 'achievement_for_date_range'", "'updated_sinse'"),
        ("  updated_since: true\n", "  updated_since: 'yes'\n", "endpoint 'achievement_for_date_range'", "updated_since"),
        ("    people: students\n", "    people: pupils\n", "endpoint 'assessment_results_by_student' filter 'Students'",
         "people"),
        ("where: {UDFType: Student}", "wher: {UDFType: Student}",
         "endpoint 'student_user_defined_fields' filter 'UDFName'", "'wher'"),
        ("date_range: {from: DateFrom, to: DateTo}", "date_range: {from: DateFrom, until: DateTo}",
         "endpoint 'achievement_for_date_range'", "'until'"),
        ("    dimension: aspect\n", "", "endpoint 'assessment_results_by_aspect' filter 'Aspects'", "dimension"),
    ],
)
def test_an_xporter_mistake_names_file_entry_and_key(tmp_path, old, new, entry, key):
    path = broken_copy(tmp_path, xporter.CATALOG_PATH, old, new)
    message = refusal(xporter.load_catalog, path)
    for part in (str(path), entry, key):
        assert part in message, (part, message)


def test_an_xporter_lookup_of_a_missing_table_names_the_filter(tmp_path):
    path = broken_copy(tmp_path, xporter.CATALOG_PATH, "lookup: {endpoint: assessment_structure, table: Aspects,",
                       "lookup: {endpoint: assessment_structure, table: Aspect,")
    message = refusal(xporter.load_catalog, path)
    assert "endpoint 'assessment_results_by_aspect' filter 'Aspects'" in message
    assert "assessment_structure.Aspect is not in the catalog" in message


# ------------------------------------------------------------------------------ SkillsPass catalog


@pytest.mark.parametrize(
    ("old", "new", "key", "hint"),
    [
        ("formats: [JSONL]", "formats: [XML]", "formats[0]", "CSV, JSONL"),
        ("    per_activity: true\n", "    per_activty: true\n", "'per_activty'", "did you mean 'per_activity'?"),
    ],
)
def test_a_skillspass_mistake_names_file_entry_and_key(tmp_path, old, new, key, hint):
    path = broken_copy(tmp_path, skillspass.CATALOG_PATH, old, new)
    message = refusal(skillspass.load_catalog, path)
    for part in (str(path), "export 'learning_activity_interactions'", key, hint):
        assert part in message, (part, message)


# ------------------------------------------------------------------------------ Stellic parameters


def export(name: str) -> stellic.ExportSpec:
    return next(s for s in stellic.load_catalog() if s.name == name)


@pytest.fixture
def no_env_params(monkeypatch):
    monkeypatch.delenv("STELLIC_EXPORT_PARAMS", raising=False)


@pytest.mark.parametrize(
    ("name", "params", "param", "type_"),
    [
        ("requirement_units_taken", {"screen_names": ["a"], "exclude_archived": "maybe"}, "exclude_archived", "bool"),
        ("bulk_exceptions_detailed", {"include_all": ["no"]}, "include_all", "bool"),
        ("bulk_exceptions_detailed", {"include_all": 1}, "include_all", "bool"),
        ("requirement_units_taken", {"screen_names": {"a": 1}}, "screen_names", "list"),
        ("requirement_units_taken", {"screen_names": [["a"]]}, "screen_names", "list"),
        ("permissions", {"usernames": {"a": 1}}, "usernames", "csv"),
        ("plancourse_enrollment_by_term", {"school_name": {"a": 1}}, "school_name", "str"),
    ],
)
def test_a_parameter_value_of_the_wrong_type_is_refused(no_env_params, name, params, param, type_):
    with pytest.raises(ConfigError) as caught:
        stellic.build_query(export(name), params, WHERE)
    message = str(caught.value)
    for part in (name, repr(param), f"({type_})", repr(params[param]), "run config"):
        assert part in message, (part, message)


def test_values_of_the_declared_type_make_the_same_query_as_before(no_env_params):
    query = stellic.build_query(
        export("requirement_units_taken"),
        {"screen_names": ["a", "b"], "exclude_archived": "TRUE", "audit_mode": "official"}, WHERE)
    assert query == [("output_format", "csv"), ("screen_names", "a"), ("screen_names", "b"),
                     ("audit_mode", "official"), ("exclude_archived", "true")]
    assert stellic.build_query(export("bulk_exceptions_detailed"), {"exclude_archived": "0"}, WHERE) == [
        ("output_format", "csv"), ("include_all", "true"), ("exclude_archived", "false")]  # include_all: default
    assert stellic.build_query(export("permissions"), {"usernames": ["ann", 7], "group_ids": "1,2"}, WHERE) == [
        ("output_format", "csv"), ("usernames", "ann,7"), ("group_ids", "1,2")]
    assert stellic.build_query(export("requirement_units_taken"), {"screen_names": "one"}, WHERE)[1] == (
        "screen_names", "one")


@pytest.mark.parametrize(
    ("value", "sent"),
    [(3, "3"), ("007", "7"), (True, None), ("२३", None), ("-1", None), (1.5, None)],
)
def test_an_int_parameter_takes_ints_and_ascii_digits(value, sent):
    param = stellic.Param(name="n", type="int")
    if sent is None:
        with pytest.raises(stellic.BadValue):
            stellic.encode_param(param, value)
    else:
        assert stellic.encode_param(param, value) == [("n", sent)]


def test_a_choice_outside_the_catalogs_is_refused(no_env_params):
    with pytest.raises(ConfigError, match=r"audit_mode.*one of \['official', 'planned'\]"):
        stellic.build_query(export("requirement_units_taken"), {"screen_names": ["a"], "audit_mode": "draft"}, WHERE)


@pytest.mark.parametrize("text", ["[1, 2]", '{"audit_data": 3}', '"text"', "{not json"])
def test_export_params_from_the_environment_must_be_an_object_of_objects(monkeypatch, text):
    """A wrong shape stops the definitions loading (the settings check), naming the variable and the shape."""
    from edu_assets.vendors import check_all_settings

    monkeypatch.setenv("STELLIC_EXPORT_PARAMS", text)
    with pytest.raises(ConfigError, match="STELLIC_EXPORT_PARAMS") as caught:
        check_all_settings()
    assert '{"<export>": {"<param>": value}}' in str(caught.value)


def _preset(monkeypatch, text: str, export_name: str) -> dict:
    """What the resource built from the environment hands ``build_query`` for one export."""
    from edu_assets.vendors.stellic.resources import stellic_resource_from_env

    monkeypatch.setenv("STELLIC_EXPORT_PARAMS", text)
    return stellic_resource_from_env().params_for(export_name)


def test_a_bad_value_from_the_environment_says_where_it_came_from(monkeypatch):
    preset = _preset(monkeypatch, '{"bulk_exceptions_detailed": {"include_all": "maybe"}}', "bulk_exceptions_detailed")
    with pytest.raises(ConfigError, match=r"'include_all' \(bool\).*'maybe' from STELLIC_EXPORT_PARAMS"):
        stellic.build_query(export("bulk_exceptions_detailed"), {}, WHERE, preset)


def test_export_params_from_the_environment_are_used(monkeypatch):
    preset = _preset(monkeypatch, '{"plancourse_enrollment_by_term": {"school_name": "Arts"}}',
                     "plancourse_enrollment_by_term")
    assert preset == {"school_name": "Arts"}
    assert ("school_name", "Arts") in stellic.build_query(export("plancourse_enrollment_by_term"), {}, WHERE, preset)
    # the run config wins over the environment
    query = stellic.build_query(export("plancourse_enrollment_by_term"), {"school_name": "Law"}, WHERE, preset)
    assert ("school_name", "Law") in query and ("school_name", "Arts") not in query


def test_export_params_naming_an_unknown_export_or_parameter_fail_the_load(monkeypatch):
    """A misspelt export or parameter in STELLIC_EXPORT_PARAMS is not ignored until a run needs it: the
    definitions do not load, and every mistake is named at once."""
    from edu_assets.vendors.stellic import definitions

    monkeypatch.setenv("STELLIC_EXPORT_PARAMS",
                       '{"audit_dat": {}, "bulk_exceptions_detailed": {"include_all": "maybe", "colour": 1}}')
    with pytest.raises(ConfigError) as caught:
        definitions()
    message = str(caught.value)
    assert "STELLIC_EXPORT_PARAMS" in message and "'audit_dat' is not a Stellic export (did you mean 'audit_data'?)" in message
    assert "'include_all' (bool) must be true or false, got 'maybe'" in message and "'colour' is not one of" in message
    monkeypatch.setenv("STELLIC_EXPORT_PARAMS", '{"bulk_exceptions_detailed": {"include_all": "true"}}')
    definitions()  # a valid one loads
