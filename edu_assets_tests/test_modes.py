"""A deployment never falls back to the sandbox: without credentials and without ``EDU_SANDBOX_URL`` a vendor
is *not configured*. Its sensors and schedules skip with one reason, its assets fail before any request
saying what to set, and ``./edu status`` exits non-zero on a half-configured vendor, saying what to fix.

"No request" is checked two ways: the session sandbox (running, but not selected) logs none, and the
platform's own per-request trace (logger ``edu_assets.http``, one line per response) stays empty.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import dagster as dg
import pytest

from edu_assets.cli import main
from edu_assets.sandbox import SandboxServer
from edu_assets.vendors import vendor_modes
from edu_assets_tests.helpers import clean_sandbox, failure_message, materialize, sensor_tick

VENDORS = ("stellic", "xporter", "skillspass", "webadmit")
# one variable each vendor's "what to set" must name
NEEDS = {"stellic": "STELLIC_TOKEN", "xporter": "XPORTER_RELYING_PARTY", "skillspass": "SKILLSPASS_KEY",
         "webadmit": "WEBADMIT_API_KEY"}
SECRET = "s3cr3t-value-never-shown"
LIVE = {
    "STELLIC_TOKEN": SECRET, "STELLIC_INSTITUTION": "example",
    "XPORTER_SCHOOL_SECRETS": json.dumps({"3281101": SECRET}), "XPORTER_MANAGEMENT_SECRET": SECRET,
    "XPORTER_RELYING_PARTY": "edu-assets.example",
    "SKILLSPASS_KEY": SECRET, "SKILLSPASS_TOKEN": SECRET, "SKILLSPASS_SECRET": SECRET,
    "WEBADMIT_API_KEY": SECRET,
}


def status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> tuple[int, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["status"])
    out, err = capsys.readouterr()
    return code, out + err


def vendor_line(text: str, vendor: str) -> str:
    """The vendor's status line and its indented fixes."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{vendor}: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return "\n".join(lines[start:end])


def test_status_of_a_fresh_deployment_is_not_configured_and_not_an_error(unconfigured, monkeypatch, capsys):
    code, text = status(monkeypatch, capsys, {})
    assert code == 0, text
    assert "EDU_SANDBOX_URL is not set" in text
    for vendor in VENDORS:
        line = vendor_line(text, vendor)
        assert "not configured: its sensors and schedules skip" in line, line
        assert NEEDS[vendor] in line


def test_status_with_the_sandbox_selected_or_every_vendor_live(unconfigured, monkeypatch, capsys):
    code, text = status(monkeypatch, capsys, {"EDU_SANDBOX_URL": "http://127.0.0.1:8765"})
    assert code == 0, text
    assert all(vendor_line(text, v).startswith(f"{v}: sandbox") for v in VENDORS), text
    code, text = status(monkeypatch, capsys, LIVE)
    assert code == 0, text
    assert all(vendor_line(text, v).startswith(f"{v}: live") for v in VENDORS), text
    assert "https://example.stellic.com" in vendor_line(text, "stellic")
    assert SECRET not in text


@pytest.mark.parametrize(("vendor", "env", "fix"), [
    ("stellic", {"STELLIC_TOKEN": SECRET}, "set STELLIC_INSTITUTION"),
    ("stellic", {"STELLIC_INSTITUTION": "example"}, "STELLIC_TOKEN is not"),
    ("xporter", {"XPORTER_SCHOOL_SECRETS": f"not json {SECRET}", "XPORTER_RELYING_PARTY": "rp"},
     "XPORTER_SCHOOL_SECRETS is not valid JSON"),
    ("xporter", {"XPORTER_SCHOOL_SECRETS": json.dumps([SECRET]), "XPORTER_RELYING_PARTY": "rp"},
     "XPORTER_SCHOOL_SECRETS is JSON but not an object"),
    ("xporter", {"XPORTER_SCHOOL_SECRETS": json.dumps({"3281101": SECRET}), "XPORTER_MANAGEMENT_SECRET": SECRET},
     "XPORTER_RELYING_PARTY is not set"),
    ("skillspass", {"SKILLSPASS_KEY": SECRET, "SKILLSPASS_TOKEN": SECRET}, "SKILLSPASS_SECRET is not"),
    ("skillspass", {"SKILLSPASS_KEY": SECRET, "SKILLSPASS_TOKEN": SECRET, "SKILLSPASS_SECRET": SECRET,
                    "SKILLSPASS_ENVIRONMENT": "staging"}, "SKILLSPASS_ENVIRONMENT='staging' is not one of production, test"),
    ("webadmit", {"WEBADMIT_DOMAIN": "example"}, "WEBADMIT_API_KEY is not"),
], ids=["stellic-token-without-institution", "stellic-institution-without-token", "xporter-secrets-not-json",
        "xporter-secrets-not-an-object", "xporter-without-relying-party", "skillspass-some-credentials",
        "skillspass-unknown-environment", "webadmit-domain-without-key"])
