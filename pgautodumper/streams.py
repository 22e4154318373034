"""A stream into an object: a child's output → zstd → sha256 → a sink, with no disk.

Every object of a backup is written this way: format 1's one pg_dump stream,
and format 2's schema archive, remaining-data archive and COPY parts. The raw
bytes are counted as zstd reads them (and their newlines: in COPY's text
format every row ends with exactly one, embedded ones are escaped), the hash
covers the stored (compressed) bytes, which is what a reader checks.

A format-2 backup keeps every upload open until all its streams succeeded, so a
stream that has ended must not keep its part buffers: the sink's ``finish()``
uploads the last part and frees them when the stream ends; completing the
upload later is one request. Memory then follows the streams running, not the
streams the backup has.
"""

from __future__ import annotations

import hashlib
from typing import IO

import zstandard
from pydantic import BaseModel

from pgautodumper import storage
from pgautodumper.errors import DumpFailedError


class Compressed(BaseModel):
    raw_bytes: int
    stored_bytes: int
    sha256: str
    newlines: int


class _CountingReader:
    """Counts the raw bytes (and newlines) a child produced, as zstd reads them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0
        self.newlines = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        self.newlines += data.count(b"\n")
        return data


def compress(
    source: IO[bytes], sink: storage.Sink, *, level: int, threads: int, what: str
) -> Compressed:
    """Pump ``source`` to its end through zstd into ``sink``; nothing is completed here."""
    compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    digest = hashlib.sha256()
    stored = 0
    reader = _CountingReader(source)
    try:
        for chunk in compressor.read_to_iter(
            reader, read_size=storage.READ_CHUNK, write_size=storage.READ_CHUNK
        ):
            digest.update(chunk)
            stored += len(chunk)
            sink.write(chunk)
    except zstandard.ZstdError as exc:
        raise DumpFailedError(f"compressing {what} failed: {exc}") from None
    return Compressed(
        raw_bytes=reader.count,
        stored_bytes=stored,
        sha256=digest.hexdigest(),
        newlines=reader.newlines,
    )
