"""The async-export lifecycle shared by every vendor: start → poll → download → land, resumable.

Vendors implement :class:`AsyncExportAPI` (how to ask for a job's status and fetch its file); this module
owns the rest:

* **waiting inline** up to a budget with capped, growing poll intervals;
* **deferring** when the budget runs out: the vendor job handle is recorded durably (as an asset
  observation in the Dagster instance, see :mod:`edu_assets.core.export_records`), the run ends without a
  materialization, and the completion sensor relaunches exactly that partition when the job is done;
* **resuming** instead of starting a second vendor job;
* **fresh download URLs**: a URL that has expired (or is about to) is re-requested just before the
  download, and once more if the file host still says it expired;
* **giving up clearly** when a job fails (with the vendor's message) or outlives the deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from edu_assets.core.errors import DownloadError, ExportDeadlineExceeded, VendorJobFailed, Where
from edu_assets.core.http import Downloaded, Log
from edu_assets.core.settings import ExportSettings

URL_SAFETY_MARGIN_SECONDS = 5.0


class JobState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    vendor_status: str
    download_url: str | None = None
    url_expires_at: float | None = None
    message: str | None = None


@dataclass(frozen=True)
class ExportHandle:
    """Everything needed to find a vendor job again, in a later run or from a sensor. Holds no secrets."""

    vendor: str
    job_id: str
    asset_key: str
    partition_key: str | None
    started_at: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExportHandle:
        return cls(**json.loads(text))

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.started_at


class UrlExpired(Exception):
    """Raised by a vendor's download when the file host says the pre-signed URL has expired."""


class AsyncExportAPI(Protocol):
    """What a vendor provides so the shared lifecycle can drive its asynchronous exports."""

    def poll(self, handle: ExportHandle, where: Where) -> JobStatus: ...

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded: ...


@dataclass
class WaitOutcome:
    status: JobStatus | None  # None: still running when the inline budget ran out
    waited_seconds: float
    polls: int


class ExportLifecycle:
    """Drives one vendor job from handle to downloaded file."""

    def __init__(
        self,
        api: AsyncExportAPI,
        where: Where,
        log: Log,
        settings: ExportSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.api = api
        self.where = where
        self.log = log
        self.settings = settings or ExportSettings.from_env()
        self._sleep = sleep

    def check_deadline(self, handle: ExportHandle) -> None:
        age = handle.age()
        if age > self.settings.deadline_seconds:
            raise ExportDeadlineExceeded(
                self.where,
                f"vendor job {handle.job_id} has been running for {age / 60:.0f} min, past the "
                f"{self.settings.deadline_seconds / 60:.0f} min deadline",
            )

    def wait(self, handle: ExportHandle, inline_budget: float | None = None) -> WaitOutcome:
        """Poll until the job is ready or the inline budget is spent; raise if it failed or is too old."""
        budget = self.settings.inline_wait_seconds if inline_budget is None else inline_budget
        started = time.monotonic()
        interval = 0.25
        polls = 0
        while True:
            self.check_deadline(handle)
            status = self.api.poll(handle, self.where)
            polls += 1
            if status.state is JobState.READY:
                waited = time.monotonic() - started
                self.log.info(f"{self.where}: vendor job {handle.job_id} is ready ({polls} polls, {waited:.1f}s)")
                return WaitOutcome(status, waited, polls)
            if status.state is JobState.FAILED:
                raise VendorJobFailed(
                    self.where,
                    f"vendor job {handle.job_id} failed with status {status.vendor_status!r}: "
                    f"{status.message or 'no message from the vendor'}",
                )
            elapsed = time.monotonic() - started
            if elapsed >= budget:
                self.log.info(
                    f"{self.where}: vendor job {handle.job_id} still {status.vendor_status!r} after {elapsed:.1f}s "
                    f"inline; deferring to the completion sensor"
                )
                return WaitOutcome(None, elapsed, polls)
            if polls == 1 or polls % 10 == 0:
                self.log.info(f"{self.where}: vendor job {handle.job_id} is {status.vendor_status!r}; polling")
            self._sleep(min(interval, max(0.0, budget - elapsed)))
            interval = min(interval * 1.6, self.settings.poll_max_interval_seconds)

    def fetch(self, handle: ExportHandle, status: JobStatus, dest: Path, max_refreshes: int = 3) -> Downloaded:
        """Download a ready job's file, re-requesting its URL when it has (or is about to) expire."""
        for refresh in range(max_refreshes + 1):
            expires = status.url_expires_at
            if expires is not None and expires - time.time() < URL_SAFETY_MARGIN_SECONDS:
                self.log.info(f"{self.where}: download URL for job {handle.job_id} has expired; asking for a fresh one")
                status = self._repoll(handle)
                continue
            try:
                return self.api.download(status, dest, self.where)
            except UrlExpired:
                if refresh == max_refreshes:
                    break
                self.log.warning(f"{self.where}: file host says the URL expired; asking for a fresh one")
                status = self._repoll(handle)
        raise DownloadError(
            self.where,
            f"the download URL of vendor job {handle.job_id} expired {max_refreshes + 1} times in a row",
            hint="the vendor issues URLs that expire too fast for this network; re-run the partition",
        )

    def _repoll(self, handle: ExportHandle) -> JobStatus:
        status = self.api.poll(handle, self.where)
        if status.state is not JobState.READY:
            raise VendorJobFailed(
                self.where, f"vendor job {handle.job_id} was ready but is now {status.vendor_status!r}"
            )
        return status
