"""Shared fixtures: a real sandbox over HTTP, a real Dagster instance, a lake in a temp dir.

Nothing is mocked: assets talk HTTP to the emulators, write Parquet, and register DuckDB views; sensors
are evaluated with ``build_sensor_context`` against an on-disk instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from edu_assets.core.ratebudget import HeaderBudget
from edu_assets.core.settings import forget_loaded_settings
from edu_assets.sandbox import SandboxServer, start_sandbox
from edu_assets.vendors.xporter.resources import reset_caches as reset_xporter_caches
from edu_assets_tests.helpers import clean_sandbox


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    server = start_sandbox(port=0)
    try:
        yield server
    finally:
        server.stop()


VENDOR_VARS = (
    "STELLIC_TOKEN", "STELLIC_BASE_URL", "STELLIC_INSTITUTION", "STELLIC_EXPORT_PARAMS",
    "XPORTER_SCHOOL_SECRETS", "XPORTER_SECRETS_FILE", "XPORTER_MANAGEMENT_SECRET", "XPORTER_RELYING_PARTY",
    "XPORTER_BASE_URL", "XPORTER_STS_URL", "XPORTER_TOKEN_REFRESH_MARGIN_SECONDS",
    "SKILLSPASS_KEY", "SKILLSPASS_TOKEN", "SKILLSPASS_SECRET", "SKILLSPASS_BASE_URL", "SKILLSPASS_ENVIRONMENT",
    "SKILLSPASS_LEGACY_TYPES", "SKILLSPASS_FORMAT", "SKILLSPASS_DAYS_PER_JOB",
    "WEBADMIT_API_KEY", "WEBADMIT_BASE_URL", "WEBADMIT_DOMAIN", "WEBADMIT_RATE_WINDOW_SECONDS",
    "WEBADMIT_RATE_RESERVE_FRACTION", "WEBADMIT_RATE_PER_SECOND", "SKILLSPASS_RATE_PER_SECOND",
)


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment like a fresh deployment's: no vendor variable, and no sandbox selected."""
    for var in (*VENDOR_VARS, "EDU_SANDBOX_URL"):
        monkeypatch.delenv(var, raising=False)
    reset_xporter_caches()
    HeaderBudget.forget_all()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer, unconfigured: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    """The session's sandbox, selected by EDU_SANDBOX_URL and reset (faults, knobs, request log, jobs) for each test."""
    monkeypatch.setenv("EDU_SANDBOX_URL", sandbox_server.url)
    with clean_sandbox(sandbox_server):
        yield sandbox_server


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("EDU_DATA_DIR", str(data))
    for var in ("EDU_LAKE_ROOT", "EDU_DUCKDB_PATH", "EDU_WORK_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EDU_EXPORT_INLINE_WAIT_SECONDS", "30")
    return data


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def defs(sandbox: SandboxServer, lake_env: Path) -> dg.Definitions:
    """Definitions built after the environment points at the sandbox and the temp lake."""
    from edu_assets.definitions import build_definitions

    return build_definitions()



@pytest.fixture(autouse=True)
def _settings_from_this_tests_environment() -> Iterator[None]:
    """Each test starts reading settings from its own environment: a previous test's definitions load kept
    that test's values (core/settings.load_settings), which must not leak into the next test."""
    forget_loaded_settings()
    yield
    forget_loaded_settings()


@pytest.fixture(autouse=True)
def _no_leaked_instance_context() -> Iterator[None]:
    """Each test starts with no current Dagster instance state storage.

    Entering a ``DagsterInstance`` sets a context variable that later definitions loads read; an instance
    that a test disposed without leaving its context leaves it pointing at a dead weakref, and the next
    test's first ``Definitions.get_repository_def()`` fails with "undefined DagsterInstance weakref"."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
