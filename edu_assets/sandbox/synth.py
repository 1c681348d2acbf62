"""Deterministic synthetic data for vendor emulators: people, dates, words, and fast CSV files.

Why deterministic: the same request must return byte-identical data (tests compare bytes,
pipelines must be re-runnable), so every random choice is derived from a string key.

Two generators share the same vocabulary:
- Python helpers (`rng_for`, `full_name`, `write_csv`) for small payloads and JSON APIs;
- SQL fragment builders (`SqlRandom`, `sql_*`) that express each column as a pure function of
  the row number, so DuckDB can `COPY (SELECT ... FROM range(n)) TO 'x.csv'` gigabytes at
  ~100 MB/s with flat memory. `FileCache` keeps generated files on disk, keyed by everything
  that determines their content, so a repeated request is just a file read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "FIRST_NAMES",
    "LAST_NAMES",
    "PROGRAMS",
    "SCHOOLS",
    "SUBJECTS",
    "WORDS",
    "FileCache",
    "SqlRandom",
    "ascii_fold",
    "copy_to_csv",
    "date_between",
    "full_name",
    "iso_timestamp",
    "program_name",
    "rng_for",
    "seed_for",
    "sentence",
    "sql_bool",
    "sql_iso_date",
    "sql_iso_ts",
    "sql_list",
    "sql_str",
    "student_id",
    "timestamp_between",
    "username",
    "words",
    "write_csv",
]

# -- vocabulary ---------------------------------------------------------------------------------
# Names deliberately include accents, apostrophes, hyphens and spaces: real exports do, and
# connectors that assume ASCII or split on spaces break on exactly these.

# fmt: off
FIRST_NAMES: tuple[str, ...] = (
    "Zoë", "José", "Siobhán", "Liam", "Olivia", "Noah", "Emma", "Aarav", "Mei", "Fatima",
    "Lukas", "Chloé", "Mateo", "Amara", "Kenji", "Ingrid", "François", "Björn", "Søren", "Łukasz",
    "Ana-María", "Nicolás", "Aoife", "Priya", "Oluwaseun", "Hannah", "Ethan", "Sofía", "Mohammed", "Yuki",
    "Grace", "Jamal", "Renée", "Tomás", "Isabella", "Dmitri", "Leilani", "Samuel", "Ava", "Benjamin",
    "Mia", "Jackson", "Camila", "Elijah", "Harper", "Lucas", "Amelia", "Owen", "Nora", "Gabriel",
    "Thảo", "Minh", "Ji-woo", "Aditi", "Kwame", "Astrid", "Mateus", "Élodie", "Rafael", "Sinéad",
)

LAST_NAMES: tuple[str, ...] = (
    "Nguyễn", "García", "O'Brien", "Smith", "Johnson", "Müller", "Kowalski", "Okafor", "Chen", "Patel",
    "Dubois", "Rossi", "Kim", "Silva", "Haddad", "Andersson", "Ó Súilleabháin", "D'Angelo", "Smith-Jones",
    "van der Berg", "Williams", "Brown", "Jones", "Miller", "Davis", "Rodríguez", "Martínez", "Hernández",
    "López", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Pérez",
    "Thompson", "White", "Harris", "Sánchez", "Clark", "Ramírez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Torres", "Trần", "Øvergaard", "Schäfer", "Novák", "Yılmaz",  # noqa: RUF001 (Turkish dotless i)
    "Adeyemi", "Takahashi",
)

WORDS: tuple[str, ...] = (
    "academic", "advising", "plan", "semester", "credit", "transfer", "elective", "major", "minor",
    "capstone", "research", "internship", "probation", "schedule", "registration", "waitlist",
    "prerequisite", "petition", "graduation", "audit", "requirement", "course", "section", "lab",
    "seminar", "tutoring", "financial", "aid", "housing", "wellness", "career", "portfolio", "milestone",
    "progress", "deadline", "study", "abroad", "exam", "grade", "withdrawal", "overload", "residency",
)

SCHOOLS: tuple[str, ...] = (
    "College of Arts & Sciences", "School of Engineering", "Divinity School", "School of Business",
    "School of Nursing", "Law School", "School of Education", "School of Public Health",
    "Graduate School", "School of Music",
)

PROGRAMS: tuple[str, ...] = (
    "Computer Science BS", "Biology BA", "Mechanical Engineering BSE", "History BA",
    "Economics, Finance Track BS", "Nursing BSN", "Psychology BA", "Mathematics BS",
    "Political Science BA", "Chemistry BS", "English Literature BA", "Music Performance BM",
    "Business Administration BBA", "Public Health MPH", "Education MEd", "Master of Divinity MDiv",
    "Data Science MS", "Philosophy, Politics & Economics BA", "Environmental Studies BA", "Art History BA",
)

SUBJECTS: tuple[tuple[str, str], ...] = (
    ("CS", "Computer Science"), ("BIO", "Biology"), ("HIST", "History"), ("MATH", "Mathematics"),
    ("ECON", "Economics"), ("CHEM", "Chemistry"), ("PSYC", "Psychology"), ("ENGL", "English"),
    ("PHIL", "Philosophy"), ("ARTH", "Art History"), ("NURS", "Nursing"), ("MUS", "Music"),
    ("POLS", "Political Science"), ("PHYS", "Physics"), ("SPAN", "Spanish"), ("STAT", "Statistics"),
    ("ME", "Mechanical Engineering"), ("EDUC", "Education"), ("REL", "Religion"), ("ENVS", "Environmental Studies"),
)
# fmt: on


# -- Python-side helpers (small payloads, JSON APIs) --------------------------------------------


def seed_for(*parts: Any) -> int:
    """A stable 63-bit seed from any printable key parts (order matters)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def rng_for(*parts: Any) -> random.Random:
    """A private RNG for one key, e.g. `rng_for("stellic", "tagged_notes", "tag=x", 200)`."""
    return random.Random(seed_for(*parts))


