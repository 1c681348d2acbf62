"""Errors a data engineer can act on.

Every error raised by the platform says *which vendor*, *which endpoint or export*, *which partition*
and *what to do next*. Messages pass through :func:`~edu_assets.core.redact.redact`, so an error can
never carry a token or a signed URL into the Dagster UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edu_assets.core.redact import redact


@dataclass(frozen=True)
class Where:
    """The coordinates of a piece of work: vendor, endpoint (or export) and partition."""

    vendor: str
    endpoint: str | None = None
    partition: str | None = None

    def __str__(self) -> str:
        s = f"[{self.vendor}]"
        if self.endpoint:
            s += f" {self.endpoint}"
        if self.partition:
            s += f" (partition {self.partition})"
        return s

    def at(self, endpoint: str | None = None, partition: str | None = None) -> Where:
        return Where(self.vendor, endpoint or self.endpoint, partition or self.partition)


class EduAssetsError(Exception):
    """Base error: ``<where>: <what>. Next: <hint>``, with secrets redacted."""

    default_hint = "check the vendor's status and re-run the partition"

    def __init__(self, where: Where, what: str, hint: str | None = None):
        self.where = where
        self.what = redact(what)
        self.hint = redact(hint or self.default_hint)
        super().__init__(f"{where}: {self.what}. Next: {self.hint}")


class ConfigError(EduAssetsError):
    default_hint = "set the missing value in the asset's run config or the environment (see README)"


class VendorHTTPError(EduAssetsError):
    """The vendor answered with an error status, or could not be reached after all retries."""

    def __init__(self, where: Where, what: str, hint: str | None = None, status: int | None = None):
        self.status = status
        super().__init__(where, what, hint)


class VendorAuthError(VendorHTTPError):
    default_hint = "check the credentials in the environment (they are never logged) and their scopes"


class VendorJobFailed(EduAssetsError):
    default_hint = "re-run the partition to start a new export; if it fails again, contact the vendor with the job id"


class ExportDeadlineExceeded(EduAssetsError):
    default_hint = (
        "the vendor job was given up; re-run the partition to start a new export, or raise "
        "EDU_EXPORT_DEADLINE_SECONDS if the vendor is known to be this slow"
    )


class DownloadError(EduAssetsError):
    default_hint = "re-run the partition; the previous landed version is intact"


class LandingError(EduAssetsError):
    """The vendor's file could not be turned into Parquet. The raw file is kept for inspection."""

    def __init__(self, where: Where, what: str, raw_path: Path | None, hint: str | None = None):
        self.raw_path = raw_path
        kept = f" The raw download is kept at {raw_path}." if raw_path else ""
        super().__init__(where, what + "." + kept if not what.endswith(".") else what + kept, hint)
