"""Benchmark: what a deployed run costs against the same run in one process, and a fleet's daily load.

1. One school's ``xporter_snapshots`` job (every snapshot endpoint), full loads against the sandbox with
   ``--latency`` seconds per request:
   * in process: the job's ``execute_in_process`` in a process that has already loaded the definitions;
   * launched: what a run worker does: a new Python process loads the code location and executes the job
     through ``execute_job(reconstructable(...))`` with the job's own executor. Timed from the process start.
   It prints the time ratio (target: at most 1.5) and each path's requests by kind (token, register, data;
   target: one token per school plus the management token, and one register read per run).
2. ``--fleet N``: N more authorised schools (59 snapshot endpoints each, ``--latency`` per request) found by
   the real ``dagster-daemon`` running the Xporter code location on the shipped ``dagster.yaml``: the
   discovery sensor adds them and queues their first snapshots, the queue applies the shipped limits, and
   the clock stops when every run has finished (target: under an hour on 2 cores).

    python bench/run_path_bench.py [--latency 0.1] [--repeat 3] [--fleet 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sandbox_process import (  # noqa: E402 - after the path is set
    clear_request_log,
    control,
    request_log,
    sandbox_process,
    xporter_requests_by_kind,
)

ESTAB = "3281101"  # an authorised school of the sandbox register
JOB = "xporter_snapshots"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import dagster as dg
from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
mode, estab = sys.argv[1], sys.argv[2]
with dg.DagsterInstance.get() as instance:  # the shipped dagster.yaml (its event log storage)
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [estab])
    if mode == "in_process":
        from edu_assets.definitions import defs
        job = defs.get_job_def("xporter_snapshots")
        t0 = time.perf_counter()  # the definitions are loaded: time the run alone
        ok = job.execute_in_process(instance=instance, partition_key=estab).success
    else:
        from dagster._core.definitions.reconstruct import ReconstructableRepository
        recon = ReconstructableRepository.for_module("edu_assets.definitions", "defs", str(__import__("os").getcwd()))
        result = dg.execute_job(recon.get_reconstructable_job("xporter_snapshots"), instance,
                                tags={"dagster/partition": estab})
        ok = result.success
print(json.dumps({"seconds": time.perf_counter() - t0, "success": ok}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the sandbox adds to every request")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved pairs of the one-school comparison")
    parser.add_argument("--fleet", type=int, default=0, help="schools of the fleet simulation (0: skip it)")
    parser.add_argument("--storage", choices=("sqlite", "postgres"), default="sqlite",
                        help="fleet instance: dagster.yaml (SQLite, one machine) or deploy/dagster.yaml on a "
                             "PostgreSQL started here (a deployment's storage); the same limits either way")
    args = parser.parse_args(argv)

    # every request of the fleet is counted: 59 data requests and a token per school, and a margin
    with sandbox_process(request_log_size=max(10_000, 100 * (args.fleet + 3))) as url:
        control(url, "knobs/xporter", {"latency": args.latency})
        if args.repeat:
            one_school(url, args)
        if args.fleet:
            fleet(url, args)
    return 0


def one_school(url: str, args: argparse.Namespace) -> None:
    print(f"one school's {JOB} job: full loads, {args.latency * 1000:.0f} ms per request; "
          f"{args.repeat} interleaved pair(s)")
    runs: dict[str, list[float]] = {"in_process": [], "launched": []}
    kinds: dict[str, dict[str, int]] = {}
    for _ in range(args.repeat):
        for mode in runs:
            seconds, kinds[mode] = _child_run(url, mode)
            runs[mode].append(seconds)
    ratios = [launched / inproc for inproc, launched in zip(runs["in_process"], runs["launched"], strict=True)]
    for mode, seconds in runs.items():
        print(f"  {mode:<11} median {statistics.median(seconds):6.1f} s  (runs: "
              f"{', '.join(f'{s:.1f}' for s in seconds)})  requests: {dict(sorted(kinds[mode].items()))}")
    ratio = statistics.median(ratios)
    print(f"  launched / in process = {ratio:.2f}x (median of the pairs' ratios; target <= 1.5): "
          f"{'MET' if ratio <= 1.5 else 'NOT MET'}")


def _child_run(url: str, mode: str) -> tuple[float, dict[str, int]]:
    clear_request_log(url)
    with tempfile.TemporaryDirectory(prefix="edu-runpath-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        env = {**os.environ, "EDU_SANDBOX_URL": url, "EDU_DATA_DIR": str(Path(tmp) / "data"),
               "DAGSTER_HOME": str(home)}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, mode, ESTAB], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["success"]:
        raise SystemExit(f"the {mode} run failed:\n{out.stderr[-3000:]}")
    return (result["seconds"] if mode == "in_process" else wall), dict(xporter_requests_by_kind(request_log(url)))


def fleet(url: str, args: argparse.Namespace) -> None:
    if args.storage == "sqlite":
        _fleet(url, args, ROOT / "dagster.yaml", {})
        return
    from edu_assets_tests.postgres import find_bin_dir, postgres_server

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries (apt-get install postgresql)")
    with postgres_server(bin_dir) as pg:
        _fleet(url, args, ROOT / "deploy" / "dagster.yaml", {
            "EDU_PG_USER": pg.user, "EDU_PG_PASSWORD": pg.password, "EDU_PG_HOST": pg.host,
            "EDU_PG_DB": pg.db, "EDU_PG_PORT": str(pg.port)})


def _fleet(url: str, args: argparse.Namespace, config: Path, extra_env: dict[str, str]) -> None:
    """The discovery sensor finds ``args.fleet`` new schools; the daemon loads them all on the shipped limits."""
    estabs = control(url, "actions/xporter/add_schools", {"count": args.fleet})["result"]
    clear_request_log(url)
    work = Path(tempfile.mkdtemp(prefix="edu-fleet-"))
    home = work / "home"
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    os.environ.update(extra_env)
    (work / "workspace.yaml").write_text(textwrap.dedent(f"""\
        load_from:
          - python_module:
              module_name: bench.xporter_location
              attribute: defs
              location_name: xporter_fleet
              working_directory: {ROOT}
    """))
    env = {**os.environ, "DAGSTER_HOME": str(home), "EDU_SANDBOX_URL": url, "EDU_DATA_DIR": str(work / "data")}
    daemon = Path(sys.executable).with_name("dagster-daemon")
    print(f"\nfleet: {len(estabs)} new schools (+3 in the sandbox register), {args.latency * 1000:.0f} ms per "
          f"request, shipped {config.relative_to(ROOT)} ({args.storage}), real dagster-daemon")
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    with dg.DagsterInstance.get():  # create the instance's databases before the daemon and this process race to
        pass
    log = open(work / "daemon.log", "w")  # noqa: SIM115 - closed below
    t0 = time.time()
    proc = subprocess.Popen([str(daemon), "run", "-w", str(work / "workspace.yaml")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    try:
        with dg.DagsterInstance.get() as instance:
            records = _wait_all_runs(instance, proc, work)
        elapsed = max(r.end_time or 0 for r in records) - t0
        runs = [r.dagster_run for r in records]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()
    failed = [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
    kinds = xporter_requests_by_kind(request_log(url))
    schools = len(estabs) + 3
    print(f"  {len(runs)} runs ({len(failed)} not successful) for {schools} schools in {elapsed / 60:.1f} min "
          f"(target < 60 min): {'MET' if elapsed < 3600 and not failed else 'NOT MET'}")
    print(f"  requests: {dict(sorted(kinds.items()))}; {kinds['token'] / schools:.2f} token requests per school")
    print(f"  work dir (daemon log, instance): {work}")


def _wait_all_runs(instance, proc: subprocess.Popen, work: Path) -> list:
    """Every snapshot run, once the discovery sensor has queued them and all of them have finished."""
    import dagster as dg

    quiet_since = None
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited; see {work / 'daemon.log'}")
        records = list(instance.get_run_records(dg.RunsFilter(job_name=JOB)))
        done = records and all(r.dagster_run.is_finished for r in records)
        quiet_since = (quiet_since or time.monotonic()) if done else None
        if done and time.monotonic() - quiet_since > 15:  # no run left and none arriving
            return records
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
