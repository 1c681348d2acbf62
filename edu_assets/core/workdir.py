"""Work files of landing attempts: named by their run, swept once their run is over or their retention is up.

An attempt downloads to ``<work>/<vendor>/<asset>/<partition>/<run id>.<tag><suffix>`` (Xporter stages its
records in a directory named the same way). A landing deletes its own files when it succeeds; a run that is
killed, or fails before it lands, cannot, and its files used to stay forever. Two rules remove them:

* **the run is over**: an entry whose run (the id its name starts with) has finished, and is not the sweeping
  run, belonged to a dead attempt: nothing will read it again. The Dagster instance says which runs have
  finished (a killed run, once run monitoring has marked it failed), so a killed run's download goes at the
  next landing of its partition instead of lingering for a day;
* **the retention is up**: anything older than ``EDU_WORK_RETENTION_HOURS`` (default 24) goes, whoever owns
  it: the raw file a failed landing keeps for inspection (marked by a ``<name>.kept`` file beside it: exempt
  from the first rule, its age counted from the failure), files of runs the instance does not know (another
  deployment, names from before this rule), DuckDB spill files of a killed process.

Each attempt sweeps its own partition's directory when it starts (a handful of entries), and the whole work
directory is swept at most once an hour (a stamp file says when; one ``stat`` otherwise), so the directory
holds at most about the retention plus an hour of attempts, whatever happens to runs, and a landing never
walks a large tree. Only files and directories of attempts are removed, and the directories they leave
empty (once ten minutes old: a partition's directory is made just before its download opens it, and the
download makes it again if it went meanwhile); top-level files (the catalog's view ledger, the stamp) and
hidden directories (DuckDB's spill directory) stay, only their old contents go.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from edu_assets.core.errors import LandingError
from edu_assets.core.settings import LakeSettings

KEPT = ".kept"  # "<name>.kept" beside a failed landing's raw file (or staging directory)
STAMP = ".swept"  # in the work directory: its mtime is when the whole directory was last swept
SWEEP_EVERY_SECONDS = 3600.0
MAX_ENTRIES = 200_000  # entries one whole-directory sweep looks at; the next sweep goes on from a smaller tree
CONTAINER_GRACE_SECONDS = 600.0  # an empty directory younger than this may be about to receive a download
_RUN_ID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.")
_RUN_BATCH = 200  # run ids per instance query


def attempt_name(run_id: str, suffix: str = "", tag: str | None = None) -> str:
    """``<run id>.<tag or a random token><suffix>``: the run that owns a work file is in its name."""
    return f"{run_id}.{tag or uuid.uuid4().hex[:12]}{suffix}"


def owner(name: str) -> str | None:
    """The run id a work file's name starts with, or None (a name from before runs were recorded in it)."""
    match = _RUN_ID.match(name)
    return match.group(1) if match else None


@dataclass
class Swept:
    """What a sweep removed, and what it cost."""

    removed: int = 0  # files and attempt directories
    bytes: int = 0
    looked_at: int = 0  # directory entries visited
    seconds: float = 0.0


@dataclass
class _Entry:
    path: str
    parent: str
    is_dir: bool
    owner: str | None
    kept: bool
    mtime: float  # a directory's is its newest file's
    size: int


@dataclass
class _Container:
    """A directory named by no run (vendor, asset, partition): removed once empty and no longer new."""

    path: str
    parent: str
    held: int  # entries in it, as scanned
    mtime: float


