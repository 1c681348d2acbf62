"""Where the lake lives: a local directory or ``s3://bucket/prefix``, chosen by ``EDU_LAKE_ROOT``.

The lake's callers (assets, checks, the catalog) locate partitions with ``pathlib`` operations: ``/``,
``exists``, ``stat``, ``glob``, ``relative_to``. :class:`ObjectPath` gives those same operations over the
object-store lake, so a vendor's code does not care which lake it lands in. A partition's
``.../data.parquet`` is virtual there: it means "the version the partition's ``CURRENT`` pointer names"
(see :mod:`edu_assets.core.objectstore`), so ``exists`` and ``stat`` answer for the published version and
``glob`` returns the partitions that have one.

An ``ObjectPath`` deliberately has no ``__fspath__``: code that would hand it to ``open()`` or to a local
reader fails at once instead of creating a local folder named ``s3:``. Readers go through
:func:`resolve` (the immutable version a partition is now), which pins a query to one version.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from edu_assets.core.errors import ConfigError, Where

if TYPE_CHECKING:
    from edu_assets.core.objectstore import LakeFileSystem

DATA_FILE = "data.parquet"
SUPPORTED = ("s3",)  # object-store schemes EDU_LAKE_ROOT accepts; anything else with "://" is refused
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


def lake_root(text: str) -> Path | ObjectPath:
    """``EDU_LAKE_ROOT`` as a root: an absolute local path, or an :class:`ObjectPath` for ``s3://bucket/prefix``.

    Refuses any other scheme (and an ``s3://`` without a bucket) with what to set instead, so a deployment
    fails when it loads rather than landing in a local folder named ``gs:``."""
    m = _SCHEME.match(text.strip())
    if m is None:
        return Path(text).absolute()
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme == "file":
        return Path("/" + rest.lstrip("/")).absolute()
    if scheme not in SUPPORTED:
        raise ConfigError(
            Where("lake"), f"EDU_LAKE_ROOT={text!r}: the scheme {scheme!r} is not supported",
            hint="use a local directory or s3://bucket/prefix (any S3-compatible store, reached through "
            "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION)",
        )
    rest = rest.rstrip("/")
    if not rest.split("/", 1)[0]:
        raise ConfigError(Where("lake"), f"EDU_LAKE_ROOT={text!r} names no bucket",
                          hint="set EDU_LAKE_ROOT=s3://<bucket>[/<prefix>]")
    from edu_assets.core.objectstore import store_from_env

    return ObjectPath(store_from_env(), rest)


def is_object(path: Any) -> bool:
    return isinstance(path, ObjectPath)


def resolve(path: Path | ObjectPath) -> str:
    """The string a reader opens for ``path``: a local path as is; in the object store, the immutable version
    the partition's pointer names now (``s3://.../versions/<id>.parquet``). Resolving once per query is what
    keeps a query on one version while a landing replaces the partition."""
    if isinstance(path, ObjectPath):
        return path.resolved()
    return str(path)


@dataclass(frozen=True, eq=False)
class ObjectPath:
    """A ``pathlib``-like path in the object-store lake: ``fs`` and ``key`` (``bucket/prefix/...``)."""

    fs: LakeFileSystem
    key: str

    # ------------------------------------------------------------------ pure path operations
    def __str__(self) -> str:
        return f"s3://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(self.fs, f"{self.key}/{str(name).strip('/')}")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.fs, self.key.rsplit("/", 1)[0]) if "/" in self.key else self

    @property
    def parts(self) -> tuple[str, ...]:
        return ("s3://", *self.key.split("/"))

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        if not (self.key == other.key or self.key.startswith(other.key + "/")):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.key[len(other.key) + 1 :])

    def absolute(self) -> ObjectPath:
        return self

    # ------------------------------------------------------------------ the store
    def _is_data(self) -> bool:
        return self.name == DATA_FILE

    def exists(self) -> bool:
        if self._is_data():
            pointer = self.fs.read_pointer(self.parent.key)
            return bool(pointer and pointer.version)
        return bool(self.fs.exists(self.key))

    def is_dir(self) -> bool:
        return not self._is_data() and bool(self.fs.isdir(self.key))

    def is_file(self) -> bool:
        return self.exists() if self._is_data() else bool(self.fs.isfile(self.key))

    def stat(self) -> Any:
        """``st_size`` and ``st_mtime``: for a partition, of its published version (mtime: when published)."""
        if self._is_data():
            pointer = self.fs.read_pointer(self.parent.key)
            if not pointer or not pointer.version:
                raise FileNotFoundError(f"{self}: no published version")
            return SimpleNamespace(st_size=pointer.bytes, st_mtime=pointer.published_at)
        info = self.fs.info(self.key)
        modified = info.get("LastModified")
        return SimpleNamespace(st_size=int(info.get("size") or 0),
                               st_mtime=modified.timestamp() if modified is not None else 0.0)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: an object store has no directories."""

    def iterdir(self) -> Iterator[ObjectPath]:
        for entry in sorted(self.fs.ls(self.key, detail=False)):
            yield ObjectPath(self.fs, self.fs._strip_protocol(entry))

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Matches of ``pattern`` under this path; a pattern ending in ``data.parquet`` matches the
        partitions that have a published version (their virtual ``data.parquet``), nothing else."""
        full = f"{self.key}/{pattern.strip('/')}"
        if full.rsplit("/", 1)[-1] == DATA_FILE:
            for directory, _ in self.fs.published(self.key, full):
                yield ObjectPath(self.fs, f"{directory}/{DATA_FILE}")
            return
        for found in sorted(self.fs.glob(full)):
            yield ObjectPath(self.fs, self.fs._strip_protocol(found))

    def rglob(self, pattern: str) -> Iterator[ObjectPath]:
        return self.glob(f"**/{pattern}")

    def resolved(self) -> str:
        """``s3://`` URL of the immutable object a reader should open (a partition: its current version)."""
        if not self._is_data():
            return str(self)
        pointer = self.fs.read_pointer(self.parent.key)
        if not pointer or not pointer.version:
            raise FileNotFoundError(f"{self}: no published version (nothing landed, or the partition was removed)")
        return f"s3://{self.parent.key}/{pointer.version}"

    def open(self, mode: str = "rb") -> Any:
        if mode != "rb":
            raise ValueError(f"{self}: the lake's objects are written by publishing, not opened for {mode!r}")
        return self.fs.open(self.resolved(), "rb")

    def unlink(self, missing_ok: bool = False) -> None:
        """Remove a partition (its pointer then names no version); another object is deleted outright."""
        if self._is_data():
            if not self.exists() and not missing_ok:
                raise FileNotFoundError(str(self))
            self.fs.unpublish(self.parent.key)
        elif self.fs.exists(self.key):
            self.fs.rm(self.key)
        elif not missing_ok:
            raise FileNotFoundError(str(self))
