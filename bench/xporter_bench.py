"""Benchmark: Xporter paging and change sets, through real Dagster runs against the sandbox.

1. A 200,000-row paged endpoint with 100 ms of simulated latency per page: bounded-concurrency paging
   against one page at a time, same run, same data (target: >= 4x faster).
2. An incremental run applying 1% changed rows (change set) against a full reload of the same partition
   (target: <= 10% of the full reload's time).

Ratios are what matter (machines are noisy); each contender is the best of ``--repeat`` runs.

    python bench/xporter_bench.py [--rows 200000] [--page-size 2000] [--concurrency 8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENDPOINT = "student_enrolment_history"  # a 9-column snapshot endpoint
ESTAB = "3281101"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8, help="pages in flight for the paging comparison")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per page")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="edu-xbench-"))
    os.environ["EDU_DATA_DIR"] = str(work / "data")
    import dagster as dg
    import httpx

    from edu_assets.definitions import build_definitions
    from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
    from edu_assets_tests.helpers import materialize

    # The emulator runs in its own process, as a vendor would: in this process it would compete with the
    # client for the GIL and the measurement would be of the emulator's JSON encoding.
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "edu_assets.sandbox", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_for(url)
    httpx.post(f"{url}/_sandbox/knobs/xporter", json={"rows_by_endpoint": {ENDPOINT: args.rows},
                                                        "page_latency": args.latency}).raise_for_status()
    os.environ["EDU_SANDBOX_URL"] = url
    defs = build_definitions()
    asset = f"xporter/{ENDPOINT}"
    pages = -(-args.rows // args.page_size)
    try:
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(ESTAB_PARTITIONS, [ESTAB])

            def run(**config) -> tuple[float, float, float]:
                """(whole Dagster run incl. its asset checks, the endpoint step alone, its paging) in seconds."""
                t0 = time.perf_counter()
                result = materialize(defs, instance, asset, ESTAB, config={"page_size": args.page_size, **config})
                assert result.success
                wall = time.perf_counter() - t0
                step = next(e.event_specific_data.duration_ms for e in result.all_events
                            if e.is_step_success and e.step_key == f"xporter__{ENDPOINT}") / 1000
                md = result.get_asset_materialization_events()[0].materialization.metadata
                return wall, step, md["fetch_seconds"].value

            def best(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
                return min(runs, key=lambda r: r[1])

            print(f"endpoint {ENDPOINT}: {args.rows:,} rows, {pages} pages of {args.page_size}, "
                  f"{args.latency * 1000:.0f} ms latency per page")
            run(page_concurrency=args.concurrency, full_refresh=True)  # warm-up: the emulator renders its pages once
            sequential = best([run(page_concurrency=1, full_refresh=True) for _ in range(args.repeat)])
            concurrent = best([run(page_concurrency=args.concurrency, full_refresh=True) for _ in range(args.repeat)])
            print(f"\n{'paging':<36} {'run s':>8} {'step s':>8} {'paging s':>9}")
            print(f"{'one page at a time':<36} {sequential[0]:>8.2f} {sequential[1]:>8.2f} {sequential[2]:>9.2f}")
            print(f"{f'{args.concurrency} pages in flight':<36} {concurrent[0]:>8.2f} {concurrent[1]:>8.2f} {concurrent[2]:>9.2f}")
            speedup = sequential[2] / concurrent[2]
            print(f"speed-up {speedup:.1f}x on the paging, {sequential[1] / concurrent[1]:.1f}x on the step, "
                  f"{sequential[0] / concurrent[0]:.1f}x on the whole run (target >= 4x): {'MET' if speedup >= 4 else 'NOT MET'}")

            # change sets are compared at the platform's default paging (page_concurrency 4), as a user runs them
            full = best([run(full_refresh=True) for _ in range(args.repeat)])
            deltas = []
            for _ in range(args.repeat):
                httpx.post(f"{url}/_sandbox/actions/xporter/mutate", json={
                    "estab": ESTAB, "endpoint": ENDPOINT, "updates": args.rows // 200,
                    "inserts": args.rows // 400, "deletes": args.rows // 400}).raise_for_status()
                deltas.append(run())
            delta = best(deltas)
            print(f"\n{'change sets':<36} {'run s':>8} {'step s':>8}")
            print(f"{'full reload (changedRows=*)':<36} {full[0]:>8.2f} {full[1]:>8.2f}")
            print(f"{'1% changed (delta + merge)':<36} {delta[0]:>8.2f} {delta[1]:>8.2f}")
            share = delta[1] / full[1]
            print(f"incremental = {share:.0%} of the full reload on the step, {delta[0] / full[0]:.0%} on the whole run "
                  f"(target <= 10%): {'MET' if share <= 0.10 else 'NOT MET'}")
            print("(paging = first request to last page staged; step = the endpoint's Dagster step: token, paging, "
                  "staging, Parquet landing, DuckDB view; run = the whole in-process run, with its two asset checks "
                  "and Dagster's fixed overhead)")
    finally:
        server.terminate()
        server.wait(10)
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_sandbox/", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"the sandbox did not start at {url}")


if __name__ == "__main__":
    sys.exit(main())
