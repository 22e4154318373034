"""Where dump bytes go and come back from: S3 multipart uploads and streams.

A :class:`Sink` receives the compressed stream. :class:`S3MultipartSink`
uploads it as a multipart upload with bounded memory: at most
``MAX_IN_FLIGHT`` parts travel while one more is being filled, so peak memory
is a small multiple of the part size whatever the database size. The part
size starts from the database size and doubles every 1,000 parts, so 10,000
parts always reach S3's 5 TiB object limit. Nothing is visible until
``complete()``; anything else aborts the upload.

S3 keeps a checksum of its own: the upload declares a full-object CRC32
(computed while streaming, checked by S3 on completion) and every download asks
for it back, so bytes damaged in transport are caught by botocore as well as by
the manifest's sha256. A full-object (not composite) checksum is what a client
can check on a whole-object GET: https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity-upload.html
(full object checksums for multipart uploads: CRC-32, CRC-32C, CRC-64/NVME) and
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (ChecksumMode).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import queue
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    FlexibleChecksumError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from pgautodumper import aws
from pgautodumper.errors import (
    BackupExistsError,
    BackupNotFoundError,
    BucketNotFoundError,
    ChecksumMismatchError,
    StorageAccessDeniedError,
    StorageError,
    StorageUnavailableError,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
# Three parts live at once (two uploading, one filling): 12 MiB keeps the process
# under 128 MiB, and 10,000 parts growing from 12 MiB still reach 5 TiB.
DEFAULT_PART_SIZE = 12 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
PARTS_PER_STEP = 1_000
MAX_IN_FLIGHT = 2
READ_CHUNK = 1 * MiB
# A body that breaks off mid-read is resumed where it stopped, this many times in all.
RESUME_ATTEMPTS = 5
RESUME_BACKOFF_SECONDS = 0.5
_BROKEN_OFF = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError, ConnectionClosedError)
# S3's own checksum of a dump object: CRC32 over the whole object (zlib's CRC-32).
CHECKSUM_ALGORITHM = "CRC32"
CHECKSUM_TYPE = "FULL_OBJECT"


def initial_part_size(database_size_bytes: int, minimum: int = DEFAULT_PART_SIZE) -> int:
    """A part size at which the database's own size fits in 10,000 parts, in whole MiB.

    The stored stream is usually smaller than the database, but not always
    (hex-encoded bytea that does not compress); :func:`part_size` growth
    covers that case.
    """
    needed = -(-database_size_bytes // MAX_PARTS)
    size = max(minimum, -(-needed // MiB) * MiB)
    return min(size, MAX_PART_SIZE)


def part_size(part_number: int, base: int) -> int:
    """Size of part ``part_number`` (1-based): doubles every 1,000 parts.

    With a 5 MiB base the first 10,000 parts hold over 2.5 TiB; with the
    12 MiB default, more than S3's 5 TiB object limit.
    """
    return min(base << ((part_number - 1) // PARTS_PER_STEP), MAX_PART_SIZE)


def crc32_base64(crc: int) -> str:
    """S3's encoding of a CRC32: the 4 big-endian bytes, base64."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


# S3's refusals that name their own cause (S3 error codes: ExpiredToken, InvalidToken,
# TokenRefreshRequired, RequestTimeTooSkewed; an SSE-KMS key's refusal is prefixed
# "KMS.", as KMS.DisabledException or KMS.KMSInvalidStateException for a key pending
# deletion). Each needs a person, not a retry.
_CREDENTIALS_EXPIRED = (
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
    "TokenRefreshRequired",
)
_CLOCK_SKEWED = ("RequestTimeTooSkewed", "RequestExpired")
_KMS_KEY_REFUSED = (
    "the bucket's KMS key refused: it may be disabled or pending deletion (once deleted, "
    "every backup it encrypts is unreadable: aws kms cancel-key-deletion, then enable it), or "
    "the role lacks kms:GenerateDataKey and kms:Decrypt on it"
)


