"""Materialization metadata a data engineer wants on the asset page: size, schema, provenance, a preview."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from edu_assets.core.http import Downloaded
from edu_assets.core.lake import Column, Landed
from edu_assets.core.naming import FULL_KEY_SUFFIX
from edu_assets.core.redact import redact


def _cell(value: Any) -> str:
    text = "" if value is None else redact(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text[:40] + ("…" if len(text) > 40 else "")


def _column_note(landed: Landed, column: Column) -> str | None:
    """The schema's description of a column: its vendor name, and why it was renamed or added."""
    if column.name in landed.full_key_columns:
        dim = column.name[: -len(FULL_KEY_SUFFIX)]
        return f"the full {dim} value of the partition, whose directory name is shortened (the view shows it as {dim})"
    note = f"vendor column: {column.original!r}" if column.original != column.name else None
    if column.name in landed.renamed_columns:
        note = f"{note}; renamed from {landed.renamed_columns[column.name]}: a partition dimension has that name"
    return note


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table (the UI renders ``MetadataValue.md``); cells are used as given."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def preview_markdown(landed: Landed) -> str:
    if not landed.columns:
        return "(no columns)"
    cols = [c.name for c in landed.columns][:12]
    return markdown_table(cols, ([_cell(row.get(c)) for c in cols] for row in landed.preview))


def landed_metadata(
    landed: Landed,
    *,
    downloaded: Downloaded | None = None,
    vendor_job_id: str | None = None,
    waited_seconds: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "dagster/row_count": landed.rows,
        "parquet_bytes": landed.bytes,
        "path": dg.MetadataValue.path(str(landed.path)),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(c.name, c.type, description=_column_note(landed, c)) for c in landed.columns]
        ),
        "preview": dg.MetadataValue.md(preview_markdown(landed)),
    }
    if not landed.typed:
        md["typed"] = dg.MetadataValue.text("no: a value did not fit the sniffed types, so every column landed as text")
    if landed.missing_columns:
        md["missing_columns"] = ", ".join(landed.missing_columns)
    if landed.unexpected_columns:
        md["unexpected_columns"] = ", ".join(landed.unexpected_columns)
    if landed.renamed_columns:
        md["renamed_columns"] = dg.MetadataValue.text(
            ", ".join(f"{old} -> {new}" for new, old in landed.renamed_columns.items())
            + " (a partition dimension has that name, and would hide the vendor's column in the view)")
    if landed.full_key_columns:
        md["full_partition_key_columns"] = dg.MetadataValue.text(
            ", ".join(landed.full_key_columns)
            + " (the partition value is too long for a directory name: the directory's is shortened)")
    if downloaded is not None:
        md["download_bytes"] = downloaded.bytes
        md["download_sha256"] = downloaded.sha256
        md["download_seconds"] = round(downloaded.seconds, 3)
        if downloaded.attempts > 1:
            md["download_attempts"] = downloaded.attempts
    if vendor_job_id:
        md["vendor_job_id"] = vendor_job_id
    if waited_seconds is not None:
        md["export_wait_seconds"] = round(waited_seconds, 2)
    md.update(extra or {})
    return md
