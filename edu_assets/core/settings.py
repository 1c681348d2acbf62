"""Environment-driven settings: the one place that says where data goes and how each vendor is reached.

A vendor is *live* when its credentials are in the environment. Without them it uses the sandbox only
when ``EDU_SANDBOX_URL`` says where one runs: ``./edu demo`` and ``./edu dev`` start the embedded
emulators and set it, and so do the tests and benchmarks. A deployment sets neither, so a vendor it has
no credentials for is *not configured* (its sensors and schedules skip) rather than silently pointed at
a sandbox that is not there.

Every non-secret variable is declared once, as a :class:`Setting` (name, type, default, meaning): the
platform-wide ``EDU_*`` ones in :data:`CORE_SETTINGS` below, each vendor's in its ``resources.py``
(``SETTINGS``). :func:`check_settings` parses a table and raises one :class:`ConfigError` naming every bad
value and the type it expects; the code location runs it before building anything (``definitions.py``),
and ``./edu status`` reports the same problems. Consumers call ``Setting.get()`` and never parse the
environment themselves. Secrets (tokens, keys) are not settings: resources read them through
``dg.EnvVar`` (or, for Xporter, when a token is minted), so their values are never parsed nor echoed here.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from edu_assets.core.errors import ConfigError, Where

SANDBOX_PORT_DEFAULT = 8765  # where `./edu sandbox` and `./edu dev` serve the emulators unless told otherwise
T = TypeVar("T")


def env(name: str, default: str | None = None) -> str | None:
    """The raw text of a variable, an empty one counting as unset. For secrets' presence and for modules
    that have not moved to a :class:`Setting` yet; settings go through ``Setting.get()``."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


# ---------------------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class Kind(Generic[T]):
    """How a variable's text becomes a value, and what the value must be, said as an error would say it."""

    expects: str  # "a whole number of at least 1": read after "<NAME> must be "
    parse: Callable[[str], T]  # raises ValueError when the text is not such a value


def _at_least(value: T, minimum: Any) -> T:
    if minimum is not None and value < minimum:
        raise ValueError(value)
    return value


def whole(minimum: int | None = None) -> Kind[int]:
    """An integer written as one (``"2"``; ``"2.0"`` and ``"two"`` are refused), optionally bounded below."""
    bound = "" if minimum is None else f" of at least {minimum}"
    return Kind(f"a whole number{bound}", lambda text: _at_least(int(text.strip()), minimum))


def _finite(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):  # float() takes "nan" and "inf": neither is a usable duration or rate
        raise ValueError(text)
    return value


def number(minimum: float | None = None) -> Kind[float]:
    """A finite decimal number (``"0.5"``, ``"600"``), optionally bounded below."""
    bound = "" if minimum is None else f" of at least {minimum:g}"
    return Kind(f"a number{bound}", lambda text: _at_least(_finite(text), minimum))


def one_of(*choices: str) -> Kind[str]:
    """One of a few words, in any case; the value is the choice as written here."""
    by_key = {c.lower(): c for c in choices}
    return Kind(f"one of {', '.join(choices)}", lambda text: by_key[text.strip().lower()])


