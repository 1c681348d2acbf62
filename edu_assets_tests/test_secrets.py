"""Secrets never reach logs, event metadata, exceptions or run config — even on retry and error paths."""

from __future__ import annotations

import datetime as dt
import logging
import re

import dagster as dg

from edu_assets.core.redact import redact, redact_url, register_secret
from edu_assets_tests.helpers import failure_message, materialize

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
SECRET = "stellic-SECRET-7f3a9c21e8"
SIGNATURE = re.compile(r"Signature=[0-9a-fA-F]{8,}")


def _everything_visible(instance: dg.DagsterInstance) -> str:
    texts = []
    for run in instance.get_runs():
        texts.append(repr(run.run_config) + repr(run.tags))
        for entry in instance.all_logs(run.run_id):
            texts.append(entry.user_message or "")
            if entry.dagster_event is not None:
                texts.append(repr(entry.dagster_event.event_specific_data))
    return "\n".join(texts)


def test_token_and_signed_urls_never_leak(sandbox, lake_env, instance, monkeypatch, caplog, capfd):
    stellic = sandbox.app("stellic")
    stellic.tokens.add(SECRET)
    stellic.set_knobs(async_ready_after=0.2)
    monkeypatch.setenv("STELLIC_TOKEN", SECRET)
    monkeypatch.setenv("STELLIC_BASE_URL", sandbox.base_url("stellic"))
    from edu_assets.definitions import build_definitions

    defs = build_definitions()
    # exercise retry logs, URL refresh logs, download-retry logs and a failure message
    sandbox.faults.add("rate_limit", match="get_export_url", times=1, retry_after=1)
    sandbox.faults.add("expire_url", vendor="stellic", times=1)
    sandbox.faults.add("truncate_body", match="/stellic-files/", times=1)
    caplog.set_level(logging.DEBUG)
    assert materialize(defs, instance, "audit_requirements", TODAY).success
    sandbox.faults.add("job_fails", vendor="stellic", times=1)
    failed = materialize(defs, instance, "permissions", TODAY)
    assert "sandbox-injected" in failure_message(failed)
    sandbox.faults.add("server_error", match="export_data", times=99)
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "2")
    materialize(defs, instance, "audit_data", TODAY)

    out, err = capfd.readouterr()
    visible = "\n".join([_everything_visible(instance), caplog.text, out, err])
    assert "Retry-After" in visible or "retry" in visible  # the noisy paths really ran
    assert SECRET not in visible
    assert not SIGNATURE.search(visible)
    # the per-request trace goes to the Python logger (covered by the checks above), not to the run's event log
    wire = [r.getMessage() for r in caplog.records if r.name == "edu_assets.http"]
    assert any("get_export_url" in w and " -> 200 in " in w for w in wire)
    assert " -> 200 in " not in _everything_visible(instance)
    # and the resource config shown in the UI holds the env var's name, not its value
    assert SECRET not in repr(defs.resources["stellic"])


def test_redaction_rules():
    register_secret("tok-abcdef-123")
    assert "tok-abcdef-123" not in redact("failed with tok-abcdef-123 in it")
    assert redact("Authorization: Bearer abc.def.ghi") == "Authorization: Bearer ***"
    url = "https://files.example/x.csv?Expires=1700000000&Signature=deadbeef99&X-Amz-Credential=AKIA/abc"
    red = redact_url(url)
    assert "deadbeef99" not in red and "AKIA" not in red and "Expires=1700000000" in red
    assert "deadbeef99" not in redact(f"GET {url} -> 403")
