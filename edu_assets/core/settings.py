"""Environment-driven settings: the one place that says where data goes and how each vendor is reached.

A vendor is *live* when its credentials are in the environment. Without them it uses the sandbox only
when ``EDU_SANDBOX_URL`` says where one runs: ``./edu demo`` and ``./edu dev`` start the embedded
emulators and set it, and so do the tests and benchmarks. A deployment sets neither, so a vendor it has
no credentials for is *not configured* (its sensors and schedules skip) rather than silently pointed at
a sandbox that is not there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from edu_assets.core.errors import ConfigError, Where

SANDBOX_PORT_DEFAULT = 8765  # where `./edu sandbox` and `./edu dev` serve the emulators unless told otherwise


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = env(name)
    return float(value) if value is not None else default


def sandbox_url() -> str | None:
    """Where the sandbox emulators listen when one is selected (``EDU_SANDBOX_URL``); None otherwise."""
    url = env("EDU_SANDBOX_URL")
    return url.rstrip("/") if url else None


@dataclass(frozen=True)
class LakeSettings:
    """Where landed data lives: Parquet datasets, the DuckDB catalog, raw downloads kept on failure."""

    root: Path  # or an ObjectPath (core/lakepath.py) for EDU_LAKE_ROOT=s3://bucket/prefix
    catalog_path: Path
    work_dir: Path
    # how long work files are kept: a failed landing's raw file, files of runs that died (see core/workdir.py)
    work_retention_hours: float = field(default_factory=lambda: env_float("EDU_WORK_RETENTION_HOURS", 24.0))

    @classmethod
    def from_env(cls) -> LakeSettings:
        from edu_assets.core.lakepath import lake_root

        data = Path(env("EDU_DATA_DIR", "data")).absolute()
        return cls(
            root=lake_root(env("EDU_LAKE_ROOT", str(data / "lake")) or ""),  # refuses an unsupported scheme
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
    """How one vendor is reached now, decided from the environment alone (``./edu status`` prints it).

    *live*: its credentials are set. *sandbox*: they are not, and ``EDU_SANDBOX_URL`` selects the sandbox
    (the demo, dev and test commands set it). Otherwise the vendor is *not configured*: its sensors and
    schedules skip and its assets fail before any request, so a deployment never talks to a sandbox that
    is not there. ``problems`` lists a half-configuration (some variables set, others missing or invalid);
    such a vendor is unusable until they are fixed, and ``./edu status`` exits non-zero on it.
    """

    vendor: str
    live: bool
    base_url: str
    why: str
    needs: str  # the variables that make the vendor live, as a phrase ("STELLIC_TOKEN and ...")
    problems: tuple[str, ...] = ()

    @property
    def sandboxed(self) -> bool:
        return not self.live and bool(self.base_url)

    @property
    def state(self) -> str:
        if self.problems:
            return "half-configured"
        return "live" if self.live else "sandbox" if self.sandboxed else "not configured"

    def error(self) -> ConfigError | None:
        """Why the vendor cannot be used now (what to set or fix), or None when it can."""
        where = Where(self.vendor)
        if self.problems:
            return ConfigError(
                where, f"half-configured: {'; '.join(self.problems)}",
                hint="fix those variables (`./edu status` checks them), or unset them all to leave the vendor unconfigured",
            )
        if not self.live and not self.sandboxed:
            return ConfigError(
                where, "not configured (no credentials, and EDU_SANDBOX_URL is not set)",
                hint=f"set {self.needs} to use the live service, or EDU_SANDBOX_URL to use the sandbox "
                "(`./edu sandbox` serves it)",
            )
        return None

    def require(self) -> VendorMode:
        """This mode when the vendor can be used; else a ConfigError saying what to set or fix."""
        error = self.error()
        if error is not None:
            raise error
        return self


def _phrase(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _set_vars(*names: str) -> list[str]:
    return [n for n in names if env(n)]


def _is(names: list[str]) -> str:
    return f"{_phrase(names)} {'is' if len(names) == 1 else 'are'}"


def _orphaned(names: list[str], credentials: list[str]) -> list[str]:
    """A problem when a vendor's other variables are set without its credentials (a forgotten secret)."""
    if not names:
        return []
    return [f"{_is(names)} set but {_is(credentials)} not: set {_phrase(credentials)}, or unset {_phrase(names)}"]


def _json_object_problem(name: str, example: str) -> list[str]:
    """A problem when the variable is set but is not a JSON object (its value is never echoed: it may be secret)."""
    raw = env(name)
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return [f"{name} is not valid JSON: set it to a JSON object such as {example}"]
    if not isinstance(value, dict):
        return [f"{name} is JSON but not an object: set it to a JSON object such as {example}"]
    return []


def _mode(vendor: str, credentials: list[str], live_base: str, needs: str, problems: list[str]) -> VendorMode:
    """Live when any credential is set; else the sandbox when EDU_SANDBOX_URL is set; else not configured."""
    if credentials:
        return VendorMode(vendor, True, live_base.rstrip("/"), f"{_phrase(credentials)} set", needs, tuple(problems))
    sandbox = sandbox_url()
    if sandbox:
        return VendorMode(vendor, False, f"{sandbox}/{vendor}", "no credentials; EDU_SANDBOX_URL selects the sandbox",
                          needs, tuple(problems))
    return VendorMode(vendor, False, "", "no credentials and no EDU_SANDBOX_URL", needs, tuple(problems))


