"""The DuckDB catalog: one schema per vendor, one view per asset over its Parquet dataset.

Views read the dataset through a glob, so a new partition is visible the moment its file lands; the
catalog only has to be written when an asset lands for the first time or its columns change. A small
ledger beside the work files remembers which view definitions the catalog file holds (and the file's
identity when they were written), so a run whose views already exist does not open the catalog at all:
that saves ~50 ms a run and, more to the point, keeps parallel runs from queueing on DuckDB's
one-writer-per-file lock. DuckDB allows one writer per file, and a user may be holding the catalog open
in a ``duckdb`` shell: a locked catalog is retried briefly and then skipped with a warning (the data is
landed either way, and ``edu-assets catalog`` rebuilds every view).

Which views a dataset gets besides its own (``_latest``, ``_current``) is declared once per vendor, as
:class:`ViewSpec` values next to its datasets (each vendor's ``views()``); landing and ``rebuild`` both
read those declarations, so the views a landing writes and the views a rebuild recreates are the same.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from edu_assets.core.lake import DATA_FILE, full_key_projection
from edu_assets.core.lakepath import ObjectPath
from edu_assets.core.naming import HASH_MARK, quote_ident, snake_case, sql_str
from edu_assets.core.settings import LakeSettings

if TYPE_CHECKING:
    import duckdb  # imported where used: it costs ~0.1 s, and the code location loads without it

META_SCHEMA = "edu_meta"


@dataclass(frozen=True)
class Current:
    """A change feed's "current state" view: the row with the greatest ``order_by`` per key."""

    keys: tuple[str, ...]
    order_by: str


@dataclass(frozen=True)
class ViewSpec:
    """The views of one dataset (or of every dataset whose name matches a pattern), declared by its vendor.

    ``<vendor>.<dataset>`` is always made; ``latest_by`` adds ``<dataset>_latest`` (the newest partition
    by that column, for snapshots) and ``current`` adds ``<dataset>_current`` (the newest version of each
    key, for change feeds). ``dataset`` may be a shell-style pattern (``export_*``) for datasets that are
    only named at run time (WebAdMIT's templates); a dataset's own name wins over any pattern."""

    vendor: str
    dataset: str
    latest_by: str | None = None
    current: Current | None = None

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.dataset for ch in "*?[")

    def matches(self, vendor: str, dataset: str) -> bool:
        return vendor == self.vendor and fnmatchcase(dataset, self.dataset)


def view_for(views: Iterable[ViewSpec], vendor: str, dataset: str) -> ViewSpec:
    """The declaration that applies to one landed dataset, named for it: the one naming it exactly, else
    the first pattern it matches, else plain (a dataset nobody declared still gets its own view)."""
    matching = [v for v in views if v.matches(vendor, dataset)]
    exact = [v for v in matching if not v.is_pattern]
    chosen = (exact or matching or [ViewSpec(vendor, dataset)])[0]
    return replace(chosen, dataset=dataset)


@dataclass(frozen=True)
class TableSummary:
    name: str
    rows: int
    columns: int
    partitions: int


def _read_dataset(dataset: Path | ObjectPath) -> str:
    """Every file of a dataset, its partition dimensions taken from the directory names, columns by name."""
    return f"read_parquet({sql_str(_dataset_glob(dataset))}, hive_partitioning=true, union_by_name=true)"


def _dataset_glob(dataset: Path | ObjectPath) -> str:
    return str(dataset / "**" / DATA_FILE)


class _ViewLedger:
    """The view definitions a catalog file is known to hold, valid while the file is unchanged.

    The file's identity (inode, size, mtime) is recorded after each write; any other writer (another
    run, a user's ``duckdb`` shell, a deleted or replaced file) changes it, and the next landing then
    opens the catalog and writes its views again. Only ever a shortcut: when in doubt, write.
    """

    def __init__(self, catalog: Path, work_dir: Path):
        self.catalog = catalog
        self.path = work_dir / "catalog-views.json"

    def _identity(self) -> list[int] | None:
        try:
            st = self.catalog.stat()
        except FileNotFoundError:
            return None
        return [st.st_ino, st.st_size, st.st_mtime_ns]

    def known(self) -> dict[str, str]:
        """The recorded views (name -> SQL), or nothing if the catalog changed since they were recorded."""
        try:
            saved = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        ok = saved.get("catalog") == str(self.catalog) and saved.get("identity") == self._identity()
        return dict(saved.get("views", {})) if ok else {}

    def holds(self, views: dict[str, str]) -> bool:
        known = self.known()
        return bool(views) and all(known.get(name) == sql for name, sql in views.items())

    def record(self, before: dict[str, str], written: dict[str, str]) -> None:
        """After a write: ``before`` (what ``known`` said before opening the file) plus what was written."""
        identity = self._identity()
        if identity is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps({"catalog": str(self.catalog), "identity": identity,
                                   "views": {**before, **written}}, sort_keys=True))
        os.replace(tmp, self.path)


