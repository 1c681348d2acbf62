"""Run a command whose process tree must not outlive us: ``./edu dev`` runs ``dagster dev`` this way.

``dagster dev`` starts a webserver, a daemon and code servers of its own. If the process that started it
is stopped by a signal and does nothing about it, those keep running (against a sandbox that stopped with
us). So the command runs in its own session (one process group, which its children join, and out of
reach of the terminal's Ctrl-C, which we forward instead), and on SIGINT or SIGTERM we:

1. interrupt the command (SIGINT: ``dagster dev`` shuts its services down cleanly on it, whereas SIGTERM
   would kill it at once and orphan them);
2. wait for it up to ``grace_seconds``;
3. send SIGTERM, then SIGKILL after ``kill_after_seconds``, to whatever is left of its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_process_group(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    grace_seconds: float = 30.0,
    kill_after_seconds: float = 5.0,
) -> int:
    """Run ``cmd`` until it exits (its return code) or we receive SIGINT/SIGTERM (0, once all of it is gone).

    Must be called from the main thread (it installs signal handlers, and restores them on return).
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, start_new_session=True)
        try:
            while proc.poll() is None and not received:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.5)
        finally:
            stop_process_group(proc, grace_seconds=grace_seconds, kill_after_seconds=kill_after_seconds)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if received else proc.returncode


def stop_process_group(proc: subprocess.Popen, *, grace_seconds: float, kill_after_seconds: float) -> None:
    """Interrupt ``proc`` (the leader of its own process group), wait, then clear the rest of the group."""
    group = proc.pid  # start_new_session: the child leads a group with its own pid
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_seconds)
    for signum in (signal.SIGTERM, signal.SIGKILL):  # the leader hung, or a grandchild outlived it
        if not _group_alive(group):
            break
        _signal_group(group, signum)
        _wait_group(proc, group, kill_after_seconds)


def _wait_group(proc: subprocess.Popen, group: int, seconds: float) -> None:
    """Wait up to ``seconds`` for the group to empty (reaping the leader, our child, on the way)."""
    deadline = time.monotonic() + seconds
    while (proc.poll() is None or _group_alive(group)) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