def ascii_fold(text: str) -> str:
    """'Nguyễn' -> 'Nguyen', 'Øvergaard' -> 'Overgaard' (for usernames and e-mail addresses)."""
    text = text.replace("Ø", "O").replace("ø", "o").replace("Ł", "L").replace("ł", "l")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def full_name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def username(first: str, last: str, n: int) -> str:
    """Institution-style login: first initial + folded surname + a number, e.g. 'jnguyen482'."""
    letters = "".join(ch for ch in ascii_fold(first[:1] + last).lower() if ch.isalpha())
    return f"{letters}{n}"


def student_id(n: int) -> str:
    """A 9-character student ID with leading zeros (keeps connectors honest about text IDs)."""
    return f"00{1_000_000 + n}"


def timestamp_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(max(span, 1)))


def date_between(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange(max((end - start).days, 1)))


def iso_timestamp(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def sentence(rng: random.Random, n: int = 8) -> str:
    text = " ".join(words(rng, n))
    return text[:1].upper() + text[1:] + "."


def program_name(rng: random.Random) -> str:
    return rng.choice(PROGRAMS)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], crlf: bool = True) -> int:
    """Stream rows to a UTF-8 CSV with minimal, correct quoting. Returns the number of data rows."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    return count


# -- SQL-side helpers (DuckDB expressions of the row number) ------------------------------------

_TWO_64 = "18446744073709551616.0"


def sql_str(value: str) -> str:
    """A SQL string literal (values may come straight from query parameters)."""
    return "'" + value.replace("\x00", "").replace("'", "''") + "'"


def sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(sql_str(v) for v in values) + "]"


def sql_bool(condition: str) -> str:
    """Booleans the way many Python-backed exporters write them: True / False."""
    return f"(CASE WHEN {condition} THEN 'True' ELSE 'False' END)"


def sql_iso_ts(expr: str) -> str:
    return f"strftime({expr}, '%Y-%m-%dT%H:%M:%SZ')"


def sql_iso_date(expr: str) -> str:
    return f"strftime({expr}, '%Y-%m-%d')"


def _micros(moment: datetime) -> int:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return int((moment - datetime(1970, 1, 1)).total_seconds() * 1_000_000)


class SqlRandom:
    """Builds DuckDB expressions that are pseudo-random but pure functions of (key, salt, seed).

    `key` is a SQL expression (usually the row number `i`), `salt` names the column so
    columns are independent. Same seed + same key -> same value, on any machine, any run.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def h(self, key: str, salt: str) -> str:
        # an integer salt hashes ~20% faster than a string one
        return f"hash({key}, {zlib.crc32(salt.encode())}, {self.seed})"

    def unit(self, key: str, salt: str) -> str:
        return f"({self.h(key, salt)} / {_TWO_64})"

    def int_between(self, key: str, salt: str, low: int, high: int) -> str:
        return f"({low} + cast({self.h(key, salt)} % {high - low + 1} as bigint))"

    def chance(self, key: str, salt: str, probability: float) -> str:
        return f"({self.h(key, salt)} % 10000 < {int(probability * 10000)})"

    def pick(self, values: Sequence[str], key: str, salt: str) -> str:
        return f"{sql_list(values)}[1 + cast({self.h(key, salt)} % {len(values)} as bigint)]"

    def timestamp_between(self, key: str, salt: str, start: datetime, end: datetime) -> str:
        lo, span = _micros(start), max(_micros(end) - _micros(start), 1)
        return f"make_timestamp(cast({lo} + {self.h(key, salt)} % {span} as bigint))"

    # people: the same person key gives the same person in every export of a vendor

    def first_name(self, key: str) -> str:
        return self.pick(FIRST_NAMES, key, "first_name")

    def last_name(self, key: str) -> str:
        return self.pick(LAST_NAMES, key, "last_name")

    def full_name(self, key: str) -> str:
        return f"({self.first_name(key)} || ' ' || {self.last_name(key)})"

    def sortable_name(self, key: str) -> str:
        """'Last, First' - contains a comma, so the CSV writer must quote it."""
        return f"({self.last_name(key)} || ', ' || {self.first_name(key)})"

    def username(self, key: str, number: str | None = None) -> str:
        """Login like 'jnguyen482': initial + folded surname + `number` (default: the key)."""
        folded = f"translate(strip_accents(left({self.first_name(key)}, 1) || {self.last_name(key)}), 'ØøŁł', 'OoLl')"
        letters = f"lower(regexp_replace({folded}, '[^A-Za-z]', '', 'g'))"
        return f"({letters} || cast({number or key} as varchar))"

    def student_id(self, key: str) -> str:
        return f"('00' || cast(1000000 + {key} as varchar))"


