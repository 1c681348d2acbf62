"""Bad-input variants of a good CSV file, for the "vendor sent garbage" fault kinds.

Each function derives a faulty payload from a clean, generated CSV without loading it into
memory, so the faults work on gigabyte files too. Vendor apps call `write_faulty` when a
content fault (see `faults.CONTENT_KINDS`) is taken for a response.
"""

from __future__ import annotations

import codecs
import csv
import shutil
from pathlib import Path

from .faults import CONTENT_KINDS

__all__ = ["HTML_ERROR_BODY", "content_type_for", "write_faulty"]

HTML_ERROR_BODY = b"<html><body>Service unavailable</body></html>"
_CHUNK = 1024 * 1024


def content_type_for(kind: str | None) -> str:
    """The Content-Type a (possibly faulty) CSV payload is served with."""
    return "text/html; charset=utf-8" if kind == "html_error" else "text/csv; charset=utf-8"


def write_faulty(kind: str, clean: Path, dest: Path, variant: str = "fields") -> None:
    """Write the `kind` variant of the `clean` CSV to `dest`. Except for html_error, the payload
    is still served as `text/csv; charset=utf-8`: the headers promise what the body breaks.

    `variant` only matters for malformed_csv: "fields" (a row with two extra fields) or
    "quote" (a row whose last field opens a quote that never closes)."""
    if kind not in CONTENT_KINDS:
        raise ValueError(f"not a content fault: {kind!r}")
    writer = {
        "malformed_csv": lambda src, out: _malformed(src, out, unterminated=variant == "quote"),
        "bad_encoding": _latin1,
        "empty_body": lambda _src, out: out.write_bytes(b""),
        "header_only": _header_only,
        "extra_column": _extra_column,
        "html_error": lambda _src, out: out.write_bytes(HTML_ERROR_BODY),
    }[kind]
    writer(clean, dest)


def _header_only(src: Path, dest: Path) -> None:
    with open(src, "rb") as fh, open(dest, "wb") as out:
        out.write(fh.readline())


def _malformed(src: Path, dest: Path, unterminated: bool) -> None:
    """Insert one bad row at the first record boundary past the middle of the file.
    Record boundaries are CRLF: generated fields never contain a CR."""
    size = src.stat().st_size
    with open(src, "rb") as fh, open(dest, "wb") as out:
        header = fh.readline()
        n_fields = len(next(csv.reader([header.decode("utf-8")])))
        if unterminated:
            bad = ",".join(["broken"] * (n_fields - 1)) + ',"unterminated quote\r\n'
        else:
            bad = ",".join(["broken"] * (n_fields + 2)) + "\r\n"
        out.write(header)
        middle = max(size // 2 - len(header), 0)
        shutil.copyfileobj(_Limited(fh, middle), out, _CHUNK)
        tail = fh.read(_CHUNK)
        cut = tail.find(b"\r\n")
        cut = len(tail) if cut < 0 else cut + 2
        out.write(tail[:cut])
        out.write(bad.encode("ascii"))
        out.write(tail[cut:])
        shutil.copyfileobj(fh, out, _CHUNK)


def _latin1(src: Path, dest: Path) -> None:
    """Same text, ISO-8859-1 bytes (characters outside Latin-1 become '?')."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(src, "rb") as fh, open(dest, "wb") as out:
        while chunk := fh.read(_CHUNK):
            out.write(decoder.decode(chunk).encode("latin-1", errors="replace"))
        out.write(decoder.decode(b"", final=True).encode("latin-1", errors="replace"))


def _extra_column(src: Path, dest: Path) -> None:
    with open(src, encoding="utf-8", newline="") as fh, open(dest, "w", encoding="utf-8", newline="") as out:
        reader, writer = csv.reader(fh), csv.writer(out, lineterminator="\r\n")
        for n, row in enumerate(reader):
            writer.writerow([*row, "Unexpected Col" if n == 0 else f"x{n % 7}"])


class _Limited:
    """A read-only view of the next `limit` bytes of a binary file (for copyfileobj)."""

    def __init__(self, fh, limit: int) -> None:  # type: ignore[no-untyped-def]
        self._fh, self._left = fh, limit

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        return data
