"""A stored object read back: its bytes hashed and counted as they stream, then judged.

Format 2 restores and exports read every object of a backup through a
:class:`CheckedObject`: the stored (compressed) bytes are hashed and counted as
they are read, the decompressed bytes counted, and :meth:`CheckedObject.finish`
compares all three with the manifest's entry (sha256, stored size, raw size)
before anything that used the bytes may become visible. Bytes that differ are
reported as a corrupt object, named by its key and what it holds, whatever the
consumer (pg_restore, a COPY) made of them first.

Memory stays bounded whatever the object's size: one S3 read (``READ_CHUNK``),
the zstd window (512 KiB at the backup's default level, at most 8 MiB up to
level 19) and one decompressed chunk of at most ``WRITE_CHUNK``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import zstandard

from pgautodumper import storage
from pgautodumper.catalog import MISSING_HINT
from pgautodumper.errors import (
    INCOMPLETE_TARGET,
    BackupNotFoundError,
    ChecksumMismatchError,
    ObjectMissingError,
)
from pgautodumper.manifest import StoredObject

READ_CHUNK = storage.READ_CHUNK
WRITE_CHUNK = 1024 * 1024


def listed_object(bucket: str, key: str, what: str) -> Iterator[bytes]:
    """The bytes of an object the manifest lists: one that is gone is named as missing from
    the backup (deleted after it completed), not as a key the user mistyped."""
    try:
        yield from storage.stream(bucket, key)
    except BackupNotFoundError:
        raise ObjectMissingError(
            f"{what} (s3://{bucket}/{key}), which the backup's manifest lists, is gone: it was "
            "deleted after the backup completed",
            hint=MISSING_HINT,
        ) from None


class CheckedObject:
    """One object of a backup, streamed from S3; a file-like ``read`` for zstd.

    ``what`` names the object in messages ("part 3 of table public.orders").
    """

    def __init__(
        self, bucket: str, stored: StoredObject, what: str, *, hint: str = INCOMPLETE_TARGET
    ):
        self.bucket = bucket
        self.stored = stored
        self.what = what
        self.hint = hint
        self._chunks = listed_object(bucket, stored.key, what)
        self._pending = b""
        self._digest = hashlib.sha256()
        self.size = 0
        self.raw_bytes = 0
        self._ended = False

    # -- reading ---------------------------------------------------------------

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` stored bytes (b"" at the end); refuses more than the manifest's."""
        if not self._pending:
            if self._ended:
                return b""
            chunk = next(self._chunks, b"")
            if not chunk:
                self._ended = True
                return b""
            self._digest.update(chunk)
            self.size += len(chunk)
            if self.size > self.stored.stored_bytes:
                # A replaced object can be any size: do not read it all to say so.
                self._ended = True
                self.close()
                raise self._mismatch(f"it has more than {self.stored.stored_bytes} bytes")
            self._pending = chunk
        if size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def decompressed(self) -> Iterator[bytes]:
        """The object's raw bytes, in chunks of at most ``WRITE_CHUNK``; counted.

        A zstd error is a finding about the bytes, not a failure of ours: the
        rest is read and the checksum decides what it was (see :meth:`finish`).
        """
        decompressor = zstandard.ZstdDecompressor()
        try:
            for chunk in decompressor.read_to_iter(
                self, read_size=READ_CHUNK, write_size=WRITE_CHUNK
            ):
                self.raw_bytes += len(chunk)
                yield chunk
        except zstandard.ZstdError as exc:
            self.finish(undecodable=str(exc))

    # -- judging ---------------------------------------------------------------

    def finish(self, *, undecodable: str | None = None, consumed: bool = True) -> None:
        """Read what is left and compare with the manifest; raises ChecksumMismatchError.

        Called once every raw byte was consumed, or when the consumer failed, to
        tell a corrupt object from a failure of the consumer. Matching sha256 and
        sizes mean the bytes are the ones the backup wrote: a zstd error or a
        raw size that differs then says the object was damaged before its
        checksum was taken.
        """
        while self.read(READ_CHUNK):
            pass
        if self.size != self.stored.stored_bytes:
            raise self._mismatch(
                f"it has {self.size} bytes, the manifest records {self.stored.stored_bytes} "
                "(truncated or replaced)"
            )
        sha256 = self._digest.hexdigest()
        if sha256 != self.stored.sha256:
            raise self._mismatch(
                f"its sha256 is {sha256}, the manifest records {self.stored.sha256}"
            )
        if undecodable is not None:
            raise self._corrupt_as_written(f"zstd: {undecodable}")
        if consumed and self.raw_bytes != self.stored.raw_bytes:
            raise self._corrupt_as_written(
                f"it decompresses to {self.raw_bytes} bytes, the manifest records "
                f"{self.stored.raw_bytes}"
            )

    def corruption(self) -> ChecksumMismatchError | None:
        """After a consumer failed: the object's corruption, if that is what it was.

        Reads the rest of the object and judges its stored bytes (a consumer that
        stopped early has not decompressed them all); raises only storage errors.
        """
        try:
            self.finish(consumed=False)
        except ChecksumMismatchError as exc:
            return exc
        return None

    def close(self) -> None:
        """Stop reading (the S3 response is released)."""
        self._chunks.close()

    def _mismatch(self, detail: str) -> ChecksumMismatchError:
        return ChecksumMismatchError(
            f"checksum mismatch: {self.what} ({self.stored.key}) is corrupt: {detail}",
            hint=self.hint,
        )

    def _corrupt_as_written(self, detail: str) -> ChecksumMismatchError:
        return ChecksumMismatchError(
            f"the checksum matches the manifest, but {self.what} ({self.stored.key}) is "
            f"corrupt ({detail})",
            hint=self.hint,
        )
