"""The shared I/O pieces of the HTTP layer: downloads to disk and their fingerprint, bounded paging, JSON staging."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from edu_assets.core.errors import Where
from edu_assets.core.http import RetryPolicy, VendorHTTP
from edu_assets.core.paging import fetch_pages
from edu_assets.core.staging import JsonStage
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

    import edu_assets.core.http  # noqa: F401 - sets the read size on import

    assert httpcore.HTTP11Connection.READ_NUM_BYTES >= 1 << 20


def test_paging_refills_a_slot_before_handling_a_page():
    """While the caller handles a page, ``concurrency`` requests are in flight: the slot the page freed is
    refilled first, so the vendor's latency keeps overlapping the caller's work."""
    lock = threading.Lock()
    in_flight, seen_while_handling = 0, []

    def fetch(number: int) -> int:
        nonlocal in_flight
        with lock:
            in_flight += 1
        time.sleep(0.1)  # latency-bound, like a vendor page
        with lock:
            in_flight -= 1
        return number

    def on_page(number: int, page: int) -> None:
        time.sleep(0.01)
        with lock:
            seen_while_handling.append(in_flight)
        time.sleep(0.02)

    assert fetch_pages(range(2, 14), fetch, on_page, concurrency=3) == 12
    # handled after its slot was refilled: 3 in flight (it would be at most 2 if the page were handled first)
    assert max(seen_while_handling) == 3


def test_staged_rows_are_compact_json_that_round_trips(tmp_path):
    rows = [{"Id": 1, "Name": "Zoë O'Brien", "Note": 'say "hi"\nbye', "Score": 1.5, "Gone": None, "Ok": True,
             "Tags": ["a", "b"], "Nested": {"x": 1}}]
    stage = JsonStage(tmp_path)
    stage.write("t", rows)
    lines = stage.finish("t").read_text(encoding="utf-8").splitlines()
    assert lines == [json.dumps(rows[0], ensure_ascii=False, separators=(",", ":"))]
    assert json.loads(lines[0]) == rows[0]
