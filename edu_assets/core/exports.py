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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from edu_assets.core.errors import DownloadError, ExportDeadlineExceeded, VendorJobFailed, Where
from edu_assets.core.http import Downloaded, Log, VendorHTTP
from edu_assets.core.settings import ExportSettings

if TYPE_CHECKING:
    import httpx  # imported where used: it costs ~60 ms, and the code location loads without it

URL_SAFETY_MARGIN_SECONDS = 5.0


class JobState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class JobStatus:
    """A vendor job's state in the lifecycle's terms, plus what the vendor said about it.

    ``has_file`` is False for a job that finished with nothing to download (WebAdMIT's "Empty List"):
    the partition is landed empty rather than failed. ``warnings`` are the vendor's words about a job
    that finished with problems (WebAdMIT's "Success With Errors"); they reach metadata and a WARN check.
    """

    state: JobState
    vendor_status: str
    download_url: str | None = None
    url_expires_at: float | None = None
    message: str | None = None
    has_file: bool = True
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportHandle:
    """Everything needed to find a vendor job again, in a later run or from a sensor. Holds no secrets."""

    vendor: str
    job_id: str
    asset_key: str
    partition_key: str | None
    details: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)  # when the vendor accepted the job

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExportHandle:
        return cls(**json.loads(text))

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.started_at


def presigned_expiry(url: str) -> float | None:
    """The ``Expires`` epoch of an S3-style pre-signed URL, or None when the URL does not carry one."""
    query = parse_qs(urlsplit(url).query)
    value = (query.get("Expires") or query.get("expires") or [None])[0]
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class UrlExpired(Exception):
    """Raised by a vendor's download when the file host says the pre-signed URL has expired."""


def _looks_expired(response: httpx.Response) -> bool:
    text = response.text.lower()
    return "expired" in text or "accessdenied" in text


def download_presigned(http: VendorHTTP, status: JobStatus, dest: Path, where: Where) -> Downloaded:
    """Download a ready job's file from its pre-signed URL (no vendor auth is sent to the file host);
    an S3-style "expired" answer becomes :class:`UrlExpired`, so the lifecycle asks for a fresh URL."""
    if not status.download_url:
        raise VendorJobFailed(where, f"the vendor said the export is {status.vendor_status!r} but gave no download URL")

    def on_status(response: httpx.Response) -> None:
        if response.status_code in (400, 403) and _looks_expired(response):
            raise UrlExpired

    return http.download(status.download_url, dest, where, on_status=on_status)


class AsyncExportAPI(Protocol):
    """What a vendor provides so the shared lifecycle can drive its asynchronous exports."""

    def poll(self, handle: ExportHandle, where: Where) -> JobStatus: ...

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded: ...


@dataclass
class Waited:
    """How one job's inline wait ended: ready (``status``), failed (``error``), or neither (still running)."""

    handle: ExportHandle
    where: Where
    status: JobStatus | None = None
    error: VendorJobFailed | ExportDeadlineExceeded | None = None
    waited_seconds: float = 0.0


class ExportLifecycle:
    """Drives vendor jobs from handle to downloaded file."""

    def __init__(
        self,
        api: AsyncExportAPI,
        log: Log,
        settings: ExportSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.api = api
        self.log = log
        self.settings = settings or ExportSettings.from_env()
        self._sleep = sleep

    def check_deadline(self, handle: ExportHandle, where: Where) -> None:
        age = handle.age()
        if age > self.settings.deadline_seconds:
            raise ExportDeadlineExceeded(
                where,
                f"vendor job {handle.job_id} has been running for {age / 60:.0f} min, past the "
                f"{self.settings.deadline_seconds / 60:.0f} min deadline",
            )

    def wait_all(
        self, jobs: Sequence[tuple[ExportHandle, Where]], inline_budget: float | None = None
    ) -> Iterator[Waited]:
        """Poll every job round-robin until each is ready or failed, or the inline budget is spent.

        Each job is yielded exactly once, as soon as its fate is known (so a ready file is downloaded
        while its URL is fresh, before the other jobs are polled again); jobs still running when the
        budget runs out are yielded last with neither status nor error.
        """
        budget = self.settings.inline_wait_seconds if inline_budget is None else inline_budget
        started = time.monotonic()
        interval = 0.25
        pending = list(jobs)
        rounds = 0
        while pending:
            rounds += 1
            still: list[tuple[ExportHandle, Where]] = []
            for handle, where in pending:
                waited = time.monotonic() - started
                try:
                    self.check_deadline(handle, where)
                    status = self.api.poll(handle, where)
                except ExportDeadlineExceeded as exc:
                    yield Waited(handle, where, error=exc, waited_seconds=waited)
                    continue
                if status.state is JobState.READY:
                    self.log.info(f"{where}: vendor job {handle.job_id} is {status.vendor_status!r} ({waited:.1f}s)")
                    yield Waited(handle, where, status=status, waited_seconds=waited)
                elif status.state is JobState.FAILED:
                    error = VendorJobFailed(
                        where,
                        f"vendor job {handle.job_id} failed with status {status.vendor_status!r}: "
                        f"{status.message or 'no message from the vendor'}",
                    )
                    yield Waited(handle, where, error=error, waited_seconds=waited)
                else:
                    if rounds == 1 or rounds % 10 == 0:
                        self.log.info(f"{where}: vendor job {handle.job_id} is {status.vendor_status!r}; polling")
                    still.append((handle, where))
            pending = still
            elapsed = time.monotonic() - started
            if pending and elapsed >= budget:
                for handle, where in pending:
                    self.log.info(
                        f"{where}: vendor job {handle.job_id} still running after {elapsed:.1f}s inline; "
                        "deferring to the completion sensor"
                    )
                    yield Waited(handle, where, waited_seconds=elapsed)
                return
            if pending:
                self._sleep(min(interval, max(0.0, budget - elapsed)))
                interval = min(interval * 1.6, self.settings.poll_max_interval_seconds)

    def fetch(
        self, handle: ExportHandle, status: JobStatus, dest: Path, where: Where, max_refreshes: int = 3
    ) -> Downloaded:
        """Download a ready job's file, re-requesting its URL when it has (or is about to) expire."""
        for refresh in range(max_refreshes + 1):
            expires = status.url_expires_at
            if expires is not None and expires - time.time() < URL_SAFETY_MARGIN_SECONDS:
                self.log.info(f"{where}: download URL for job {handle.job_id} has expired; asking for a fresh one")
                status = self._repoll(handle, where)
                continue
            try:
                return self.api.download(status, dest, where)
            except UrlExpired:
                if refresh == max_refreshes:
                    break
                self.log.warning(f"{where}: file host says the URL expired; asking for a fresh one")
                status = self._repoll(handle, where)
        raise DownloadError(
            where,
            f"the download URL of vendor job {handle.job_id} expired {max_refreshes + 1} times in a row",
            hint="the vendor issues URLs that expire too fast for this network; re-run the partition",
        )

    def _repoll(self, handle: ExportHandle, where: Where) -> JobStatus:
        status = self.api.poll(handle, where)
        if status.state is not JobState.READY:
            raise VendorJobFailed(where, f"vendor job {handle.job_id} was ready but is now {status.vendor_status!r}")
        return status
