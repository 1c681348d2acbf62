"""./edu (edu-assets, python -m edu_assets): the main job, the sandbox, the UI, and lake utilities.

`sandbox` and `dev` take options of their own: `sandbox` the sandbox's (`./edu sandbox --help`); `dev`
has a few of edu's and passes every other one to `dagster dev` (`./edu dev --help` lists both).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from edu_assets.core.errors import ConfigError
from edu_assets.core.settings import SANDBOX_PORT_DEFAULT, LakeSettings, VendorMode, sandbox_url
from edu_assets.vendors import setting_problems, vendor_modes

PROG = "edu"
WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"  # the repository's, next to this package
# dagster dev's options that choose what to load: with none of them, edu adds `-w workspace.yaml`
WORKSPACE_TARGET_OPTIONS = frozenset({
    "-w", "--workspace", "-f", "--python-file", "-m", "--module-name", "--package-name",
    "--autoload-defs-module-name", "--grpc-port", "--grpc-socket", "--empty-workspace",
})


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
    """Start the embedded emulators when any vendor has no credentials, and select them for those vendors
    (``EDU_SANDBOX_URL``, inherited by every process started from here)."""
    if all(m.live for m in vendor_modes()):
        return None
    from edu_assets.sandbox import start_sandbox

    server = start_sandbox(port=port if port is not None else 0)
    os.environ["EDU_SANDBOX_URL"] = server.url
    return server


def _mode_line(m: VendorMode) -> str:
    where = f" {m.base_url}" if m.base_url else ""
    return f"{m.vendor}: {m.state} ({m.why}){where}"


def cmd_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from edu_assets.demo import print_summary, run_demo

    _ensure_dagster_home()
    server = _start_sandbox_if_needed(None)
    try:
        for m in vendor_modes():
            print(_mode_line(m))
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


def cmd_sandbox(argv: list[str]) -> int:
    """Only the emulators; every option is the sandbox's own (``./edu sandbox --help``)."""
    from edu_assets.sandbox.cli import main as sandbox_main

    return sandbox_main(argv, prog=f"{PROG} sandbox") or 0


def dev_parser() -> argparse.ArgumentParser:
    """edu's own options of ``dev``. No ``-h``: that is ``dagster dev``'s ``--host``."""
    parser = argparse.ArgumentParser(
        prog=f"{PROG} dev", add_help=False, allow_abbrev=False,
        usage=f"{PROG} dev [--sandbox-port PORT | --no-sandbox] [dagster dev options...]",
        description="Serve the vendor sandbox in this process and run `dagster dev` (webserver, daemon, code "
        "server) against it, until Ctrl-C or SIGTERM, which stop all of them. The options below are edu's; "
        "every other option goes to `dagster dev` (its options follow), e.g. `edu dev --port 3301`. "
        "Without a -w/-f/-m option, `-w workspace.yaml` is added.",
    )
    parser.add_argument("--help", action="store_true", help="show this help, then dagster dev's options")
    sandbox = parser.add_mutually_exclusive_group()
    sandbox.add_argument(
        "--sandbox-port", type=int, metavar="PORT",
        help=f"port of the sandbox (default: the port of EDU_SANDBOX_URL if set, else {SANDBOX_PORT_DEFAULT}; "
        "0 = any free port)",
    )
    sandbox.add_argument(
        "--no-sandbox", action="store_true",
        help="start no sandbox: vendors without credentials are not configured, unless EDU_SANDBOX_URL points "
        "at a sandbox you run (`./edu sandbox`)",
    )
    return parser


def split_dev_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """edu's options, and the arguments for ``dagster dev`` (with ``-w workspace.yaml`` unless it has a target)."""
    opts, rest = dev_parser().parse_known_args(argv)
    if not any(arg.split("=", 1)[0] in WORKSPACE_TARGET_OPTIONS for arg in rest):
        workspace = WORKSPACE if WORKSPACE.exists() else Path("workspace.yaml")
        rest = ["-w", str(workspace), *rest]
    return opts, rest


def _dagster_dev_help() -> str:
    done = subprocess.run([sys.executable, "-m", "dagster", "dev", "--help"], capture_output=True, text=True,
                          timeout=120)
    return done.stdout or done.stderr


