"""Write and hash a download on a second thread while the first keeps reading the socket.

A large export spends as long writing to disk and computing its sha256 as it does receiving bytes.
``file.write`` and ``hashlib`` release the GIL, so moving them to one worker thread lets the three
overlap: measured on 2 cores with a 1 GB export, 2.5-3.8 s instead of 4.8-5.5 s.

The reader hands over whatever the socket gave it (64 KiB-1 MiB on plain HTTP, at most one 16 KiB TLS
record on HTTPS); pieces are batched here, by reference, into ~1 MiB hand-overs, so the thread hand-over
cost stays per megabyte and no byte is copied to re-chunk it (httpx's own ``iter_raw(chunk_size)``
re-chunking copied every byte twice: 1.3 s of a 1 GB download). The queue is bounded, so memory stays at
a few megabytes whatever the file size.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path
from types import TracebackType

_QUEUE_BATCHES = 4
BATCH_BYTES = 1 << 20


class HashingFileSink:
    """``write(chunk)`` appends to ``path`` (mode ``"wb"`` or ``"ab"``) and feeds ``hasher``, in order,
    on a worker thread. Leaving the ``with`` block waits until every chunk is on disk and re-raises a
    write error (a full disk) in the caller's thread, even over a network error."""

    def __init__(self, path: Path, mode: str, hasher: hashlib._Hash, batch_bytes: int = BATCH_BYTES):
        self._out = open(path, mode)  # noqa: SIM115 - closed by the worker's owner in __exit__
        self._hasher = hasher
        self._batch: list[bytes] = []
        self._batched = 0
        self._batch_bytes = batch_bytes
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=_QUEUE_BATCHES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="download-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking batches so the reader never blocks on a dead writer
            try:
                for chunk in batch:
                    self._out.write(chunk)
                    self._hasher.update(chunk)
            except BaseException as exc:
                self._error = exc

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= self._batch_bytes:
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0

    def __enter__(self) -> HashingFileSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._batch:  # what arrived before a network error is kept too: a resume starts after it
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0
        self._queue.put(None)
        self._thread.join()
        self._out.close()
        if self._error is not None:  # a disk error outranks whatever the reader was doing
            raise self._error
