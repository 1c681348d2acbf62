"""The Stellic emulator describes each bulk export once: the document's facts in its YAML copy, the
emulator's inventions in one Python table (stellic_exports.OWN), and nothing restated between them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edu_assets.sandbox import stellic_exports
from edu_assets.sandbox.stellic_exports import (
    COMMON_PARAMS,
    EXPORTS,
    OWN,
    PARSERS,
    REFERENCE,
    Own,
    load_reference,
)


def reference() -> dict:
    return yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))


def test_parameter_types_are_the_documents_words():
    documented = {p["type"] for d in reference()["data_types"] for p in d["parameters"] or []}
    assert documented <= set(PARSERS)
    assert [(p.name, p.type) for e in EXPORTS.values() for p in e.params] == [
        (p["name"], p["type"]) for d in reference()["data_types"] for p in d["parameters"] or []
    ]


def test_the_common_query_parameters_are_the_documents():
    common = [p for p in reference()["endpoint"]["common_parameters"] if p["location"] == "query"]
    assert [(p.name, p.required, p.choices) for p in COMMON_PARAMS] == [
        (p["name"], bool(p["required"]), tuple(p["allowed_values"])) for p in common
    ]


def test_the_emulators_own_table_names_only_documented_parameters(monkeypatch: pytest.MonkeyPatch):
    for name, own in OWN.items():
        assert {p.name for p in EXPORTS[name].params if not p.affects_data} == set(own.no_reseed), name
    typo = Own(OWN["all_appointments"].keys, OWN["all_appointments"].build, ("start_date",))
    monkeypatch.setitem(stellic_exports.OWN, "all_appointments", typo)
    with pytest.raises(ValueError, match="start_date"):
        load_reference()


def test_a_type_the_emulator_cannot_read_stops_loading(tmp_path: Path):
    raw = reference()
    raw["data_types"][1]["parameters"][0]["type"] = "timestamp with zone"
    path = tmp_path / "bulk_exports.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ValueError, match="timestamp with zone"):
        load_reference(path)
