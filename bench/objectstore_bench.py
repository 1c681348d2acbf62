"""Benchmark: the three kept Python S3 libraries on what the object-store lake does with them.

The lake (``edu_assets/core/objectstore.py``) needs four things from an S3 library: upload a finished Parquet
file, PUT and GET a small pointer object, list a partition's objects, and let DuckDB read objects through
``register_filesystem`` (an fsspec filesystem: DuckDB's ``httpfs`` extension cannot be downloaded here).
Each contender does each of them against a real S3 server (moto's server mode, started here on loopback):

* **s3fs** (fsspec's own S3 filesystem, on aiobotocore);
* **obstore** (Rust ``object_store``), with its ``obstore.fsspec.FsspecStore`` adapter for DuckDB;
* **pyarrow** ``S3FileSystem`` (AWS C++ SDK), wrapped for DuckDB by fsspec's ``ArrowFSWrapper``.

    python bench/objectstore_bench.py [--rows 2000000] [--repeat 3]

The server runs on the same two cores, so absolute numbers are the server's as much as the client's:
compare the contenders with each other, not with AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edu_assets_tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, start_s3_server

BUCKET = "edu-bench"
POINTERS = 50


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class Contender:
    name: str

    def put_file(self, local: Path, key: str) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def list(self, prefix: str) -> list[str]: ...
    def fsspec(self):  # an fsspec filesystem for DuckDB's register_filesystem
        ...


class S3fs(Contender):
    name = "s3fs"

    def __init__(self, url: str):
        import s3fs

        self.fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=url, use_listings_cache=False,
                                    client_kwargs={"region_name": REGION}, skip_instance_cache=True)

    def put_file(self, local: Path, key: str) -> None:
        self.fs.put_file(str(local), f"{BUCKET}/{key}")

    def put_bytes(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(f"{BUCKET}/{key}", data)

    def get_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(f"{BUCKET}/{key}")

    def list(self, prefix: str) -> list[str]:
        return self.fs.find(f"{BUCKET}/{prefix}")

    def fsspec(self):
        return self.fs


class Lake(S3fs):
    """s3fs as the lake uses it: ``LakeFileSystem``, whose files for DuckDB are ``PinnedFile`` (per-thread
    position, 256 KiB ranged reads) instead of s3fs's buffered files."""

    name = "s3fs-lake"

    def __init__(self, url: str):
        from edu_assets.core.objectstore import LakeFileSystem

        self.fs = LakeFileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=url,
                                 client_kwargs={"region_name": REGION})


class Obstore(Contender):
    name = "obstore"

    def __init__(self, url: str):
        from obstore.store import S3Store

        config = {"endpoint": url, "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "region": REGION}
        self.store = S3Store(BUCKET, config=config, client_options={"allow_http": True})
        self.config = config

    def put_file(self, local: Path, key: str) -> None:
        import obstore

        obstore.put(self.store, key, local)

    def put_bytes(self, key: str, data: bytes) -> None:
        import obstore

        obstore.put(self.store, key, data)

    def get_bytes(self, key: str) -> bytes:
        import obstore

        return bytes(obstore.get(self.store, key).bytes())

    def list(self, prefix: str) -> list[str]:
        import obstore

        return [m["path"] for batch in obstore.list(self.store, prefix) for m in batch]

    def fsspec(self):
        import obstore
        from fsspec.spec import AbstractBufferedFile
        from obstore.fsspec import FsspecStore

        store = self.store

        class RangeFile(AbstractBufferedFile):
            def _fetch_range(self, start: int, end: int) -> bytes:
                key = self.path.split("/", 1)[1]
                return bytes(obstore.get_range(store, key, start=start, end=end))

        class RangeReads(FsspecStore):
            """obstore's own fsspec files return its ``Bytes`` type and short reads, which DuckDB's Python
            filesystem refuses ("don't know what type") or misreads: files here are fsspec's buffered files
            over ``obstore.get_range``, an adapter the lake would have to carry."""

            protocol = ("s3",)

            def _open(self, path, mode="rb", **kwargs):
                path = self._strip_protocol(path)
                return RangeFile(self, path, mode, size=self.info(path)["size"], cache_type="readahead")

        return RangeReads("s3", config=self.config, client_options={"allow_http": True}, skip_instance_cache=True)


class Arrow(Contender):
    name = "pyarrow"

    def __init__(self, url: str):
        from pyarrow import fs

        self.fs = fs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint_override=url,
                                  region=REGION, scheme="http")

    def put_file(self, local: Path, key: str) -> None:
        with open(local, "rb") as src, self.fs.open_output_stream(f"{BUCKET}/{key}") as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.fs.open_output_stream(f"{BUCKET}/{key}") as out:
            out.write(data)

    def get_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(f"{BUCKET}/{key}") as f:
            return f.read()

    def list(self, prefix: str) -> list[str]:
        from pyarrow import fs

        return [i.path for i in self.fs.get_file_info(fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True))]

    def fsspec(self):
        from fsspec.implementations.arrow import ArrowFSWrapper

        class S3Arrow(ArrowFSWrapper):
            protocol = ("s3",)  # DuckDB routes s3:// paths to a filesystem by its protocol

        return S3Arrow(self.fs, skip_instance_cache=True)


