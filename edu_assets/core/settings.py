"""Environment-driven settings: the one place that says where data goes and which vendors are live.

A vendor is *live* when its credentials are in the environment and *sandboxed* otherwise, so a fresh
checkout runs end to end against the embedded emulators without any configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SANDBOX_URL_DEFAULT = "http://127.0.0.1:8765"


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = env(name)
    return float(value) if value is not None else default


def sandbox_url() -> str:
    """Where the sandbox emulators listen (``python -m edu_assets sandbox`` serves them there)."""
    return env("EDU_SANDBOX_URL", SANDBOX_URL_DEFAULT).rstrip("/")


@dataclass(frozen=True)
class LakeSettings:
    """Where landed data lives: Parquet datasets, the DuckDB catalog, raw downloads kept on failure."""

    root: Path
    catalog_path: Path
    work_dir: Path

    @classmethod
    def from_env(cls) -> LakeSettings:
        data = Path(env("EDU_DATA_DIR", "data")).absolute()
        return cls(
            root=Path(env("EDU_LAKE_ROOT", str(data / "lake"))).absolute(),
            catalog_path=Path(env("EDU_DUCKDB_PATH", str(data / "edu.duckdb"))).absolute(),
            work_dir=Path(env("EDU_WORK_DIR", str(data / "work"))).absolute(),
        )


@dataclass(frozen=True)
class ExportSettings:
    """Defaults of the async-export lifecycle; each asset can override them in run config."""

    inline_wait_seconds: float
    deadline_seconds: float
    poll_max_interval_seconds: float
    sensor_tick_budget_seconds: float
    sensor_max_polls_per_tick: int

    @classmethod
    def from_env(cls) -> ExportSettings:
        return cls(
            inline_wait_seconds=env_float("EDU_EXPORT_INLINE_WAIT_SECONDS", 600.0),
            deadline_seconds=env_float("EDU_EXPORT_DEADLINE_SECONDS", 6 * 3600.0),
            poll_max_interval_seconds=env_float("EDU_EXPORT_POLL_MAX_SECONDS", 30.0),
            # Dagster ends a sensor tick after about 60 s; stay well inside it.
            sensor_tick_budget_seconds=env_float("EDU_SENSOR_TICK_BUDGET_SECONDS", 40.0),
            sensor_max_polls_per_tick=int(env_float("EDU_SENSOR_MAX_POLLS_PER_TICK", 100)),
        )


@dataclass(frozen=True)
class VendorMode:
    vendor: str
    live: bool
    base_url: str
    why: str


def stellic_mode() -> VendorMode:
    token = env("STELLIC_TOKEN")
    if token:
        base = env("STELLIC_BASE_URL")
        institution = env("STELLIC_INSTITUTION")
        if not base and institution:
            base = f"https://{institution}.stellic.com"
        return VendorMode("stellic", True, (base or "").rstrip("/"), "STELLIC_TOKEN is set")
    return VendorMode("stellic", False, f"{sandbox_url()}/stellic", "no STELLIC_TOKEN: using the sandbox")


XPORTER_SECRET_VARS = ("XPORTER_SCHOOL_SECRETS", "XPORTER_SECRETS_FILE", "XPORTER_MANAGEMENT_SECRET")


def xporter_mode() -> VendorMode:
    """Live when any Xporter secret is configured (a JSON mapping, a secrets file or the management secret)."""
    configured = [v for v in XPORTER_SECRET_VARS if env(v)]
    if configured:
        base = env("XPORTER_BASE_URL", "https://xporter.groupcall.com")
        return VendorMode("xporter", True, (base or "").rstrip("/"), f"{', '.join(configured)} set")
    return VendorMode("xporter", False, f"{sandbox_url()}/xporter", "no Xporter secrets: using the sandbox")


SKILLSPASS_SECRET_VARS = ("SKILLSPASS_KEY", "SKILLSPASS_TOKEN", "SKILLSPASS_SECRET")
SKILLSPASS_ENVIRONMENTS = {
    "production": "https://kube-prod.bluedrop360.com",
    "test": "https://shared-tp-api-test.30a.dev",  # the vendor's own test tenant, reset daily
}


def skillspass_mode() -> VendorMode:
    """Live when SKILLSPASS_KEY/TOKEN/SECRET are set; SKILLSPASS_ENVIRONMENT picks production or the
    vendor's test tenant (SKILLSPASS_BASE_URL overrides both)."""
    configured = [v for v in SKILLSPASS_SECRET_VARS if env(v)]
    if configured:
        environment = (env("SKILLSPASS_ENVIRONMENT", "production") or "production").lower()
        base = env("SKILLSPASS_BASE_URL") or SKILLSPASS_ENVIRONMENTS.get(environment, "")
        return VendorMode("skillspass", True, base.rstrip("/"), f"{', '.join(configured)} set ({environment})")
    return VendorMode("skillspass", False, f"{sandbox_url()}/skillspass", "no SkillsPass credentials: using the sandbox")


def webadmit_mode() -> VendorMode:
    """Live when WEBADMIT_API_KEY is set; the host is ``https://<WEBADMIT_DOMAIN or api>.webadmit.org``."""
    if env("WEBADMIT_API_KEY"):
        base = env("WEBADMIT_BASE_URL") or f"https://{env('WEBADMIT_DOMAIN', 'api')}.webadmit.org"
        return VendorMode("webadmit", True, base.rstrip("/"), "WEBADMIT_API_KEY is set")
    return VendorMode("webadmit", False, f"{sandbox_url()}/webadmit", "no WEBADMIT_API_KEY: using the sandbox")


def vendor_modes() -> list[VendorMode]:
    """Every vendor with whether it is live or sandboxed, and why (printed by ``edu-assets status``)."""
    return [stellic_mode(), xporter_mode(), skillspass_mode(), webadmit_mode()]
