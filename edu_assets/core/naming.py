"""Column and path naming: vendor headers become predictable snake_case; partition values become safe paths.

A partition value becomes the ``<dim>=<value>`` directory name DuckDB's hive partitioning reads back
(percent-encoded: DuckDB decodes it). File systems allow 255 bytes per path component, so a value whose
component would be longer (a 300-character tag; 90 times "é" is 540 bytes once percent-encoded) is
*shortened*: its readable start, cut between characters, then ``!`` and a hash of the whole value
(see :func:`path_value`). Its full value is written into the partition's file as the column
``<dim>__full`` (:func:`full_key_column`), because the view takes ``<dim>`` from the directory name.
Every value that fits keeps exactly the name it always had, so existing lakes do not move.

A vendor column with a dimension's name would be hidden by it in the view (hive partitioning puts the
directory's value in its place), so it is renamed ``<name>_column`` (:func:`clear_of_dimensions`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
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


NAME_MAX = 255  # bytes in one path component (ext4, xfs, btrfs, APFS); longer fails with ENAMETOOLONG
SHORTENED_MAX = 200  # bytes of a shortened component: room to spare under NAME_MAX
HASH_MARK = "!"  # never in a percent-encoded value (it is encoded "%21"): a shortened name is never a real one
HASH_CHARS = 16  # hex digits of sha256 (64 bits): two long values differing anywhere get different names
FULL_KEY_SUFFIX = "__full"  # snake_case never makes "__", so no vendor column can be named like this
RENAMED_SUFFIX = "_column"
_SAFE = "-_.~:"


def _encoded(value: str) -> str:
    return quote(str(value), safe=_SAFE)


def path_value(value: str, dim: str = "") -> str:
    """A partition value as the hive directory value of ``<dim>=<value>`` (percent-encoded; DuckDB decodes it).

    When the component would be longer than :data:`NAME_MAX` bytes, the value is shortened to its readable
    start, cut on a character boundary, then ``!`` and a hash of the full value, the component staying
    within :data:`SHORTENED_MAX` bytes; pass ``dim`` so the whole component is measured. A value that fits
    keeps today's name: existing lakes do not move, and a name that failed before now works."""
    encoded = _encoded(value)
    if len(dim) + 1 + len(encoded) <= NAME_MAX:  # percent-encoded: ASCII, one byte a character
        return encoded
    return _shortened(str(value), SHORTENED_MAX - len(dim.encode()) - 1)


def _shortened(value: str, budget: int) -> str:
    """The longest start of ``value`` whose encoding fits ``budget`` with the hash, then ``!<hash>``.

    Encoded character by character, so the cut never splits a character (nor its %XX escapes)."""
    tail = HASH_MARK + hashlib.sha256(value.encode("utf-8")).hexdigest()[:HASH_CHARS]
    room = max(budget - len(tail), 0)
    start: list[str] = []
    for ch in value:
        piece = _encoded(ch)
        if len(piece) > room:
            break
        start.append(piece)
        room -= len(piece)
    return "".join(start) + tail


def is_shortened(dim: str, value: str) -> bool:
    """Whether ``value``'s directory name under ``dim`` is shortened (so its file carries the full value)."""
    return len(dim) + 1 + len(_encoded(value)) > NAME_MAX


def partition_component(dim: str, value: str) -> str:
    """``<dim>=<value>`` as a directory name: what a partition's dimension is in the lake and the work dir."""
    return f"{dim}={path_value(value, dim)}"


def bounded_name(name: str) -> str:
    """A directory name made of already-safe ASCII parts (the work dir's ``a=1_b=2``) kept under
    :data:`NAME_MAX`: unchanged when it fits, else its start then ``!<hash>`` of the whole name."""
    if len(name.encode()) <= NAME_MAX:
        return name
    tail = HASH_MARK + hashlib.sha256(name.encode()).hexdigest()[:HASH_CHARS]
    start = name.encode()[: SHORTENED_MAX - len(tail)].decode("utf-8", "ignore")
    cut = start.rfind("%", len(start) - 2)  # not inside a %XX escape
    return (start[:cut] if cut >= 0 else start) + tail


def full_key_column(dim: str) -> str:
    """The column carrying a shortened partition's full ``dim`` value (see the module's docstring)."""
    return f"{dim}{FULL_KEY_SUFFIX}"


def full_key_columns(partition: Mapping[str, str]) -> dict[str, str]:
    """``{<dim>__full: full value}`` for each dimension of ``partition`` whose directory name is shortened."""
    return {full_key_column(d): str(v) for d, v in partition.items() if is_shortened(d, str(v))}


def clear_of_dimensions(names: Sequence[str], dims: Collection[str]) -> tuple[list[str], dict[str, str]]:
    """``names`` with each one a partition dimension takes (``snapshot_date`` under ``snapshot_date=...``,
    or a ``<dim>__full``) renamed ``<name>_column`` (``_column_2``, ... if taken), and ``{new: old}``.

    Why: the view's hive partitioning puts the directory's value in a column of the same name, hiding the
    vendor's; renamed, both show. Compared without case, as DuckDB compares identifiers. Deterministic
    from the names alone, so every partition of a dataset renames alike."""
    reserved = {d.lower() for d in dims} | {full_key_column(d).lower() for d in dims}
    if not reserved & {n.lower() for n in names}:
        return list(names), {}
    taken = {n.lower() for n in names} | reserved
    out: list[str] = []
    renamed: dict[str, str] = {}
    for name in names:
        if name.lower() not in reserved:
            out.append(name)
            continue
        base = f"{name}{RENAMED_SUFFIX}"
        candidate, n = base, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate.lower())
        renamed[candidate] = name
        out.append(candidate)
    return out, renamed


def safe_name(text: str, limit: int = 120) -> str:
    """``text`` as a file name or tag value: letters, digits and ``-_.`` kept, anything else ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:limit]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"
