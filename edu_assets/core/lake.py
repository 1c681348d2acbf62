"""The Parquet lake: one hive-partitioned dataset per asset, one file per partition, replaced atomically.

Layout: ``<root>/<vendor>/<asset>/<dim>=<value>[/<dim>=<value>]/data.parquet``. A partition is written to a
hidden temporary file beside its target and moved into place with :func:`os.replace`, so a reader sees
either the previous version or the new one, never half of one, and a run killed mid-write leaves the
previous version untouched. Vendor files are converted by DuckDB, which streams: memory stays flat
however large the export.

With ``EDU_LAKE_ROOT=s3://bucket/prefix`` the root is an :class:`~edu_assets.core.lakepath.ObjectPath` and
the same guarantee comes from publishing instead of renaming: the file is written to the local work
directory, uploaded as a new immutable version, and a small pointer object is replaced to name it (see
:mod:`edu_assets.core.objectstore`). Readers here resolve a partition once per query (:func:`parquet_file`).

Partition values and columns are fitted to the view, which reads the dataset with hive partitioning
(``<dim>`` from the directory name, winning over a file column of that name):

* a value too long for a directory name (more than 255 bytes as ``<dim>=<percent-encoded value>``) gets a
  shortened, collision-free name (:func:`~edu_assets.core.naming.path_value`) and its file carries the full
  value as the column ``<dim>__full``: the view shows it (``coalesce(<dim>__full, <dim>)`` is the key of
  every row; :func:`full_key_projection` makes ``<dim>`` itself show it). A column, not only the Parquet
  key-value metadata (where it is too, under ``edu_assets.partition``), because the view shows columns:
  a user querying it must not need to open files to see which tag a row belongs to;
* a vendor column named like a dimension (a ``Snapshot Date`` column under ``snapshot_date=...``) would be
  hidden by the directory's value, so it lands renamed ``<name>_column``: recorded in the file's metadata
  (``edu_assets.renamed_columns``, beside the vendor's own names) and in :class:`Landed`. Both are column
  aliases or constants in the conversion's SELECT: no pass over the rows.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from edu_assets.core.errors import ConfigError, LandingError, Where
from edu_assets.core.lakepath import ObjectPath, resolve
from edu_assets.core.naming import (
    FULL_KEY_SUFFIX,
    HASH_MARK,
    NAME_MAX,
    bounded_name,
    clear_of_dimensions,
    full_key_column,
    full_key_columns,
    normalise_columns,
    partition_component,
    quote_ident,
    snake_case,
    sql_str,
)
from edu_assets.core.partition import PartitionId
from edu_assets.core.settings import DUCKDB_MEMORY_LIMIT, DUCKDB_THREADS, LakeSettings

if TYPE_CHECKING:
    import duckdb  # imported where used: it costs ~0.1 s, and the code location loads without it

DATA_FILE = "data.parquet"
_TMP_PREFIX = ".inflight-"
ORIGINALS_KEY = "edu_assets.original_columns"
STATE_KEY = "edu_assets.state"
RENAMED_KEY = "edu_assets.renamed_columns"  # {column as landed: the name a partition dimension took}
PARTITION_KEY = "edu_assets.partition"  # {dimension: full value}, whatever its directory is named

# The partition a landing fits its columns to, for ``Lake._copy_csv``: set by ``Lake._atomic`` around the
# write, so the conversion keeps its (con, src, tmp, encoding, *, all_varchar) signature. A context
# variable: landings of one Lake in several threads each see their own.
_fitting: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("edu_assets_lake_fitting",
                                                                                    default=None)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    original: str


@dataclass(frozen=True)
class Stored:
    """A landed partition's file as its footer describes it (one read: rows, state and vendor names)."""

    path: Path
    rows: int
    state: dict[str, Any]
    original_columns: dict[str, str]  # snake_case name -> the vendor's own


@dataclass
class Landed:
    """What a landing produced: enough for Dagster metadata and asset checks."""

    path: Path
    rows: int
    bytes: int
    columns: list[Column]
    preview: list[dict[str, Any]] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    unexpected_columns: list[str] = field(default_factory=list)
    typed: bool = True
    renamed_columns: dict[str, str] = field(default_factory=dict)  # as landed -> the dimension's name it had
    full_key_columns: dict[str, str] = field(default_factory=dict)  # <dim>__full -> the full partition value


