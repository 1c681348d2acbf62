"""Every vendor is built the same way: the same modules under the same names, each with one job.

An engineer adding a fifth vendor copies the template; these tests keep the four existing vendors on it.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import edu_assets

VENDORS = ("stellic", "xporter", "skillspass", "webadmit")
VENDORS_DIR = Path(edu_assets.__file__).parent / "vendors"
CORE_DIR = Path(edu_assets.__file__).parent / "core"
TEMPLATE = ("catalog.yaml", "catalog.py", "partitions.py", "client.py", "resources.py", "assets.py", "automation.py")


@pytest.mark.parametrize("vendor", VENDORS)
def test_each_vendor_holds_the_template_modules(vendor):
    folder = VENDORS_DIR / vendor
    missing = [name for name in TEMPLATE if not (folder / name).exists()]
    assert not missing, f"{vendor} lacks {missing}"
    assert not (folder / "sensors.py").exists(), "sensors, schedules and jobs live in automation.py"
    package = importlib.import_module(f"edu_assets.vendors.{vendor}")
    assert callable(package.definitions) and callable(package.demo_plan)


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_vendor_name_is_defined_once(vendor):
    definitions = [path.name for path in sorted((VENDORS_DIR / vendor).glob("*.py"))
                   if re.search(r"^VENDOR\s*=", path.read_text(), re.MULTILINE)]
    assert definitions == ["client.py"], definitions


@pytest.mark.parametrize("vendor", VENDORS)
def test_jobs_are_defined_only_in_automation(vendor):
    defining = [path.name for path in sorted((VENDORS_DIR / vendor).glob("*.py")) if "define_asset_job(" in path.read_text()]
    assert defining in ([], ["automation.py"]), defining


def test_no_vendor_module_imports_another_vendor():
    for vendor in VENDORS:
        for path in (VENDORS_DIR / vendor).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edu_assets.vendors."):
                    assert node.module.split(".")[2] == vendor, f"{path} imports {node.module}"


def test_the_demo_only_runs_plans():
    """``demo.py`` reaches into no vendor's internals: it imports the vendor packages, never their modules."""
    source = (Path(edu_assets.__file__).parent / "demo.py").read_text()
    modules = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) and node.module}
    assert not [m for m in modules if m.startswith("edu_assets.vendors.")], modules