def test_status_fails_on_a_half_configured_vendor_and_says_what_to_fix(unconfigured, monkeypatch, capsys, vendor, env, fix):
    code, text = status(monkeypatch, capsys, env)
    assert code == 1, text
    line = vendor_line(text, vendor)
    assert line.startswith(f"{vendor}: HALF-CONFIGURED") and fix in line, text
    assert f"half-configured: {vendor}." in text  # the closing line (stderr) names it
    for other in set(VENDORS) - {vendor}:
        assert "not configured" in vendor_line(text, other)  # the others are untouched
    assert SECRET not in text


def test_status_reads_the_xporter_secrets_file(unconfigured, monkeypatch, capsys, tmp_path: Path):
    path = tmp_path / "xporter.json"
    path.write_text(json.dumps({"management": SECRET, "schools": {"3281101": SECRET}}))
    path.chmod(0o644)
    env = {"XPORTER_SECRETS_FILE": str(path), "XPORTER_RELYING_PARTY": "rp"}
    code, text = status(monkeypatch, capsys, env)
    assert code == 1 and "other users can read it" in vendor_line(text, "xporter") and "chmod 600" in text, text
    path.chmod(0o600)
    code, text = status(monkeypatch, capsys, env)
    assert code == 0 and vendor_line(text, "xporter").startswith("xporter: live"), text
    assert SECRET not in text


@pytest.fixture
def idle_sandbox(sandbox_server: SandboxServer, unconfigured: None, caplog: pytest.LogCaptureFixture):
    """The session sandbox, running but not selected; yields a function that asserts nothing was requested."""
    caplog.set_level(logging.DEBUG, logger="edu_assets.http")
    with clean_sandbox(sandbox_server):

        def assert_no_request() -> None:
            assert sandbox_server.requests == []
            assert [r.getMessage() for r in caplog.records if r.name == "edu_assets.http"] == []

        yield assert_no_request


def _by_vendor(names: list[str]) -> dict[str, list[str]]:
    return {v: [n for n in names if n.startswith(f"{v}_")] for v in VENDORS}


def test_sensors_and_schedules_of_unconfigured_vendors_skip_with_one_reason(idle_sandbox, lake_env, instance):
    from edu_assets.definitions import build_definitions

    assert all(m.state == "not configured" for m in vendor_modes())
    defs = build_definitions()  # loads with nothing configured, as a code location must before secrets exist
    repo = defs.get_repository_def()
    sensors = _by_vendor([s.name for s in repo.sensor_defs])
    schedules = _by_vendor([s.name for s in repo.schedule_defs])
    assert all(sensors.values()) and all(schedules.values()), (sensors, schedules)
    moment = dt.datetime.now(dt.UTC)
    for vendor in VENDORS:
        results = [sensor_tick(defs, instance, name) for name in sensors[vendor]]
        results += [defs.resolve_schedule_def(name)(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=moment, resources=defs.resources)) for name in schedules[vendor]]
        for name, result in zip(sensors[vendor] + schedules[vendor], results, strict=True):
            assert isinstance(result, dg.SkipReason), f"{name} returned {result!r}"
            reason = result.skip_message or ""
            assert f"[{vendor}]" in reason and "not configured" in reason, reason
            assert NEEDS[vendor] in reason and "EDU_SANDBOX_URL" in reason, reason
    idle_sandbox()


def test_a_half_configured_vendors_sensor_fails_with_the_fix_before_any_request(idle_sandbox, lake_env, instance,
                                                                                monkeypatch):
    from edu_assets.core.errors import ConfigError
    from edu_assets.definitions import build_definitions

    monkeypatch.setenv("STELLIC_TOKEN", SECRET)
    defs = build_definitions()
    with pytest.raises(ConfigError, match="set STELLIC_INSTITUTION") as raised:
        sensor_tick(defs, instance, "stellic_export_completion")
    assert SECRET not in str(raised.value)
    idle_sandbox()


TODAY = dt.datetime.now(dt.UTC).date().isoformat()
YESTERDAY = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


@pytest.mark.parametrize(("vendor", "asset", "partition", "dynamic"), [
    ("stellic", "audit_data", TODAY, None),
    ("xporter", "xporter/attendance_codes", "3281101", "xporter_estab"),
    ("xporter", "xporter/schools", None, None),
    ("skillspass", "skillspass/elearning_enrollments", YESTERDAY, None),
    ("webadmit", "webadmit/export_files", "1001-5001", "webadmit_export"),
])
def test_an_unconfigured_vendors_asset_fails_before_any_request_saying_what_to_set(
        idle_sandbox, lake_env, instance, vendor, asset, partition, dynamic):
    from edu_assets.definitions import build_definitions

    if dynamic:
        instance.add_dynamic_partitions(dynamic, [partition])
    result = materialize(build_definitions(), instance, asset, partition)
    assert not result.success
    message = failure_message(result)
    assert "ConfigError" in message and f"[{vendor}]" in message and "not configured" in message, message
    assert NEEDS[vendor] in message and "EDU_SANDBOX_URL" in message, message
    idle_sandbox()