def cmd_dev(argv: list[str]) -> int:
    """The sandbox in this process plus ``dagster dev`` in its own process group, stopped together."""
    from edu_assets.supervise import run_process_group

    opts, dagster_args = split_dev_args(argv)
    if opts.help:
        print(dev_parser().format_help())
        print("Options of `dagster dev` (passed through; `-w workspace.yaml` is added when none of -w/-f/-m is given):\n")
        print(_dagster_dev_help())
        return 0
    _ensure_dagster_home()
    server = None
    if not opts.no_sandbox:
        port = opts.sandbox_port
        if port is None:
            port = urlsplit(sandbox_url() or "").port or SANDBOX_PORT_DEFAULT
        try:
            server = _start_sandbox_if_needed(port)
        except OSError as exc:
            print(f"{PROG} dev: cannot serve the sandbox on port {port}: {exc} (choose another with "
                  "--sandbox-port, or use the sandbox at EDU_SANDBOX_URL with --no-sandbox)", file=sys.stderr)
            return 1
        if server is not None:
            print(f"sandbox serving at {server.url} (EDU_SANDBOX_URL)", flush=True)
    for m in vendor_modes():
        print(_mode_line(m), flush=True)
    try:
        return run_process_group([sys.executable, "-m", "dagster", "dev", *dagster_args], env=os.environ.copy())
    finally:
        if server is not None:
            server.stop()


def cmd_summary(args: argparse.Namespace) -> int:
    from edu_assets.demo import print_summary

    print_summary()
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    """Recreate every view from the lake, with the views each vendor declares (the ones its landings make)."""
    from edu_assets.core.catalog import Catalog
    from edu_assets.vendors import skillspass, stellic, webadmit, xporter

    declared = [v for vendor in (stellic, xporter, skillspass, webadmit) for v in vendor.views()]
    made = Catalog(LakeSettings.from_env()).rebuild(declared)
    print(f"rebuilt {len(made)} views: {', '.join(made) or '-'}")
    return 0


def _file_problems(mode: VendorMode) -> list[str]:
    """What only the vendor's own code can check: Xporter's secrets file (present, private, JSON)."""
    if mode.vendor != "xporter" or not mode.live or mode.problems:
        return []
    from edu_assets.vendors.xporter.resources import xporter_resource_from_env

    try:
        xporter_resource_from_env().process_config_and_initialize().secrets()  # EnvVar fields resolved, as in a run
    except ConfigError as exc:
        return [exc.what if exc.hint == ConfigError.default_hint else f"{exc.what}: {exc.hint}"]
    return []


def cmd_status(args: argparse.Namespace) -> int:
    """Where data goes and how each vendor is reached; non-zero when a setting is invalid or a vendor is
    half-configured."""
    invalid = setting_problems()
    if invalid:  # the rest reads those settings: say what to fix and stop
        print(f"settings: {len(invalid)} INVALID; fix:")
        for problem in invalid:
            print(f"  - {problem}")
        print(f"{PROG} status: invalid settings: the code location will not load until they are fixed.",
              file=sys.stderr)
        return 1
    s = LakeSettings.from_env()
    sandbox = sandbox_url()
    print(f"lake: {s.root}\ncatalog: {s.catalog_path}")
    print(f"sandbox: {sandbox} (EDU_SANDBOX_URL: vendors without credentials use it)" if sandbox else
          "sandbox: none (EDU_SANDBOX_URL is not set): a vendor without credentials is not configured")
    broken: list[str] = []
    for m in vendor_modes():
        problems = [*m.problems, *_file_problems(m)]
        if problems:
            broken.append(m.vendor)
            print(f"{m.vendor}: HALF-CONFIGURED ({m.why}); fix:")
            for problem in problems:
                print(f"  - {problem}")
        elif m.state == "not configured":
            print(f"{m.vendor}: not configured: its sensors and schedules skip (to use it, set {m.needs}; "
                  "or EDU_SANDBOX_URL for the sandbox)")
        else:
            print(_mode_line(m))
    if broken:
        print(f"{PROG} status: half-configured: {', '.join(broken)}. Fix the variables listed above, or unset "
              "them to leave the vendor unconfigured.", file=sys.stderr)
        return 1
    return 0


PASS_THROUGH = {"sandbox": cmd_sandbox, "dev": cmd_dev}  # commands whose options are parsed by their own parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("demo", help="materialize every asset for its default partitions, then print a DuckDB summary")
    sub.add_parser("sandbox", add_help=False, help="serve the vendor emulators (options: edu sandbox --help)")
    sub.add_parser("dev", add_help=False,
                   help="serve the sandbox and run `dagster dev` (options: edu dev --help; others go to dagster dev)")
    sub.add_parser("summary", help="print one line per DuckDB table: rows, columns, partitions")
    sub.add_parser("catalog", help="rebuild every DuckDB view from the Parquet lake")
    sub.add_parser("status", help="how each vendor is reached (live, sandbox, not configured) and where data goes; "
                   "exits 1 if a vendor is half-configured")
    args, rest = parser.parse_known_args(argv)
    if args.command in PASS_THROUGH:
        return PASS_THROUGH[args.command](rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler = {"demo": cmd_demo, "summary": cmd_summary, "catalog": cmd_catalog, "status": cmd_status}[args.command]
    return handler(args)
