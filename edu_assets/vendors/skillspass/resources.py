"""The SkillsPass resource: owns the base URL and the BLN credentials (key, token, secret; never shown)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import dagster as dg

from edu_assets.core.configured import resource_for_mode
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.redact import register_secret
from edu_assets.core.settings import (
    DATE,
    FLAG,
    TEXT,
    URL,
    Setting,
    VendorMode,
    is_phrase,
    number,
    one_of,
    orphaned,
    set_vars,
    vendor_mode,
    whole,
)
from edu_assets.sandbox.credentials import SKILLSPASS_KEY as SANDBOX_KEY
from edu_assets.sandbox.credentials import SKILLSPASS_SECRET as SANDBOX_SECRET
from edu_assets.sandbox.credentials import SKILLSPASS_TOKEN as SANDBOX_TOKEN
from edu_assets.vendors.skillspass.client import VENDOR, SkillsPassClient

SKILLSPASS_SECRET_VARS = ("SKILLSPASS_KEY", "SKILLSPASS_TOKEN", "SKILLSPASS_SECRET")
SKILLSPASS_ENVIRONMENTS = {
    "production": "https://kube-prod.bluedrop360.com",
    "test": "https://shared-tp-api-test.30a.dev",  # the vendor's own test tenant, reset daily
}

ENVIRONMENT = Setting("SKILLSPASS_ENVIRONMENT", TEXT, "production",
                      f"which SkillsPass the credentials are for: {' or '.join(SKILLSPASS_ENVIRONMENTS)}")
BASE_URL: Setting[str | None] = Setting("SKILLSPASS_BASE_URL", URL, None, "the SkillsPass host, overriding SKILLSPASS_ENVIRONMENT")
LEGACY_TYPES = Setting("SKILLSPASS_LEGACY_TYPES", FLAG, False,
                       "the tenant runs the older API (ENROLLMENTS instead of ELEARNING_ENROLLMENTS)")
RATE_PER_SECOND = Setting("SKILLSPASS_RATE_PER_SECOND", number(0), 5.0, "requests per second (no limit is documented)")
START_DATE = Setting("SKILLSPASS_START_DATE", DATE, "2025-01-01", "the first day of SkillsPass's daily partitions")
FORMAT: Setting[str | None] = Setting("SKILLSPASS_FORMAT", one_of("CSV", "JSONL"), None,
                                      "the export format when run config names none (default: the catalog's first)")
DAYS_PER_JOB = Setting("SKILLSPASS_DAYS_PER_JOB", whole(1), 1,
                       "days one vendor job covers in a backfill when run config says nothing")
SETTINGS: tuple[Setting[Any], ...] = (ENVIRONMENT, BASE_URL, LEGACY_TYPES, RATE_PER_SECOND, START_DATE, FORMAT,
                                      DAYS_PER_JOB)
"""SkillsPass's non-secret settings (SKILLSPASS_KEY/TOKEN/SECRET are secrets, read through dg.EnvVar)."""


def skillspass_mode() -> VendorMode:
    """Live when SKILLSPASS_KEY/TOKEN/SECRET are set; SKILLSPASS_ENVIRONMENT picks production or the
    vendor's test tenant (SKILLSPASS_BASE_URL overrides both)."""
    credentials = set_vars(*SKILLSPASS_SECRET_VARS)
    environment = ENVIRONMENT.get().lower()
    problems: list[str] = []
    if environment not in SKILLSPASS_ENVIRONMENTS:
        problems.append(f"SKILLSPASS_ENVIRONMENT={environment!r} is not one of {', '.join(sorted(SKILLSPASS_ENVIRONMENTS))}: "
                        "fix it (or set SKILLSPASS_BASE_URL to a full URL and unset it)")
    missing = [v for v in SKILLSPASS_SECRET_VARS if v not in credentials]
    if credentials and missing:
        problems.append(f"{is_phrase(credentials)} set but {is_phrase(missing)} not: SkillsPass needs all three")
    if not credentials:
        problems += orphaned(set_vars("SKILLSPASS_ENVIRONMENT", "SKILLSPASS_BASE_URL"), list(SKILLSPASS_SECRET_VARS))
    base = BASE_URL.get() or SKILLSPASS_ENVIRONMENTS.get(environment, "")
    mode = vendor_mode("skillspass", credentials, base, "SKILLSPASS_KEY, SKILLSPASS_TOKEN and SKILLSPASS_SECRET", problems)
    return replace(mode, why=f"{mode.why} ({environment})") if mode.live else mode


def bln_header(key: str, token: str, secret: str) -> str:
    """The ``Authorization`` value of SkillsPass's BLN scheme (user-based API authorization, version 1)."""
    return f"bln type=api, version=1, entity=user, key={key}, token={token}, secret={secret}"


class SkillsPassResource(dg.ConfigurableResource):
    """SkillsPass Organization API access (the export-data APIs need no training-provider id)."""

    base_url: str
    key: str
    token: str
    secret: str
    legacy_types: bool = False  # the tenant runs the older API (ENROLLMENTS instead of ELEARNING_ENROLLMENTS)
    rate_per_second: float = 5.0  # no limit is documented: be polite (SKILLSPASS_RATE_PER_SECOND)
    timeout_seconds: float = 60.0  # the docs warn some calls take up to 4 s
    # run-config defaults, filled from SKILLSPASS_FORMAT / SKILLSPASS_DAYS_PER_JOB when definitions load
    default_format: str | None = None  # CSV or JSONL; None: each export's first format in the catalog
    days_per_job: int = 1

    def client(self, log: Log | None = None) -> SkillsPassClient:
        missing = [n for n in ("key", "token", "secret") if not getattr(self, n)]
        if not self.base_url:  # not configured or half-configured: say what to set, before any request
            skillspass_mode().require()
        if missing or not self.base_url:
            raise ConfigError(
                Where(VENDOR), f"SkillsPass is not fully configured (missing: {', '.join(missing) or 'base URL'})",
                hint="set SKILLSPASS_KEY, SKILLSPASS_TOKEN and SKILLSPASS_SECRET (and SKILLSPASS_ENVIRONMENT)",
            )
        for value in (self.key, self.token, self.secret):
            register_secret(value)
        http = VendorHTTP(
            VENDOR, self.base_url,
            auth_headers={"Authorization": bln_header(self.key, self.token, self.secret)},
            timeout=self.timeout_seconds, rate_per_second=self.rate_per_second, log=log,
        )
        return SkillsPassClient(http)


def skillspass_resource_from_env() -> SkillsPassResource:
    """Live when the credentials are set (read through EnvVar, so the UI shows only their names), the sandbox
    when EDU_SANDBOX_URL selects it; otherwise a resource without a base URL (see ``stellic_resource_from_env``)."""
    mode = skillspass_mode()
    common = {
        "legacy_types": LEGACY_TYPES.get(),
        "rate_per_second": RATE_PER_SECOND.get(),
        "default_format": FORMAT.get(),
        "days_per_job": DAYS_PER_JOB.get(),
    }
    return resource_for_mode(
        SkillsPassResource, mode,
        live={"key": dg.EnvVar("SKILLSPASS_KEY"), "token": dg.EnvVar("SKILLSPASS_TOKEN"),
              "secret": dg.EnvVar("SKILLSPASS_SECRET")},
        sandbox={"key": SANDBOX_KEY, "token": SANDBOX_TOKEN, "secret": SANDBOX_SECRET},
        unset={"key": "", "token": "", "secret": ""},
        **common,
    )