class Catalog:
    def __init__(self, settings: LakeSettings | None = None):
        self.settings = settings or LakeSettings.from_env()
        self.path = self.settings.catalog_path
        self._ledger = _ViewLedger(self.path, self.settings.work_dir)

    def connect(self, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """A connection to the catalog whose views can be queried, whichever lake they read.

        Views over an object-store lake (``s3://``) read through the lake's filesystem, which this registers
        with the connection (DuckDB's ``httpfs`` is not used: it cannot resolve the lake's pointers)."""
        return self._open(read_only=read_only)

    def _open(self, retries: int = 20, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        import duckdb
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(retries):
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                if isinstance(self.settings.root, ObjectPath):
                    from edu_assets.core.objectstore import register  # imports s3fs: only for such a lake

                    register(con, self.settings.root.fs)
                return con
            except duckdb.IOException:
                if attempt + 1 == retries:
                    raise
                time.sleep(0.25 + 0.05 * attempt)
        raise AssertionError("unreachable")

    def ensure_view(
        self, vendor: str, asset: str, views: Iterable[ViewSpec] = (), *, log: object | None = None
    ) -> bool:
        """Create or refresh ``<vendor>.<asset>`` and the views ``views`` declare for it; False if locked."""
        return self.ensure_views(vendor, [asset], views, log=log)

    def ensure_views(
        self,
        vendor: str,
        assets: Sequence[str],
        views: Iterable[ViewSpec] = (),
        *,
        log: object | None = None,
        force: bool = False,
    ) -> bool:
        """``ensure_view`` for several datasets of one vendor, opening the catalog file once.

        ``views`` are the vendor's declarations (its ``views()``): each dataset gets the views declared for
        it (see :func:`view_for`), the same ones ``rebuild`` makes. ``force`` writes them even when the
        ledger says they exist: a landing under a shortened partition name needs the view to read the full
        key from its file (see :func:`_show_full_keys`)."""
        import duckdb
        views = tuple(views)
        datasets = [(view_for(views, vendor, a), self.settings.root / vendor / a) for a in assets]
        datasets = [(s, d) for s, d in datasets if any(d.rglob(DATA_FILE))]
        if not datasets:
            return False
        # Views that depend only on names and paths can be checked without opening the file; a "current"
        # view depends on the dataset's columns, which only DuckDB can say.
        wanted = {} if any(s.current for s, _ in datasets) else {
            name: sql for s, d in datasets for name, sql in _view_statements(s, d).items()}
        if not force and self._ledger.holds(wanted):  # never true for nothing wanted (a "current" view)
            return True
        before = self._ledger.known()
        try:
            con = self._open()
        except duckdb.IOException:
            if log is not None:
                log.warning(  # type: ignore[attr-defined]
                    f"DuckDB catalog {self.path} is locked by another process; views of {vendor} "
                    f"{', '.join(s.dataset for s, _ in datasets)} not refreshed "
                    "(the data is landed; close the other session or run `edu-assets catalog`)"
                )
            return False
        with con:
            for spec, dataset in datasets:
                self._create_views(con, spec, dataset)
        self._ledger.record(before, wanted)
        return True

    def _create_views(self, con: duckdb.DuckDBPyConnection, spec: ViewSpec, dataset: Path | ObjectPath) -> list[str]:
        """Every view ``spec`` (named for one dataset) declares, over the files under ``dataset``; their names."""
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(spec.vendor)}")
        statements = _view_statements(spec, dataset)
        for sql in statements.values():
            con.execute(sql)
        _show_full_keys(con, spec, dataset)
        made = list(statements)
        if spec.current and _create_current_view(con, spec.vendor, spec.dataset, spec.current):
            made.append(f"{spec.vendor}.{spec.dataset}_current")
        return made

    def rebuild(self, views: Iterable[ViewSpec] = ()) -> list[str]:
        """Recreate every view from what is in the lake (for a catalog deleted or moved by hand): each landed
        dataset gets the views ``views`` (every vendor's declarations) declare for it, as its landing does,
        and a dataset nobody declared its own plain view. Returns the views made, as ``vendor.view``."""
        views = tuple(views)
        made: list[str] = []
        if not self.settings.root.exists():
            return made
        with self._open() as con:
            for vendor_dir in sorted(p for p in self.settings.root.iterdir() if p.is_dir()):
                for dataset in sorted(p for p in vendor_dir.iterdir() if p.is_dir()):
                    if any(dataset.rglob(DATA_FILE)):
                        made += self._create_views(con, view_for(views, vendor_dir.name, dataset.name), dataset)
        return made

    def summary(self, vendor: str | None = None) -> list[TableSummary]:
        """One line per view: rows, columns and partitions (files) behind it."""
        out: list[TableSummary] = []
        if not self.path.exists():
            return out
        with self._open(read_only=True) as con:
            views = con.execute(
                "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
                "AND view_name NOT LIKE '%\\_latest' ESCAPE '\\' AND view_name NOT LIKE '%\\_current' ESCAPE '\\' "
                "ORDER BY 1, 2"
            ).fetchall()
            for schema, view in views:
                if schema == META_SCHEMA or (vendor and schema != vendor):
                    continue
                ref = f"{quote_ident(schema)}.{quote_ident(view)}"
                rows = con.execute(f"SELECT count(*) FROM {ref}").fetchone()
                cols = con.execute(f"DESCRIBE {ref}").fetchall()
                partitions = len(list((self.settings.root / schema / view).rglob(DATA_FILE)))
                out.append(TableSummary(f"{schema}.{view}", int(rows[0]) if rows else 0, len(cols), partitions))
        return out


def _view_statements(spec: ViewSpec, dataset: Path | ObjectPath) -> dict[str, str]:
    """``<vendor>.<dataset>`` over the dataset's files (and ``<dataset>_latest``): view name -> its SQL."""
    vendor, asset, latest_by = spec.vendor, spec.dataset, spec.latest_by
    schema, view = quote_ident(vendor), quote_ident(asset)
    out = {f"{vendor}.{asset}": (
        f"CREATE OR REPLACE VIEW {schema}.{view} AS SELECT * FROM {_read_dataset(dataset)}")}
    if latest_by:
        col = quote_ident(latest_by)
        out[f"{vendor}.{asset}_latest"] = (
            f"CREATE OR REPLACE VIEW {schema}.{quote_ident(asset + '_latest')} AS SELECT * FROM {schema}.{view} "
            f"WHERE {col} = (SELECT max({col}) FROM {schema}.{view})")
    return out


def _show_full_keys(con: duckdb.DuckDBPyConnection, spec: ViewSpec, dataset: Path | ObjectPath) -> None:
    """Make ``<dim>`` show the full key where a partition's directory name was shortened.

    Hive partitioning takes ``<dim>`` from the directory name, and a key too long for a file name lands
    under ``<dim>=<start>!<hash>`` with its full value in the file's ``<dim>__full`` column. Only a dataset
    that has such a directory pays for the ``DESCRIBE`` (it reads the files' footers)."""
    if not any(HASH_MARK in part for f in dataset.rglob(DATA_FILE) for part in f.relative_to(dataset).parts[:-1]):
        return
    schema, view = quote_ident(spec.vendor), quote_ident(spec.dataset)
    columns = [r[0] for r in con.execute(f"DESCRIBE {schema}.{view}").fetchall()]
    projection = full_key_projection(columns)
    if projection != "*":
        con.execute(f"CREATE OR REPLACE VIEW {schema}.{view} AS SELECT {projection} FROM {_read_dataset(dataset)}")


def _create_current_view(con: duckdb.DuckDBPyConnection, vendor: str, asset: str, current: Current) -> bool:
    """``<asset>_current``, once the dataset has the key and order columns (a feed landed before they
    existed, or an empty window, has none yet: its view comes with a later landing); False until then."""
    schema, view = quote_ident(vendor), quote_ident(asset)
    columns = {r[0] for r in con.execute(f"DESCRIBE {schema}.{view}").fetchall()}
    keys = [snake_case(k) for k in current.keys]
    if not (all(k in columns for k in keys) and current.order_by in columns):
        return False
    by = ", ".join(quote_ident(k) for k in keys)
    con.execute(
        f"CREATE OR REPLACE VIEW {schema}.{quote_ident(asset + '_current')} AS SELECT * FROM {schema}.{view} "
        f"QUALIFY row_number() OVER (PARTITION BY {by} ORDER BY {quote_ident(current.order_by)} DESC) = 1"
    )
    return True


def format_summary(rows: list[TableSummary]) -> str:
    if not rows:
        return "(no tables landed yet)"
    width = max(len(r.name) for r in rows)
    lines = [f"{'table'.ljust(width)}  {'rows':>10}  {'columns':>7}  {'partitions':>10}"]
    lines += [f"{r.name.ljust(width)}  {r.rows:>10,}  {r.columns:>7}  {r.partitions:>10}" for r in rows]
    lines.append(f"{len(rows)} tables, {sum(r.rows for r in rows):,} rows")
    return "\n".join(lines)
