"""The Xporter resource: where the API is, and per-school clients whose tokens never cross schools.

Its configuration (shown in the Dagster UI) holds URLs and tuning only; secrets are read from the
environment when a client is made (see ``auth.py``), so they never appear in run config.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import dagster as dg

from edu_assets.core.configured import resource_for_mode
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.settings import (
    DATE,
    URL,
    Setting,
    VendorMode,
    env,
    json_object_problem,
    number,
    orphaned,
    set_vars,
    vendor_mode,
)
from edu_assets.core.tokens import TokenCache
from edu_assets.vendors.xporter.auth import MANAGEMENT, RELYING_PARTY, Secrets, load_secrets, mint_token
from edu_assets.vendors.xporter.catalog import split_scopes
from edu_assets.vendors.xporter.client import VENDOR, XporterClient

XPORTER_SECRET_VARS = ("XPORTER_SCHOOL_SECRETS", "XPORTER_SECRETS_FILE", "XPORTER_MANAGEMENT_SECRET")
BASE_URL = Setting("XPORTER_BASE_URL", URL, "https://xporter.groupcall.com", "the Xporter on Demand API")
STS_URL = Setting("XPORTER_STS_URL", URL, "https://login.groupcall.com/idaas/sts/STS/GetToken",
                  "where Idaas tokens are minted (live only)")
TOKEN_REFRESH_MARGIN_SECONDS = Setting("XPORTER_TOKEN_REFRESH_MARGIN_SECONDS", number(0), 300.0,
                                       "how long before its expiry a token is replaced")
START_MONTH = Setting("XPORTER_START_MONTH", DATE, "2021-09-01",
                      "the first month of the school x month partitions (its year starts the school years)")
MAX_DATA_AGE_DAYS = Setting("XPORTER_MAX_DATA_AGE_DAYS", number(0), 2.0,
                            "the school-data freshness check fails beyond this age, in days")
SETTINGS: tuple[Setting[Any], ...] = (BASE_URL, STS_URL, RELYING_PARTY, TOKEN_REFRESH_MARGIN_SECONDS, START_MONTH,
                                      MAX_DATA_AGE_DAYS)
"""Xporter's non-secret settings (the school and management secrets are read when a token is minted)."""


def xporter_mode() -> VendorMode:
    """Live when any Xporter secret is configured (a JSON mapping, a secrets file or the management secret).

    The secrets file itself is read only when a token is minted (``auth.py``); ``./edu status`` reads it
    too, to report a file that cannot be used."""
    secrets = set_vars(*XPORTER_SECRET_VARS)
    problems = json_object_problem("XPORTER_SCHOOL_SECRETS", '{"3281101": "<school secret>"}')
    if secrets and not RELYING_PARTY.get():
        problems.append("XPORTER_RELYING_PARTY is not set: set it to the relying party your application was "
                        "registered with")
    if not secrets:
        problems += orphaned(set_vars("XPORTER_RELYING_PARTY"),
                             ["XPORTER_SCHOOL_SECRETS", "XPORTER_MANAGEMENT_SECRET (or XPORTER_SECRETS_FILE)"])
    return vendor_mode("xporter", secrets, BASE_URL.get(),
                       "XPORTER_RELYING_PARTY and the secrets (XPORTER_SCHOOL_SECRETS and XPORTER_MANAGEMENT_SECRET, "
                       "or XPORTER_SECRETS_FILE)", problems)


def xporter_resource_from_env() -> XporterResource:
    """The Xporter resource for how the vendor is reached when the definitions load (``resource_for_mode``):
    live (each secret that is set, as ``dg.EnvVar``), the sandbox, or not configured."""
    mode = xporter_mode()
    secret_vars = {"school_secrets": "XPORTER_SCHOOL_SECRETS", "management_secret": "XPORTER_MANAGEMENT_SECRET"}
    live = {"sts_url": STS_URL.get(), "relying_party": RELYING_PARTY.get() or "",
            "secrets_file": env("XPORTER_SECRETS_FILE") or "",
            **{field: dg.EnvVar(var) for field, var in secret_vars.items() if env(var)}}
    return resource_for_mode(XporterResource, mode, live=live, sandbox={"sandbox": True}, unset={})


_caches: dict[tuple[str, str], TokenCache] = {}
_caches_lock = threading.Lock()


@dataclass(frozen=True)
class School:
    estab: str
    name: str
    status: str  # authorised | pending | revoked
    scopes: frozenset[str]
    since: str | None


