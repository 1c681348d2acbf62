"""``edu-assets`` / ``python -m edu_assets``: the main job, the sandbox, the UI, and lake utilities."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from edu_assets.core.settings import LakeSettings, sandbox_url, vendor_modes


def _ensure_dagster_home() -> Path:
    """Use ``.dagster/`` (with a link to the repo's ``dagster.yaml``) unless DAGSTER_HOME is set."""
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        return home
    home = Path(".dagster").absolute()
    home.mkdir(exist_ok=True)
    config = Path("dagster.yaml").absolute()
    link = home / "dagster.yaml"
    if config.exists() and not link.exists():
        link.symlink_to(config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _start_sandbox_if_needed(port: int | None):
    """Start the embedded emulators when any vendor is sandboxed; point the settings at them."""
    if all(m.live for m in vendor_modes()):
        return None
    from edu_assets.sandbox import start_sandbox

    server = start_sandbox(port=port if port is not None else 0)
    os.environ["EDU_SANDBOX_URL"] = server.url
    return server


def cmd_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from edu_assets.demo import print_summary, run_demo

    _ensure_dagster_home()
    server = _start_sandbox_if_needed(None)
    try:
        for m in vendor_modes():
            print(f"{m.vendor}: {'LIVE' if m.live else 'sandbox'} ({m.why}) {m.base_url if not m.live else ''}")
        from edu_assets.definitions import build_definitions

        started = time.monotonic()
        with dg.DagsterInstance.get() as instance:
            print(f"Materializing every asset for its default partitions (Dagster instance: {instance.root_directory})")
            outcomes = run_demo(instance, build_definitions())
        landed = sum(o.status == "landed" for o in outcomes)
        failed = [o for o in outcomes if o.status == "failed"]
        print(f"\n{landed} landed, {len(failed)} failed, "
              f"{sum(o.status == 'deferred' for o in outcomes)} deferred, "
              f"{sum(o.status == 'skipped' for o in outcomes)} skipped in {time.monotonic() - started:.1f}s")
        print_summary()
        return 1 if failed else 0
    finally:
        if server is not None:
            server.stop()


def cmd_sandbox(args: argparse.Namespace) -> int:
    from edu_assets.sandbox.cli import main as sandbox_main

    return sandbox_main(args.rest) or 0


def cmd_dev(args: argparse.Namespace) -> int:
    """The sandbox in this process plus ``dagster dev`` in a child process."""
    _ensure_dagster_home()
    from urllib.parse import urlsplit

    port = urlsplit(sandbox_url()).port or 8765
    server = _start_sandbox_if_needed(port)
    if server is not None:
        print(f"sandbox serving at {server.url}")
    try:
        return subprocess.call(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", *args.rest], env=os.environ.copy()
        )
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.stop()


def cmd_summary(args: argparse.Namespace) -> int:
    from edu_assets.demo import print_summary

    print_summary()
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from edu_assets.core.catalog import Catalog
    from edu_assets.vendors.stellic.catalog import load_catalog
    from edu_assets.vendors.stellic.partitions import PARTITIONINGS

    latest = {f"stellic.{s.name}": PARTITIONINGS[s.partitioning].dim for s in load_catalog()
              if PARTITIONINGS[s.partitioning].snapshot}
    made = Catalog(LakeSettings.from_env()).rebuild(latest)
    print(f"rebuilt {len(made)} views: {', '.join(made) or '-'}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    s = LakeSettings.from_env()
    print(f"lake: {s.root}\ncatalog: {s.catalog_path}\nsandbox: {sandbox_url()}")
    for m in vendor_modes():
        print(f"{m.vendor}: {'live' if m.live else 'sandbox'} — {m.why} ({m.base_url or 'no base URL'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edu-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="materialize every asset for its default partitions, then print a DuckDB summary")
    for name, help_ in (("sandbox", "serve the vendor emulators (pass-through args)"),
                        ("dev", "serve the sandbox and start `dagster dev` (pass-through args)")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("summary", help="print one line per DuckDB table: rows, columns, partitions")
    sub.add_parser("catalog", help="rebuild every DuckDB view from the Parquet lake")
    sub.add_parser("status", help="which vendors are live and which sandboxed, and where data goes")
    args = parser.parse_args(argv)
    handler = {"demo": cmd_demo, "sandbox": cmd_sandbox, "dev": cmd_dev, "summary": cmd_summary,
               "catalog": cmd_catalog, "status": cmd_status}[args.command]
    return handler(args)