def measure(c: Contender, local: Path, repeat: int) -> dict[str, float]:
    mb = local.stat().st_size / 1e6
    out: dict[str, float] = {}
    out["upload_mb_s"] = mb / _best(lambda: c.put_file(local, f"{c.name}/big.parquet"), repeat)
    pointer = json.dumps({"version": "versions/20260101T000000Z-0123456789abcdef.parquet", "bytes": 1}).encode()

    def pointers() -> None:
        for i in range(POINTERS):
            c.put_bytes(f"{c.name}/p/{i}/CURRENT", pointer)
            assert c.get_bytes(f"{c.name}/p/{i}/CURRENT") == pointer

    out["pointer_put_get_ms"] = _best(pointers, repeat) / POINTERS * 1000
    out["list_50_ms"] = 1000 * _best(lambda: c.list(f"{c.name}/p/"), repeat)  # 50 pointers, listed
    con = duckdb.connect()
    con.register_filesystem(c.fsspec())
    url = f"s3://{BUCKET}/{c.name}/big.parquet"
    out["duckdb_scan_mb_s"] = mb / _best(lambda: con.execute(
        f"SELECT count(*), sum(id), max(name) FROM read_parquet('{url}')").fetchall(), repeat)
    out["duckdb_one_column_ms"] = 1000 * _best(lambda: con.execute(
        f"SELECT sum(id) FROM read_parquet('{url}')").fetchall(), repeat)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="edu-osbench-"))
    local = work / "big.parquet"
    duckdb.sql(f"COPY (SELECT range AS id, 'name-' || (range * 7919 % 100003) AS name, random() AS x, "
               f"(DATE '2020-01-01' + (range % 2000)::INT) AS day FROM range({args.rows})) TO '{local}' "
               "(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)")
    server = start_s3_server()
    try:
        server.create_bucket(BUCKET)
        print(f"file: {local.stat().st_size / 1e6:,.1f} MB Parquet ({args.rows:,} rows); S3 server: moto at {server.url}; "
              f"best of {args.repeat}")
        rows = {}
        for cls in (S3fs, Lake, Obstore, Arrow):
            try:
                rows[cls.name] = measure(cls(server.url), local, args.repeat)
            except Exception as exc:  # a contender that cannot do one of the four things is out
                print(f"{cls.name}: failed: {type(exc).__name__}: {str(exc)[:300]}")
        cols = ["upload_mb_s", "pointer_put_get_ms", "list_50_ms", "duckdb_scan_mb_s", "duckdb_one_column_ms"]
        print(f"\n{'library':<10}" + "".join(f"{c:>22}" for c in cols))
        for name, r in rows.items():
            print(f"{name:<10}" + "".join(f"{r[c]:>22.1f}" for c in cols))
        if rows:
            print(f"\n(median upload across libraries: {statistics.median(r['upload_mb_s'] for r in rows.values()):.1f} MB/s)")
        return 0
    finally:
        server.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        os.environ.pop("_", None)


if __name__ == "__main__":
    sys.exit(main())