def _refusal(code: str, text: str) -> str | None:
    """The next step for a refusal S3 explains, or None."""
    if code in _CREDENTIALS_EXPIRED:
        return (
            "the credentials expired mid-run: refresh them (task and instance roles refresh "
            "by themselves; a session token from the environment does not)"
        )
    if code in _CLOCK_SKEWED:
        return "this machine's clock is over 15 minutes off AWS's: sync it (NTP)"
    if code.startswith("KMS.") or (code == "AccessDenied" and "kms:" in text.lower()):
        return _KMS_KEY_REFUSED
    return None


def storage_error(exc: Exception, *, bucket: str, key: str, action: str) -> StorageError:
    """Map a boto3 error to the named storage error, for messages users can act on."""
    where = f"s3://{bucket}/{key}"
    if isinstance(exc, BotoCoreError):
        return StorageUnavailableError(
            f"{action} {where}: {exc}", hint="check AWS_ENDPOINT_URL, network and region"
        )
    code = aws.error_code(exc)
    if denied := _refusal(code, str(exc)):
        return StorageAccessDeniedError(f"{action} {where}: {exc}", hint=denied)
    if code == "NoSuchBucket":
        return BucketNotFoundError(
            f"{action} {where}: bucket {bucket} does not exist",
            hint="check --bucket and the region",
        )
    if code in (
        "AccessDenied",
        "403",
        "Forbidden",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ):
        return StorageAccessDeniedError(
            f"{action} {where}: access denied ({code})",
            hint="check the credentials and that the role may use this bucket and prefix",
        )
    if code in ("NoSuchKey", "404", "NotFound"):
        return BackupNotFoundError(
            f"{action} {where}: no such object", hint="'pgautodumper list' shows the backups"
        )
    if code in ("PreconditionFailed", "ConditionalRequestConflict"):
        return BackupExistsError(
            f"{action} {where}: the key already exists and is never overwritten",
            hint="start a new run (a new run id)",
        )
    if code.startswith("5") or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
        return StorageUnavailableError(f"{action} {where}: S3 error {code}", hint="retry later")
    return StorageError(f"{action} {where}: {code or exc}")


class Sink(Protocol):
    """Receives the stored bytes of one dump, in order."""

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None:
        """The stream ended: send what is left and release the memory it holds."""
        ...

    def complete(self) -> int:
        """Make the object visible; returns the number of parts."""
        ...

    def abort(self) -> None:
        """Discard everything; must be safe to call at any time, more than once."""
        ...

    def write_manifest(self, key: str, body: bytes) -> None:
        """Store the commit marker, after :meth:`complete`; never over an existing one."""
        ...


