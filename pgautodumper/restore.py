"""Restore: S3 ─▶ sha256 + size check ─▶ zstd ─▶ pg_restore, no temporary files.

The last compressed chunk is held back until the whole object's size and
sha256 match the manifest, so pg_restore never sees the end of a corrupt or
truncated archive and cannot report success on one.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import time
from collections.abc import Iterator

import zstandard
from pydantic import BaseModel

from pgautodumper import catalog, layout, storage
from pgautodumper.child import ToolProcess
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import (
    ChecksumMismatchError,
    RestoreFailedError,
    TargetNotEmptyError,
)
from pgautodumper.manifest import Manifest
from pgautodumper.pgtools import find_tool

log = logging.getLogger(__name__)

_INCOMPLETE = "treat the target database as incomplete"

_USER_OBJECTS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""


class RestoreOptions(BaseModel):
    clean: bool = False
    no_owner: bool = False


class RestoreResult(BaseModel):
    dump_key: str
    database: str
    stored_bytes: int
    sha256: str
    seconds: float


def resolve(
    bucket: str, prefix: str | None, *, key: str | None, name: str | None
) -> layout.BackupKeys:
    """The backup named by ``--key`` or the latest complete one of ``--name``."""
    if key:
        return layout.keys_for(key)
    assert name
    return catalog.latest_complete(bucket, prefix, name)


def target_database(target: ConnectionInfo, *, clean: bool) -> str:
    """The target's name, after refusing one that holds objects (unless clean)."""
    with connect(target) as conn:
        dbname = conn.info.dbname
        row = conn.execute(_USER_OBJECTS).fetchone()
    if row and row[0] and not clean:
        raise TargetNotEmptyError(
            f"target database {dbname} on {target.describe()} is not empty ({row[0]} relations)",
            hint="restore into an empty database, or pass --clean to drop and replace objects",
        )
    return dbname


def pg_restore_argv(path: str, dbname: str, options: RestoreOptions) -> list[str]:
    argv = [path, "--exit-on-error", "-w", f"--dbname={dbname}"]
    if options.clean:
        argv += ["--clean", "--if-exists"]
    if options.no_owner:
        argv += ["--no-owner", "--no-privileges"]
    return argv


def restore(
    bucket: str, keys: layout.BackupKeys, target: ConnectionInfo, options: RestoreOptions
) -> RestoreResult:
    manifest = catalog.read_manifest(bucket, keys)
    dbname = target_database(target, clean=options.clean)
    tool = find_tool("pg_restore", _major(manifest.pg_dump_version))
    started = time.monotonic()
    log.info("restore %s -> %s (%s %s)", keys.dump, dbname, tool.name, tool.version)
    process = ToolProcess(
        pg_restore_argv(str(tool.path), dbname, options),
        target.libpq_env(),
        stdin=subprocess.PIPE,
        secrets=target.secret_values(),
    )
    try:
        _feed(process, storage.stream(bucket, keys.dump), manifest)
    except BrokenPipeError:
        process.wait()
        raise RestoreFailedError(
            f"restore of {keys.dump} into {dbname} failed: {process.failure()}",
            hint=_INCOMPLETE,
        ) from None
    except BaseException:
        process.kill()
        raise
    if process.wait() != 0:
        raise RestoreFailedError(
            f"restore of {keys.dump} into {dbname} failed: {process.failure()}",
            hint=_INCOMPLETE,
        )
    return RestoreResult(
        dump_key=keys.dump,
        database=dbname,
        stored_bytes=manifest.stored_bytes,
        sha256=manifest.sha256,
        seconds=round(time.monotonic() - started, 3),
    )


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def _feed(process: ToolProcess, chunks: Iterator[bytes], manifest: Manifest) -> None:
    """Decompress verified bytes into pg_restore, holding back the last chunk."""
    digest = hashlib.sha256()
    size = 0
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    pending: bytes | None = None
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if size > manifest.stored_bytes:
            break
        if pending is not None:
            _write(process, decompressor, pending, manifest)
        pending = chunk
    _check_stored(manifest, size, digest.hexdigest())
    if pending is not None:
        _write(process, decompressor, pending, manifest)
    if not decompressor.eof:
        raise ChecksumMismatchError(
            f"checksum ok but the zstd stream of {manifest.dump_key} is unterminated",
            hint=_INCOMPLETE,
        )
    process.stdin.close()


def _write(process: ToolProcess, decompressor, chunk: bytes, manifest: Manifest) -> None:
    try:
        data = decompressor.decompress(chunk)
    except zstandard.ZstdError as exc:
        raise ChecksumMismatchError(
            f"checksum failure: {manifest.dump_key} is corrupt (zstd: {exc})", hint=_INCOMPLETE
        ) from None
    process.stdin.write(data)


def _check_stored(manifest: Manifest, size: int, sha256: str) -> None:
    if size != manifest.stored_bytes:
        more = "more than " if size > manifest.stored_bytes else ""
        raise ChecksumMismatchError(
            f"checksum failure: {manifest.dump_key} has {more}{size} bytes, "
            f"the manifest records {manifest.stored_bytes} (truncated or replaced)",
            hint=_INCOMPLETE,
        )
    if sha256 != manifest.sha256:
        raise ChecksumMismatchError(
            f"checksum mismatch: {manifest.dump_key} has sha256 {sha256}, "
            f"the manifest records {manifest.sha256}",
            hint=_INCOMPLETE,
        )
