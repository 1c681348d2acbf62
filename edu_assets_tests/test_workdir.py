"""Work files of landing attempts, with real runs against the sandbox: a dead attempt's files go at the next
landing, a running attempt's stay, a failed landing's raw file is kept for the stated retention and then
swept, and the whole work directory is swept at most hourly. Ages are set with ``os.utime``, never waited for."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from edu_assets.core.workdir import KEPT, STAMP, owner
from edu_assets.definitions import build_definitions
from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
from edu_assets_tests.helpers import failure_message, materialize

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
SCHOOL = "3281101"


def age(path: Path, hours: float) -> Path:
    """Make ``path`` (and what a directory holds) ``hours`` old: setting state, not waiting for it."""
    then = time.time() - hours * 3600
    for p in [*(path.rglob("*") if path.is_dir() else []), path]:
        os.utime(p, (then, then))
    return path


def write(path: Path, text: str = "x\n1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def running_run(instance: dg.DagsterInstance) -> str:
    """The id of a run the instance knows as STARTED: another attempt, landing right now."""
    return instance.add_run(dg.DagsterRun(job_name="elsewhere", run_id=str(uuid.uuid4()),
                                          status=dg.DagsterRunStatus.STARTED)).run_id


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_a_dead_attempts_files_go_at_the_next_landing_and_a_running_ones_stay(
        defs, instance, sandbox, lake_env, monkeypatch):
    work = lake_env / "work" / "stellic" / "audit_data" / f"snapshot_date={TODAY}"
    # a real dead attempt: its download is cut short until the run gives up, leaving the partial file
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "2")
    defs = build_definitions()  # settings enter when the definitions load
    sandbox.faults.add("truncate_body", vendor="stellic", match="/exports/export_data/audit_data", times=2)
    failed = materialize(defs, instance, "audit_data", TODAY)
    assert not failed.success
    (partial,) = work.iterdir()
    assert owner(partial.name) == failed.run_id  # the run that owns a work file is in its name
    age(write(work / "0123456789abcdef.csv"), 25)  # a killed attempt's, from before run ids in names
    running = write(work / f"{running_run(instance)}.abcd.csv")  # another attempt's, downloading now
    fresh_unknown = write(work / "fedcba9876543210.csv")  # no run to ask, not old: left for the retention

    assert materialize(defs, instance, "audit_data", TODAY).success
    assert files(work) == sorted([running.name, fresh_unknown.name])  # its own file went when it landed


def test_a_failed_landing_keeps_its_raw_file_for_the_stated_retention(defs, instance, sandbox, lake_env, monkeypatch):
    monkeypatch.setenv("EDU_WORK_RETENTION_HOURS", "6")
    defs = build_definitions()  # settings enter when the definitions load
    sandbox.faults.add("malformed_csv", vendor="stellic", times=1)
    failed = materialize(defs, instance, "student_geneds", TODAY)
    assert not failed.success
    msg = failure_message(failed)
    raw = Path(msg.split("raw download is kept at ", 1)[1].split(". ", 1)[0].rstrip("."))
    assert "stays there for 6 h (EDU_WORK_RETENTION_HOURS), then it is removed" in msg
    assert raw.exists() and owner(raw.name) == failed.run_id

    assert materialize(defs, instance, "student_geneds", TODAY).success
    assert raw.exists()  # its run has ended, but it is kept for inspection until the retention is up
    age(raw, 7)
    assert materialize(defs, instance, "student_geneds", TODAY).success
    assert files(raw.parent) == []  # the file and its ".kept" marker


def test_xporter_staging_of_dead_attempts_is_swept_and_a_running_ones_stay(defs, instance, sandbox, lake_env):
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [SCHOOL])
    assert materialize(defs, instance, "xporter/students", SCHOOL).success
    first = instance.get_runs(limit=1)[0].run_id
    endpoint = lake_env / "work" / "xporter" / "students"
    assert files(endpoint / SCHOOL) == []  # a landed fetch leaves nothing behind
    dead = write(endpoint / SCHOOL / f"{first}.0a1b2c3d4e5f" / "Students.jsonl")  # its run has ended
    running = write(endpoint / SCHOOL / f"{running_run(instance)}.0a1b2c3d4e5f" / "Students.jsonl")
    legacy = age(write(endpoint / f"{SCHOOL}-0a1b2c3d" / "Students.jsonl").parent, 25)  # the old layout's
    age(lake_env / "work" / STAMP, 2)  # the whole work directory is due for its hourly sweep

    assert materialize(defs, instance, "xporter/students", SCHOOL).success
    assert not dead.parent.exists() and not legacy.exists()
    assert files(endpoint / SCHOOL) == [running.parent.name]


def test_the_whole_work_dir_is_swept_at_most_hourly(defs, instance, sandbox, lake_env):
    work = lake_env / "work"
    assert materialize(defs, instance, "audit_data", TODAY).success  # the first landing sweeps (no stamp yet)
    stamp = work / STAMP
    assert stamp.exists()
    elsewhere = write(work / "stellic" / "permissions" / "snapshot_date=2026-01-01" / "0123abcd.csv")
    age(work / "stellic" / "permissions", 25)  # another asset's: a killed attempt's file, a day old
    spill = age(write(work / ".duckdb-spill" / "duckdb_temp_block-1.block"), 25)  # a killed process's spill
    ledger = age(work / "catalog-views.json", 25)  # the catalog's ledger is not an attempt's

    assert materialize(defs, instance, "audit_data", TODAY).success
    assert elsewhere.exists()  # swept less than an hour ago: this landing only swept its own partition

    age(stamp, 1.5)
    assert materialize(defs, instance, "audit_data", TODAY).success
    assert not elsewhere.exists() and not (work / "stellic" / "permissions").exists()  # empty directories too
    assert not spill.exists() and spill.parent.exists()
    assert ledger.exists()


@pytest.mark.parametrize("kept", [True, False])
def test_kept_marker_exempts_from_the_run_rule_only(tmp_path, kept):
    """The rules on their own, for a run that has ended: its files go at once, unless a failed landing
    kept them; kept or not, past the retention they go."""
    from edu_assets.core.workdir import Sweeper

    ended = str(uuid.uuid4())
    sweeper = Sweeper(tmp_path, 6 * 3600, finished=lambda ids: {i for i in ids if i == ended})
    raw = write(tmp_path / "v" / "a" / "p" / f"{ended}.x.csv")
    if kept:
        write(raw.with_name(raw.name + KEPT), "")
    sweeper.sweep(raw.parent)
    assert raw.exists() is kept
    if kept:
        age(raw, 7)
        sweeper.sweep(raw.parent)
        assert files(raw.parent) == []
