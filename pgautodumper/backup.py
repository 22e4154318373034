"""The backup pipeline: pg_dump ─▶ zstd ─▶ sha256 ─▶ S3 multipart, manifest last.

No temporary files and bounded memory: pg_dump writes its custom format with
its own (single-threaded) compression off, zstd compresses in worker threads,
the hash covers the stored bytes, and the sink keeps at most a few parts in
memory. The dump object becomes visible only after pg_dump exited 0 and every
byte was uploaded; the manifest, written after it, is the commit marker.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

import psycopg
import zstandard
from pydantic import BaseModel

from pgautodumper import __version__, layout, storage
from pgautodumper.child import ToolProcess
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import DumpFailedError
from pgautodumper.manifest import Compression, Manifest, TableRows
from pgautodumper.pgtools import PgTool, find_tool, server_major
from pgautodumper.snapshot import count_rows, held_snapshot

log = logging.getLogger(__name__)

# zstd level 1 was both faster and smaller than level 3 on the benchmark data.
DEFAULT_LEVEL = 1
DEFAULT_THREADS = 2


class BackupOptions(BaseModel):
    bucket: str
    prefix: str = ""
    name: str | None = None
    run_id: str | None = None
    started_at: datetime | None = None
    level: int = DEFAULT_LEVEL
    threads: int = DEFAULT_THREADS
    pg_dump_major: int | None = None
    part_size: int | None = None


SinkFactory = Callable[[str, int], storage.Sink]


def s3_sink(bucket: str) -> SinkFactory:
    return lambda key, part_size: storage.S3MultipartSink(bucket, key, base_part_size=part_size)


class _CountingReader:
    """Counts the raw bytes pg_dump produced as zstd reads them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


class _RowCounter(threading.Thread):
    """Counts rows in the held snapshot while pg_dump streams."""

    def __init__(self, conn: psycopg.Connection) -> None:
        super().__init__(name="row-counts", daemon=True)
        self._conn = conn
        self.result: list[TableRows] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = count_rows(self._conn)
        except BaseException as exc:
            self.error = exc

    def rows(self) -> list[TableRows]:
        self.join()
        if self.error:
            raise self.error
        return self.result


def pg_dump_argv(tool: PgTool, snapshot_id: str) -> list[str]:
    """No connection string: host, user and password travel in the environment."""
    return [str(tool.path), "--format=custom", "--compress=0", f"--snapshot={snapshot_id}", "-w"]


def run_backup(
    info: ConnectionInfo, options: BackupOptions, sink_factory: SinkFactory | None = None
) -> Manifest:
    """Dump one database to the store; returns the manifest that was written."""
    started = time.monotonic()
    started_at = datetime.now(UTC)
    with held_snapshot(info) as (snapshot, conn):
        server = snapshot.server
        tool = find_tool(
            "pg_dump", server_major(server.server_version_num), pinned=options.pg_dump_major
        )
        name = options.name or server.database
        keys = layout.backup_keys(
            options.prefix, name, options.started_at or started_at, options.run_id
        )
        part_size = options.part_size or storage.initial_part_size(server.database_size_bytes)
        log.info("backup %s: %s %s -> %s", name, tool.name, tool.version, keys.dump)
        sink = (sink_factory or s3_sink(options.bucket))(keys.dump, part_size)
        counter = _RowCounter(conn)
        try:
            counter.start()
            raw_bytes, stored_bytes, sha256 = _stream_dump(
                ToolProcess(
                    pg_dump_argv(tool, snapshot.snapshot_id),
                    info.libpq_env(),
                    stdout=subprocess.PIPE,
                    secrets=info.secret_values(),
                ),
                sink,
                options,
                database=server.database,
            )
            tables = counter.rows()
            parts = sink.complete()
        except BaseException:
            sink.abort()
            raise
    finished_at = datetime.now(UTC)
    manifest = Manifest(
        name=name,
        database=server.database,
        run_id=keys.run_id,
        dump_key=keys.dump,
        manifest_key=keys.manifest,
        stored_bytes=stored_bytes,
        raw_bytes=raw_bytes,
        parts=parts,
        part_size_bytes=part_size,
        sha256=sha256,
        compression=Compression(level=options.level, threads=options.threads),
        pg_dump_version=tool.version,
        server_version=server.server_version,
        server_version_num=server.server_version_num,
        snapshot=snapshot.snapshot_id,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=round(time.monotonic() - started, 3),
        tool_version=__version__,
        tables=tables,
    )
    sink.write_manifest(keys.manifest, manifest.to_json())
    return manifest


def _stream_dump(
    dump: ToolProcess, sink: storage.Sink, options: BackupOptions, *, database: str
) -> tuple[int, int, str]:
    """Pump pg_dump's output through zstd into the sink; (raw, stored, sha256)."""
    compressor = zstandard.ZstdCompressor(
        level=options.level, threads=options.threads, write_checksum=True
    )
    digest = hashlib.sha256()
    stored = 0
    reader = _CountingReader(dump.stdout)
    try:
        for chunk in compressor.read_to_iter(
            reader, read_size=storage.READ_CHUNK, write_size=storage.READ_CHUNK
        ):
            digest.update(chunk)
            stored += len(chunk)
            sink.write(chunk)
    except zstandard.ZstdError as exc:
        dump.kill()
        raise DumpFailedError(f"compressing the dump of {database} failed: {exc}") from None
    except BaseException:
        dump.kill()
        raise
    if dump.wait() != 0:
        raise DumpFailedError(
            f"dump of {database} failed: {dump.failure()}",
            hint="nothing was stored; fix the cause above and run the backup again",
        )
    return reader.count, stored, digest.hexdigest()
