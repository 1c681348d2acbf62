"""Settings are typed, validated at load, and reported together (issue #15).

Loading is the subject, so the load tests run a real interpreter on ``import edu_assets.definitions`` with
the environment under test, as ``dagster dev`` and the daemon would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from edu_assets.cli import main
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
BAD = {
    "SKILLSPASS_DAYS_PER_JOB": ("two", "a whole number"),
    "EDU_HTTP_MAX_ATTEMPTS": ("many", "a whole number"),
    "EDU_EXPORT_INLINE_WAIT_SECONDS": ("soon", "a number"),
}


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the current environment plus ``env``."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def _error_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if "ConfigError" in line)


def test_bad_values_fail_the_load_with_one_error_naming_each_variable_and_its_type():
    proc = _python("import edu_assets.definitions", **{name: value for name, (value, _) in BAD.items()})
    assert proc.returncode != 0
    line = _error_line(proc.stderr)  # one error for all of them, not one per round of fixing
    for name, (value, expects) in BAD.items():
        assert f"{name} must be {expects}" in line and repr(value) in line, (name, line)
    assert "invalid literal" not in proc.stderr and "could not convert" not in proc.stderr


def test_a_bad_date_fails_the_load_but_not_the_import_of_any_vendor_module():
    poisoned = {"SKILLSPASS_START_DATE": "yesterday", "EDU_SNAPSHOT_START_DATE": "soon",
                "EDU_WINDOW_START_DATE": "2025-13-01", "XPORTER_START_MONTH": "last year"}
    code = (
        "import importlib, pkgutil, edu_assets.vendors as v\n"
        "names = [m.name for m in pkgutil.walk_packages(v.__path__, 'edu_assets.vendors.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print('imported', len(names))\n"
        "from edu_assets.core.errors import ConfigError\n"
        "from edu_assets.definitions import build_definitions\n"
    )
    # the module-level `defs = build_definitions()` is the build: it must be what fails
    proc = _python(code, **poisoned)
    assert "imported" in proc.stdout, proc.stderr[-2000:]
    assert proc.returncode != 0
    line = _error_line(proc.stderr)
    for name in poisoned:
        assert f"{name} must be a date as YYYY-MM-DD" in line, line


def test_secrets_are_never_settings_so_their_values_are_never_echoed(monkeypatch):
    from edu_assets.vendors import all_settings

    names = {s.name for s in all_settings()}
    for secret in ("STELLIC_TOKEN", "SKILLSPASS_KEY", "SKILLSPASS_TOKEN", "SKILLSPASS_SECRET", "WEBADMIT_API_KEY",
                   "XPORTER_SCHOOL_SECRETS", "XPORTER_MANAGEMENT_SECRET"):
        assert secret not in names
    assert len(names) == len(all_settings()), "a variable is declared twice"


def test_valid_values_reach_the_resources_and_the_assets_defaults(monkeypatch):
    from edu_assets.definitions import build_definitions
    from edu_assets.vendors.skillspass.assets import SkillsPassExportConfig, _days_per_job, _format
    from edu_assets.vendors.skillspass.catalog import load_catalog

    monkeypatch.setenv("SKILLSPASS_DAYS_PER_JOB", "2")
    monkeypatch.setenv("SKILLSPASS_FORMAT", "jsonl")
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "3")
    resource = build_definitions().resources["skillspass"]
    assert (resource.days_per_job, resource.default_format) == (2, "JSONL")
    where, config, spec = Where("skillspass"), SkillsPassExportConfig(), load_catalog()[0]
    assert _days_per_job(config, where, resource.days_per_job) == 2  # run config unset: the resource's
    assert _days_per_job(SkillsPassExportConfig(days_per_job=5), where, resource.days_per_job) == 5
    assert _format(spec, config, where, resource.default_format) == "JSONL"
    assert RetryPolicy.from_env().max_attempts == 3


def test_a_bad_value_read_at_run_time_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "many")
    with pytest.raises(ConfigError, match="EDU_HTTP_MAX_ATTEMPTS must be a whole number"):
        RetryPolicy.from_env()


def test_status_exits_non_zero_naming_each_bad_variable(monkeypatch, capsys):
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "many")
    monkeypatch.setenv("SKILLSPASS_DAYS_PER_JOB", "two")
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert "EDU_HTTP_MAX_ATTEMPTS must be a whole number (got 'many')" in out.replace(" of at least 1", "")
    assert "SKILLSPASS_DAYS_PER_JOB must be a whole number" in out


def test_start_dates_come_from_the_settings_when_definitions_are_built(monkeypatch):
    from edu_assets.vendors.skillspass.partitions import daily

    monkeypatch.setenv("SKILLSPASS_START_DATE", "2025-06-01")
    first = daily().get_first_partition_key()
    assert first == "2025-06-01"
    assert isinstance(daily(), dg.DailyPartitionsDefinition) and daily() is daily()  # one object per settings


def test_the_definitions_load_with_one_configuration_that_the_environment_cannot_change_after(monkeypatch):
    """Configuration enters when the definitions load: a run or a sensor tick of that code location reads
    the values it loaded with, not whatever the process environment says later."""
    from edu_assets.core.settings import HTTP_MAX_ATTEMPTS
    from edu_assets.definitions import build_definitions

    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "3")
    build_definitions()
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "9")
    assert HTTP_MAX_ATTEMPTS.get() == 3 and RetryPolicy.from_env().max_attempts == 3
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "many")  # nor can a bad value reach a run of these definitions
    assert HTTP_MAX_ATTEMPTS.get() == 3
    build_definitions_fails = pytest.raises(ConfigError, match="EDU_HTTP_MAX_ATTEMPTS must be a whole number")
    with build_definitions_fails:
        build_definitions()  # the next load reads the environment again, and refuses it
