"""The local instance's event log: Dagster's SQLite event log, with its database connections kept open.

Dagster's ``SqliteEventLogStorage`` builds a SQLAlchemy engine, opens a SQLite connection and closes it
again for every statement group, and an asset event takes up to four of them (the run's shard, the index
shard, tags, the asset record). Closing the last connection to a WAL database checkpoints it. Measured on
one school's Xporter snapshot run (59 endpoints, 919 events, 2 cores): 33.3 s with Dagster's storage,
19.9 s with this one, of which about 8 s is vendor latency; the event log's share fell from about 19 s to
under 4 s. A fleet of schools pays that per event, in the run workers and in the daemon (run creation
writes a planned event per asset and partition).

What changes, and what does not:

* one engine per shard and process, with a small pool, so a connection outlives a statement group. The
  run shards' engines are kept for the ``max_open_shards`` most recently used runs (a daemon or webserver
  touches many runs over its life), the index shard's always;
* ``PRAGMA synchronous=NORMAL`` on each connection. The databases are in WAL mode (Dagster sets it), where
  NORMAL keeps every committed event across a crashed or killed process and the database always
  consistent; only a power loss or OS crash can drop the last transactions before the next checkpoint.
  That is the trade SQLite itself recommends for WAL, and the local instance is one machine's; a
  deployment uses PostgreSQL (``deploy/dagster.yaml``);
* everything else (schema, sharding, watchers, queries) is Dagster's own.

``dagster.yaml`` selects it as ``event_log_storage``; ``base_dir`` defaults to Dagster's own place,
``$DAGSTER_HOME/history/runs``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine

DEFAULT_MAX_OPEN_SHARDS = 16


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that keeps one pooled engine per shard instead of one per statement group."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None,
                 max_open_shards: int = DEFAULT_MAX_OPEN_SHARDS) -> None:
        if max_open_shards < 1:
            raise dg.DagsterInvalidConfigError(
                f"event_log_storage max_open_shards must be at least 1, not {max_open_shards}", [], None)
        self._max_open_shards = max_open_shards
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._engines_pid = os.getpid()
        super().__init__(base_dir or default_base_dir(), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {
            "base_dir": dg.Field(dg.StringSource, is_required=False,
                                 description="Default: $DAGSTER_HOME/history/runs (Dagster's own)"),
            "max_open_shards": dg.Field(int, default_value=DEFAULT_MAX_OPEN_SHARDS,
                                        description="Runs whose database connections a process keeps open"),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's own _connect, with the engine kept: the same lock, the same first-use schema check.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():  # a forked child: the parent's connections are not ours
                for engine in self._engines.values():
                    engine.dispose(close=False)
                self._engines.clear()
                self._engines_pid = os.getpid()
            engine = self._engines.get(shard)
            if engine is None:
                engine = self._engines[shard] = _pooled_engine(self.conn_string_for_shard(shard))
            self._engines.move_to_end(shard)
            runs = [key for key in self._engines if key != INDEX_SHARD_NAME]
            for stale in runs[: max(0, len(runs) - self._max_open_shards)]:
                self._engines.pop(stale).dispose()
            return engine

    @property
    def open_shards(self) -> list[str]:
        """The shards this process holds an engine for, least recently used first (for tests and debugging)."""
        with self._engines_lock:
            return list(self._engines)

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._dispose_engines()  # the run shards' files are deleted: no connection may outlive them
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


def default_base_dir() -> str:
    """Where Dagster's default SQLite event log lives: ``$DAGSTER_HOME/history/runs``."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise dg.DagsterInvalidConfigError(
            "event_log_storage PooledSqliteEventLogStorage needs base_dir or DAGSTER_HOME "
            "(./edu sets DAGSTER_HOME=.dagster)", [], None)
    return os.path.join(home, "history", "runs")


def _pooled_engine(url: str) -> Engine:
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.QueuePool,
        pool_size=1,  # the storage's lock serialises its statement groups: one connection per shard is used
        max_overflow=2,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return engine