class NullSink:
    """Counts and drops the bytes: the benchmark seam for the dump stage."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)

    def finish(self) -> None:
        pass

    def complete(self) -> int:
        return 1

    def abort(self) -> None:
        pass

    def write_manifest(self, key: str, body: bytes) -> None:
        pass


class S3MultipartSink:
    """A multipart upload with at most ``in_flight`` parts uploading while one fills.

    Peak memory: ``(in_flight + 1) * part size``.
    """

    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        base_part_size: int = DEFAULT_PART_SIZE,
        in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if base_part_size < MIN_PART_SIZE:
            raise StorageError(f"part size {base_part_size} is below S3's minimum of 5 MiB")
        self.bucket, self.key = bucket, key
        self.base_part_size = base_part_size
        self._s3 = aws.client("s3")
        # At most MAX_IN_FLIGHT + 1 part buffers ever exist: uploaded ones come back
        # here and are refilled, so a long stream does not churn the allocator.
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._buffer = bytearray(self.base_part_size)  # pre-sized: never over-allocated
        self._filled = 0
        self._parts: list[Future[dict[str, object]]] = []
        self._slots = threading.Semaphore(in_flight)
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix="s3-part")
        self._upload_id: str | None = None
        self._closed = False
        self._uploaded: list[dict[str, object]] | None = None  # once finished
        self._crc = 0  # zlib.crc32 of every byte written, in order
        self._refuse_existing()
        try:
            response = self._s3.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                ChecksumType=CHECKSUM_TYPE,
            )
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, bucket=bucket, key=key, action="start upload of") from None
        self._upload_id = response["UploadId"]

    def _refuse_existing(self) -> None:
        """Fail before uploading anything if the key is taken (a retried run)."""
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return
            raise storage_error(exc, bucket=self.bucket, key=self.key, action="check") from None
        except BotoCoreError as exc:
            raise storage_error(exc, bucket=self.bucket, key=self.key, action="check") from None
        raise BackupExistsError(
            f"s3://{self.bucket}/{self.key} already exists and is never overwritten",
            hint="start a new run (a new run id)",
        )

    @property
    def current_part_size(self) -> int:
        return part_size(len(self._parts) + 1, self.base_part_size)

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        view = memoryview(data)
        while view:
            take = min(len(self._buffer) - self._filled, len(view))
            self._buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == len(self._buffer):
                self._flush()

    def _flush(self) -> None:
        # The filled buffer itself becomes the part body: no copy of a whole part.
        body = self._buffer
        del body[self._filled :]  # only the last part is short
        self._filled = 0
        self._raise_failed_part()
        self._slots.acquire()  # backpressure: the producer waits for a free slot
        number = len(self._parts) + 1
        self._parts.append(self._pool.submit(self._upload_part, number, body))
        self._buffer = self._next_buffer()

    def _next_buffer(self) -> bytearray:
        size = self.current_part_size
        try:
            buffer = self._free.get_nowait()
        except queue.Empty:
            return bytearray(size)
        return buffer if len(buffer) == size else bytearray(size)

    def _upload_part(self, number: int, body: bytearray) -> dict[str, object]:
        try:
            # botocore computes the part's CRC32 and S3 checks it on arrival.
            response = self._s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            )
            part: dict[str, object] = {"PartNumber": number, "ETag": response["ETag"]}
            if response.get("ChecksumCRC32"):
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            return part
        finally:
            self._free.put(body)
            self._slots.release()

    def _raise_failed_part(self) -> None:
        for future in self._parts:
            if future.done() and future.exception() is not None:
                self._part_result(future)

    def _part_result(self, future: Future[dict[str, object]]) -> dict[str, object]:
        try:
            return future.result()
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(
                exc, bucket=self.bucket, key=self.key, action="upload part of"
            ) from None

    def finish(self) -> None:
        """Upload the last part, wait for every part, and free the buffers and threads.

        A stream that has ended need not hold its part buffers until the whole
        backup is completed (with many parts, that would grow with their
        number); :meth:`complete` then only commits. A failed part raises here.
        """
        if self._uploaded is not None:
            return
        if self._filled or not self._parts:
            self._flush()
        self._uploaded = [self._part_result(f) for f in self._parts]
        self._buffer, self._filled = bytearray(), 0
        with contextlib.suppress(queue.Empty):
            while True:
                self._free.get_nowait()
        self._pool.shutdown(wait=True)

    def complete(self) -> int:
        self.finish()
        parts = self._uploaded or []
        try:
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
                # S3 compares it with the CRC32 it combined from the parts.
                ChecksumCRC32=crc32_base64(self._crc),
                ChecksumType=CHECKSUM_TYPE,
            )
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, bucket=self.bucket, key=self.key, action="complete") from None
        self._close()
        return len(parts)

    def abort(self) -> None:
        if self._closed:
            return
        self._close()
        # If this fails too, the bucket's lifecycle rule aborts the upload after a day.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
            )

    def write_manifest(self, key: str, body: bytes) -> None:
        put_if_absent(self.bucket, key, body)

    def _close(self) -> None:
        self._closed = True
        self._buffer, self._filled = bytearray(), 0
        self._pool.shutdown(wait=True, cancel_futures=True)


def put_if_absent(
    bucket: str, key: str, body: bytes, *, content_type: str = "application/json"
) -> None:
    """Write a small object that must never replace an existing one."""
    try:
        aws.client("s3").put_object(
            Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", ContentType=content_type
        )
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, bucket=bucket, key=key, action="write") from None


def put(bucket: str, key: str, body: bytes) -> None:
    try:
        aws.client("s3").put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json"
        )
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, bucket=bucket, key=key, action="write") from None


def delete(bucket: str, key: str) -> None:
    try:
        aws.client("s3").delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, bucket=bucket, key=key, action="delete") from None


@contextlib.contextmanager
def withdrawn_on_failure(bucket: str, keys: list[str]) -> Iterator[None]:
    """Objects made visible before their manifest are deleted again if what follows
    fails: nothing of a failed run stays, and the task's rerun of the same keys starts
    clean instead of meeting them (BackupExistsError). Not when the manifest exists
    already: then they are a complete backup."""
    try:
        yield
    except BackupExistsError:
        raise
    except BaseException:
        delete_quietly(bucket, keys)
        raise


def delete_quietly(bucket: str, keys: list[str]) -> None:
    """Delete what a failed run made visible; what cannot be deleted is left to prune,
    as any leftover."""
    for key in keys:
        with contextlib.suppress(StorageError):
            delete(bucket, key)


def get(bucket: str, key: str) -> bytes:
    return b"".join(stream(bucket, key))


def stream(bucket: str, key: str) -> Iterator[bytes]:
    """The object's bytes in chunks; transport errors become named errors.

    With ``ChecksumMode=ENABLED`` S3 returns the object's full-object checksum
    and botocore checks the bytes against it when the body ends (an object
    without one, or with a composite one, is not checked here; the manifest's
    sha256 still is).

    botocore retries a request, not a body that breaks off half-way (a reset
    connection, a read timeout): a restore of many GiB would then start over.
    The read resumes where it stopped instead, with ``Range: bytes=N-`` and
    ``If-Match`` the first response's ETag, so that the rest comes from the
    same object (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html,
    Range and If-Match). A ranged answer carries no full-object checksum; the
    manifest's sha256 of every byte still decides.
    """
    offset, etag, breaks, size = 0, "", 0, -1
    while offset != size:
        try:
            if not etag:
                response = aws.client("s3").get_object(
                    Bucket=bucket, Key=key, ChecksumMode="ENABLED"
                )
                etag, size = response["ETag"], response["ContentLength"]
            else:  # the rest of the same object (keywords spelled out: the package test scans them)
                response = aws.client("s3").get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={offset}-", IfMatch=etag
                )
            body = response["Body"]
            while chunk := body.read(READ_CHUNK):
                offset += len(chunk)
                yield chunk
            return
        except _BROKEN_OFF as exc:
            breaks += 1
            if breaks > RESUME_ATTEMPTS:
                raise storage_error(exc, bucket=bucket, key=key, action="read") from None
            log.warning(
                "reading s3://%s/%s broke off after %d bytes (%s): resuming there (%d of %d)",
                bucket, key, offset, exc, breaks, RESUME_ATTEMPTS,
            )  # fmt: skip
            time.sleep(min(RESUME_BACKOFF_SECONDS * 2 ** (breaks - 1), 10.0))
        except FlexibleChecksumError as exc:
            raise ChecksumMismatchError(
                f"checksum mismatch: s3://{bucket}/{key} is corrupt as received: S3's own "
                f"checksum of the object differs from the bytes read ({exc})",
                hint="read it again; if this repeats, the stored object is damaged: "
                "restore an older backup",
            ) from None
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, bucket=bucket, key=key, action="read") from None