def _flag(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _iso_date(text: str) -> str:
    return dt.date.fromisoformat(text.strip()).isoformat()


def _url(text: str) -> str:
    if not text.strip().lower().startswith(("http://", "https://")):
        raise ValueError(text)
    return text.strip().rstrip("/")


TEXT: Kind[str] = Kind("text", str)
FLAG: Kind[bool] = Kind("true or false (1/0, yes/no, on/off)", _flag)
DATE: Kind[str] = Kind("a date as YYYY-MM-DD", _iso_date)
URL: Kind[str] = Kind("an http:// or https:// URL", _url)


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting(Generic[T]):
    """One non-secret environment variable: its name, type, default (when unset or empty) and meaning."""

    name: str
    kind: Kind[Any]
    default: T
    meaning: str  # one line, as the README's table says it

    def problem(self) -> str | None:
        """What is wrong with the variable's current value, naming it and the type it expects; None if fine."""
        return _parsed(self, env(self.name))[1]

    def get(self) -> T:
        """The parsed value (the default when unset); a ConfigError naming the variable when it is invalid.

        Once the definitions have loaded (:func:`load_settings`), the value they loaded with: a run, a sensor
        tick and the definitions see one configuration, whatever the environment does afterwards."""
        raw = _loaded[self.name] if _loaded is not None and self.name in _loaded else env(self.name)
        value, problem = _parsed(self, raw)
        if problem is not None:
            raise settings_error([problem])
        return value


@functools.lru_cache(maxsize=1024)
def _parsed(setting: Setting[Any], raw: str | None) -> tuple[Any, str | None]:
    """(value, None) or (None, problem): parsed once per distinct text. Keyed on the text rather than read once
    per process, because ``./edu`` commands and tests set variables after import (``EDU_SANDBOX_URL``)."""
    if raw is None:
        return setting.default, None
    try:
        return setting.kind.parse(raw), None
    except (ValueError, KeyError, TypeError):
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        return None, f"{setting.name} must be {setting.kind.expects} (got {shown!r})"


def settings_error(problems: list[str]) -> ConfigError:
    """One error for every bad value, so a deployment fixes them all in one round."""
    what = f"{len(problems)} invalid setting{'s' if len(problems) > 1 else ''}: {'; '.join(problems)}"
    return ConfigError(Where("settings"), what,
                       hint="fix or unset those variables (README: Sandbox, live vendors and configuration), then reload "
                       "the code location")


def settings_problems(table: Iterable[Setting[Any]]) -> list[str]:
    """Every problem of the table's current values, in table order (``./edu status`` prints them)."""
    return [p for p in (s.problem() for s in table) if p is not None]


def check_settings(table: Iterable[Setting[Any]]) -> None:
    """Raise one ConfigError naming every invalid variable of the table; return when all are valid."""
    problems = settings_problems(table)
    if problems:
        raise settings_error(problems)


_loaded: dict[str, str | None] | None = None  # the settings' text as the definitions last loaded it


def load_settings(table: Iterable[Setting[Any]]) -> None:
    """Validate every setting of the table and keep their values: the one configuration the code location
    loaded with. Configuration enters at this one point; ``Setting.get`` reads this snapshot from then on."""
    global _loaded
    table = tuple(table)
    check_settings(table)
    _loaded = {s.name: env(s.name) for s in table}


def forget_loaded_settings() -> None:
    """Read settings from the environment again until the next load (tests change it between loads)."""
    global _loaded
    _loaded = None


SANDBOX_URL: Setting[str | None] = Setting("EDU_SANDBOX_URL", URL, None, "where the sandbox emulators listen; selects the sandbox "
                      "for every vendor without credentials (`./edu demo`/`dev` set it)")
DATA_DIR = Setting("EDU_DATA_DIR", TEXT, "data", "the directory under which the lake, catalog and work files go")
LAKE_ROOT: Setting[str | None] = Setting("EDU_LAKE_ROOT", TEXT, None, "where Parquet datasets go: a directory or s3://bucket/prefix "
                    "(default <EDU_DATA_DIR>/lake)")
DUCKDB_PATH: Setting[str | None] = Setting("EDU_DUCKDB_PATH", TEXT, None, "the DuckDB catalog file (default <EDU_DATA_DIR>/edu.duckdb)")
WORK_DIR: Setting[str | None] = Setting("EDU_WORK_DIR", TEXT, None, "raw downloads and work files (default <EDU_DATA_DIR>/work)")
WORK_RETENTION_HOURS = Setting("EDU_WORK_RETENTION_HOURS", number(0), 24.0,
                               "how long a failed landing's raw file and dead runs' work files are kept")
DUCKDB_MEMORY_LIMIT = Setting("EDU_DUCKDB_MEMORY_LIMIT", TEXT, "200MB", "DuckDB's memory limit per connection")
DUCKDB_THREADS: Setting[int | None] = Setting("EDU_DUCKDB_THREADS", whole(1), None, "DuckDB's threads per connection (default: DuckDB's)")
EXPORT_INLINE_WAIT_SECONDS = Setting("EDU_EXPORT_INLINE_WAIT_SECONDS", number(0), 600.0,
                                     "how long a run waits for a vendor export before the completion sensor takes over")
EXPORT_DEADLINE_SECONDS = Setting("EDU_EXPORT_DEADLINE_SECONDS", number(0), 6 * 3600.0,
                                  "when a vendor export is given up")
EXPORT_POLL_MAX_SECONDS = Setting("EDU_EXPORT_POLL_MAX_SECONDS", number(0), 30.0,
                                  "the longest pause between two polls of an export")
SENSOR_TICK_BUDGET_SECONDS = Setting("EDU_SENSOR_TICK_BUDGET_SECONDS", number(0), 40.0,
                                     "how long a completion sensor's tick may poll (Dagster ends a tick after ~60 s)")
SENSOR_MAX_POLLS_PER_TICK = Setting("EDU_SENSOR_MAX_POLLS_PER_TICK", whole(1), 100,
                                    "the most exports a completion sensor polls in one tick")
HTTP_MAX_ATTEMPTS = Setting("EDU_HTTP_MAX_ATTEMPTS", whole(1), 6, "attempts of a vendor request (retries + 1)")
HTTP_BACKOFF_BASE = Setting("EDU_HTTP_BACKOFF_BASE", number(0), 0.5, "the first retry's backoff, in seconds")
HTTP_BACKOFF_CAP = Setting("EDU_HTTP_BACKOFF_CAP", number(0), 30.0, "the longest backoff between retries, in seconds")
LAKE_RETENTION_HOURS = Setting("EDU_LAKE_RETENTION_HOURS", number(0), 1.0,
                               "how long an object-store lake keeps replaced files for readers still on them")
S3_PART_MB = Setting("EDU_S3_PART_MB", number(0), 16.0,
                    "the part size of multipart uploads to an object store, in MB (S3's minimum, 5, below that)")
S3_UPLOAD_CONCURRENCY = Setting("EDU_S3_UPLOAD_CONCURRENCY", whole(1), 4, "parts uploaded at once")

CORE_SETTINGS: tuple[Setting[Any], ...] = (
    SANDBOX_URL, DATA_DIR, LAKE_ROOT, DUCKDB_PATH, WORK_DIR, WORK_RETENTION_HOURS, DUCKDB_MEMORY_LIMIT,
    DUCKDB_THREADS, EXPORT_INLINE_WAIT_SECONDS, EXPORT_DEADLINE_SECONDS, EXPORT_POLL_MAX_SECONDS,
    SENSOR_TICK_BUDGET_SECONDS, SENSOR_MAX_POLLS_PER_TICK, HTTP_MAX_ATTEMPTS, HTTP_BACKOFF_BASE, HTTP_BACKOFF_CAP,
    LAKE_RETENTION_HOURS, S3_PART_MB, S3_UPLOAD_CONCURRENCY,
)
"""The platform-wide settings; each vendor declares its own in its ``resources.py`` (``SETTINGS``)."""


def sandbox_url() -> str | None:
    """Where the sandbox emulators listen when one is selected (``EDU_SANDBOX_URL``); None otherwise."""
    return SANDBOX_URL.get()


@dataclass(frozen=True)
class LakeSettings:
    """Where landed data lives: Parquet datasets, the DuckDB catalog, raw downloads kept on failure."""

    root: Path  # or an ObjectPath (core/lakepath.py) for EDU_LAKE_ROOT=s3://bucket/prefix
    catalog_path: Path
    work_dir: Path
    # how long work files are kept: a failed landing's raw file, files of runs that died (see core/workdir.py)
    work_retention_hours: float = field(default_factory=WORK_RETENTION_HOURS.get)

    @classmethod
    def from_env(cls) -> LakeSettings:
        from edu_assets.core.lakepath import lake_root

        data = Path(DATA_DIR.get()).absolute()
        return cls(
            root=lake_root(LAKE_ROOT.get() or str(data / "lake")),  # refuses an unsupported scheme
            catalog_path=Path(DUCKDB_PATH.get() or str(data / "edu.duckdb")).absolute(),
            work_dir=Path(WORK_DIR.get() or str(data / "work")).absolute(),
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
            inline_wait_seconds=EXPORT_INLINE_WAIT_SECONDS.get(),
            deadline_seconds=EXPORT_DEADLINE_SECONDS.get(),
            poll_max_interval_seconds=EXPORT_POLL_MAX_SECONDS.get(),
            sensor_tick_budget_seconds=SENSOR_TICK_BUDGET_SECONDS.get(),
            sensor_max_polls_per_tick=SENSOR_MAX_POLLS_PER_TICK.get(),
        )


# ---------------------------------------------------------------------------------------------- vendor modes
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


def phrase(names: list[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``: variable names as a sentence says them."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def set_vars(*names: str) -> list[str]:
    """Which of ``names`` are set (non-empty); only presence is read, so secrets can be named here."""
    return [n for n in names if env(n)]


def is_phrase(names: list[str]) -> str:
    """``A is`` or ``A and B are``."""
    return f"{phrase(names)} {'is' if len(names) == 1 else 'are'}"


def orphaned(names: list[str], credentials: list[str]) -> list[str]:
    """A problem when a vendor's other variables are set without its credentials (a forgotten secret)."""
    if not names:
        return []
    return [f"{is_phrase(names)} set but {is_phrase(credentials)} not: set {phrase(credentials)}, or unset {phrase(names)}"]


def json_object_problem(name: str, example: str) -> list[str]:
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


def vendor_mode(vendor: str, credentials: list[str], live_base: str, needs: str, problems: list[str]) -> VendorMode:
    """Live when any credential is set; else the sandbox when EDU_SANDBOX_URL is set; else not configured."""
    if credentials:
        return VendorMode(vendor, True, live_base.rstrip("/"), f"{phrase(credentials)} set", needs, tuple(problems))
    sandbox = sandbox_url()
    if sandbox:
        return VendorMode(vendor, False, f"{sandbox}/{vendor}", "no credentials; EDU_SANDBOX_URL selects the sandbox",
                          needs, tuple(problems))
    return VendorMode(vendor, False, "", "no credentials and no EDU_SANDBOX_URL", needs, tuple(problems))