def copy_to_csv(select_sql: str, dest: Path, *, crlf: bool = True, memory_limit: str = "512MB") -> None:
    """Write a SELECT to a UTF-8 CSV with a header via DuckDB (streaming, order-preserving).

    Row order follows the query (`preserve_insertion_order`), so output is byte-identical
    across runs. NULL is written as an empty field; quoting is minimal and RFC 4180-correct.
    """
    import duckdb  # imported lazily: only needed when a file is actually generated

    newline = "\\r\\n" if crlf else "\\n"
    with duckdb.connect(":memory:") as con:
        con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"COPY ({select_sql}) TO {sql_str(str(dest))} (FORMAT csv, HEADER true, NEW_LINE '{newline}')"
        )


class FileCache:
    """Generated files on disk, keyed by everything that determines their bytes.

    `get_or_create(key, producer)` returns the cached path or calls `producer(tmp_path)` once
    (concurrent callers for the same key wait), then atomically renames the result into place.
    `hits` / `misses` let tests prove reuse.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def path_for(self, key: dict[str, Any], label: str, suffix: str = ".csv") -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
        folder = self.root / str(key.get("vendor", "misc"))
        return folder / f"{label}-{digest}{suffix}"

    def get_or_create(
        self, key: dict[str, Any], producer: Callable[[Path], None], label: str = "file", suffix: str = ".csv"
    ) -> Path:
        path = self.path_for(key, label, suffix)
        with self._lock:
            key_lock = self._key_locks.setdefault(str(path), threading.Lock())
        with key_lock:
            if path.exists():
                with self._lock:
                    self.hits += 1
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                producer(tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            with self._lock:
                self.misses += 1
            return path


class TempFileCache:
    """A `FileCache` in a private temp dir created on first use, or under `root` when one is given;
    `close()` removes the temp dir (never a given root). Shared by every emulator that generates files."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._temp_dir: Path | None = None
        self._cache: FileCache | None = None
        self._lock = threading.Lock()

    def get(self, root: Path | None = None) -> FileCache:
        with self._lock:  # one FileCache per root, or concurrent requests would both generate
            if root is None:
                if self._temp_dir is None:
                    self._temp_dir = Path(tempfile.mkdtemp(prefix=self.prefix))
                root = self._temp_dir
            if self._cache is None or self._cache.root != Path(root):
                self._cache = FileCache(Path(root))
            return self._cache

    def close(self) -> None:
        with self._lock:
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir, self._cache = None, None
