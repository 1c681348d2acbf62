"""Real ``dagster-daemon`` and ``dagster-webserver`` processes for tests whose subject is the daemon or UI path.

A :class:`DagsterStack` owns a temporary ``DAGSTER_HOME`` whose ``dagster.yaml`` is the *shipped*
``dagster.yaml`` (so the run queue, pools, run launcher and run monitoring under test are the ones users
get), optionally with small overrides merged in, and a ``workspace.yaml`` that loads one attribute of a
Python module (see ``edu_assets_tests/daemon_location.py``). Its processes inherit ``os.environ`` (the
``sandbox`` and ``lake_env`` fixtures point it at the sandbox and a temp lake), plus ``env``::

    with DagsterStack(tmp_path, attribute="exports", env={"EDU_EXPORT_INLINE_WAIT_SECONDS": "1"}) as stack:
        stack.start_webserver()            # answers GraphQL once the code location is loaded (~8 s)
        backfill = stack.launch_asset_backfill("skillspass/elearning_enrollments", days)
        stack.start_daemon()               # sensors, run queue, backfills, run monitoring
        run = stack.wait_for(lambda: ..., 60, "the backfill's run started")

Platform timings to plan a test around (Dagster 1.13, 2 cores): the webserver answers ~8 s after start;
the first sensor tick comes ~6 s after the daemon starts. The backfill daemon evaluates backfills every
30 s and nothing shortens that: ``execute_backfill_iteration_loop`` sleeps
``dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS`` (a constant; no env var or instance
setting). It evaluates at once when it starts, so a test that creates its backfill *before* starting the
daemon saves up to 30 s, and waits on :meth:`backfill_iterations` rather than on time. The run queue is
read every ``dequeue_interval_seconds`` (5 s by default; :data:`FAST_QUEUE` makes it 1 s) and run
monitoring every ``run_monitoring.poll_interval_seconds`` of the shipped config.

Teardown kills each process group (the code servers and run workers the daemon and webserver spawn are in
their group).
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = ROOT / "dagster.yaml"
BIN = Path(sys.executable).parent
DAEMON, WEBSERVER = BIN / "dagster-daemon", BIN / "dagster-webserver"
REPOSITORY = "__repository__"  # the repository name Dagster gives a module's ``Definitions``
ASSET_JOB = "__ASSET_JOB"  # the implicit job the UI launches asset materializations in
FROM_UI = {"key": "dagster/from_ui", "value": "true"}  # the tag the UI adds to every launch

# Overrides for tests (merge into ``overrides``). The queue is read every second instead of every 5 s; this
# changes when runs leave the queue, never which runs may (the limits are the shipped ones).
FAST_QUEUE: dict[str, Any] = {"run_coordinator": {"config": {"dequeue_interval_seconds": 1}}}

T = TypeVar("T")


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: mappings merge key by key, anything else (lists too) replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterStack:
    """A temp Dagster home plus the daemon and webserver processes started for it (see the module doc).

    ``overrides`` are merged into the shipped ``dagster.yaml`` (say in the test why each is there);
    ``module``/``attribute`` name the ``Definitions`` the workspace loads as code location ``location``.
    """

    def __init__(
        self,
        tmp_path: Path,
        *,
        module: str = "edu_assets_tests.daemon_location",
        attribute: str = "defs",
        location: str = "edu_assets_daemon_test",
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.home = tmp_path / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.location = location
        self.config = merge(yaml.safe_load(SHIPPED_CONFIG.read_text()), overrides or {})
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.workspace = tmp_path / "workspace.yaml"
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
            "module_name": module, "attribute": attribute, "location_name": location,
            "working_directory": str(ROOT),
        }}]}))
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(self.home)}
        self.port: int | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._instance: dg.DagsterInstance | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> DagsterStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def instance(self) -> dg.DagsterInstance:
        """The test process's handle on the stack's instance (same storage as the daemon's)."""
        if self._instance is None:
            # The shipped event log finds its files under $DAGSTER_HOME (core/sqlite_events.py): the test
            # process's DAGSTER_HOME (./edu sets .dagster) must name this home while the instance is built.
            before = os.environ.get("DAGSTER_HOME")
            os.environ["DAGSTER_HOME"] = str(self.home)
            try:
                self._instance = dg.DagsterInstance.from_config(str(self.home))
            finally:
                if before is None:
                    os.environ.pop("DAGSTER_HOME", None)
                else:
                    os.environ["DAGSTER_HOME"] = before
        return self._instance

    def start_daemon(self) -> None:
        """Start ``dagster-daemon run`` (returns at once; its first sensor tick comes ~6 s later)."""
        self._start("daemon", [str(DAEMON), "run", "-w", str(self.workspace)])

    def start_webserver(self, timeout: float = 120) -> None:
        """Start ``dagster-webserver`` and return once its GraphQL API has the code location loaded."""
        self.port = free_port()
        self._start("webserver", [str(WEBSERVER), "-h", "127.0.0.1", "-p", str(self.port), "-w", str(self.workspace)])
        self.wait_for(self._location_loaded, timeout, "the webserver to load the code location")

    def kill(self, name: str) -> None:
        """SIGKILL the process group of ``daemon`` or ``webserver`` (the process, its code server and the run
        workers it launched), as a host crash or ``kill -9`` would; it can be started again afterwards."""
        proc = self._procs.pop(name)
        _signal_group(proc, signal.SIGKILL)
        proc.wait(30)

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left of each (code servers, run workers)."""
        for proc in self._procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5  # the temp instance is thrown away: no need to wait long
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)
        self._procs.clear()
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    def _start(self, name: str, argv: list[str]) -> None:
        assert name not in self._procs, f"{name} already started"
        with open(self.home / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            self._procs[name] = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    # -- observing -----------------------------------------------------------------------------

    def log(self, name: str) -> str:
        """The whole log of ``daemon`` or ``webserver`` so far, across restarts ('' when never started)."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name} log (last {chars} chars) ---\n{self.log(name)[-chars:]}"
                         for name in ("daemon", "webserver") if self.log(name))

    def backfill_iterations(self, backfill_id: str) -> int:
        """How many times the backfill daemon has finished evaluating ``backfill_id`` (from its log)."""
        return self.log("daemon").count(f"Asset backfill {backfill_id} completed iteration")

    def wait_for(self, probe: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
        """Call ``probe`` until it returns something truthy, and return that; fail after ``timeout`` seconds
        with the processes' log tails (and fail at once if one of them has exited)."""
        deadline = time.monotonic() + timeout
        while True:
            got = probe()
            if got:
                return got
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"not within {timeout:.0f}s"
                raise AssertionError(f"waiting for {what}: {why}\n{self.log_tail()}")
            time.sleep(interval)

    # -- the UI's API --------------------------------------------------------------------------

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST a query to the webserver's GraphQL endpoint (as the UI does); raise on GraphQL errors."""
        assert self.port is not None, "start_webserver() first"
        response = httpx.post(f"http://127.0.0.1:{self.port}/graphql",
                              json={"query": query, "variables": dict(variables or {})}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def repository_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": REPOSITORY}

    def launch_asset_backfill(
        self, asset: str, partitions: Sequence[str], run_config: Mapping[str, Any] | None = None
    ) -> str:
        """Backfill ``partitions`` of one asset as the UI's "Materialize → Launch backfill" does; the backfill id."""
        params: dict[str, Any] = {"assetSelection": [_key_input(asset)], "partitionNames": list(partitions),
                                  "fromFailure": False, "tags": [FROM_UI]}
        if run_config is not None:
            params["runConfigData"] = yaml.safe_dump(dict(run_config))
        data = self.graphql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
        assert data["__typename"] == "LaunchBackfillSuccess", data
        return data["backfillId"]

    def launch_asset_run(self, asset: str, partition: str | None, run_config: Mapping[str, Any] | None = None) -> str:
        """Materialize one asset (partition) with its checks as the UI's Materialize button does (with the
        Launchpad's ``run_config``, if given); the run id."""
        tags = [FROM_UI] + ([{"key": "dagster/partition", "value": partition}] if partition is not None else [])
        key = _key_input(asset)
        checks = self.graphql(ASSET_CHECKS, {"assetKey": key})["assetNodeOrError"]["assetChecksOrError"]
        params = {
            "mode": "default",
            "executionMetadata": {"tags": tags},
            "runConfigData": yaml.safe_dump(dict(run_config)) if run_config else "{}",
            "selector": {**self.repository_selector(), "pipelineName": ASSET_JOB, "assetSelection": [key],
                         "assetCheckSelection": [{"assetKey": key, "name": c["name"]} for c in checks.get("checks", [])]},
        }
        data = self.graphql(LAUNCH_RUN, {"executionParams": params})["launchPipelineExecution"]
        assert data["__typename"] == "LaunchRunSuccess", data
        return data["run"]["runId"]

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        """A backfill as the UI's backfill page reads it: ``status`` and, per asset, ``numPartitionsTargeted``,
        ``numPartitionsInProgress``, ``numPartitionsMaterialized``, ``numPartitionsFailed``."""
        data = self.graphql(BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert data["__typename"] == "PartitionBackfill", data
        return data

    def add_dynamic_partitions(self, partitions_def: str, keys: Sequence[str]) -> None:
        """Add partitions as the UI's "Add partition" does."""
        for key in keys:
            data = self.graphql(ADD_PARTITION, {"repositorySelector": self.repository_selector(),
                                                "partitionsDefName": partitions_def, "partitionKey": key})
            assert data["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", data

    def _location_loaded(self) -> bool:
        try:
            data = self.graphql(LOCATIONS)
        except (httpx.HTTPError, AssertionError):
            return False
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            loaded = entry["locationOrLoadError"]
            if loaded and loaded["__typename"] == "PythonError":
                raise AssertionError(f"code location {entry['name']} failed to load: {loaded['message']}")
        return any(e["name"] == self.location and e["loadStatus"] == "LOADED" for e in entries)


def _key_input(asset: str) -> dict[str, list[str]]:
    return {"path": dg.AssetKey.from_user_string(asset).path}


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


LOCATIONS = """
query { workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

ASSET_CHECKS = """
query AssetChecks($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  } }
}
"""

BACKFILL = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      status
      assetBackfillData { assetBackfillStatuses { ... on AssetPartitionsStatusCounts {
        assetKey { path } numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed
      } } }
    }
    ... on PythonError { message }
  }
}
"""

LAUNCH_RUN = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

ADD_PARTITION = """
mutation AddDynamicPartition($repositorySelector: RepositorySelector!, $partitionsDefName: String!,
                             $partitionKey: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName,
                      partitionKey: $partitionKey) {
    __typename
    ... on PythonError { message }
    ... on DuplicateDynamicPartitionError { partitionName }
  }
}
"""