@dataclass
class Sweeper:
    """Sweeps the work directory for one run (whose own files it never removes)."""

    work_dir: Path
    retention_seconds: float
    finished: Callable[[Collection[str]], Collection[str]] = lambda run_ids: ()  # which of these runs have ended
    current_run: str | None = None
    log: Any = None
    every_seconds: float = SWEEP_EVERY_SECONDS
    max_entries: int = MAX_ENTRIES
    _counted: int = field(default=0, init=False)

    def sweep(self, directory: Path) -> Swept:
        """One partition's directory: earlier attempts' files and directories (never the directory itself)."""
        if not directory.is_dir():
            return Swept()
        return self._report(self._sweep(directory, whole=False), directory)

    def sweep_all(self) -> Swept | None:
        """The whole work directory, unless it was swept less than ``every_seconds`` ago (then one ``stat``)."""
        stamp = self.work_dir / STAMP
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            if stamp.stat().st_mtime > now - min(self.every_seconds, self.retention_seconds):
                return None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        stamp.touch()  # claimed first: landings starting meanwhile in other processes skip it
        os.utime(stamp, (now, now))
        return self._report(self._sweep(self.work_dir, whole=True), self.work_dir)

    # ------------------------------------------------------------------ internals
    def _sweep(self, root: Path, *, whole: bool) -> Swept:
        started, now = time.monotonic(), time.time()
        cutoff = now - self.retention_seconds
        entries: list[_Entry] = []
        containers: list[_Container] = []
        self._counted = 0
        self._collect(str(root), entries, containers, top=whole)
        candidates = {e.owner for e in entries
                      if e.owner and e.owner != self.current_run and not e.kept and e.mtime >= cutoff}
        ended = set(self.finished(candidates)) if candidates else set()
        swept = Swept(looked_at=self._counted)
        gone: dict[str, int] = {}  # directory -> entries removed from it
        for e in entries:
            if e.owner is not None and e.owner == self.current_run:
                continue
            if e.mtime < cutoff or (e.owner in ended and not e.kept):
                if e.is_dir:
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path)
                if e.kept:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path + KEPT)
                gone[e.parent] = gone.get(e.parent, 0) + 1 + e.kept
                swept.removed += 1
                swept.bytes += e.size
        # Empty containers go, deepest first, unless new: a partition's directory is created a moment before
        # its download is opened (which creates it again if a sweep removed it meanwhile).
        for c in containers:
            if c.held - gone.get(c.path, 0) <= 0 and c.mtime < now - CONTAINER_GRACE_SECONDS:
                with contextlib.suppress(OSError):
                    os.rmdir(c.path)
                    gone[c.parent] = gone.get(c.parent, 0) + 1
        swept.seconds = time.monotonic() - started
        return swept

    def _collect(self, directory: str, entries: list[_Entry], containers: list[_Container], *, top: bool) -> int:
        """Attempts' files and directories under ``directory`` (returns how many entries it holds); directories
        named by no run are containers (vendor, asset, partition), walked; ``top``: the work directory
        itself, whose files stay (the catalog's view ledger, the stamp)."""
        try:
            with os.scandir(directory) as it:
                listed = list(it)
        except FileNotFoundError:
            return 0
        names = {d.name for d in listed}
        held = len(listed)
        for d in listed:
            if self._counted >= self.max_entries:
                return held
            self._counted += 1
            name = d.name
            if name.endswith(KEPT):
                if name[: -len(KEPT)] not in names:  # its file is gone: so goes the marker
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(d.path)
                    held -= 1
                continue
            run = owner(name)
            try:
                is_dir = d.is_dir(follow_symlinks=False)
                if is_dir and run is None:
                    inside = self._collect(d.path, entries, containers, top=False)
                    if not name.startswith("."):  # DuckDB's spill directory stays; its old files do not
                        containers.append(_Container(d.path, directory, inside, d.stat(follow_symlinks=False).st_mtime))
                    continue
                if top and not is_dir:
                    continue
                if is_dir:
                    mtime, size = _tree_stat(d.path)
                else:
                    st = d.stat(follow_symlinks=False)
                    mtime, size = st.st_mtime, st.st_size
            except FileNotFoundError:  # removed meanwhile (its own run landed it)
                held -= 1
                continue
            entries.append(_Entry(d.path, directory, is_dir, run, name + KEPT in names, mtime, size))
        return held

    def _report(self, swept: Swept, where: Path) -> Swept:
        if swept.removed and self.log is not None:
            self.log.info(
                f"swept {swept.removed} work file(s) of earlier attempts ({swept.bytes / 1e6:,.1f} MB) from {where} "
                f"in {swept.seconds:.2f}s (runs that ended, or older than "
                f"{self.retention_seconds / 3600:g} h: EDU_WORK_RETENTION_HOURS)"
            )
        return swept


def _tree_stat(directory: str) -> tuple[float, int]:
    """(newest mtime, total bytes) of an attempt's directory: a staging directory is young while it is written."""
    newest, size = os.stat(directory).st_mtime, 0
    for dirpath, _, files in os.walk(directory):
        for name in files:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            newest, size = max(newest, st.st_mtime), size + st.st_size
    return newest, size


def for_run(settings: LakeSettings, context: Any) -> Sweeper:
    """The sweeper of a run's landings (``context``: an asset or op context): its own files are never
    touched, other runs' once the instance says they have ended."""
    instance = context.instance

    def finished(run_ids: Collection[str]) -> set[str]:
        ids, ended = sorted(run_ids), set()
        for i in range(0, len(ids), _RUN_BATCH):
            for record in instance.get_run_records(dg.RunsFilter(run_ids=ids[i : i + _RUN_BATCH])):
                if record.dagster_run.is_finished:
                    ended.add(record.dagster_run.run_id)
        return ended

    return Sweeper(settings.work_dir, settings.work_retention_hours * 3600, finished, context.run_id, context.log)


def keep(path: Path) -> None:
    """Mark a failed landing's raw file (or staging directory) as kept for inspection: the sweep leaves it
    for the retention, counted from now, whatever its run's status."""
    now = time.time()
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (now, now))
    path.with_name(path.name + KEPT).touch()


def kept_for_inspection(error: LandingError, settings: LakeSettings, path: Path | None = None) -> LandingError:
    """``error`` with its raw file (or ``path``, the directory holding it) kept, saying for how long.

    Files outside the work directory are the caller's, not an attempt's: the error is returned as it is."""
    path = path or error.raw_path
    if path is None or not path.exists() or not path.absolute().is_relative_to(settings.work_dir):
        return error
    keep(path)
    hours = settings.work_retention_hours
    hint = (f"{error.hint}; the raw file stays there for {hours:g} h (EDU_WORK_RETENTION_HOURS), "
            "then it is removed")
    kept = LandingError(error.where, error.what, None, hint=hint)  # error.what already says where the file is
    kept.raw_path = error.raw_path
    return kept
