"""The sandbox's credentials have one home (edu_assets/sandbox/credentials.py), and both sides use it.

The emulators accept these values and the product's resources send them in sandbox mode: spelled out
twice, a change to one side fails only at run time. So: no copy of a credential anywhere else in the code,
tests or benches; each vendor's resource, built from the environment as the definitions build it, is
accepted by the sandbox (one cheap real request each); and the module stays light enough to import when
the definitions load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edu_assets.core.errors import Where
from edu_assets.sandbox import SandboxServer, credentials
from edu_assets.vendors.skillspass.resources import skillspass_resource_from_env
from edu_assets.vendors.stellic.resources import stellic_resource_from_env
from edu_assets.vendors.webadmit.resources import webadmit_resource_from_env
from edu_assets.vendors.xporter.resources import xporter_resource_from_env
from edu_assets_tests.helpers import requests_to

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("edu_assets", "edu_assets_tests", "bench")
HOME = Path(credentials.__file__).resolve()
ESTAB = "3281101"  # an authorised school of the sandbox's default register


def literals() -> dict[str, str]:
    """Each credential value the module holds (and the school secrets' common part), by name."""
    found = {name: value for name, value in vars(credentials).items() if name.isupper() and isinstance(value, str)}
    found["xporter_school_secret"] = credentials.xporter_school_secret("")
    return found


def test_the_scan_knows_every_vendor():
    names = set(literals())
    assert {"STELLIC_TOKEN", "XPORTER_RELYING_PARTY", "XPORTER_MANAGEMENT_SECRET", "xporter_school_secret",
            "SKILLSPASS_KEY", "SKILLSPASS_TOKEN", "SKILLSPASS_SECRET", "WEBADMIT_API_KEY"} <= names
    assert all(len(value) >= 12 for value in literals().values())  # long enough not to match by chance


def test_no_credential_is_spelled_outside_its_module():
    strays = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or path.resolve() == HOME or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # binary fixtures
            strays += [f"{path.relative_to(ROOT)}: {name}" for name, value in literals().items() if value in text]
    assert strays == [], "import these from edu_assets.sandbox.credentials instead"


def test_the_module_loads_no_emulator():
    """The product imports it when its definitions load: that must not pull in the emulators."""
    code = (
        "import sys\n"
        "import edu_assets.vendors.stellic.resources, edu_assets.vendors.skillspass.resources\n"
        "import edu_assets.vendors.webadmit.resources, edu_assets.vendors.xporter.auth\n"
        "print(sorted(m for m in sys.modules if m.startswith('edu_assets.sandbox')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(["edu_assets.sandbox", "edu_assets.sandbox.credentials"])


# -- what the product sends, the sandbox accepts ------------------------------------------------------


def refused(server: SandboxServer, vendor: str) -> list[dict]:
    return [r for r in requests_to(server, f"/{vendor}") if r["status"] in (401, 403)]


def test_stellic_resource_is_accepted(sandbox: SandboxServer, tmp_path: Path):
    sandbox.app("stellic").set_knobs(rows=3)
    client = stellic_resource_from_env().client()
    try:
        got = client.start("exports/export_data/audit_data", [("output_format", "csv"), ("delivery_channel", "http_file")],
                           tmp_path / "audit_data.csv", Where("stellic", "credentials"),
                           asset_key="stellic/audit_data", partition_key=None)
    finally:
        client.http.close()
    assert got.path.read_text(encoding="utf-8").startswith("Audit ID,")
    assert requests_to(sandbox, "/stellic/exports/export_data/audit_data") and refused(sandbox, "stellic") == []


def test_xporter_resource_is_accepted(sandbox: SandboxServer):
    resource = xporter_resource_from_env()
    assert ESTAB in {s.estab for s in resource.schools() if s.status == "authorised"}  # the management token
    client = resource.client(ESTAB)  # the school's own token, from its secret
    try:
        body = client.get("api/v1/TokenDetails", {}, Where("xporter", "credentials", ESTAB), status_codes=False)
    finally:
        client.close()
    assert body
    minted = [r for r in requests_to(sandbox, "/xporter/idaas/sts/STS/GetToken") if r["status"] == 200]
    assert len(minted) == 2 and refused(sandbox, "xporter") == []


def test_skillspass_resource_is_accepted(sandbox: SandboxServer):
    client = skillspass_resource_from_env().client()
    body = {"startDate": "2025-03-01T00:00:00.000Z", "endDate": "2025-03-01T23:59:59.999Z", "exportType": "USERS",
            "format": "CSV"}
    try:
        handle = client.start(body, Where("skillspass", "credentials"), asset_key="skillspass/users",
                              partition_key=None)
    finally:
        client.http.close()
    assert handle.job_id and refused(sandbox, "skillspass") == []


def test_webadmit_resource_is_accepted(sandbox: SandboxServer):
    client = webadmit_resource_from_env().client()
    try:
        identities = client.identities(Where("webadmit", "credentials"))
    finally:
        client.http.close()
    assert identities and refused(sandbox, "webadmit") == []
