"""Benchmark: landing a ~1 GB Stellic CSV export through the real path vs pandas vs DuckDB's own copy.

Each contender runs in its own child process so its peak RSS is its own (``ru_maxrss``). Throughput is
CSV megabytes per second of wall time. Ratios are against DuckDB's CSV→Parquet ``COPY`` of the same file,
measured in the same run (machines are noisy: compare ratios, not absolute times).

    python bench/land_bench.py [--rows 7000000] [--repeat 1] [--no-s3]

Targets (issue #2): landing ≥ 0.7x DuckDB's copy throughput, landing peak RSS < 400 MB.

The landing also runs with the lake on object storage (``EDU_LAKE_ROOT=s3://...``, issue #16) against a real
S3 server (moto, started here on loopback, sharing the machine's cores) and is compared with the same local
DuckDB ``COPY``: the object-store landing adds the upload of the Parquet file and the pointer's publication.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXPORT = "audit_data"

CHILD_LANDING = r"""
import json, os, resource, sys, time
import dagster as dg
from edu_assets.definitions import build_definitions
from edu_assets_tests.helpers import materialize
defs = build_definitions()
with dg.instance_for_test() as instance:
    t0 = time.perf_counter()
    result = materialize(defs, instance, sys.argv[1], sys.argv[2])
    wall = time.perf_counter() - t0
    assert result.success
    md = [e for e in result.get_asset_materialization_events()][0].materialization.metadata
print(json.dumps({"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": md["dagster/row_count"].value, "csv_bytes": md["download_bytes"].value,
                  "download_s": md["download_seconds"].value, "land_s": md["land_seconds"].value,
                  "asset_s": md["run_seconds"].value}))
"""

CHILD_PANDAS = r"""
import json, resource, sys, time
import pandas as pd
t0 = time.perf_counter()
pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2], compression="zstd")
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_DUCKDB = r"""
import json, resource, sys, time
import duckdb
t0 = time.perf_counter()
duckdb.sql(f"COPY (SELECT * FROM read_csv('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=7_000_000, help="rows in the export (7M ≈ 1 GB)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-s3", action="store_true", help="skip the landing to the object-store lake")
    args = parser.parse_args(argv)

    from edu_assets.sandbox import start_sandbox
    from edu_assets.vendors.stellic.resources import SANDBOX_TOKEN

    work = Path(tempfile.mkdtemp(prefix="edu-bench-"))
    server = start_sandbox(port=0, cache_dir=str(work / "cache"))
    server.app("stellic").set_knobs(rows_by_type={EXPORT: args.rows}, sync_row_limit=10**9)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    s3 = None
    try:
        # Generate (and cache) the export once, outside the timings; keep a copy for the baselines.
        csv_path = work / "export.csv"
        t0 = time.perf_counter()
        with httpx.stream("GET", f"{server.base_url('stellic')}/exports/export_data/{EXPORT}",
                          params={"output_format": "csv"}, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
                          timeout=600) as r, open(csv_path, "wb") as f:
            r.raise_for_status()
            for chunk in r.iter_raw(1 << 20):
                f.write(chunk)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"export: {EXPORT}, {args.rows:,} rows, {size_mb:,.0f} MB CSV (generated+fetched in {time.perf_counter() - t0:.1f}s)")

        env = {"EDU_SANDBOX_URL": server.url, "EDU_DATA_DIR": str(work / "data"), "EDU_EXPORT_INLINE_WAIT_SECONDS": "600"}
        results: dict[str, list[dict]] = {"landing (edu-assets)": [], "pandas read_csv+to_parquet": [], "duckdb COPY": []}
        env_s3: dict[str, str] = {}
        if not args.no_s3:
            from edu_assets_tests.s3server import start_s3_server

            s3 = start_s3_server()
            s3.create_bucket("edu-bench")
            env_s3 = {**env, **s3.env(), "EDU_LAKE_ROOT": "s3://edu-bench/lake", "EDU_DATA_DIR": str(work / "data-s3")}
            results["landing to s3 (moto)"] = []
        for _ in range(args.repeat):
            results["duckdb COPY"].append(_child(CHILD_DUCKDB, str(csv_path), str(work / "duck.parquet")))
            results["landing (edu-assets)"].append(_child(CHILD_LANDING, EXPORT, today, env=env))
            if env_s3:
                results["landing to s3 (moto)"].append(_child(CHILD_LANDING, EXPORT, today, env=env_s3))
            results["pandas read_csv+to_parquet"].append(_child(CHILD_PANDAS, str(csv_path), str(work / "pd.parquet")))

        best = {k: min(v, key=lambda r: r["wall"]) for k, v in results.items()}
        base = size_mb / best["duckdb COPY"]["wall"]
        print(f"\n{'contender':<30} {'wall s':>8} {'MB/s':>8} {'peak RSS MB':>12} {'x duckdb':>9}")
        for name, r in best.items():
            mbps = size_mb / r["wall"]
            print(f"{name:<30} {r['wall']:>8.2f} {mbps:>8.1f} {r['rss_mb']:>12.0f} {mbps / base:>9.2f}")
        landing = best["landing (edu-assets)"]
        # asset_s runs from the end of the (synchronous) download to the materialization
        overhead = landing["wall"] - landing["download_s"] - landing["asset_s"]
        print(f"landing breakdown: download {landing['download_s']:.2f}s, CSV->Parquet (the download's sha256 runs "
              f"alongside) {landing['land_s']:.2f}s, "
              f"catalog view+metadata {landing['asset_s'] - landing['land_s']:.2f}s, "
              f"Dagster run start and checks {overhead:.2f}s")
        ratio = (size_mb / landing["wall"]) / base
        # Each repeat ran COPY then landing back to back: their ratio, pair by pair, shows the spread a noisy
        # machine puts on the best-of figure above.
        pairs = [c["wall"] / r["wall"] for c, r in zip(results["duckdb COPY"], results["landing (edu-assets)"], strict=True)]
        if len(pairs) > 1:
            print(f"landing / COPY per repeat: {', '.join(f'{p:.2f}x' for p in pairs)} "
                  f"(median {statistics.median(pairs):.2f}x)")
        ok = ratio >= 0.7 and landing["rss_mb"] < 400
        print(f"\nlanding throughput = {ratio:.2f}x DuckDB's copy (target >= 0.70); "
              f"landing peak RSS = {landing['rss_mb']:.0f} MB (target < 400): {'MET' if ok else 'NOT MET'}")
        print("(landing = HTTP download from the sandbox + size check + sha256 + DuckDB CSV->Parquet + atomic replace + "
              "catalog view, inside a real Dagster run; baselines start from the already-downloaded file)")
        if env_s3:
            remote = best["landing to s3 (moto)"]
            print(f"object-store landing throughput = {(size_mb / remote['wall']) / base:.2f}x DuckDB's copy to local "
                  f"disk (CSV->Parquet {remote['land_s']:.2f}s, which now includes the upload and the pointer; "
                  f"peak RSS {remote['rss_mb']:.0f} MB)")
        return 0
    finally:
        server.stop()
        if s3 is not None:
            s3.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