def parquet_file(path: Path | ObjectPath) -> str:
    """SQL reading exactly one Parquet file: no hive columns guessed from the ``dim=value`` directories.

    In the object-store lake the partition is resolved here, once, to its current immutable version, so the
    query reads one version whatever is published meanwhile (its connection needs the lake's filesystem:
    :func:`connect` or :func:`edu_assets.core.objectstore.register`)."""
    return f"read_parquet({sql_str(resolve(path))}, hive_partitioning=false)"


def connect(root: Path | ObjectPath | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB cursor (memory-capped, shared database) that can read the lake at ``root`` (s3:// included)."""
    return _connect(None, fs=root.fs if isinstance(root, ObjectPath) else None)


def _connect(spill_dir: Path | None = None, memory_limit: str | None = None,
             fs: Any = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a memory cap; past the cap it spills to ``spill_dir`` instead of failing.

    Connections are cursors on one in-memory database per process and settings: opening a database costs
    ~35 ms, a cursor ~0.5 ms, and a run landing an endpoint of many small tables opens hundreds. A cursor
    is its own connection (temp tables are private to it); the memory cap is shared by the process.
    """
    import duckdb
    limit = memory_limit or DUCKDB_MEMORY_LIMIT.get()
    threads = str(DUCKDB_THREADS.get() or "")
    # a forked child must not reuse its parent's; the object store's filesystem is registered per database
    key = (os.getpid(), str(spill_dir or ""), limit, threads, id(fs) if fs is not None else 0)
    with _databases_lock:
        db = _databases.get(key)
        if db is None:
            db = duckdb.connect()
            db.execute(f"SET memory_limit={sql_str(limit)}")
            if spill_dir is not None:
                spill_dir.mkdir(parents=True, exist_ok=True)
                db.execute(f"SET temp_directory={sql_str(str(spill_dir))}")
            db.execute("SET preserve_insertion_order=false")
            if threads:
                db.execute(f"SET threads={int(threads)}")
            if fs is not None:
                db.register_filesystem(fs)
            _databases[key] = db
            while len(_databases) > 4:  # settings changed (tests, another lake): let the oldest go when idle
                _databases.pop(next(iter(_databases)))
        return db.cursor()


_databases: dict[tuple[Any, ...], duckdb.DuckDBPyConnection] = {}
_databases_lock = threading.Lock()

# Conversions (CSV or JSON to Parquet) in one process at once. They share the process's DuckDB memory cap,
# and one already keeps every core busy; a JSON reader alone holds a 32 MiB buffer. Unbounded, a run landing
# 8 schools at once (Xporter's school_concurrency) ran out of the 200 MB cap in the 500-school fleet
# ("failed to allocate data of size 32.0 MiB (224.5 MiB/190.7 MiB used)"). Downloads and vendor waits stay
# concurrent: only the DuckDB part takes turns.
CONVERSIONS_AT_ONCE = 2
_conversions = threading.BoundedSemaphore(CONVERSIONS_AT_ONCE)


class Lake:
    """Writes and locates partitions of every asset's dataset.

    A partition is named by its :class:`~edu_assets.core.partition.PartitionId` (``data_file``, ``work_path``,
    ``state``, ``stored`` and the landing methods take it, and only it: a partition has one identity)."""

    def __init__(self, settings: LakeSettings | None = None):
        self.settings = settings or LakeSettings.from_env()
        self.root = self.settings.root
        # the object-store lake's filesystem (None for a local lake)
        self.store = self.root.fs if isinstance(self.root, ObjectPath) else None

    @property
    def spill_dir(self) -> Path:
        """Where DuckDB spills when a conversion outgrows its memory cap."""
        return self.settings.work_dir / ".duckdb-spill"

    def dataset_dir(self, vendor: str, asset: str) -> Path:
        return self.root / vendor / asset

    def partition_dir(self, vendor: str, asset: str, partition: Mapping[str, str]) -> Path:
        """``<dataset>/<dim>=<value>/...``; a value too long for a directory name gets a shortened one (see
        :func:`~edu_assets.core.naming.path_value`), its full value going into the file (``<dim>__full``)."""
        path = self.dataset_dir(vendor, asset)
        for dim, value in partition.items():
            component = partition_component(dim, value)
            if len(component.encode()) > NAME_MAX:  # only a dimension name of ~240 characters gets here
                where = Where(vendor, asset, ", ".join(f"{k}={v}" for k, v in partition.items()))
                raise ConfigError(where, f"the partition dimension name {dim!r} is too long for a directory "
                                  f"name ({len(dim.encode())} bytes)",
                                  hint="name the dimension in fewer than 200 bytes in the asset's partitions")
            path = path / component
        return path

    def data_file(self, pid: PartitionId) -> Path:
        """The partition's Parquet file (``<dataset>/<dim>=<value>/.../data.parquet``), landed or not."""
        return self.partition_dir(pid.vendor, pid.dataset, pid.mapping) / DATA_FILE

    def state(self, pid: PartitionId) -> dict[str, Any]:
        """The state stored with the partition's landed file ({} when none is landed): see :func:`read_state`."""
        return read_state(self.data_file(pid))

    def stored(self, pid: PartitionId) -> Stored | None:
        """What the partition's landed file says about itself, from one footer read; None when none is landed."""
        path = self.data_file(pid)
        if not path.exists():
            return None
        parquet = _parquet(path)
        schema = parquet.schema_arrow
        return Stored(path, int(parquet.metadata.num_rows), _kv_json(schema, STATE_KEY),
                      _kv_json(schema, ORIGINALS_KEY))

    def work_dir(self, pid: PartitionId) -> Path:
        """The directory of this partition's attempts' raw downloads (swept by :mod:`edu_assets.core.workdir`).

        Its name joins the partition's directory names, shortened as a whole when too long (a work
        directory is transient, so only names that could not exist before change)."""
        slug = "_".join(partition_component(k, v) for k, v in pid.dims) or "all"
        return self.settings.work_dir / pid.vendor / pid.dataset / bounded_name(slug)

    def work_path(self, pid: PartitionId, name: str) -> Path:
        """Where a raw download for this partition is staged (and kept when it cannot be landed)."""
        path = self.work_dir(pid) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ landing
    def land_csv(
        self,
        src: Path,
        where: Where,
        pid: PartitionId,
        *,
        encoding: str = "utf-8",
        expected_columns: Sequence[str] | None = None,
        keep_raw: bool = False,
    ) -> Landed:
        """Convert a CSV export to this partition's Parquet file, replacing the previous version atomically."""
        _refuse_non_csv(src, where)
        typed = True

        def write(con: duckdb.DuckDBPyConnection, tmp: Path) -> list[str]:
            import duckdb
            nonlocal typed
            try:
                return self._copy_csv(con, src, tmp, encoding, all_varchar=False)
            except duckdb.ConversionException:
                # A value late in the file did not fit the type sniffed from the first rows: land it
                # all as text rather than lose rows or fail the partition.
                typed = False
                return self._copy_csv(con, src, tmp, encoding, all_varchar=True)

        target, partition = self.data_file(pid), pid.mapping
        landed = self._atomic(target, where, write, expected_columns, partition,
                              on_error=lambda exc: _csv_error(where, src, encoding, exc))
        landed.typed = typed
        if not keep_raw:
            src.unlink(missing_ok=True)
        return landed

    def _copy_csv(
        self, con: duckdb.DuckDBPyConnection, src: Path, tmp: Path, encoding: str, *, all_varchar: bool
    ) -> list[str]:
        reader = (
            f"read_csv({sql_str(str(src))}, header=true, delim=',', quote='\"', escape='\"', strict_mode=true, hive_partitioning=false, "
            f"encoding={sql_str(_duckdb_encoding(encoding))}, all_varchar={'true' if all_varchar else 'false'}, "
            "sample_size=20480)"
        )
        originals = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
        partition = _fitting.get() or {}
        names, renamed = clear_of_dimensions(normalise_columns(originals), partition)
        select = ", ".join(f"{quote_ident(o)} AS {quote_ident(n)}" for o, n in zip(originals, names, strict=True))
        _copy_parquet(con, f"SELECT {select} FROM {reader}", tmp, dict(zip(names, originals, strict=True)),
                      partition=partition, renamed=renamed)
        return originals

    def land_empty(
        self,
        where: Where,
        pid: PartitionId,
        expected_columns: Sequence[str] | None = None,
        *,
        like: Path | None = None,
    ) -> Landed:
        """Land a partition with no rows, for an export that legitimately had nothing in it.

        Its schema is that of ``like`` (an earlier landed file of the same dataset, types included) when
        given, else the documented columns as text, so the dataset's view keeps working; either way fitted
        to this partition (renamed columns, this partition's full key: see the module's docstring).
        """
        target, partition = self.data_file(pid), pid.mapping

        def write(con: duckdb.DuckDBPyConnection, tmp: Path) -> list[str]:
            if like is not None and like.exists():
                # like's columns as this partition has them: renamed if a dimension takes their name,
                # without like's own partition's full key (this partition's is added if shortened)
                select, originals, renamed = _file_select(like, partition)
                _copy_parquet(con, f"SELECT * FROM ({select}) WHERE false", tmp, originals,
                              partition=partition, renamed=renamed)
                return list(originals.values())
            return _copy_json(con, tmp.with_suffix(".none"), tmp, expected_columns, None, partition)

        return self._atomic(target, where, write, expected_columns, partition,
                            on_error=lambda exc: LandingError(where, f"could not write an empty partition ({exc})", None))

    def latest_file(self, vendor: str, asset: str) -> Path | None:
        """The most recently written partition file of a dataset (for the schema of an empty export)."""
        files = self.partitions(vendor, asset)
        return max(files, key=lambda p: p.stat().st_mtime) if files else None

    # ------------------------------------------------------------------ JSON records (paged APIs)
    def land_json(
        self,
        staged: Path,
        where: Where,
        pid: PartitionId,
        *,
        expected_columns: Sequence[str] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> Landed:
        """Replace a partition with staged JSON records (newline-delimited, see ``JsonStage``).

        ``state`` (e.g. a change-set token) is stored in the same Parquet file, so the state and the data it
        covers are replaced together, atomically.
        """
        target, partition = self.data_file(pid), pid.mapping
        return self._atomic(target, where,
                            lambda con, tmp: _copy_json(con, staged, tmp, expected_columns, state, partition),
                            expected_columns, partition, on_error=lambda exc: _json_error(where, staged, exc))

    def merge_json(
        self,
        staged: Path,
        deleted_ids: Sequence[str],
        key: str,
        where: Where,
        pid: PartitionId,
        *,
        expected_columns: Sequence[str] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> Landed:
        """Apply a change set to a landed partition: upsert the staged rows by ``key``, delete ``deleted_ids``.

        The result replaces the partition atomically (with ``state``), so a crash leaves the previous
        version and its state, and re-applying the same change set gives the same rows.
        """
        target, partition = self.data_file(pid), pid.mapping

        def write(con: duckdb.DuckDBPyConnection, tmp: Path) -> list[str]:
            # a change set is small: its records are read once, into a temp table that both uses below read
            import duckdb
            select, new_names, renamed = _staged_select(con, staged, into="changed_rows", dims=partition)
            has_changes = bool(new_names)
            # the landed version's columns fitted alike (a file landed before columns were renamed included)
            old_select, old_names, old_renamed = _file_select(target, partition) if target.exists() else ("", {}, {})
            renamed = {**old_renamed, **renamed}
            con.execute("CREATE TEMP TABLE gone (k VARCHAR)")
            if deleted_ids:
                con.execute("INSERT INTO gone SELECT unnest(?::VARCHAR[])", [[str(i) for i in deleted_ids]])
            key_name = snake_case(key)
            k = quote_ident(next((new for new, old in renamed.items() if old == key_name), key_name))
            if has_changes:
                con.execute(f"INSERT INTO gone SELECT CAST({k} AS VARCHAR) FROM ({select})")
            parts = []
            if old_select:
                parts.append(f"SELECT * FROM ({old_select}) WHERE CAST({k} AS VARCHAR) NOT IN (SELECT k FROM gone WHERE k IS NOT NULL)")
            if has_changes:
                parts.append(select)
            if not parts:  # nothing landed, nothing changed
                return _copy_json(con, staged, tmp, expected_columns, state, partition)
            originals = {**old_names, **new_names}
            fit = {"partition": partition, "renamed": renamed}
            try:
                _copy_parquet(con, " UNION ALL BY NAME ".join(parts), tmp, originals, state, **fit)
            except duckdb.Error:  # a column changed type between versions: keep every value, as text
                as_text = " UNION ALL BY NAME ".join(f"SELECT {_all_text(con, p)} FROM ({p})" for p in parts)
                _copy_parquet(con, as_text, tmp, originals, state, **fit)
            return list(originals.values())

        return self._atomic(target, where, write, expected_columns, partition,
                            on_error=lambda exc: _json_error(where, staged, exc))

    def _atomic(
        self,
        target: Path,
        where: Where,
        write: Callable[[duckdb.DuckDBPyConnection, Path], list[str]],
        expected_columns: Sequence[str] | None,
        partition: Mapping[str, str],
        *,
        on_error: Callable[[duckdb.Error], LandingError],
    ) -> Landed:
        """Run ``write(con, tmp)`` (returning the vendor's column names) into a hidden temp file beside
        ``target`` and move it into place; a DuckDB error becomes ``on_error(exc)`` and nothing is replaced.
        ``partition`` is the one its columns are fitted to (see the module's docstring).

        In the object-store lake the temp file is in the work directory and "move into place" is
        :meth:`~edu_assets.core.objectstore.LakeFileSystem.publish` (upload a new version, then replace the
        partition's pointer)."""
        import duckdb
        if isinstance(target, ObjectPath):
            tmp = self.settings.work_dir / ".publishing" / f"{_TMP_PREFIX}{uuid.uuid4().hex}.partial"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            _sweep_stale(tmp.parent)
        else:
            tmp = target.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}.partial"
            target.parent.mkdir(parents=True, exist_ok=True)
            _sweep_stale(target.parent)
        fitting = _fitting.set(partition)
        try:
            with _conversions, _connect(self.spill_dir, fs=self.store) as con:
                try:
                    originals = write(con, tmp)
                except duckdb.Error as exc:
                    raise on_error(exc) from None
                landed = _describe(con, tmp, full_key_columns(partition))
            if isinstance(target, ObjectPath):
                target.fs.publish(target.parent.key, tmp)
            else:
                os.replace(tmp, target)
        finally:
            _fitting.reset(fitting)
            tmp.unlink(missing_ok=True)
        landed.path = target
        landed.missing_columns, landed.unexpected_columns = _drift(originals, expected_columns)
        return landed

    def partitions(self, vendor: str, asset: str, within: Mapping[str, str] | None = None) -> list[Path]:
        """Every landed file of a dataset, sorted; ``within``: only below these leading dimensions' values."""
        base = self.partition_dir(vendor, asset, within) if within else self.dataset_dir(vendor, asset)
        return sorted(base.rglob(DATA_FILE))

    def landed(self, vendor: str, asset: str) -> list[tuple[PartitionId, Path]]:
        """Every landed file of a dataset with the partition it holds, sorted by file.

        The dimensions come from the directory names (percent-decoded, as DuckDB reads them); a shortened
        name's full value comes from the file itself, so the id is the one the file was landed under."""
        base = self.dataset_dir(vendor, asset)
        out = []
        for path in self.partitions(vendor, asset):
            dims = dict(_dimension(part) for part in path.parent.relative_to(base).parts)
            if any(HASH_MARK in value for value in dims.values()):
                dims.update(_kv_json(_parquet(path).schema_arrow, PARTITION_KEY))
            out.append((PartitionId.of(vendor, asset, dims), path))
        return out

    def duplicate_key_counts(self, path: Path, columns: Sequence[str]) -> tuple[int, int]:
        """(key values that repeat, rows carrying a repeated key) in one landed partition."""
        import duckdb
        with _connect(self.spill_dir, fs=self.store) as con:  # memory-capped, spilling to the lake's work dir like a landing
            try:
                row = _duplicates(con, path, columns)
            except duckdb.BinderException:  # a key column a partition dimension renamed (read only then)
                landed_as = {old: new for new, old in renamed_columns(path).items()}
                row = _duplicates(con, path, [landed_as.get(c, c) for c in columns])
        return (int(row[0]), int(row[1])) if row else (0, 0)


def _duplicates(con: duckdb.DuckDBPyConnection, path: Path | ObjectPath, columns: Sequence[str]) -> Any:
    by = ", ".join(quote_ident(c) for c in columns)
    return con.execute(
        f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {parquet_file(path)} "
        f"GROUP BY {by} HAVING count(*) > 1)"
    ).fetchone()


def full_key_projection(columns: Sequence[str]) -> str:
    """The select list a view over a dataset with these columns (hive columns included) needs for each
    ``<dim>`` to show the full partition value: ``*`` when no partition was shortened, else
    ``* EXCLUDE ("<dim>__full") REPLACE (coalesce("<dim>__full", "<dim>") AS "<dim>")``.

    For the catalog: its view can only show a shortened partition's full value in ``<dim>`` itself with
    this (hive partitioning always takes ``<dim>`` from the directory name)."""
    present = {c.lower() for c in columns}
    full = [(c, c[: -len(FULL_KEY_SUFFIX)]) for c in columns
            if c.endswith(FULL_KEY_SUFFIX) and c[: -len(FULL_KEY_SUFFIX)].lower() in present]
    if not full:
        return "*"
    exclude = ", ".join(quote_ident(c) for c, _ in full)
    replace = ", ".join(f"coalesce({quote_ident(c)}, {quote_ident(d)}) AS {quote_ident(d)}" for c, d in full)
    return f"* EXCLUDE ({exclude}) REPLACE ({replace})"


def _dimension(component: str) -> tuple[str, str]:
    """``"note_tag=Tag%20a"`` -> ``("note_tag", "Tag a")``: a directory name back to its dimension and value."""
    dim, _, value = component.partition("=")
    return dim, unquote(value)


def _parquet(path: Path | ObjectPath) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` of a landed partition, local or in the object store (one version)."""
    import pyarrow.parquet as pq

    if isinstance(path, ObjectPath):
        return pq.ParquetFile(path.open("rb"))
    return pq.ParquetFile(path)


def read_state(path: Path | ObjectPath) -> dict[str, Any]:
    """The state stored with a landed partition (e.g. the change-set token that covers its rows)."""
    if not path.exists():
        return {}
    kv = _parquet(path).schema_arrow.metadata or {}
    raw = kv.get(STATE_KEY.encode())
    return json.loads(raw) if raw else {}


def original_columns(path: Path | ObjectPath) -> dict[str, str]:
    """snake_case name -> the vendor's own column name, as recorded in a landed file."""
    return _kv_json(_parquet(path).schema_arrow, ORIGINALS_KEY)


def renamed_columns(path: Path | ObjectPath) -> dict[str, str]:
    """Column as landed -> the name it had, for vendor columns a partition dimension's name took."""
    return _kv_json(_parquet(path).schema_arrow, RENAMED_KEY)


def _kv_json(schema: Any, key: str) -> dict[str, Any]:
    """One JSON object of a landed file's key-value metadata (``schema``: its Arrow schema); {} if absent."""
    raw = (schema.metadata or {}).get(key.encode())
    return json.loads(raw) if raw else {}


def _file_select(path: Path | ObjectPath, partition: Mapping[str, str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """A SELECT over a landed file with its columns fitted to ``partition``, its vendor names and renames.

    Fitted: a column a dimension of ``partition`` names is renamed (a file landed before renaming), and a
    ``<dim>__full`` column is left out (the partition's own is added when its file is written). One footer
    read, for the names and the metadata together."""
    schema = _parquet(path).schema_arrow
    originals, renamed = _kv_json(schema, ORIGINALS_KEY), _kv_json(schema, RENAMED_KEY)
    full = {full_key_column(d).lower() for d in partition}
    kept = [n for n in schema.names if n.lower() not in full]
    names, renames = clear_of_dimensions(kept, partition)
    source = parquet_file(path)
    fitted_originals = {n: originals[o] for o, n in zip(kept, names, strict=True) if o in originals}
    if names == schema.names:
        return f"SELECT * FROM {source}", fitted_originals, renamed
    cols = ", ".join(f"{quote_ident(o)} AS {quote_ident(n)}" for o, n in zip(kept, names, strict=True))
    return f"SELECT {cols} FROM {source}", fitted_originals, {**renamed, **renames}


def parquet_rows(path: Path | ObjectPath) -> int:
    """Rows of a landed partition, from its footer (local or object store)."""
    return int(_parquet(path).metadata.num_rows)


def read_table(path: Path | ObjectPath, columns: Sequence[str] | None = None) -> Any:
    """A landed partition as a ``pyarrow.Table`` (local or object store), ``columns`` only if given."""
    return _parquet(path).read(columns=list(columns) if columns is not None else None)


def _copy_parquet(
    con: duckdb.DuckDBPyConnection,
    select_sql: str,
    tmp: Path,
    originals: Mapping[str, str],
    state: Mapping[str, Any] | None = None,
    *,
    partition: Mapping[str, str] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> None:
    """COPY a query to one zstd Parquet file carrying the vendor's column names (and state) as KV metadata.

    With ``partition``: its value is recorded too, and a shortened partition's full value is added as a
    constant column (a projection: no pass over the rows). ``renamed``: columns renamed for a dimension."""
    full = full_key_columns(partition or {})
    if full:
        consts = ", ".join(f"{sql_str(v)}::VARCHAR AS {quote_ident(c)}" for c, v in full.items())
        select_sql = f"SELECT *, {consts} FROM ({select_sql})"
    kv = {ORIGINALS_KEY: json.dumps(dict(originals))}
    if state is not None:
        kv[STATE_KEY] = json.dumps(dict(state), sort_keys=True)
    if renamed:
        kv[RENAMED_KEY] = json.dumps(dict(renamed))
    if partition:
        kv[PARTITION_KEY] = json.dumps(dict(partition))
    kv_sql = ", ".join(f"{sql_str(k)}: {sql_str(v)}" for k, v in kv.items())
    # DuckDB writes row groups in parallel; 61,440-row groups (half its default) keep both cores busy on the
    # small partitions most vendors send (a 200,000-row change-set merge: 0.18 s instead of 0.26 s) and
    # cost nothing on a 7M-row export.
    con.execute(
        f"COPY ({select_sql}) TO {sql_str(str(tmp))} "
        f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 61440, KV_METADATA {{{kv_sql}}})"
    )


def _staged_select(
    con: duckdb.DuckDBPyConnection, staged: Path, *, into: str | None = None, dims: Collection[str] = ()
) -> tuple[str, dict[str, str], dict[str, str]]:
    """A streaming SELECT over staged JSON batches with snake_case columns (types inferred from every record;
    mixed-type or nested values become text), the snake -> vendor name mapping, and the columns renamed
    because one of ``dims`` takes their name (new -> old). Nothing staged: ("", {}, {}).

    With ``into``, the records are read once into that temp table and the SELECT reads the table: for a
    change set, which is small and read more than once, instead of a full load, which must stream."""
    if not staged.exists() or staged.stat().st_size == 0:
        return "", {}, {}
    # Types are inferred from every record: with a sample, DuckDB 2.0 silently turns a value that does not
    # fit the sampled type (e.g. text after 20,000 nulls) into NULL. Measured: a full scan costs ~0.4 s/200k rows.
    reader = (f"read_json({sql_str(str(staged))}, format='newline_delimited', sample_size=-1, "
              "hive_partitioning=false, maximum_depth=2)")
    if into:
        con.execute(f"CREATE TEMP TABLE {quote_ident(into)} AS SELECT * FROM {reader}")
        reader = quote_ident(into)
    described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    originals = [d[0] for d in described]
    names, renamed = clear_of_dimensions(normalise_columns(originals), dims)
    cols = []
    for (orig, typ, *_), name in zip(described, names, strict=True):
        ref = quote_ident(orig)
        if typ == "JSON":
            expr = f"CASE WHEN json_type({ref}) = 'VARCHAR' THEN json_extract_string({ref}, '$') ELSE CAST({ref} AS VARCHAR) END"
        elif "NULL" in typ:
            expr = f"CAST({ref} AS VARCHAR)"
        else:
            expr = ref
        cols.append(f"{expr} AS {quote_ident(name)}")
    return f"SELECT {', '.join(cols)} FROM {reader}", dict(zip(names, originals, strict=True)), renamed


def _copy_json(
    con: duckdb.DuckDBPyConnection,
    staged: Path,
    tmp: Path,
    expected_columns: Sequence[str] | None,
    state: Mapping[str, Any] | None,
    partition: Mapping[str, str],
) -> list[str]:
    select, mapping, renamed = _staged_select(con, staged, dims=partition)
    if not mapping:
        # No records: an empty partition with the documented columns (as text), not a failure.
        originals = list(expected_columns or [])
        names, renamed = clear_of_dimensions(normalise_columns(originals), partition)
        cols = ", ".join(f"NULL::VARCHAR AS {quote_ident(n)}" for n in names) or "NULL::VARCHAR AS _empty"
        _copy_parquet(con, f"SELECT {cols} WHERE false", tmp, dict(zip(names, originals, strict=True)), state,
                      partition=partition, renamed=renamed)
        return originals
    _copy_parquet(con, select, tmp, mapping, state, partition=partition, renamed=renamed)
    return list(mapping.values())


def _all_text(con: duckdb.DuckDBPyConnection, select_sql: str) -> str:
    cols = [d[0] for d in con.execute(f"DESCRIBE {select_sql}").fetchall()]
    return ", ".join(f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in cols)


def _duckdb_encoding(encoding: str) -> str:
    e = encoding.lower().replace("_", "-")
    return {"iso-8859-1": "latin-1", "latin1": "latin-1", "utf8": "utf-8", "cp1252": "latin-1"}.get(e, e)


def _refuse_non_csv(src: Path, where: Where) -> None:
    size = src.stat().st_size
    if size == 0:
        raise LandingError(
            where, "the export is empty (0 bytes, not even a header row)", src,
            hint="the vendor produced no file content; re-run the partition, and if it stays empty ask the vendor",
        )
    with open(src, "rb") as f:
        head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"<", b"{", b"["):
        kind = "HTML/XML" if head[:1] == b"<" else "JSON"
        snippet = head[:160].decode("utf-8", "replace")
        raise LandingError(
            where, f"expected CSV but the vendor sent {kind}: {snippet!r}", src,
            hint="this is usually a vendor error page; check the vendor's status and re-run the partition",
        )


OUT_OF_MEMORY_HINT = ("raise EDU_DUCKDB_MEMORY_LIMIT (each run process's landing memory cap, default 200MB), "
                      "then re-run the partition")


def _json_error(where: Where, staged: Path, exc: duckdb.Error) -> LandingError:
    import duckdb
    return LandingError(
        where, f"the records could not be converted to Parquet ({str(exc).splitlines()[0][:300]})", staged,
        hint=OUT_OF_MEMORY_HINT if isinstance(exc, duckdb.OutOfMemoryException) else
        "inspect the staged records; re-run the partition, and report the endpoint if it persists",
    )


def _csv_error(where: Where, src: Path, encoding: str, exc: duckdb.Error) -> LandingError:
    import duckdb
    detail = " ".join(line.strip() for line in str(exc).splitlines()[:3] if line.strip())
    if isinstance(exc, duckdb.OutOfMemoryException):
        return LandingError(where, f"the CSV could not be converted to Parquet ({detail})", src, hint=OUT_OF_MEMORY_HINT)
    if "unicode" in detail.lower() or "encod" in detail.lower():
        return LandingError(
            where, f"the file is not valid {encoding} ({detail})", src,
            hint="set the export's encoding (e.g. encoding: latin-1) in its catalog entry, then re-run",
        )
    return LandingError(
        where, f"the CSV could not be parsed ({detail})", src,
        hint="inspect the raw file; if the vendor's file is malformed, re-run the partition or report it to the vendor",
    )


def _describe(con: duckdb.DuckDBPyConnection, path: Path, full_keys: Mapping[str, str]) -> Landed:
    """What the just-written local file holds: its vendor names and renames read back from its metadata."""
    p = parquet_file(path)
    schema = con.execute(f"DESCRIBE SELECT * FROM {p}").fetchall()
    rows_row = con.execute(f"SELECT count(*) FROM {p}").fetchone()
    cur = con.execute(f"SELECT * FROM {p} LIMIT 5")
    names = [d[0] for d in cur.description] if cur.description else []
    preview = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    arrow_schema = _parquet(path).schema_arrow
    originals, renamed = _kv_json(arrow_schema, ORIGINALS_KEY), _kv_json(arrow_schema, RENAMED_KEY)
    columns = [Column(s[0], s[1], originals.get(s[0], s[0])) for s in schema
               if s[0] in originals or s[0] in full_keys]
    return Landed(path, int(rows_row[0]) if rows_row else 0, path.stat().st_size, columns, preview,
                  renamed_columns=renamed, full_key_columns=dict(full_keys))


def _drift(originals: Sequence[str], expected: Sequence[str] | None) -> tuple[list[str], list[str]]:
    if not expected:
        return [], []
    got = {o.strip() for o in originals}
    want = {e.strip() for e in expected}
    return sorted(want - got), sorted(got - want)


def _sweep_stale(directory: Path, older_than: float = 24 * 3600) -> None:
    """Remove temp files left by runs that were killed mid-write (they are never read)."""
    cutoff = time.time() - older_than
    for p in directory.glob(f"{_TMP_PREFIX}*"):
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except FileNotFoundError:
            pass
