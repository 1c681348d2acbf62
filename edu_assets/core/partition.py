"""One partition's identity, from the Dagster key a sensor or a run names to the Parquet file that holds it.

Before this module a partition travelled in several shapes (the Dagster key split by hand on ``|``, a
``{dim: value}`` mapping each vendor built its own way, a ``Where`` built at every hop, a path joined
from the lake's root): each hop could disagree with the next about the dimensions' order or the text a
user sees. A :class:`PartitionId` is built once per partition and answers every hop's question: its
dimensions in lake order, the text a user sees (:attr:`PartitionId.key`), the coordinates of an error or a
log line (:attr:`PartitionId.where`); its directory, data file, work files and stored state come from the
lake (``Lake.data_file``, ``Lake.work_path``, ``Lake.state``), which shortens long values to bounded
directory names (:func:`~edu_assets.core.naming.partition_component`).

A Dagster partition key becomes dimensions only through :func:`partition_dims`, which asks Dagster
(``MultiPartitionsDefinition.get_partition_key_from_str``), never by splitting the text itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import dagster as dg

from edu_assets.core.errors import Where


def partition_dims(
    definition: dg.PartitionsDefinition | None, key: str | dg.MultiPartitionKey | None, dim: str | None = None
) -> dict[str, str]:
    """A Dagster partition key as ``{dimension: value}``, in Dagster's order (dimension names sorted).

    A multi-dimensional definition answers with its own dimensions (from a ``MultiPartitionKey`` or its
    ``a|b`` text: Dagster parses it); a single-dimensional one has no dimension name of its own, so its
    key is the value of ``dim``. No key (an unpartitioned asset): no dimensions."""
    if key is None or definition is None:
        return {}
    if isinstance(key, dg.MultiPartitionKey):
        return dict(key.keys_by_dimension)
    if isinstance(definition, dg.MultiPartitionsDefinition):
        return dict(definition.get_partition_key_from_str(str(key)).keys_by_dimension)
    if dim is None:
        raise ValueError(f"a single-dimension partition key ({key!r}) needs the name of its dimension")
    return {dim: str(key)}


@dataclass(frozen=True)
class PartitionId:
    """Which partition of which dataset: ``<vendor>/<dataset>/<dim>=<value>/...`` in the lake.

    ``dims`` are in lake order (the directory nesting), which need not be Dagster's (Dagster sorts a
    multi-dimensional key's names). ``label`` is how users name the partition when that is not its
    values (a school's ``school 3281101, udf Locker``, a window ``2026-01-01..2026-01-07``); it is not part
    of the identity (two ids of the same dimensions are the same partition whatever their labels)."""

    vendor: str
    dataset: str
    dims: tuple[tuple[str, str], ...] = ()
    label: str | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls, vendor: str, dataset: str, dims: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *, label: str | None = None,
    ) -> PartitionId:
        """An id from dimensions in lake order (a mapping keeps its insertion order)."""
        items = dims.items() if isinstance(dims, Mapping) else dims
        return cls(vendor, dataset, tuple((str(k), str(v)) for k, v in items), label)

    @classmethod
    def from_key(
        cls,
        vendor: str,
        dataset: str,
        definition: dg.PartitionsDefinition | None,
        key: str | dg.MultiPartitionKey | None,
        *,
        dim: str | None = None,
        order: Sequence[str] | None = None,
        label: str | None = None,
    ) -> PartitionId:
        """The id of a Dagster partition key of ``definition`` (see :func:`partition_dims`; ``dim`` names a
        single-dimension definition's dimension). ``order``: the lake's order of the dimensions, when it is
        not Dagster's. Users see the key as Dagster shows it, unless ``label`` says otherwise."""
        by_dim = partition_dims(definition, key, dim)
        if order is not None:
            by_dim = {d: by_dim[d] for d in order}
        return cls.of(vendor, dataset, by_dim, label=label if label is not None else
                      (str(key) if key is not None else None))

    @property
    def mapping(self) -> dict[str, str]:
        """``{dimension: value}`` in lake order (the shape the lake's writers take)."""
        return dict(self.dims)

    def value(self, dim: str) -> str:
        """One dimension's value (KeyError if the partition has no such dimension)."""
        for name, value in self.dims:
            if name == dim:
                return value
        raise KeyError(dim)

    @property
    def key(self) -> str | None:
        """The text users see for this partition: its label, else its value (one dimension) or
        ``dim=value, ...`` (several); None for an unpartitioned dataset."""
        if self.label is not None:
            return self.label
        if not self.dims:
            return None
        if len(self.dims) == 1:
            return self.dims[0][1]
        return ", ".join(f"{k}={v}" for k, v in self.dims)

    @property
    def where(self) -> Where:
        """The coordinates of an error or a log line about this partition."""
        return Where(self.vendor, self.dataset, self.key)

    def with_dataset(self, dataset: str) -> PartitionId:
        """The same partition of another dataset (an endpoint's other tables, a zip's other files)."""
        return replace(self, dataset=dataset)

    def with_dims(self, extra: Mapping[str, str], *, label: str | None = None) -> PartitionId:
        """This partition narrowed by more dimensions, nested below its own (a school's month)."""
        return PartitionId(self.vendor, self.dataset, (*self.dims, *((k, str(v)) for k, v in extra.items())), label)
