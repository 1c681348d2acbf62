"""The run launcher's worker health check against real processes (the daemon path: test_daemon_runs.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from edu_assets.core.run_launcher import STARTED_PROCESS, LocalRunLauncher, process_alive, run_worker


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_process_is_alive_until_killed_and_a_zombie_or_younger_process_is_not():
    proc = _sleeper()
    try:
        assert process_alive(proc.pid, started_by=time.time() + 1)
        # a process that started after the run worker recorded its pid has reused that pid
        assert not process_alive(proc.pid, started_by=time.time() - 3600)
        os.kill(proc.pid, signal.SIGKILL)
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)  # killed, not yet reaped: a zombie still answers kill(pid, 0)
        assert not process_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not process_alive(proc.pid)


def _run_with_worker(instance: dg.DagsterInstance, pid: int, host: str = "localhost") -> dg.DagsterRun:
    run = instance.create_run_for_job(dg.GraphDefinition("g", node_defs=[]).to_job(),
                                      tags={GRPC_INFO_TAG: json.dumps({"host": host, "port": 4000})})
    instance.report_engine_event(f"{STARTED_PROCESS} (pid: {pid}).", run, EngineEventData.in_process(pid))
    return run


def test_health_check_reads_the_worker_pid_from_the_run_and_reports_a_dead_one(instance):
    launcher = LocalRunLauncher()
    launcher.register_instance(instance)
    proc = _sleeper()
    try:
        run = _run_with_worker(instance, proc.pid)
        assert run_worker(instance, run.run_id)[0] == proc.pid  # type: ignore[index]
        assert launcher.check_run_worker_health(run).status is WorkerStatus.RUNNING
    finally:
        proc.kill()
        proc.wait()
    health = launcher.check_run_worker_health(run)
    assert health.status is WorkerStatus.FAILED and f"run worker process {proc.pid} is gone" in str(health.msg)


def test_health_check_does_not_judge_what_it_cannot_see(instance):
    launcher = LocalRunLauncher()
    launcher.register_instance(instance)
    remote = _run_with_worker(instance, 2**22 + 1, host="code-server.internal")  # a pid on another machine
    assert launcher.check_run_worker_health(remote).status is WorkerStatus.RUNNING
    no_pid = instance.create_run_for_job(dg.GraphDefinition("g", node_defs=[]).to_job())  # e.g. run in process
    assert launcher.check_run_worker_health(no_pid).status is WorkerStatus.RUNNING
