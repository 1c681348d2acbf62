"""The shared I/O pieces under the HTTP layer: the download writer, bounded paging, JSON staging."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from edu_assets.core.filesink import HashingFileSink
from edu_assets.core.paging import fetch_pages
from edu_assets.core.staging import JsonStage


@pytest.mark.parametrize("batch_bytes", [1, 5000, 1 << 20])
def test_download_sink_writes_and_hashes_in_order(tmp_path, batch_bytes):
    """The background writer must keep chunk order across batches (the hash proves it) and flush a part
    batch and wait for the disk on exit."""
    chunks = [bytes([i]) * (1000 + i) for i in range(200)]
    hasher = hashlib.sha256()
    with HashingFileSink(tmp_path / "f", "wb", hasher, batch_bytes) as out:
        for c in chunks[:100]:
            out.write(c)
    with HashingFileSink(tmp_path / "f", "ab", hasher, batch_bytes) as out:  # a resumed download appends
        for c in chunks[100:]:
            out.write(c)
    whole = b"".join(chunks)
    assert (tmp_path / "f").read_bytes() == whole
    assert hasher.hexdigest() == hashlib.sha256(whole).hexdigest()


def test_downloads_read_the_socket_a_megabyte_at_a_time():
    """httpcore's 64 KiB reads doubled the CPU of a large download (see core/http.py); fails if an httpcore
    upgrade renames the knob, so the speed-up cannot be lost silently."""
    import httpcore

    import edu_assets.core.http  # noqa: F401 - sets the read size on import

    assert httpcore.HTTP11Connection.READ_NUM_BYTES >= 1 << 20


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk")
def test_download_sink_reports_a_full_disk():
    with pytest.raises(OSError, match="No space left"), HashingFileSink(Path("/dev/full"), "wb", hashlib.sha256()) as out:
        for _ in range(50):
            out.write(b"x" * 65536)


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