class XporterResource(dg.ConfigurableResource):
    """Xporter on Demand, configured when the definitions load (``xporter_resource_from_env``) like every
    vendor's resource: the live service (its secrets as ``dg.EnvVar``, so the UI shows only their names) or
    the sandbox. Without a base URL the vendor is not configured, and a client is refused before any
    request, with what to set."""

    base_url: str = ""
    sts_url: str = ""
    relying_party: str = ""
    school_secrets: str = ""  # XPORTER_SCHOOL_SECRETS: {"<estab>": "<secret>"}
    management_secret: str = ""  # XPORTER_MANAGEMENT_SECRET
    secrets_file: str = ""  # XPORTER_SECRETS_FILE: a path (the file is read, and its mode checked, per token)
    sandbox: bool = False  # the sandbox's published secrets
    page_size: int = 5000
    page_concurrency: int = 4
    rate_per_second: float = 0.0

    def _base(self) -> str:
        if not self.base_url:  # not configured or half-configured: say what to set, before any request
            xporter_mode().require()
            raise ConfigError(Where(VENDOR), "the Xporter resource has no base URL",
                              hint="set XPORTER_BASE_URL or the secrets, then reload the code location")
        return self.base_url.rstrip("/")

    def _sts(self) -> str:
        return self.sts_url or f"{self._base()}/idaas/sts/STS/GetToken"

    def secrets(self) -> Secrets:
        return load_secrets(self.relying_party, management=self.management_secret,
                            school_secrets=self.school_secrets, secrets_file=self.secrets_file, sandbox=self.sandbox)

    def tokens(self) -> TokenCache:
        """The process-wide token cache for this service (tokens are reused across assets and runs)."""
        base = self._base()
        secrets = self.secrets()
        key = (base, secrets.relying_party)
        with _caches_lock:
            cache = _caches.get(key)
            if cache is None:
                sts = VendorHTTP("xporter-sts", base)
                sts_url = self._sts()
                cache = _caches[key] = TokenCache(
                    lambda scope: mint_token(sts, sts_url, self.secrets(), scope),
                    refresh_margin_seconds=TOKEN_REFRESH_MARGIN_SECONDS.get(),
                )
            return cache

    def client(self, estab: str, log: Log | None = None) -> XporterClient:
        """A client for one school's data, using only that school's token."""
        if not estab:
            raise ValueError("a school client needs an estab; use management() for the management token")
        return XporterClient(self._base(), self.tokens(), estab, log=log, page_size=self.page_size,
                             page_concurrency=self.page_concurrency, rate_per_second=self.rate_per_second)

    def management(self, log: Log | None = None) -> XporterClient:
        return XporterClient(self._base(), self.tokens(), MANAGEMENT, log=log, rate_per_second=self.rate_per_second)

    def schools(self, log: Log | None = None, max_age_seconds: float = 300.0, run_id: str | None = None) -> list[School]:
        """The school register (authorised, pending, revoked) from GetXodSchools, cached briefly, or for
        the whole of run ``run_id`` (one read per run, however long the run and however many steps ask)."""
        key = (self._base(), run_id or "")
        with _register_lock:  # one read however many schools' threads ask at once
            cached = _register_cache.get(key)
            if cached and (run_id or time.monotonic() - cached[0] < max_age_seconds):
                return cached[1]
            client = self.management(log)
            try:
                # only the documented parameters (L333-334): no httpstatuscodes on a management call
                body = client.get("api/XporterOnDemand/GetXodSchools", {"includePendingAuthorisation": "true"},
                                  Where("xporter", "GetXodSchools", "management"), status_codes=False)
            finally:
                client.close()
            schools = parse_school_register(body)
            if run_id:  # a process runs one run at a time (in-process executor): keep only the latest run's
                for stale in [k for k in _register_cache if k[1] and k[0] == key[0]]:
                    del _register_cache[stale]
            _register_cache[key] = (time.monotonic(), schools)
            return schools


_register_cache: dict[tuple[str, str], tuple[float, list[School]]] = {}
_register_lock = threading.Lock()


def parse_school_register(body: Any) -> list[School]:
    out: list[School] = []
    for status, key, since in (("authorised", "Authorised", "dateAuthorised"),
                               ("pending", "PendingAuthorisation", "dateInvited"),
                               ("revoked", "Revoked", "dateRevoked")):
        for row in (body or {}).get(key) or []:
            out.append(School(
                estab=str(row.get("estab")),
                name=str(row.get("schoolName") or ""),
                status=status,
                scopes=split_scopes(row.get("scopesAuthorised")),
                since=row.get(since),
            ))
    return out


def reset_caches() -> None:
    """Forget cached tokens and the school register (tests, or after rotating secrets in a long process)."""
    with _caches_lock:
        _caches.clear()
    _register_cache.clear()
