"""The shared I/O pieces of the HTTP layer: downloads to disk and their fingerprint, bounded paging, JSON staging."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from edu_assets.core.errors import LandingError, Where
from edu_assets.core.http import RetryPolicy, VendorHTTP
from edu_assets.core.paging import fetch_pages
from edu_assets.core.settings import LakeSettings
from edu_assets.core.staging import JsonStage, staging
from edu_assets.vendors.stellic.resources import SANDBOX_TOKEN
from edu_assets_tests.helpers import requests_to


def _stellic_http(sandbox, **kwargs) -> VendorHTTP:
    return VendorHTTP("stellic", sandbox.base_url("stellic"), auth_headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}, **kwargs)


def test_download_fingerprints_the_resumed_file_even_once_it_is_deleted(sandbox, tmp_path):
    """The sha256 is of the bytes on disk after a cut-short body was resumed, and is computed from a handle
    opened before download() returns: a landing deletes the raw file while the hash may still be running."""
    sandbox.app("stellic").set_knobs(rows_by_type={"audit_data": 30_000})
    http = _stellic_http(sandbox, retry=RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05))
    where = Where("stellic", "audit_data")
    params = {"output_format": "csv"}
    clean = http.download("/exports/export_data/audit_data", tmp_path / "clean.csv", where, params=params)
    whole = (tmp_path / "clean.csv").read_bytes()
    assert clean.sha256 == hashlib.sha256(whole).hexdigest() and clean.bytes == len(whole) > 1_000_000

    sandbox.faults.add("truncate_body", vendor="stellic", match="/exports/export_data/audit_data", times=1)
    cut = http.download("/exports/export_data/audit_data", tmp_path / "cut.csv", where, params=params)
    (tmp_path / "cut.csv").unlink()  # before anything asked for the hash
    assert cut.attempts == 2 and cut.bytes == len(whole)
    assert cut.sha256 == clean.sha256


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk")
def test_download_to_a_full_disk_fails_at_once(sandbox):
    """A full disk is not a network fault: it is raised to the caller, not retried."""
    http = _stellic_http(sandbox)
    with pytest.raises(OSError, match="No space left"):
        http.download("/exports/export_data/audit_data", Path("/dev/full"), Where("stellic", "audit_data"),
                      params={"output_format": "csv"})
    assert len(requests_to(sandbox, "/exports/export_data/audit_data")) == 1


def test_downloads_read_the_socket_a_megabyte_at_a_time():
    """httpcore's 64 KiB reads doubled the CPU of a large download (see core/http.py); fails if an httpcore
    upgrade renames the knob, so the speed-up cannot be lost silently."""
    import httpcore

    from edu_assets.core.http import VendorHTTP

    VendorHTTP("test", "http://127.0.0.1:9").close()  # the first session sets the read size
    assert httpcore.HTTP11Connection.READ_NUM_BYTES >= 1 << 20


def test_paging_refills_a_slot_before_handling_a_page():
    """While the caller handles a page, ``concurrency`` requests are in flight: the slot the page freed is
    refilled first, so the vendor's latency keeps overlapping the caller's work.

    Ordered by a condition, not a clock: each page's handler waits (with a generous deadline) until the
    request that refills its slot has started; handled before the refill, it would wait in vain."""
    pages, concurrency = list(range(2, 14)), 3
    changed = threading.Condition()
    started: list[int] = []
    refilled_in_time: list[bool] = []

    def fetch(number: int) -> int:
        with changed:
            started.append(number)
            changed.notify_all()
        return number

    def on_page(number: int, page: int) -> None:
        # the k-th page handled: the first `concurrency` requests and k refills have been sent
        want = min(concurrency + len(refilled_in_time) + 1, len(pages))
        patience = 0.0 if False in refilled_in_time else 30.0  # one miss is enough to fail
        with changed:
            refilled_in_time.append(changed.wait_for(lambda: len(started) >= want, timeout=patience))

    assert fetch_pages(pages, fetch, on_page, concurrency=concurrency) == 12
    assert refilled_in_time == [True] * 12


def test_staged_rows_are_compact_json_that_round_trips(tmp_path):
    rows = [{"Id": 1, "Name": "Zoë O'Brien", "Note": 'say "hi"\nbye', "Score": 1.5, "Gone": None, "Ok": True,
             "Tags": ["a", "b"], "Nested": {"x": 1}}]
    stage = JsonStage(tmp_path)
    stage.write("t", rows)
    lines = stage.finish("t").read_text(encoding="utf-8").splitlines()
    assert lines == [json.dumps(rows[0], ensure_ascii=False, separators=(",", ":"))]
    assert json.loads(lines[0]) == rows[0]


def test_a_stage_whose_landing_failed_is_kept_for_the_stated_retention(tmp_path):
    """The staged records are what a landing error points to: kept (marked for the sweep), with the error
    saying for how long; a stage whose landing succeeded, or failed otherwise, is removed at once."""
    settings = LakeSettings(tmp_path / "lake", tmp_path / "edu.duckdb", tmp_path / "work", work_retention_hours=12)
    where = Where("xporter", "students", "school 1")
    kept_dir = settings.work_dir / "xporter" / "students" / "1" / "kept"
    with pytest.raises(LandingError) as failed, staging(kept_dir, settings) as stage:
        stage.write("t", [{"Id": 1}])
        raise LandingError(where, "the records could not be converted", stage.finish("t"))
    assert f"kept at {kept_dir / 't.jsonl'}" in str(failed.value)
    assert "stays there for 12 h (EDU_WORK_RETENTION_HOURS), then it is removed" in str(failed.value)
    assert (kept_dir / "t.jsonl").exists() and kept_dir.with_name("kept.kept").exists()

    gone_dir = kept_dir.with_name("gone")
    with pytest.raises(ValueError), staging(gone_dir, settings) as stage:
        stage.write("t", [{"Id": 1}])
        raise ValueError("the vendor's page was not JSON")
    assert not gone_dir.exists()
