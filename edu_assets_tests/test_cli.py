"""``./edu dev`` and ``./edu sandbox`` behave like command-line tools: their options pass through, ``--help``
shows them, and a signal to ``./edu dev`` stops every process it started (the real ``dagster dev``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from edu_assets.cli import WORKSPACE, main, split_dev_args
from edu_assets.supervise import stop_process_group
from edu_assets_tests.conftest import VENDOR_VARS
from edu_assets_tests.dagster_stack import free_port

ROOT = Path(__file__).resolve().parents[1]
# edu dev gives dagster dev 30 s to stop its services, then clears its process group (SIGTERM, then SIGKILL
# 5 s later): everything is gone within ~40 s even if dagster dev hangs. Measured: 3-18 s on 2 busy cores.
STOP_BOUND = 60.0


def wait_for(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``check`` until true, failing after ``timeout`` s (or at once if ``proc`` exits meanwhile)."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_sandbox_help_is_the_sandboxs_own(capsys):
    with pytest.raises(SystemExit) as done:
        main(["sandbox", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: edu sandbox")
    assert all(flag in out for flag in ("--port", "--host", "--rows", "--async-ready-after", "--latency",
                                        "--request-log-size")), out


def test_dev_help_says_which_options_are_edus_and_lists_dagster_devs(capsys):
    assert main(["dev", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: edu dev") and "--sandbox-port" in out and "--no-sandbox" in out
    assert "every other option goes to `dagster dev`" in out
    assert "Port to use for the Dagster webserver" in out  # dagster dev's own --help, after edu's
    assert "--code-server-log-level" in out


def test_dev_passes_every_other_option_to_dagster_dev():
    opts, rest = split_dev_args(["--port", "3301", "--sandbox-port", "0", "-h", "0.0.0.0", "--log-level", "debug"])
    assert opts.sandbox_port == 0 and not opts.no_sandbox and not opts.help
    assert rest == ["-w", str(WORKSPACE), "--port", "3301", "-h", "0.0.0.0", "--log-level", "debug"]
    opts, rest = split_dev_args(["--no-sandbox", "-m", "my_defs", "--port=3302"])  # a target of the user's own
    assert opts.no_sandbox and opts.sandbox_port is None
    assert rest == ["-m", "my_defs", "--port=3302"]
    with pytest.raises(SystemExit):
        main(["status", "--port", "1"])  # commands without pass-through still refuse unknown options


def test_sandbox_options_pass_through_and_sigterm_stops_it(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edu_assets", "sandbox", "--port", str(port), "--rows", "7",
         "--cache-dir", str(tmp_path / "cache"), "--request-log-size", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        knobs = f"http://127.0.0.1:{port}/_sandbox/knobs/stellic"
        wait_for(lambda: answers(knobs), 60, "the sandbox to answer", proc)
        assert httpx.get(knobs).json()["rows"] == 7
        base = f"http://127.0.0.1:{port}"
        for i in range(5):  # unauthenticated vendor requests: refused, and logged
            assert httpx.get(f"{base}/stellic/partnerapi/v1/probe{i}").status_code == 401
        kept = [r["path"] for r in httpx.get(f"{base}/_sandbox/requests").json()["requests"]]
        assert kept == [f"/stellic/partnerapi/v1/probe{i}" for i in (2, 3, 4)]  # the newest 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "sandbox stopped." in proc.stdout.read()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[str]:
    """Those still running (a zombie has exited: only its parent's bookkeeping is left)."""
    left = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return left


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a leader that does not stop on the interrupt...
child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "  # ...and a worse child
    "print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_process_group_that_ignores_the_interrupt_is_still_cleared_within_the_bound():
    """The fallback behind the graceful path: SIGINT, then SIGTERM to the group, then SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        tree = [psutil.Process(proc.pid), psutil.Process(int(proc.stdout.readline()))]
        started = time.monotonic()
        stop_process_group(proc, grace_seconds=1.0, kill_after_seconds=2.0)
        assert _alive(tree) == []
        assert time.monotonic() - started < 1.0 + 2.0 + 5.0
    finally:
        for p in _descendants(proc.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_edu_dev_stops_every_process_it_started(tmp_path, signum):
    """The real thing: ``python -m edu_assets dev`` (what ``./edu dev`` execs), then one signal to it alone."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # No run may launch (max_concurrent_runs 0): the sensors' runs would only load the machine.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 0\n")
    env = {k: v for k, v in os.environ.items() if k not in (*VENDOR_VARS, "EDU_SANDBOX_URL")}
    env.update(DAGSTER_HOME=str(home), EDU_DATA_DIR=str(tmp_path / "data"))
    web, sandbox = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edu_assets", "dev", "--port", str(web), "--sandbox-port", str(sandbox)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    started: list[psutil.Process] = []
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{web}/server_info"), 180, "the webserver on --port", proc)
        assert answers(f"http://127.0.0.1:{sandbox}/_sandbox/")  # the sandbox on --sandbox-port
        started = _descendants(proc.pid)
        commands = [" ".join(p.cmdline()) for p in started]
        for part in ("dagster dev", "dagster_webserver", "dagster._daemon", "code-server"):
            assert any(part in c for c in commands), f"no {part} process among {commands}"

        signalled = time.monotonic()
        proc.send_signal(signum)
        assert proc.wait(timeout=STOP_BOUND) == 0
        left = psutil.wait_procs(started, timeout=max(0.0, signalled + STOP_BOUND - time.monotonic()))[1]
        assert _alive(left) == [], f"left running {STOP_BOUND:.0f}s after the signal"
        print(f"{signal.Signals(signum).name}: {len(started)} processes gone {time.monotonic() - signalled:.1f}s after the signal")
        assert not answers(f"http://127.0.0.1:{sandbox}/_sandbox/")
        assert not answers(f"http://127.0.0.1:{web}/server_info")
    finally:
        for p in [*started, *_descendants(proc.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if proc.poll() is None:
            proc.kill()
