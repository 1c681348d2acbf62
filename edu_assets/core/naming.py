"""Column and path naming: vendor headers become predictable snake_case; partition values become safe paths."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

_CAMEL_1 = re.compile(r"(.)([A-Z][a-z]+)")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


def snake_case(name: str) -> str:
    """``"Engagement Score"`` → ``engagement_score``; ``"StudentID"`` → ``student_id``; ``"Id- Number"`` → ``id_number``."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    s = _CAMEL_1.sub(r"\1_\2", s.strip())
    s = _CAMEL_2.sub(r"\1_\2", s)
    s = _NON_WORD.sub("_", s).strip("_").lower()
    if not s:
        s = "column"
    if s[0].isdigit():
        s = f"_{s}"
    return s


def normalise_columns(names: list[str]) -> list[str]:
    """snake_case every name, keeping them unique (``id``, ``id_2``, ...) in the original order."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = snake_case(name)
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def path_value(value: str) -> str:
    """A partition value as a hive directory value (percent-encoded; DuckDB decodes it back)."""
    return quote(str(value), safe="-_.~:")


def safe_name(text: str, limit: int = 120) -> str:
    """``text`` as a file name or tag value: letters, digits and ``-_.`` kept, anything else ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:limit]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"
