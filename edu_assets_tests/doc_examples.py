"""The vendor documents' examples, as copied into ``fixtures/<vendor>_examples/examples.json``.

Contract tests replay these through the clients' parsers. Each example keeps its text verbatim with
the document and line range it came from, so a test can prove the copy is faithful when the documents
are at hand (``/work/shared``) and still run where they are not (CI).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).with_name("fixtures")
SHARED = Path("/work/shared")
_STATUS_LINE = re.compile(r"^HTTP/1\.1 (\d{3})\b")


def load(vendor: str) -> dict[str, dict[str, Any]]:
    """``name -> example`` of one vendor's examples file."""
    raw = json.loads((FIXTURES / f"{vendor}_examples" / "examples.json").read_text(encoding="utf-8"))
    return {e["name"]: e for e in raw["examples"]}


def document_lines(example: dict[str, Any]) -> str:
    """The lines the example says it was copied from, read from the document itself (skips without it)."""
    source = SHARED / example["source"]
    if not source.exists():
        pytest.skip(f"{source} is not on this machine; the copy in the fixtures is used as is")
    first, last = example["lines"]
    return "\n".join(source.read_text(encoding="utf-8").splitlines()[first - 1 : last])


def http_status(example: dict[str, Any]) -> int | None:
    """The status of an ``HTTP/1.1 NNN`` line printed with the example, if any."""
    for line in example["verbatim"].splitlines():
        if m := _STATUS_LINE.match(line.strip()):
            return int(m.group(1))
    return None


def body(example: dict[str, Any]) -> Any:
    """The example's JSON body. ``fragment`` examples are printed without their outer braces (and with
    an HTTP status line): the status line is dropped and the braces completed, nothing else changes."""
    kind = example["kind"]
    if kind == "empty":
        return None
    if kind == "prose":
        return example["derived_body"]
    text = "\n".join(
        ln for ln in example["verbatim"].splitlines() if not _STATUS_LINE.match(ln.strip())
    ).strip()
    if kind == "fragment":
        text = "{" + text
        text += "}" * (text.count("{") - text.count("}"))
    return json.loads(text)
