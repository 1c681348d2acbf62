"""Dagster's default run launcher plus a run-worker health check, so run monitoring ends runs whose worker died.

``DefaultRunLauncher`` starts each run in a process spawned by the code location's gRPC server. That server
notices when one of its run workers dies and fails the run, but nothing notices when the server dies with
them (the daemon's process group killed, an out-of-memory kill, a host or container restart, ``kill -9`` of
``./edu dev``): ``DefaultRunLauncher`` cannot check a worker (``supports_check_run_worker_health`` is
False), so run monitoring skips its runs. They stay STARTED forever and, since pools are counted per run,
hold their vendor's pool slots forever: every later run of that vendor waits in the queue.

:class:`LocalRunLauncher` answers the health check from the run's own event log. When a run worker starts
it records the engine event "Started process for run (pid: N)" (``EngineEventData`` metadata ``pid``);
the worker is alive while a process with that pid exists, is not a zombie, and started no later than that
event (a younger process has reused the pid). Otherwise the check says FAILED and run monitoring
(``run_monitoring`` in ``dagster.yaml``) marks the run failed, which frees its pool slot.

Same host only: a pid means something only on the machine that ran the worker, so the check assumes the
monitoring daemon runs where the code server does (true for the ``python_module`` workspaces of this
repository, whose code servers the daemon starts itself). For a run launched on a code server named by a
non-local host, and for a run with no recorded pid (one executed in process), it answers RUNNING: it
cannot tell, and monitoring then only applies ``max_runtime_seconds``. Runs in containers need a
container launcher (Docker, Kubernetes), whose health checks are native.
"""

from __future__ import annotations

import json
import os
import socket
from functools import cache
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

STARTED_PROCESS = "Started process for run"  # the run worker's first engine event, with its pid
CLOCK_SLACK_SECONDS = 2.0  # /proc start times have ~1 s resolution (boot time is whole seconds)


class LocalRunLauncher(dg.DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers run monitoring can check (same host only; see the module)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        host = _grpc_host(run)
        if host is not None and not _is_local(host):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker is on {host}; cannot check it from here")
        worker = run_worker(self._instance, run.run_id)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded; cannot check it")
        pid, started = worker
        if process_alive(pid, started_by=started):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {pid} is gone (killed, or its host or code server restarted); "
            "re-run the partition",
            run_worker_id=str(pid),
        )


def run_worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of a run's worker and when it recorded it (epoch seconds), from its latest start event."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50).records
    found: tuple[int, float] | None = None
    for rec in records:
        entry = rec.event_log_entry
        event = entry.dagster_event
        if event is None or not (event.message or entry.user_message or "").startswith(STARTED_PROCESS):
            continue
        pid = event.engine_event_data.metadata.get("pid")
        if pid is not None:
            found = (int(str(pid.value)), entry.timestamp)
    return found


def process_alive(pid: int, started_by: float | None = None) -> bool:
    """Whether process ``pid`` exists and is not a zombie; with ``started_by`` (epoch seconds), also that it
    started no later than that, i.e. it is not a younger process that reused the pid. Without ``/proc``
    only existence is checked."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state is first, starttime 20th
    except (FileNotFoundError, ProcessLookupError):
        return not Path("/proc/self/stat").exists()  # gone in between (or no /proc at all: trust kill)
    if fields[0] in ("Z", "X"):
        return False
    if started_by is None:
        return True
    started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started <= started_by + CLOCK_SLACK_SECONDS


@cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _grpc_host(run: dg.DagsterRun) -> str | None:
    """The host of the code server the run was launched on; None for a local socket or when not recorded."""
    info = json.loads(run.tags.get(GRPC_INFO_TAG) or "{}")
    return None if "socket" in info else info.get("host")


def _is_local(host: str) -> bool:
    return host in {"localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname(), socket.getfqdn()}