def stellic_mode() -> VendorMode:
    base, institution = env("STELLIC_BASE_URL"), env("STELLIC_INSTITUTION")
    if not base and institution:
        base = f"https://{institution}.stellic.com"
    problems: list[str] = []
    if env("STELLIC_TOKEN"):
        if not base:
            problems.append("STELLIC_TOKEN is set but not where your Stellic is: set STELLIC_INSTITUTION "
                            "(https://<institution>.stellic.com) or STELLIC_BASE_URL")
    else:
        problems += _orphaned(_set_vars("STELLIC_INSTITUTION", "STELLIC_BASE_URL"), ["STELLIC_TOKEN"])
    return _mode("stellic", _set_vars("STELLIC_TOKEN"), base or "",
                 "STELLIC_TOKEN and STELLIC_INSTITUTION (or STELLIC_BASE_URL)", problems)


XPORTER_SECRET_VARS = ("XPORTER_SCHOOL_SECRETS", "XPORTER_SECRETS_FILE", "XPORTER_MANAGEMENT_SECRET")


def xporter_mode() -> VendorMode:
    """Live when any Xporter secret is configured (a JSON mapping, a secrets file or the management secret).

    The secrets file itself is read only when a token is minted (``vendors/xporter/auth.py``); ``./edu
    status`` reads it too, to report a file that cannot be used."""
    secrets = _set_vars(*XPORTER_SECRET_VARS)
    problems = _json_object_problem("XPORTER_SCHOOL_SECRETS", '{"3281101": "<school secret>"}')
    if secrets and not env("XPORTER_RELYING_PARTY"):
        problems.append("XPORTER_RELYING_PARTY is not set: set it to the relying party your application was "
                        "registered with")
    if not secrets:
        problems += _orphaned(_set_vars("XPORTER_RELYING_PARTY"),
                              ["XPORTER_SCHOOL_SECRETS", "XPORTER_MANAGEMENT_SECRET (or XPORTER_SECRETS_FILE)"])
    return _mode("xporter", secrets, env("XPORTER_BASE_URL", "https://xporter.groupcall.com") or "",
                 "XPORTER_RELYING_PARTY and the secrets (XPORTER_SCHOOL_SECRETS and XPORTER_MANAGEMENT_SECRET, "
                 "or XPORTER_SECRETS_FILE)", problems)


SKILLSPASS_SECRET_VARS = ("SKILLSPASS_KEY", "SKILLSPASS_TOKEN", "SKILLSPASS_SECRET")
SKILLSPASS_ENVIRONMENTS = {
    "production": "https://kube-prod.bluedrop360.com",
    "test": "https://shared-tp-api-test.30a.dev",  # the vendor's own test tenant, reset daily
}


def skillspass_mode() -> VendorMode:
    """Live when SKILLSPASS_KEY/TOKEN/SECRET are set; SKILLSPASS_ENVIRONMENT picks production or the
    vendor's test tenant (SKILLSPASS_BASE_URL overrides both)."""
    credentials = _set_vars(*SKILLSPASS_SECRET_VARS)
    environment = (env("SKILLSPASS_ENVIRONMENT", "production") or "production").lower()
    problems: list[str] = []
    if environment not in SKILLSPASS_ENVIRONMENTS:
        problems.append(f"SKILLSPASS_ENVIRONMENT={environment!r} is not one of {', '.join(sorted(SKILLSPASS_ENVIRONMENTS))}: "
                        "fix it (or set SKILLSPASS_BASE_URL to a full URL and unset it)")
    missing = [v for v in SKILLSPASS_SECRET_VARS if v not in credentials]
    if credentials and missing:
        problems.append(f"{_is(credentials)} set but {_is(missing)} not: SkillsPass needs all three")
    if not credentials:
        problems += _orphaned(_set_vars("SKILLSPASS_ENVIRONMENT", "SKILLSPASS_BASE_URL"), list(SKILLSPASS_SECRET_VARS))
    base = env("SKILLSPASS_BASE_URL") or SKILLSPASS_ENVIRONMENTS.get(environment, "")
    mode = _mode("skillspass", credentials, base, "SKILLSPASS_KEY, SKILLSPASS_TOKEN and SKILLSPASS_SECRET", problems)
    return replace(mode, why=f"{mode.why} ({environment})") if mode.live else mode


def webadmit_mode() -> VendorMode:
    """Live when WEBADMIT_API_KEY is set; the host is ``https://<WEBADMIT_DOMAIN or api>.webadmit.org``."""
    credentials = _set_vars("WEBADMIT_API_KEY")
    problems = [] if credentials else _orphaned(_set_vars("WEBADMIT_DOMAIN", "WEBADMIT_BASE_URL"), ["WEBADMIT_API_KEY"])
    base = env("WEBADMIT_BASE_URL") or f"https://{env('WEBADMIT_DOMAIN', 'api')}.webadmit.org"
    return _mode("webadmit", credentials, base, "WEBADMIT_API_KEY (and WEBADMIT_DOMAIN if yours is not api)", problems)


def vendor_modes() -> list[VendorMode]:
    """Every vendor with whether it is live, sandboxed or not configured, and why (``./edu status``)."""
    return [stellic_mode(), xporter_mode(), skillspass_mode(), webadmit_mode()]
